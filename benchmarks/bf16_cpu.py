"""Is bf16 worth it on this CPU? Seconds per pretraining step of the real profile's model, fp32 against
bf16 autocast, one thread, median and best over steps (prints; writes nothing).

    python benchmarks/bf16_cpu.py            # about a minute on an AVX2 machine

The real profile (profiles/real.yaml) pretrains in bf16 because its masked-gene softmax over a
vocabulary of about 16,000 genes dominates the step, and bf16 was faster on the AVX-512 machine it was
chosen on. A CPU without AVX-512 only emulates bf16; ``scfm_lib.train.check_bf16`` refuses such runs,
and this script shows the reason on the machine at hand.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scfm_lib.masks import random_value_mask
from scfm_lib.model import ScFM, ScFMConfig
from scfm_lib.train import native_bf16


def step_seconds(model: ScFM, gene_ids: torch.Tensor, values: torch.Tensor, bf16: bool, steps: int) -> list[float]:
    """Seconds of each of ``steps`` optimizer steps after one warm-up step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        mask = random_value_mask(gene_ids, 0.15)  # [B, L]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.pretraining_loss(gene_ids, values, mask)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--vocab", type=int, default=16_000, help="genes in the vocabulary (real profile: ~16,000)")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # as the workflow's jobs run (threads_per_job: 1)
    config = ScFMConfig(
        vocab_size=args.vocab + 3, family="geneformer", context_genes=128, d_model=64, n_layers=2, n_heads=4
    )
    gene_ids = torch.randint(3, args.vocab + 3, (64, 128))  # [B, L]: batch 64, 128 context genes
    values = torch.rand(64, 128)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16()}")
    medians = {}
    for bf16 in (False, True):
        times = step_seconds(ScFM(config), gene_ids, values, bf16, args.steps)
        medians[bf16] = statistics.median(times)
        print(
            f"{'bf16' if bf16 else 'fp32'}: median {medians[bf16]:.3f} s/step, best {min(times):.3f} s "
            f"({args.steps} steps after 1 warm-up)"
        )
    print(f"bf16 / fp32 (median): {medians[True] / medians[False]:.2f}x the time")


if __name__ == "__main__":
    main()
