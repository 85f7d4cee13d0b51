"""Data-parallel pretraining: 2 processes (torchrun, gloo on CPU) follow the 1-process loss curve
with the same global batch, and their checkpoint matches."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

SCRIPT = """
import json, sys
import numpy as np, torch
from scfm_lib import data, runner, train
from scfm_lib.model import ScFMConfig

rank, world = runner.init_distributed()
torch.set_num_threads(1)
rng = np.random.default_rng(0)
n, context, vocab = 96, 12, 50
gene_ids = np.zeros((n, context), dtype=np.int64)
for c in range(n):  # cells of different lengths, so batches are trimmed and bucketed
    k = int(rng.integers(4, context + 1))
    gene_ids[c, :k] = rng.permutation(vocab - 3)[:k] + 3
values = np.where(gene_ids > 0, rng.gamma(2.0, 1.0, (n, context)), 0).astype(np.float32)
tokens = data.CellTokens(gene_ids, values)
config = ScFMConfig(vocab_size=vocab, context_genes=context, d_model=32, n_layers=2, n_heads=2, family=sys.argv[2])
cfg = train.PretrainConfig(max_steps=12, batch_size=16, lr=2e-3, warmup_steps=2, eval_every=3,
                           checkpoint_every=6, bf16=False)
out = train.pretrain(config, tokens, tokens.subset(slice(0, 24)), cfg, sys.argv[1], progress=False)
if rank == 0:
    print("HISTORY" + json.dumps(out["history"]))
"""


def _run(cmd, tmp_path):
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    line = next(row for row in run.stdout.splitlines() if row.startswith("HISTORY"))
    return json.loads(line[len("HISTORY") :])


@pytest.mark.parametrize("family", ["scgpt", "geneformer"])
def test_two_processes_match_one(tmp_path, family):
    script = tmp_path / "ddp_pretrain.py"
    script.write_text(SCRIPT)
    single = _run([sys.executable, str(script), str(tmp_path / "one"), family], tmp_path)
    double = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(tmp_path / "two"),
            family,
        ],
        tmp_path,
    )
    assert [h["step"] for h in single] == [h["step"] for h in double] == [3, 6, 9, 12]
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose([h[key] for h in double], [h[key] for h in single], rtol=1e-4)
    assert single[-1]["val_loss"] < single[0]["val_loss"]  # it trained
    one, two = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("one", "two"))
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5)
