"""Peak memory of pretraining as the corpus grows tenfold: it must stay flat.

    python benchmarks/memory.py          # ~3 min; writes results/memory.json

The pretraining runner memory-maps the token file of the corpus (CellTokens.load(mmap=True)) and
reads each batch from it, so the process's own memory (anonymous pages: what it allocates, as
opposed to file pages the kernel can drop at any time) should not grow with the corpus. Each
corpus size runs in a fresh process that samples /proc/self/status every 5 ms. For contrast,
the same run with the corpus loaded into memory (mmap=False).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import write_result

CONTEXT, SIZES = 256, (20_000, 200_000)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(path: str, mmap: bool) -> None:
    """Pretrain 40 steps on the whole token file; print peak anonymous and total resident memory."""
    import torch

    from scfm_lib import train
    from scfm_lib.data import CellTokens
    from scfm_lib.model import ScFMConfig

    torch.set_num_threads(1)
    peak = {"anon": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["anon"] = max(peak["anon"], _status_kib("RssAnon"))
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    tokens = CellTokens.load(path, mmap=mmap)
    corpus = tokens.subset(np.arange(len(tokens)))  # the runner's nested subset (here: everything)
    config = ScFMConfig(vocab_size=2003, context_genes=CONTEXT, d_model=64, n_layers=2, n_heads=4)
    cfg = train.PretrainConfig(max_steps=40, batch_size=32, eval_every=40, checkpoint_every=40, bf16=False)
    with tempfile.TemporaryDirectory() as out:
        train.pretrain(config, corpus, corpus.subset(np.arange(64)), cfg, out, progress=False)
    done.set()
    print(json.dumps({"peak_anon_mib": peak["anon"] / 1024, "peak_rss_mib": _status_kib("VmHWM") / 1024}))


def write_tokens(path: Path, n_cells: int) -> None:
    from scfm_lib.data import CellTokens

    rng = np.random.default_rng(0)
    gene_ids = (rng.integers(3, 2003, (n_cells, CONTEXT))).astype(np.int64)
    values = rng.random((n_cells, CONTEXT), dtype=np.float32) * 5
    CellTokens(gene_ids, values).save(path)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_cells in SIZES:
            path = Path(tmp) / f"corpus_{n_cells}.npz"
            write_tokens(path, n_cells)
            for mmap in (True, False):
                run = subprocess.run(
                    [sys.executable, __file__, "--child", str(path), str(int(mmap))],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                figures = json.loads(run.stdout.strip().splitlines()[-1])
                rows.append(
                    {
                        "n_cells": n_cells,
                        "file_mib": path.stat().st_size / 2**20,
                        "storage": "memory-mapped" if mmap else "in memory",
                        **figures,
                    }
                )
                print(
                    f"{n_cells:>8,} cells ({rows[-1]['file_mib']:.0f} MiB of tokens), {rows[-1]['storage']:13s}: "
                    f"peak anonymous {figures['peak_anon_mib']:.0f} MiB, "
                    f"peak resident {figures['peak_rss_mib']:.0f} MiB"
                )
    write_result("memory", {"rows": rows})


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], bool(int(sys.argv[3])))
    else:
        main()
