"""The scGPT-style transformer: one readable file (nanoGPT style).

A cell is the set of its top-N expressed genes. Each position carries a gene-token embedding
plus an embedding of the gene's expression value; a CLS token is prepended. There is no
positional embedding: genes form a set, not a sequence. Pretraining hides the value of a share
of the genes (their value embedding is replaced by a learned mask embedding) and predicts it
twice, as scGPT does: from each gene's own hidden state (masked value prediction) and from the
cell embedding alone (scGPT's "MVC" objective). The second term is what trains the cell
embedding: without it nothing asks the CLS token to summarize the cell.

Shapes: B cells in a batch, L gene positions (context), D model width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from scfm_lib.data import PAD_ID


@dataclass
class ScFMConfig:
    vocab_size: int                    # genes + special tokens (GeneVocab length)
    context_genes: int = 64            # L: top expressed genes per cell
    d_model: int = 128                 # D
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int | None = None            # MLP width; None = 4 * d_model
    dropout: float = 0.0
    value_encoding: str = "continuous" # "continuous": MLP on the value; "binned": embedding of its bin
    n_bins: int = 51                   # bins over [0, max_value] when binned
    max_value: float = 10.0            # log1p(CP10k) values above are clipped when binned
    pooling: str = "cls"               # cell embedding: "cls" token or "mean" over genes

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.value_encoding not in ("continuous", "binned"):
            raise ValueError(f"value_encoding must be 'continuous' or 'binned', got {self.value_encoding!r}")
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {self.pooling!r}")
        if self.vocab_size < 4 or self.context_genes < 1:
            raise ValueError(f"vocab_size ({self.vocab_size}) must be >= 4 and context_genes "
                             f"({self.context_genes}) >= 1")
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ScFMConfig":
        return cls(**values)


class SelfAttention(nn.Module):
    def __init__(self, cfg: ScFMConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)                                # 3 x [B, T, D]
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))  # [B, H, T, D/H]
        mask = keep[:, None, None, :]                                        # [B, 1, 1, T] True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))                 # [B, T, D]


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: ScFMConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), keep))
        return x + self.drop(self.mlp(self.ln2(x)))


class ScFM(nn.Module):
    def __init__(self, config: ScFMConfig):
        super().__init__()
        self.config = cfg = config
        self.gene_embedding = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=PAD_ID)
        if cfg.value_encoding == "continuous":
            self.value_encoder = nn.Sequential(nn.Linear(1, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, cfg.d_model))
        else:
            self.value_encoder = nn.Embedding(cfg.n_bins, cfg.d_model)
        self.cls_embedding = nn.Parameter(torch.zeros(cfg.d_model))
        self.mask_value_embedding = nn.Parameter(torch.zeros(cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.value_head = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, 1))
        self.gene_query = nn.Linear(cfg.d_model, cfg.d_model)  # cell-embedding objective: gene -> query
        self.apply(self._init_weights)
        nn.init.normal_(self.cls_embedding, std=0.02)
        nn.init.normal_(self.mask_value_embedding, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode_values(self, values: torch.Tensor) -> torch.Tensor:
        if self.config.value_encoding == "continuous":
            return self.value_encoder(values.unsqueeze(-1))                  # [B, L, D]
        bins = (values.clamp(0, self.config.max_value) / self.config.max_value * (self.config.n_bins - 1))
        return self.value_encoder(bins.round().long())                       # [B, L, D]

    def forward(self, gene_ids: torch.Tensor, values: torch.Tensor,
                value_mask: torch.Tensor | None = None) -> torch.Tensor:
        """gene_ids [B, L] long, values [B, L] float, value_mask [B, L] bool (True = hidden)
        -> hidden states [B, 1 + L, D], CLS first."""
        B, L = gene_ids.shape
        value_emb = self.encode_values(values)                               # [B, L, D]
        if value_mask is not None:
            value_emb = torch.where(value_mask.unsqueeze(-1), self.mask_value_embedding, value_emb)
        x = self.gene_embedding(gene_ids) + value_emb                        # [B, L, D]
        x = torch.cat([self.cls_embedding.expand(B, 1, -1), x], dim=1)       # [B, 1 + L, D]
        keep = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=gene_ids.device),
                          gene_ids != PAD_ID], dim=1)                        # [B, 1 + L]
        for block in self.blocks:
            x = block(x, keep)
        return self.ln_f(x)

    def pool(self, hidden: torch.Tensor, gene_ids: torch.Tensor) -> torch.Tensor:
        """hidden [B, 1 + L, D] -> cell embedding [B, D]."""
        if self.config.pooling == "cls":
            return hidden[:, 0]
        keep = (gene_ids != PAD_ID).unsqueeze(-1).to(hidden.dtype)           # [B, L, 1]
        return (hidden[:, 1:] * keep).sum(1) / keep.sum(1).clamp(min=1.0)

    def cell_embedding(self, gene_ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return self.pool(self(gene_ids, values), gene_ids)                   # [B, D]

    def predict_values(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.value_head(hidden[:, 1:]).squeeze(-1)                    # [B, L]

    def predict_values_from_cell(self, cell: torch.Tensor, gene_ids: torch.Tensor) -> torch.Tensor:
        """Each gene's value from the cell embedding alone: <query(gene), cell>. [B, D] -> [B, L]."""
        query = self.gene_query(self.gene_embedding(gene_ids))               # [B, L, D]
        return (query * cell.unsqueeze(1)).sum(-1)                           # [B, L]

    def masked_value_loss(self, gene_ids: torch.Tensor, values: torch.Tensor, mask_ratio: float,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """Pretraining loss at a random ``mask_ratio`` of each cell's genes (at least one per
        cell), whose values the model does not see: MSE of the per-gene prediction plus MSE of
        the prediction from the cell embedding."""
        mask = random_value_mask(gene_ids, mask_ratio, generator)            # [B, L]
        hidden = self(gene_ids, values, value_mask=mask)                     # [B, 1 + L, D]
        target = values.float()[mask]
        from_gene = self.predict_values(hidden).float()[mask]
        from_cell = self.predict_values_from_cell(self.pool(hidden, gene_ids), gene_ids).float()[mask]
        return F.mse_loss(from_gene, target) + F.mse_loss(from_cell, target)


def random_value_mask(gene_ids: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """[B, L] bool: ``ceil(mask_ratio * n_genes)`` random non-padding positions per cell."""
    present = gene_ids != PAD_ID
    scores = torch.rand(gene_ids.shape, generator=generator, device="cpu").to(gene_ids.device)
    scores = scores.masked_fill(~present, 2.0)                               # padding sorts last
    n_mask = (present.sum(1).float() * mask_ratio).ceil().clamp(min=1).long()  # [B]
    rank = scores.argsort(dim=1).argsort(dim=1)                              # rank of each position
    return (rank < n_mask[:, None]) & present


class CellClassifier(nn.Module):
    """An ScFM encoder with a linear head on its cell embedding."""

    def __init__(self, encoder: ScFM, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.d_model, n_classes)

    def forward(self, gene_ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.cell_embedding(gene_ids, values))      # [B, C]

