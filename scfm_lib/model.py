"""The scFM transformer, two model families, one encoder: one readable file (nanoGPT style).

Both families share the encoder (pre-norm transformer blocks with a key-padding mask), the CLS
token, the cell embedding and every evaluation; they differ in what a position holds and what
pretraining asks:

- ``scgpt`` (scGPT-style): a cell is the set of its top-N expressed genes; each position is a
  gene-token embedding plus an embedding of the gene's log-normalized value, with no positional
  embedding (genes form a set). Pretraining hides the value of a share of each cell's genes and
  predicts it from each gene's own hidden state and (``mvc_weight``) from the cell embedding
  alone: scGPT's "MVC" term is what trains the cell embedding. Squared error at hidden positions.
- ``geneformer`` (Geneformer-style rank-value encoding): a cell is its expressed genes in
  descending order of expression normalized by each gene's corpus-wide median (see
  :func:`scfm_lib.data.tokenize` with ``medians``); a position is a gene-token embedding plus a learned
  embedding of its rank. Pretraining replaces a share of the gene tokens by ``<mask>`` and
  predicts their identity (masked language modelling). The vocabulary logits are computed at the
  masked positions only ([M, V], never [B, L, V]), with the decoder tied to the gene embedding,
  and in pretraining the last block runs at those positions alone (``final_rows``).

Shapes: B cells in a batch, L gene positions (context), D model width, H heads, V vocabulary,
M masked positions in a batch.

Three small modules hold what is not the transformer itself, and this module re-exports their
names (``scfm_lib.model.linear_cross_entropy``, ``scfm_lib.model.ScFMConfig`` etc. keep working):
:mod:`scfm_lib.model_config`, the hyperparameters :class:`ScFMConfig` with their checks and the
names of the families (:data:`FAMILIES`), value encodings and poolings; :mod:`scfm_lib.losses`, the
memory-lean vocabulary cross-entropy of the geneformer head (:func:`linear_cross_entropy`) and
the masked-row index its last block runs at (:func:`masked_rows`); :mod:`scfm_lib.classifier`,
the finetuning head :class:`CellClassifier`.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from scfm_lib.classifier import CellClassifier
from scfm_lib.data import MASK_ID, PAD_ID
from scfm_lib.losses import _LinearCrossEntropy, linear_cross_entropy, masked_rows  # noqa: F401 (re-exported)
from scfm_lib.model_config import FAMILIES, POOLINGS, VALUE_ENCODINGS, ScFMConfig

__all__ = [
    "FAMILIES",
    "POOLINGS",
    "VALUE_ENCODINGS",
    "Block",
    "CellClassifier",
    "ScFM",
    "ScFMConfig",
    "SelfAttention",
    "keep_shown",
    "linear_cross_entropy",
    "masked_rows",
    "random_value_mask",
]


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


class ScFM(nn.Module):
    """The encoder of both families, with their pretraining heads and the cell embedding.

    Parameters
    ----------
    config : ScFMConfig
        The hyperparameters; ``family`` decides the input (value or rank embedding) and the heads
        (expression head and MVC query for scgpt, tied MLM head for geneformer).
    generator : torch.Generator or None
        Seeds the weight initialization (same seed, same weights); None uses torch's global generator.
    """

    def __init__(self, config: ScFMConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = cfg = config
        self.gene_embedding = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=PAD_ID)
        self.cls_embedding = nn.Parameter(torch.zeros(cfg.d_model))  # the CLS token's input embedding
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.gene_query = None
        if cfg.family == "scgpt":
            if cfg.value_encoding == "continuous":
                self.value_encoder = nn.Sequential(
                    nn.Linear(1, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, cfg.d_model)
                )
            else:
                self.value_encoder = nn.Embedding(cfg.n_bins, cfg.d_model)
            self.mask_value_embedding = nn.Parameter(
                torch.zeros(cfg.d_model)
            )  # replaces a hidden gene's value embedding
            self.value_head = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, 1))
            # MVC objective: each gene becomes a query that reads its value off the cell embedding.
            self.gene_query = nn.Linear(cfg.d_model, cfg.d_model) if cfg.mvc_weight > 0 else None
        else:
            self.rank_embedding = nn.Embedding(cfg.context_genes, cfg.d_model)  # position = expression rank
            # BERT's MLM head: transform, then logits through the (tied) gene embedding.
            self.mlm_transform = nn.Sequential(
                nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(), nn.LayerNorm(cfg.d_model)
            )
            self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self._init_weights(generator)

    @torch.no_grad()
    def _init_weights(self, generator: torch.Generator | None) -> None:
        """nanoGPT: normal(0, 0.02) weights, zero biases, residual projections scaled by
        1/sqrt(2 * n_layers) so the residual stream does not grow with depth."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                is_residual = name.endswith("attn.proj") or name.endswith("mlp.2")
                nn.init.normal_(module.weight, 0.0, residual_std if is_residual else 0.02, generator=generator)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        self.gene_embedding.weight[PAD_ID].zero_()
        nn.init.normal_(self.cls_embedding, 0.0, 0.02, generator=generator)
        if self.config.family == "scgpt":
            nn.init.normal_(self.mask_value_embedding, 0.0, 0.02, generator=generator)

    def n_parameters(self, include_embeddings: bool = True) -> int:
        """The number of parameters of the model.

        Parameters
        ----------
        include_embeddings : bool
            False leaves out the gene-embedding table (``vocab_size x d_model``), which grows with
            the vocabulary rather than with the model's capacity.

        Returns
        -------
        int
            The count of scalar parameters.
        """
        n = sum(p.numel() for p in self.parameters())
        return n if include_embeddings else n - self.gene_embedding.weight.numel()

    def encode_values(self, values: torch.Tensor) -> torch.Tensor:
        """Embed expression values (scgpt family).

        Parameters
        ----------
        values : torch.Tensor
            Float ``[B, L]``, log1p(CP10k) expression; clipped to ``[0, max_value]``.

        Returns
        -------
        torch.Tensor
            Value embeddings ``[B, L, D]``: an MLP of the value ("continuous") or the embedding of
            its bin on an even grid of ``n_bins`` over ``[0, max_value]`` ("binned").
        """
        values = values.clamp(0.0, self.config.max_value)
        if self.config.value_encoding == "continuous":
            return self.value_encoder(values.unsqueeze(-1))  # [B, L, D]
        bins = (values / self.config.max_value * (self.config.n_bins - 1)).round().long()  # [B, L] in [0, n_bins)
        return self.value_encoder(bins)  # [B, L, D]

    def forward(
        self,
        gene_ids: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor | None = None,
        final_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The final hidden states (after ``ln_f``), CLS first.

        The geneformer family ignores ``values``: the order of ``gene_ids`` carries the expression.
        With ``final_rows`` the last block runs its queries, output projection and MLP at those P
        positions alone (keys and values still come from every position), which gives the same
        numbers as indexing the full output: a loss that reads ~15% of the positions skips most of
        the last block (:meth:`pretraining_loss`).

        Parameters
        ----------
        gene_ids : torch.Tensor
            Long ``[B, L]``, token ids in ``[0, vocab_size)``; ``PAD_ID`` pads cells with fewer genes.
        values : torch.Tensor
            Float ``[B, L]``, log1p(CP10k) expression of each gene (read by scgpt only).
        mask : torch.Tensor or None
            Bool ``[B, L]``, True = hidden from the input: the value for scgpt, the gene identity
            (replaced by ``<mask>``) for geneformer. None: nothing hidden (inference).
        final_rows : torch.Tensor or None
            Long ``[B, P]``, positions in ``0 .. L`` (0 = CLS): return the states there only.

        Returns
        -------
        torch.Tensor
            ``[B, 1 + L, D]``, or ``[B, P, D]`` with ``final_rows``.

        Raises
        ------
        ValueError
            As :meth:`hidden_states`.
        """
        return self.hidden_states(gene_ids, values, mask, final_rows)[-1]

    def hidden_states(
        self,
        gene_ids: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor | None = None,
        final_rows: torch.Tensor | None = None,
        upto: int | None = None,
    ) -> list[torch.Tensor]:
        """Every layer's states, as ``transformers``' ``output_hidden_states``.

        Parameters
        ----------
        gene_ids, values : torch.Tensor
            Long token ids and float log1p(CP10k) values, ``[B, L]`` each, as for :meth:`forward`.
        mask, final_rows : torch.Tensor or None
            As for :meth:`forward` (``final_rows`` applies to the last block only).
        upto : int or None
            Stop after this many blocks (``0 .. n_layers``): a readout of an early layer skips the
            later blocks. None runs them all.

        Returns
        -------
        list[torch.Tensor]
            ``n_layers + 1`` tensors ``[B, 1 + L, D]`` (CLS first): the input embeddings, then the
            residual stream after each block, the last one after ``ln_f`` (what the heads read;
            ``[B, P, D]`` with ``final_rows``). With ``upto`` the list has ``upto + 1`` entries, the
            last without ``ln_f`` unless ``upto == n_layers``.

        Raises
        ------
        ValueError
            When ``gene_ids`` and ``values`` are not both ``[B, L]``, a gene id lies outside
            ``[0, vocab_size)`` (tokenized with another vocabulary), or, for geneformer, L exceeds
            ``context_genes`` (the rank embedding's length).
        """
        if gene_ids.shape != values.shape or gene_ids.ndim != 2:
            raise ValueError(f"gene_ids {tuple(gene_ids.shape)} and values {tuple(values.shape)} must both be [B, L]")
        if gene_ids.numel() and (int(gene_ids.max()) >= self.config.vocab_size or int(gene_ids.min()) < 0):
            raise ValueError(
                f"gene ids must lie in [0, {self.config.vocab_size}) (the model's vocab_size), found "
                f"[{int(gene_ids.min())}, {int(gene_ids.max())}]: tokenize with the model's own GeneVocab"
            )
        B, L = gene_ids.shape
        if self.config.family == "scgpt":
            value_emb = self.encode_values(values)  # [B, L, D]
            if mask is not None:
                value_emb = torch.where(mask.unsqueeze(-1), self.mask_value_embedding.to(value_emb.dtype), value_emb)
            x = self.gene_embedding(gene_ids) + value_emb  # [B, L, D]
        else:
            if L > self.config.context_genes:
                raise ValueError(
                    f"{L} gene positions exceed the rank embedding's context_genes={self.config.context_genes}"
                )
            shown = gene_ids if mask is None else gene_ids.masked_fill(mask, MASK_ID)  # [B, L]
            x = self.gene_embedding(shown) + self.rank_embedding.weight[:L]  # [B, L, D]
        x = torch.cat([self.cls_embedding.to(x.dtype).expand(B, 1, -1), x], dim=1)  # [B, 1 + L, D]
        keep = torch.cat(
            [torch.ones(B, 1, dtype=torch.bool, device=gene_ids.device), gene_ids != PAD_ID], dim=1
        )  # [B, 1 + L]; CLS always kept
        n_blocks = len(self.blocks) if upto is None else upto
        states = [x]
        for i, block in enumerate(self.blocks[:n_blocks]):
            last = i == len(self.blocks) - 1
            x = block(x, keep, final_rows if last else None)  # [B, 1 + L, D]; last: [B, P, D]
            states.append(x)
        if n_blocks == len(self.blocks):
            states[-1] = self.ln_f(x)  # [B, 1 + L, D] or [B, P, D]
        return states

    def pool(self, hidden: torch.Tensor, gene_ids: torch.Tensor, pooling: str | None = None) -> torch.Tensor:
        """Pool a layer's states into one embedding per cell.

        Parameters
        ----------
        hidden : torch.Tensor
            ``[B, 1 + L, D]``, CLS first.
        gene_ids : torch.Tensor
            Long ``[B, L]``; its padding is left out of the mean.
        pooling : str or None
            ``"cls"`` (the CLS state) or ``"mean"`` (the mean over the cell's real genes); None:
            the config's ``pooling``.

        Returns
        -------
        torch.Tensor
            Cell embeddings ``[B, D]`` (a cell without genes pools to zeros under ``"mean"``).
        """
        if (pooling or self.config.pooling) == "cls":
            return hidden[:, 0]  # [B, D]
        present = (gene_ids != PAD_ID).unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
        return (hidden[:, 1:] * present).sum(1) / present.sum(1).clamp(min=1.0)  # [B, D]

    def layer_index(self, layer: int | None = None) -> int:
        """A layer number as an index into :meth:`hidden_states`.

        Parameters
        ----------
        layer : int or None
            ``0`` = input embeddings, ``n_layers`` or ``-1`` = the last layer, ``-2`` = the
            penultimate; None: the config's ``readout_layer``.

        Returns
        -------
        int
            The index in ``0 .. n_layers``.

        Raises
        ------
        ValueError
            When ``layer`` is outside ``[-(n_layers + 1), n_layers]``.
        """
        layer = self.config.readout_layer if layer is None else layer
        n = len(self.blocks) + 1
        if not -n <= layer < n:
            raise ValueError(f"layer {layer} does not index the {n} hidden states of this model")
        return layer % n

    def cell_embedding(
        self, gene_ids: torch.Tensor, values: torch.Tensor, layer: int | None = None, pooling: str | None = None
    ) -> torch.Tensor:
        """The frozen cell embedding: one layer's states, pooled. Blocks after that layer are not run.

        Parameters
        ----------
        gene_ids : torch.Tensor
            Long ``[B, L]`` token ids.
        values : torch.Tensor
            Float ``[B, L]`` log1p(CP10k) values.
        layer : int or None
            The layer read (see :meth:`layer_index`); None: the config's ``readout_layer``
            (by default the penultimate).
        pooling : str or None
            ``"cls"`` or ``"mean"``; None: the config's (by default the mean over expressed genes).

        Returns
        -------
        torch.Tensor
            ``[B, D]``, one embedding per cell.
        """
        index = self.layer_index(layer)
        return self.pool(self.hidden_states(gene_ids, values, upto=index)[index], gene_ids, pooling)

    def predict_values(self, hidden: torch.Tensor) -> torch.Tensor:
        """scgpt's expression head: each gene's value from its own hidden state.

        Parameters
        ----------
        hidden : torch.Tensor
            Final states ``[B, 1 + L, D]``, CLS first (CLS is skipped).

        Returns
        -------
        torch.Tensor
            Predicted log1p(CP10k) values ``[B, L]``.
        """
        return self.value_head(hidden[:, 1:]).squeeze(-1)

    def predict_values_from_cell(self, cell: torch.Tensor, gene_ids: torch.Tensor) -> torch.Tensor:
        """Each gene's value from the cell embedding alone (scGPT's MVC): <query(gene), cell>.

        Parameters
        ----------
        cell : torch.Tensor
            Cell embeddings ``[B, D]`` (in pretraining, the CLS state of the last layer).
        gene_ids : torch.Tensor
            Long ``[B, L]``, the genes whose values are predicted.

        Returns
        -------
        torch.Tensor
            Predicted log1p(CP10k) values ``[B, L]``.

        Raises
        ------
        ValueError
            When the model has no MVC head (family geneformer, or ``mvc_weight`` 0).
        """
        if self.gene_query is None:
            raise ValueError("this model has no cell-embedding head (family geneformer, or mvc_weight=0)")
        query = self.gene_query(self.gene_embedding(gene_ids))  # [B, L, D]
        return (query * cell.unsqueeze(1)).sum(-1)  # [B, L]

    def gene_logits(self, hidden_masked: torch.Tensor) -> torch.Tensor:
        """geneformer's MLM head at the masked positions only, decoder tied to the gene embedding.

        Parameters
        ----------
        hidden_masked : torch.Tensor
            Final states at the M masked positions, ``[M, D]``.

        Returns
        -------
        torch.Tensor
            Logits over the vocabulary ``[M, V]`` (special tokens included).
        """
        return F.linear(self.mlm_transform(hidden_masked), self.gene_embedding.weight, self.mlm_bias)

    def masked_error(
        self, hidden: torch.Tensor, gene_ids: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Per masked position, the error of the family's pretraining prediction.

        Squared error of the expression head (scgpt), or the cross-entropy of the gene identity
        (geneformer), i.e. ``cross_entropy(gene_logits(...).float(), ...)`` computed by
        :func:`linear_cross_entropy` without an fp32 ``[M, V]`` tensor.

        Parameters
        ----------
        hidden : torch.Tensor
            Final states ``[B, 1 + L, D]``, CLS first.
        gene_ids : torch.Tensor
            Long ``[B, L]``; the targets of geneformer.
        values : torch.Tensor
            Float ``[B, L]`` log1p(CP10k); the targets of scgpt.
        mask : torch.Tensor
            Bool ``[B, L]``, the M scored positions.

        Returns
        -------
        torch.Tensor
            fp32 ``[M]``, the masked positions cell by cell, positions ascending; squared error in
            (log1p CP10k)^2 or cross-entropy in nats.
        """
        if self.config.family == "scgpt":
            return (self.predict_values(hidden).float()[mask] - values.float()[mask]) ** 2
        return self._gene_cross_entropy(hidden[:, 1:][mask], gene_ids[mask])

    def _gene_cross_entropy(self, hidden_masked: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """hidden_masked [M, D], targets [M] -> geneformer's per-position MLM loss [M], fp32."""
        h = self.mlm_transform(hidden_masked)  # [M, D]
        weight = self.gene_embedding.weight  # [V, D], tied to the input embedding
        if torch.is_autocast_enabled(h.device.type):  # the matmul in the autocast dtype, as F.linear would
            dtype = torch.get_autocast_dtype(h.device.type)
            h, weight = h.to(dtype), weight.to(dtype)
        return linear_cross_entropy(h, weight, self.mlm_bias, targets)

    def pretraining_loss(
        self,
        gene_ids: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        normalizer: float | None = None,
        hide: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The family's pretraining loss for a given mask.

        The masked error (:meth:`masked_error`) summed and divided by ``normalizer``, plus, for
        scgpt, ``mvc_weight`` x the same for the prediction from the cell embedding. geneformer's
        loss reads the hidden states at the masked positions only, so its last block runs there
        alone (``final_rows``): the same loss as :meth:`masked_error` on the full output.

        Parameters
        ----------
        gene_ids : torch.Tensor
            Long ``[B, L]`` token ids.
        values : torch.Tensor
            Float ``[B, L]`` log1p(CP10k) values.
        mask : torch.Tensor
            Bool ``[B, L]``, the scored positions (see :func:`random_value_mask`).
        normalizer : float or None
            What the summed error is divided by; None: the number of masked positions (the mean).
            A data-parallel rank passes the global count, so that averaging the ranks' gradients
            gives the single-process gradient exactly.
        hide : torch.Tensor or None
            Bool ``[B, L]``, the positions whose input is hidden; None: ``mask``. Positions in
            ``mask`` but not in ``hide`` are scored with their input shown (BERT's "keep unchanged"
            share, see :func:`keep_shown`), so the loss also trains the states of shown positions,
            the only kind a frozen readout sees (no mask at inference).

        Returns
        -------
        torch.Tensor
            A scalar, fp32 (under bf16 autocast too) whenever a position is scored; zero, still
            attached to the graph, when ``mask`` is empty (every cell is padding).
        """
        hide = mask if hide is None else hide
        if not mask.any():  # every cell is empty padding: nothing to predict
            return self(gene_ids, values, mask=hide).sum() * 0.0
        normalizer = float(mask.sum()) if normalizer is None else normalizer
        if self.config.family == "geneformer":
            rows, present = masked_rows(mask)  # [B, P] each
            hidden = self(gene_ids, values, mask=hide, final_rows=rows + 1)  # [B, P, D]; + 1: CLS first
            # hidden[present] lists cell by cell, positions ascending: the order of gene_ids[mask]
            return self._gene_cross_entropy(hidden[present], gene_ids[mask]).sum() / normalizer
        hidden = self(gene_ids, values, mask=hide)  # [B, 1 + L, D]
        loss = self.masked_error(hidden, gene_ids, values, mask).sum() / normalizer
        if self.gene_query is not None:
            # scGPT's MVC: every gene's value from the CLS state of the last layer (its cell embedding).
            from_cell = self.predict_values_from_cell(hidden[:, 0], gene_ids).float()[mask]
            loss = loss + self.config.mvc_weight * ((from_cell - values.float()[mask]) ** 2).sum() / normalizer
        return loss

    def masked_value_loss(
        self, gene_ids: torch.Tensor, values: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The pretraining loss under a fresh random mask (named for scgpt; geneformer masks identities).

        Parameters
        ----------
        gene_ids : torch.Tensor
            Long ``[B, L]`` token ids.
        values : torch.Tensor
            Float ``[B, L]`` log1p(CP10k) values.
        mask_ratio : float
            Share of each cell's genes masked, in (0, 1) (at least one per cell).
        generator : torch.Generator or None
            Seeds the mask; None: torch's global generator.

        Returns
        -------
        torch.Tensor
            The scalar loss, the mean over masked positions (see :meth:`pretraining_loss`).
        """
        return self.pretraining_loss(gene_ids, values, random_value_mask(gene_ids, mask_ratio, generator))


def keep_shown(mask: torch.Tensor, keep_ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The input-hiding mask for the loss positions ``mask``: some stay shown (BERT's "unchanged" share).

    Parameters
    ----------
    mask : torch.Tensor
        Bool ``[B, L]``, the scored positions.
    keep_ratio : float
        In [0, 1): the probability that a scored position keeps its input shown (BERT uses 0.1).
        0 returns ``mask`` itself and draws nothing (the random stream is untouched).
    generator : torch.Generator or None
        Seeds the draws (one uniform number per position, drawn on the CPU); None: torch's global one.

    Returns
    -------
    torch.Tensor
        Bool ``[B, L]``, a subset of ``mask``: the positions whose input is hidden.

    Raises
    ------
    ValueError
        When ``keep_ratio`` is outside [0, 1).
    """
    if not 0.0 <= keep_ratio < 1.0:
        raise ValueError(f"keep_ratio must be in [0, 1), got {keep_ratio}")
    if keep_ratio == 0:
        return mask
    draws = torch.rand(mask.shape, generator=generator, device="cpu").to(mask.device)  # [B, L]
    return mask & (draws >= keep_ratio)


def random_value_mask(
    gene_ids: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random pretraining mask: a share of each cell's real (non-padding) gene positions.

    Parameters
    ----------
    gene_ids : torch.Tensor
        Long ``[B, L]`` token ids; ``PAD_ID`` positions are never masked.
    mask_ratio : float
        In (0, 1): each cell gets ``ceil(mask_ratio * n_genes)`` masked positions (at least one).
    generator : torch.Generator or None
        Seeds the draws (one uniform number per position, drawn on the CPU); None: torch's global one.

    Returns
    -------
    torch.Tensor
        Bool ``[B, L]``, True at the masked positions (none in a cell without genes).

    Raises
    ------
    ValueError
        When ``mask_ratio`` is outside (0, 1).
    """
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    present = gene_ids != PAD_ID  # [B, L]
    scores = torch.rand(gene_ids.shape, generator=generator, device="cpu").to(gene_ids.device)  # [B, L]
    scores = scores.masked_fill(~present, 2.0)  # padding sorts last
    n_mask = (present.sum(1).float() * mask_ratio).ceil().clamp(min=1).long()  # [B]
    rank = scores.argsort(dim=1).argsort(dim=1)  # [B, L] rank of each position
    return (rank < n_mask[:, None]) & present
