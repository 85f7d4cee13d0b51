"""The scFM transformer, two model families, one encoder: the shared model in one readable file (nanoGPT style).

Both families share the encoder (pre-norm transformer blocks with a key-padding mask), the CLS
token, the cell embedding and every evaluation; they differ in what a position holds and what
pretraining asks, and that difference lives in one small module per family, which :class:`ScFM`
looks up by ``config.family`` (:data:`scfm_lib.families.FAMILY_MODULES`):

- ``scgpt`` (:mod:`scfm_lib.families.scgpt`, scGPT-style): a cell is the set of its top-N
  expressed genes; a position is a gene-token embedding plus an embedding of the gene's
  log-normalized value (no positional embedding). Pretraining hides the value of a share of each
  cell's genes and predicts it from each gene's own hidden state and (``mvc_weight``) from the
  cell embedding alone (scGPT's "MVC" term). Squared error at hidden positions.
- ``geneformer`` (:mod:`scfm_lib.families.geneformer`, Geneformer-style rank-value encoding): a
  cell is its expressed genes in descending order of median-normalized expression (see
  :func:`scfm_lib.data.tokenize` with ``medians``); a position is a gene-token embedding plus a
  learned embedding of its rank. Pretraining replaces a share of the gene tokens by ``<mask>``
  and predicts their identity: vocabulary logits at the masked positions only, decoder tied to
  the gene embedding, the last block run at those positions alone (``final_rows``).

Each family module adds its layers to the model (``build``), embeds the input (``embed_input``)
and computes the pretraining error and loss; its heads are functions there
(``scgpt.predict_values(model, hidden)``, ``geneformer.gene_logits(model, hidden_masked)``).

Shapes: B cells in a batch, L gene positions (context), D model width, V vocabulary,
M masked positions in a batch.

This module re-exports the names in its ``__all__`` from the small modules that hold what is not
the shared model: :mod:`scfm_lib.model_config` (:class:`ScFMConfig`, :data:`FAMILIES`, the value
encodings and poolings), :mod:`scfm_lib.layers` (:class:`SelfAttention`, :class:`Block`),
:mod:`scfm_lib.masks` (:func:`random_value_mask`, :func:`keep_shown`), :mod:`scfm_lib.losses`
(the geneformer head's memory-lean :func:`linear_cross_entropy`, :func:`masked_rows`) and
:mod:`scfm_lib.classifier` (the finetuning head :class:`CellClassifier`).
"""

from __future__ import annotations

import math
from types import ModuleType

import torch
import torch.nn as nn

from scfm_lib.classifier import CellClassifier
from scfm_lib.data import PAD_ID
from scfm_lib.families import FAMILY_MODULES

# Block and random_value_mask are used here; all are re-exported because __all__ has named them since before
# the split (scfm_lib itself imports layers and masks from their own modules).
from scfm_lib.layers import Block, SelfAttention
from scfm_lib.losses import _LinearCrossEntropy, linear_cross_entropy, masked_rows  # noqa: F401 (re-exported)
from scfm_lib.masks import keep_shown, random_value_mask
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


class ScFM(nn.Module):
    """The encoder of both families and the cell embedding; the family's module adds its input and heads.

    Parameters
    ----------
    config : ScFMConfig
        The hyperparameters; ``family`` picks the module (:data:`scfm_lib.families.FAMILY_MODULES`)
        that adds the input (value or rank embedding) and the heads (expression head and MVC query
        for scgpt, tied MLM head for geneformer).
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
        self.gene_query = None  # the MVC query; only scgpt's build may set it (geneformer keeps None)
        self._family.build(self, cfg)  # the family's layers, after the shared ones
        self._init_weights(generator)

    @property
    def _family(self) -> ModuleType:
        """The module of ``config.family`` (:mod:`scfm_lib.families`): a lookup, not an attribute,
        so that copy.deepcopy and pickle of the model keep working (a module cannot be copied)."""
        return FAMILY_MODULES[self.config.family]

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
        self._family.init_weights(self, generator)

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
        B = gene_ids.shape[0]
        x = self._family.embed_input(self, gene_ids, values, mask)  # [B, L, D]
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

    def masked_error(
        self, hidden: torch.Tensor, gene_ids: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Per masked position, the error of the family's pretraining prediction.

        Squared error of the expression head (scgpt, :func:`scfm_lib.families.scgpt.masked_error`),
        or the cross-entropy of the gene identity (geneformer,
        :func:`scfm_lib.families.geneformer.masked_error`), i.e.
        ``cross_entropy(gene_logits(...).float(), ...)`` computed by :func:`linear_cross_entropy`
        without an fp32 ``[M, V]`` tensor.

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
        return self._family.masked_error(self, hidden, gene_ids, values, mask)

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
        return self._family.pretraining_loss(self, gene_ids, values, mask, normalizer, hide)

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
