"""The transformer's layers, shared by both families: multi-head self-attention over a cell's gene
positions (padding masked out of the keys) and the pre-norm block around it.

:class:`scfm_lib.model.ScFM` stacks :class:`Block` ``n_layers`` times; ``scfm_lib.model`` re-exports
both classes. Either can compute the outputs of a few positions only (``rows``), which the
geneformer family's pretraining loss uses for the last block.

Shapes: B cells, T = 1 + L positions (CLS first), D model width, H heads, P selected positions.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from scfm_lib.model_config import ScFMConfig


class SelfAttention(nn.Module):
    """Multi-head self-attention over a cell's gene positions, padding masked out of the keys.

    No causal mask and no positional term here: every position attends to every real position
    (genes form a set; the geneformer family adds its rank embedding to the input).

    Parameters
    ----------
    cfg : ScFMConfig
        Reads ``d_model`` (D), ``n_heads`` (H, D divisible by H) and ``dropout`` (on the attention
        weights, in training only).
    """

    def __init__(self, cfg: ScFMConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, keep: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Attend, optionally computing the outputs of a few positions only.

        Parameters
        ----------
        x : torch.Tensor
            Input states, shape ``[B, T, D]`` (T = 1 + L: CLS then the gene positions).
        keep : torch.Tensor
            Bool ``[B, T]``; False marks padding, which is never attended to.
        rows : torch.Tensor or None
            Long ``[B, P]``, positions in ``0 .. T-1``: compute only these positions' outputs (their
            queries still attend to all T keys). None: every position.

        Returns
        -------
        torch.Tensor
            ``[B, T, D]``, or ``[B, P, D]`` with ``rows``.
        """
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x [B, T, D]
        if rows is not None:
            q = _gather_rows(q, rows)  # [B, P, D]
        q = q.reshape(B, -1, self.n_heads, D // self.n_heads).transpose(1, 2)  # [B, H, P or T, D/H]
        k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (k, v))  # [B, H, T, D/H]
        attend = keep[:, None, None, :]  # [B, 1, 1, T] key-padding mask
        cpu_bf16 = q.device.type == "cpu" and q.dtype == torch.bfloat16
        if cpu_bf16:  # PyTorch's CPU attention kernel is slower in bf16 than in fp32 (benchmarks/attention.py)
            q, k, v = q.float(), k.float(), v.float()
        with torch.autocast("cpu", enabled=False) if cpu_bf16 else contextlib.nullcontext():
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0
            )  # [B, H, P or T, D/H]
        return self.proj(y.transpose(1, 2).reshape(B, -1, D))  # [B, P or T, D]


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x)).

    Parameters
    ----------
    cfg : ScFMConfig
        Reads ``d_model``, ``n_heads``, ``d_ff`` (the MLP width) and ``dropout``.
    """

    def __init__(self, cfg: ScFMConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Run the block, optionally at a few positions only.

        Parameters
        ----------
        x : torch.Tensor
            Residual stream, shape ``[B, T, D]``.
        keep : torch.Tensor
            Bool ``[B, T]``; False marks padding (never attended to).
        rows : torch.Tensor or None
            Long ``[B, P]``: the positions whose output is computed (attending to all T); None: all.

        Returns
        -------
        torch.Tensor
            The residual stream after the block, ``[B, T, D]``, or ``[B, P, D]`` with ``rows``.
        """
        attended = self.drop(self.attn(self.ln1(x), keep, rows))  # [B, P or T, D]
        x = (x if rows is None else _gather_rows(x, rows)) + attended  # [B, P or T, D]
        return x + self.drop(self.mlp(self.ln2(x)))  # [B, P or T, D]


def _gather_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x [B, T, D], rows [B, P] long -> x[b, rows[b, p]] as [B, P, D]."""
    return x.gather(1, rows.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
