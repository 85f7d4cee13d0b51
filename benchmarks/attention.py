"""Why the model computes attention in fp32 inside CPU bf16 autocast: four ways to run it, timed.

    python benchmarks/attention.py        # ~1 min on 2 cores; writes results/attention.json

One attention forward + backward at the base benchmark's shape (batch 32, 8 heads, 200 genes,
head size 32, a key-padding mask), with q, k, v arriving in bf16 as they do under autocast:

- ``sdpa_fp32``: cast to fp32, then ``scaled_dot_product_attention`` (what ``layers.SelfAttention`` does on CPU);
- ``sdpa_bf16``: ``scaled_dot_product_attention`` in bf16;
- ``explicit_bf16``: q @ k^T and p @ v as bf16 matmuls, the softmax in fp32;
- ``explicit_fp32``: the same products in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import seconds_per_call, write_result

BATCH, HEADS, LENGTH, HEAD_SIZE = 32, 8, 200, 32


def _key_padding(generator: torch.Generator) -> torch.Tensor:
    keep = torch.ones(BATCH, LENGTH, dtype=torch.bool)  # [B, L]: the last quarter padded at random
    keep[:, 3 * LENGTH // 4 :] = torch.rand(BATCH, LENGTH - 3 * LENGTH // 4, generator=generator) > 0.5
    return keep[:, None, None, :]  # [B, 1, 1, L]


def _explicit(q, k, v, attend):
    scores = (q @ k.transpose(-1, -2)) * HEAD_SIZE**-0.5  # [B, H, L, L]
    weights = torch.softmax(scores.float().masked_fill(~attend, float("-inf")), dim=-1)
    return weights.to(q.dtype) @ v  # [B, H, L, D/H]


VARIANTS = {
    "sdpa_fp32": lambda q, k, v, a: F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=a),
    "sdpa_bf16": lambda q, k, v, a: F.scaled_dot_product_attention(q, k, v, attn_mask=a),
    "explicit_bf16": _explicit,
    "explicit_fp32": lambda q, k, v, a: _explicit(q.float(), k.float(), v.float(), a),
}


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    attend = _key_padding(generator)
    q, k, v = (
        torch.randn(BATCH, HEADS, LENGTH, HEAD_SIZE, generator=generator).to(torch.bfloat16).requires_grad_()
        for _ in range(3)
    )

    def step(variant):
        for t in (q, k, v):
            t.grad = None
        VARIANTS[variant](q, k, v, attend).float().sum().backward()

    print(
        f"attention forward + backward, batch {BATCH}, {HEADS} heads, length {LENGTH}, head size {HEAD_SIZE}, "
        f"{torch.get_num_threads()} threads"
    )
    milliseconds = {name: 1e3 * seconds_per_call(lambda: step(name), warmup=2, repeats=7) for name in VARIANTS}  # noqa: B023 (called at once)
    for name, ms in milliseconds.items():
        print(f"  {name:<14} {ms:7.1f} ms  ({ms / milliseconds['sdpa_fp32']:.2f}x sdpa_fp32)")
    write_result(
        "attention",
        {
            "shape": {"batch": BATCH, "heads": HEADS, "length": LENGTH, "head_size": HEAD_SIZE},
            "milliseconds": milliseconds,
        },
    )


if __name__ == "__main__":
    main()
