"""Interrupted runs lose nothing: a pretraining process killed (SIGKILL) at a random step, or in the
middle of writing a checkpoint, resumes in a new process to the very weights of an uninterrupted
run; a write killed half-way leaves the previous file intact; and two processes with the same
seed compute the same weights and embeddings (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scfm_lib import io, train
from scfm_lib.model import ScFMConfig

REPO = Path(__file__).resolve().parent.parent

# One pretraining job in its own process: tiny model (with dropout, so torch's global RNG matters),
# 40 steps, a checkpoint every 10. argv: out_dir, kill_at, where. With kill_at > 0 the process
# SIGKILLs itself: "step" at the start of step kill_at; "weights" half-way through writing the
# weights of checkpoint number kill_at; "json" after those weights are in place, before checkpoint.json.
# It prints the sha256 of the final weights and of the validation cells' embeddings.
JOB = r"""
import hashlib, json, os, signal, sys
import numpy as np
import torch
torch.set_num_threads(1)
from scfm_lib import io, train
from scfm_lib.data import PAD_ID, CellTokens
from scfm_lib.model import ScFMConfig

out, kill_at, where = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def tokens(n, seed):
    rng = np.random.default_rng(seed)
    gene_ids = np.full((n, 16), PAD_ID, dtype=np.int64)
    values = np.zeros((n, 16), dtype=np.float32)
    for c in range(n):
        k = rng.integers(6, 17)
        gene_ids[c, :k] = rng.choice(np.arange(3, 45), k, replace=False)
        values[c, :k] = rng.gamma(2.0, 1.0, k)
    return CellTokens(gene_ids, values)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

calls = {"n": 0}
def counted(original, before_death=None):
    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == kill_at:
            if before_death:
                before_death(*args, **kwargs)
            die()
        return original(*args, **kwargs)
    return wrapper

save_file = train.save_file
def half_a_file(tensors, path):  # the first half of the weights file, then the kill
    save_file(tensors, path)
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)

if kill_at > 0:
    if where == "step":
        train.EpochSampler.next_batch = counted(train.EpochSampler.next_batch)
    elif where == "weights":
        train.checkpoint.save_file = counted(train.save_file, half_a_file)
    elif where == "json":
        train.checkpoint.write_json = counted(train.write_json)

model_config = ScFMConfig(vocab_size=45, context_genes=16, d_model=32, n_layers=2, n_heads=2, dropout=0.1)
cfg = train.PretrainConfig(max_steps=40, batch_size=16, lr=3e-3, warmup_steps=5, eval_every=5,
                           checkpoint_every=10, bf16=False, seed=0)
val = tokens(40, 1)
train.pretrain(model_config, tokens(120, 0), val, cfg, out, progress=False)
embedding = train.embed(train.load_checkpoint(out), val)
print(json.dumps({"weights": io.file_sha256(os.path.join(out, "model.safetensors")),
                  "embedding": hashlib.sha256(np.ascontiguousarray(embedding).tobytes()).hexdigest(),
                  "history": io.read_json(os.path.join(out, "checkpoint.json"))["history"]}))
"""


def run_job(tmp_path: Path, out: Path, kill_at: int = 0, where: str = "step") -> subprocess.CompletedProcess:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(script), str(out), str(kill_at), where],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def result(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("straight")
    return result(run_job(tmp, tmp / "ck"))


def test_two_processes_same_seed_same_weights_and_embeddings(tmp_path, straight):
    again = result(run_job(tmp_path, tmp_path / "ck"))
    assert again == straight


# Seeded "random" kill points: a step after the first checkpoint (10), and a checkpoint after the first.
_rng = np.random.default_rng(6)
KILL_STEP = int(_rng.integers(11, 40))
KILL_CHECKPOINT = int(_rng.integers(2, 5))


@pytest.mark.parametrize(
    "where, kill_at, json_step",
    [
        ("step", KILL_STEP, (KILL_STEP - 1) // 10 * 10),  # killed mid-run: the last checkpoint stays
        (
            "weights",
            KILL_CHECKPOINT,
            (KILL_CHECKPOINT - 1) * 10,
        ),  # killed writing weights: the previous checkpoint stays
        ("json", 4, None),  # killed between the last weights and their JSON
    ],
    ids=["mid-step", "mid-weights-write", "between-weights-and-json"],
)
def test_killed_pretraining_resumes_bit_identical(tmp_path, straight, where, kill_at, json_step):
    out = tmp_path / "ck"
    killed = run_job(tmp_path, out, kill_at, where)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    if json_step is not None:  # what is on disk is a complete, valid checkpoint
        assert io.read_json(out / "checkpoint.json")["step"] == json_step
        train.load_checkpoint(out)
    else:  # new weights, old JSON: the hash check refuses the mismatched pair
        with pytest.raises(ValueError, match="does not match the sha256"):
            train.load_checkpoint(out)
    resumed = result(run_job(tmp_path, out))
    assert resumed == straight
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.json", "model.safetensors", "trainer_state.pt"]


# ------------------------------------------------------------------------------------------- crash mid-write
WRITER = r"""
import os, signal, sys
from scfm_lib import io
path, how = sys.argv[1], sys.argv[2]
if how == "atomic_write":
    with io.atomic_write(path) as fh:
        fh.write('{"half": "of a new res')
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
else:
    with io.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"half of new weights")
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("how", ["atomic_write", "atomic_path"])
def test_process_killed_mid_write_leaves_the_old_file(tmp_path, how):
    folder = tmp_path / "metrics"
    path = folder / "result.json"
    io.write_json(path, {"value": 1})
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, str(script), str(path), how], env=env, capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert io.read_json(path) == {"value": 1}  # the finished file is intact
    assert [p.name for p in folder.glob("*.json")] == ["result.json"]  # readers see no partial file
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1  # a killed process cannot clean up ...
    io.write_json(path, {"value": 2})  # ... the next write of the file does
    assert [p.name for p in folder.iterdir()] == ["result.json"]
    assert io.read_json(path) == {"value": 2}


def test_exception_mid_write_json_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    io.write_json(path, {"value": 1})

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", disk_full)  # the data is written, not yet in place
    with pytest.raises(OSError, match="No space"):
        io.write_json(path, {"value": 2})
    assert io.read_json(path) == {"value": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_other_files_temp_names_are_left_alone(tmp_path):
    """Only a killed writer's temp file of the same target is removed, not another file's."""
    (tmp_path / ".result.json.x.abcd1234.tmp").write_text("another target's temp file")
    (tmp_path / ".result.json.notes.tmp").write_text("not a temp name of ours")
    io.write_json(tmp_path / "result.json", {"value": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".result.json.notes.tmp",
        ".result.json.x.abcd1234.tmp",
        "result.json",
    ]


MODEL = ScFMConfig(vocab_size=12, context_genes=4, d_model=16, n_layers=1, n_heads=2)


@pytest.mark.parametrize("previous", [True, False], ids=["over-a-checkpoint", "first-checkpoint"])
def test_crash_between_checkpoint_weights_and_json_never_loads(tmp_path, monkeypatch, previous):
    """save_checkpoint writes the weights, then the JSON with their hash: a crash between the two
    leaves either no checkpoint.json (incomplete) or one whose hash refuses the new weights."""
    out = tmp_path / "ck"
    if previous:
        train.init_checkpoint(MODEL, 0, out)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(train.checkpoint, "write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        train.save_checkpoint(train.initial_model(MODEL, 1), out, {"step": 5})
    error, message = (ValueError, "does not match the sha256") if previous else (FileNotFoundError, "is missing")
    with pytest.raises(error, match=message):
        train.load_checkpoint(out)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    train.save_checkpoint(train.initial_model(MODEL, 1), out, {"step": 5})  # a rerun completes it
    loaded = train.load_checkpoint(out)
    assert all(
        torch.equal(a, b)
        for a, b in zip(loaded.state_dict().values(), train.initial_model(MODEL, 1).state_dict().values())
    )
