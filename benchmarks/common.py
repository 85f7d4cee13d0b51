"""Shared pieces of the benchmark scripts: matmul peak, timing, FLOP counts, result files.

Benchmarks print their figures and write them to ``benchmarks/results/<name>.json`` (with the
machine and package versions), which ``python -m scfm_book perf`` turns into the book's
Performance page. They are scripts, not tests: nothing here asserts a speed.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


#: The CPU's matrix instruction sets, the ones torch's bf16 and fp32 matmuls choose between: the same
#: model runs at very different speeds (and ratios to a peer) with and without them.
MATRIX_ISA = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def machine() -> dict:
    cpu, flags = "", set()
    if Path("/proc/cpuinfo").exists():
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
        flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    return {
        "cpu": cpu,
        "matrix_isa": [name for name in MATRIX_ISA if name in flags],
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps(
            {"machine": machine(), "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **payload},
            indent=2,
        )
    )
    tmp.replace(path)
    print(f"wrote {path}")
    return path


def read_result(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def seconds_per_call(fn, warmup: int = 2, repeats: int = 5) -> float:
    """Best wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls: on a shared
    machine other processes only ever add time, so the fastest call is the least disturbed one
    (as ``timeit`` advises). Every figure, peaks included, is taken this way."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def seconds_per_batch(step, n_batches: int, warmup: int = 3, repeats: int = 3) -> dict[str, float]:
    """Seconds per batch of ``step(i)`` (one training step on batch ``i``) over batches
    ``0 .. n_batches - 1``, after ``warmup`` steps, each batch timed in ``repeats`` passes:
    ``best``, the mean over batches of each batch's fastest pass (other processes on a shared
    machine only add time, so the fastest pass is the least disturbed), and ``median``, the mean
    over batches of each batch's median pass (what a run of many steps sees). A mean over batches,
    not a median: the batches differ in length, and cells/s is all the cells over all the time."""
    for i in range(warmup):
        step(i % n_batches)
    times = [[] for _ in range(n_batches)]
    for _ in range(repeats):
        for i in range(n_batches):
            start = time.perf_counter()
            step(i)
            times[i].append(time.perf_counter() - start)
    return {
        "best": sum(min(t) for t in times) / n_batches,
        "median": sum(statistics.median(t) for t in times) / n_batches,
    }


def matmul_peak(dtype: torch.dtype, n: int = 2048) -> float:
    """Measured FLOP/s of an n x n x n matrix product in ``dtype`` on this machine's CPU threads."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    seconds = seconds_per_call(lambda: a @ b, warmup=3, repeats=7)
    return 2 * n**3 / seconds


def encoder_flops(
    tokens: int, length: int, d_model: int, n_layers: int, d_ff: int, final_tokens: int | None = None
) -> float:
    """Forward FLOPs of the transformer blocks for ``tokens`` positions in sequences of ``length``:
    per layer and token, the QKV, output and MLP matmuls (2 x their weights: 2 x (4 D^2 + 2 D d_ff))
    and the attention products QK^T and AV (2 x 2 x length x D). Backward is taken as 2 x forward.
    ``final_tokens``: the last layer computes outputs at only that many positions (ScFM's
    ``final_rows``): QKV at every position, the rest at those."""
    per_token = 2 * (4 * d_model**2 + 2 * d_model * d_ff) + 4 * length * d_model
    if final_tokens is None:
        return float(tokens * n_layers * per_token)
    qkv = 2 * 3 * d_model**2
    last = tokens * qkv + final_tokens * (per_token - qkv)
    return float(tokens * (n_layers - 1) * per_token + last)
