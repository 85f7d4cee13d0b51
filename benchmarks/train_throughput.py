"""Training throughput of both model families against the matmul peak and against the peer.

    python benchmarks/train_throughput.py            # ~12 min on 2 cores; writes results/train_throughput.json

For each family (scgpt, geneformer) at two sizes, one pretraining step (forward, backward, AdamW)
on 10 batches of cells with realistic lengths (the number of expressed genes varies, so batches
are length-bucketed and trimmed as in scfm_lib.train.pretrain), in bf16 autocast. Each batch's
time is its best of 3 passes (other processes on a shared machine only add time), the same for
every model and for the matmul peaks; cells/s is all the cells over the sum of those times. The
ratios against the peer are also given with each batch's median pass (``*_median``):

- cells/s and tokens/s (non-padding positions);
- model FLOP utilization (MFU): the model's FLOPs per second over this machine's measured bf16
  matmul peak (benchmarks/common.py counts the FLOPs; backward = 2 x forward; geneformer's last
  block is counted at the masked positions only, where it runs);
- the peer: Hugging Face ``transformers`` ``BertForMaskedLM`` (Geneformer's architecture) with
  the same hidden size, layers, heads, context, vocabulary and batches, run as its users run it
  (fp32) and in bf16 autocast; the ratio is measured in the same process;
- the encoder alone (the transformer blocks, full-length batch), MFU against the bf16 peak;
- ``torch.compile`` (inductor, dynamic shapes, as ``PretrainConfig.compile`` does) of the same
  step against eager mode, both families at both sizes: whether compiling helps on this machine.
"""

from __future__ import annotations

import numpy as np
import torch
from common import encoder_flops, matmul_peak, seconds_per_batch, seconds_per_call, write_result

from scfm_lib import train
from scfm_lib.data import CellTokens
from scfm_lib.masks import random_value_mask
from scfm_lib.model import ScFM, ScFMConfig, masked_rows

VOCAB, CONTEXT, BATCH, MASK_RATIO = 20_003, 256, 32, 0.15
SIZES = {"small": {"d_model": 128, "n_layers": 2, "n_heads": 4}, "base": {"d_model": 256, "n_layers": 4, "n_heads": 8}}


def corpus(n_cells: int = 2048, seed: int = 0) -> CellTokens:
    """Cells expressing 100 to 256 distinct genes (a 10x-like spread), padding after them."""
    rng = np.random.default_rng(seed)
    gene_ids = np.zeros((n_cells, CONTEXT), dtype=np.int64)
    lengths = rng.integers(100, CONTEXT + 1, n_cells)
    for c, k in enumerate(lengths):
        gene_ids[c, :k] = rng.choice(VOCAB - 3, k, replace=False) + 3
    values = np.where(gene_ids > 0, rng.gamma(2.0, 1.0, gene_ids.shape), 0).astype(np.float32)
    return CellTokens(gene_ids, values)


def batches(tokens: CellTokens, n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    sampler = train.EpochSampler(
        len(tokens), seed, lengths=train.cell_lengths(tokens), bucket_size=8 * BATCH, batch_size=BATCH
    )
    return [train._tensors(tokens, sampler.next_batch(BATCH)) for _ in range(n)]


def ours_step_time(family: str, size: dict, data: list, compile: bool = False) -> tuple[dict, float]:
    """Seconds per training step (``best`` and ``median``, ``common.seconds_per_batch``) and model
    FLOPs per step, bf16 autocast (``compile``: the loss
    through ``torch.compile(dynamic=True)``, as scfm_lib.train does with ``PretrainConfig.compile``;
    compilation happens in the warm-up steps and is not timed)."""
    model = ScFM(
        ScFMConfig(vocab_size=VOCAB, context_genes=CONTEXT, family=family, **size),
        generator=torch.Generator().manual_seed(0),
    ).train()
    loss_fn = torch.compile(model.pretraining_loss, dynamic=True) if compile else model.pretraining_loss
    optimizer = train.adamw(train.param_groups(model, 1e-4, 0.01), lr=1e-4, betas=(0.9, 0.95))  # as pretrain()
    generator = torch.Generator().manual_seed(0)
    flops = []

    def step(i: int):
        gene_ids, values = data[i]
        mask = random_value_mask(gene_ids, MASK_RATIO, generator)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_fn(gene_ids, values, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        B, L = gene_ids.shape
        d, n_masked = size["d_model"], int(mask.sum())
        if family == "geneformer":  # its last block runs at masked_rows only
            final_tokens, head = masked_rows(mask)[0].numel(), 2 * n_masked * (d * d + d * VOCAB)
        else:
            final_tokens, head = None, 2 * B * L * (d * d + d)
        flops.append(3 * (encoder_flops(B * (L + 1), L + 1, d, size["n_layers"], 4 * d, final_tokens) + head))

    # compiling: the warm-up pass meets every batch length once, so no timed step compiles
    times = seconds_per_batch(step, len(data), warmup=len(data) if compile else 3)
    return times, float(np.mean(flops))


def peer_step_time(size: dict, data: list, bf16: bool) -> dict:
    """Seconds per training step (``best`` and ``median``) of transformers' BertForMaskedLM on the same batches
    (CLS + genes, attention mask on padding, labels -100 except at masked positions: logits at every position)."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=size["d_model"],
        num_hidden_layers=size["n_layers"],
        num_attention_heads=size["n_heads"],
        intermediate_size=4 * size["d_model"],
        max_position_embeddings=CONTEXT + 2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    model = BertForMaskedLM(config).train()
    # transformers' Trainer default on torch >= 2.8 (optim="adamw_torch_fused"), as scfm_lib.train.adamw
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    generator = torch.Generator().manual_seed(0)

    def step(i: int):
        gene_ids, _ = data[i]
        mask = random_value_mask(gene_ids, MASK_RATIO, generator)
        input_ids = torch.cat([torch.ones(len(gene_ids), 1, dtype=torch.long), gene_ids.masked_fill(mask, 2)], 1)
        labels = torch.cat([torch.full((len(gene_ids), 1), -100), gene_ids.masked_fill(~mask, -100)], 1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=input_ids, attention_mask=(input_ids != 0).long(), labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return seconds_per_batch(step, len(data))


def encoder_mfu(size: dict, peak: float) -> dict:
    """Forward + backward of the transformer blocks alone on a full-length bf16 batch."""
    model = ScFM(ScFMConfig(vocab_size=64, context_genes=CONTEXT, **size))
    x = torch.randn(BATCH, CONTEXT + 1, size["d_model"], requires_grad=True)
    keep = torch.ones(BATCH, CONTEXT + 1, dtype=torch.bool)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = x
            for block in model.blocks:
                h = block(h, keep)
        h.float().sum().backward()

    seconds = seconds_per_call(step, warmup=3, repeats=8)
    flops = 3 * encoder_flops(
        BATCH * (CONTEXT + 1), CONTEXT + 1, size["d_model"], size["n_layers"], 4 * size["d_model"]
    )
    return {"seconds": seconds, "tflops": flops / seconds / 1e12, "mfu_bf16": flops / seconds / peak}


def main() -> None:
    peaks = {"bf16": matmul_peak(torch.bfloat16), "fp32": matmul_peak(torch.float32)}
    print(f"matmul peak at the start: bf16 {peaks['bf16'] / 1e12:.2f} TFLOP/s, fp32 {peaks['fp32'] / 1e12:.2f} TFLOP/s")
    tokens = corpus()
    rows = []
    for size_name, size in SIZES.items():
        data = batches(tokens, 10)
        cells = BATCH
        real_tokens = float(np.mean([int((g != 0).sum()) for g, _ in data]))
        peer = {"fp32": peer_step_time(size, data, bf16=False), "bf16": peer_step_time(size, data, bf16=True)}
        for family in ("scgpt", "geneformer"):
            times, flops = ours_step_time(family, size, data)
            seconds, median = times["best"], times["median"]
            row = {
                "family": family,
                "size": size_name,
                **size,
                "context": CONTEXT,
                "vocab": VOCAB,
                "batch": BATCH,
                "cells_per_s": cells / seconds,
                "tokens_per_s": real_tokens / seconds,
                "tflops": flops / seconds / 1e12,
                "peer_fp32_cells_per_s": cells / peer["fp32"]["best"],
                "peer_bf16_cells_per_s": cells / peer["bf16"]["best"],
                "speedup_vs_peer_fp32": peer["fp32"]["best"] / seconds,
                "speedup_vs_peer_bf16": peer["bf16"]["best"] / seconds,
                # the same ratios with each batch's median pass instead of its fastest (both sides alike)
                "cells_per_s_median": cells / median,
                "speedup_vs_peer_fp32_median": peer["fp32"]["median"] / median,
                "speedup_vs_peer_bf16_median": peer["bf16"]["median"] / median,
            }
            rows.append(row)
            print(
                f"{family:10s} {size_name:5s} {row['cells_per_s']:8.1f} cells/s {row['tokens_per_s']:9.0f} tokens/s "
                f"{row['tflops']:.3f} TFLOP/s  x{row['speedup_vs_peer_fp32']:.1f} vs BertForMaskedLM fp32 "
                f"(x{row['speedup_vs_peer_bf16']:.1f} vs its bf16); median passes: "
                f"x{row['speedup_vs_peer_fp32_median']:.1f} fp32, x{row['speedup_vs_peer_bf16_median']:.1f} bf16"
            )
    # The machine's speed drifts with its neighbours: the peak is measured again after the steps and
    # the higher of the two is the reference, so that a slow moment never inflates a utilization.
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        peaks[name] = max(peaks[name], matmul_peak(dtype))
    print(
        f"matmul peak, the higher of start and end: bf16 {peaks['bf16'] / 1e12:.2f} TFLOP/s, "
        f"fp32 {peaks['fp32'] / 1e12:.2f} TFLOP/s"
    )
    for row in rows:
        row["mfu_bf16"] = row["tflops"] * 1e12 / peaks["bf16"]
        print(f"{row['family']:10s} {row['size']:5s} MFU {row['mfu_bf16']:.1%} of the bf16 matmul peak")
    encoder = {name: encoder_mfu(size, peaks["bf16"]) for name, size in SIZES.items()}
    for name, e in encoder.items():
        print(f"encoder alone, {name}: {e['tflops']:.2f} TFLOP/s = {e['mfu_bf16']:.1%} of the bf16 matmul peak")
    compiled = []
    for size_name, size in SIZES.items():
        data = batches(tokens, 10)
        for family in ("scgpt", "geneformer"):
            eager = next(r for r in rows if r["family"] == family and r["size"] == size_name)
            seconds = ours_step_time(family, size, data, compile=True)[0]["best"]
            compiled.append(
                {
                    "family": family,
                    "size": size_name,
                    "cells_per_s": BATCH / seconds,
                    "eager_cells_per_s": eager["cells_per_s"],
                    "speedup_vs_eager": BATCH / seconds / eager["cells_per_s"],
                }
            )
            print(
                f"{family:10s} {size_name:5s} torch.compile: {BATCH / seconds:8.1f} cells/s "
                f"= x{compiled[-1]['speedup_vs_eager']:.2f} of eager"
            )
    write_result("train_throughput", {"peaks_flops": peaks, "rows": rows, "encoder": encoder, "compiled": compiled})


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
