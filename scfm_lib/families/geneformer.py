"""The geneformer family (Geneformer-style rank-value encoding): a cell is its expressed genes in
descending order of expression normalized by each gene's corpus-wide median (see
:func:`scfm_lib.data.tokenize` with ``medians``); a position is a gene-token embedding plus a
learned embedding of its rank.

Pretraining replaces a share of the gene tokens by ``<mask>`` and predicts their identity (masked
language modelling). The vocabulary logits are computed at the masked positions only ([M, V],
never [B, L, V]), with the decoder tied to the gene embedding; the loss goes through
:func:`scfm_lib.losses.linear_cross_entropy` (no fp32 [M, V] tensor), and in pretraining the last
block runs at the masked positions alone (``final_rows``, :func:`scfm_lib.losses.masked_rows`).

What :class:`scfm_lib.model.ScFM` asks of a family (:mod:`scfm_lib.families`): :func:`build`,
:func:`init_weights`, :func:`embed_input`, :func:`masked_error` and :func:`pretraining_loss`; the
head written plainly is :func:`gene_logits` (``geneformer.gene_logits(model, hidden_masked)``).

Shapes: B cells, L gene positions, D model width, V vocabulary, M masked positions in a batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from scfm_lib.data import MASK_ID
from scfm_lib.losses import linear_cross_entropy, masked_rows
from scfm_lib.model_config import ScFMConfig

if TYPE_CHECKING:  # model.py imports this module; the model type is for annotations only
    from scfm_lib.model import ScFM


def build(model: ScFM, cfg: ScFMConfig) -> None:
    """Add the family's layers to ``model``: rank embedding and the MLM head (transform, bias).

    Called by ``ScFM.__init__`` after the shared layers; the order of the assignments fixes the
    order of the parameters (state_dict keys, optimizer groups, the random draws of the init).

    Parameters
    ----------
    model : ScFM
        The model under construction (its shared layers already built).
    cfg : ScFMConfig
        Reads ``context_genes``, ``d_model`` and ``vocab_size``.
    """
    model.rank_embedding = nn.Embedding(cfg.context_genes, cfg.d_model)  # position = expression rank
    # BERT's MLM head: transform, then logits through the (tied) gene embedding.
    model.mlm_transform = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(), nn.LayerNorm(cfg.d_model))
    model.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))


def init_weights(model: ScFM, generator: torch.Generator | None) -> None:
    """Nothing to add: the rank embedding and the head are linear, embedding and norm layers.

    Parameters
    ----------
    model : ScFM
        The model (not changed).
    generator : torch.Generator or None
        Not drawn from.
    """


def embed_input(model: ScFM, gene_ids: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The input embedding of the gene positions: gene token (``<mask>`` where hidden) plus rank.

    Parameters
    ----------
    model : ScFM
        A geneformer model.
    gene_ids : torch.Tensor
        Long ``[B, L]`` token ids in rank order (checked by the caller).
    values : torch.Tensor
        Float ``[B, L]``; not read (the order of ``gene_ids`` carries the expression).
    mask : torch.Tensor or None
        Bool ``[B, L]``, True = identity hidden (the token becomes ``<mask>``); None: none.

    Returns
    -------
    torch.Tensor
        ``[B, L, D]``, without the CLS position.

    Raises
    ------
    ValueError
        When L exceeds ``context_genes`` (the rank embedding's length).
    """
    L = gene_ids.shape[1]
    if L > model.config.context_genes:
        raise ValueError(f"{L} gene positions exceed the rank embedding's context_genes={model.config.context_genes}")
    shown = gene_ids if mask is None else gene_ids.masked_fill(mask, MASK_ID)  # [B, L]
    return model.gene_embedding(shown) + model.rank_embedding.weight[:L]  # [B, L, D]


def gene_logits(model: ScFM, hidden_masked: torch.Tensor) -> torch.Tensor:
    """The MLM head at the masked positions only, decoder tied to the gene embedding.

    Parameters
    ----------
    model : ScFM
        A geneformer model.
    hidden_masked : torch.Tensor
        Final states at the M masked positions, ``[M, D]``.

    Returns
    -------
    torch.Tensor
        Logits over the vocabulary ``[M, V]`` (special tokens included).
    """
    return F.linear(model.mlm_transform(hidden_masked), model.gene_embedding.weight, model.mlm_bias)


def _gene_cross_entropy(model: ScFM, hidden_masked: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """hidden_masked [M, D], targets [M] -> geneformer's per-position MLM loss [M], fp32."""
    h = model.mlm_transform(hidden_masked)  # [M, D]
    weight = model.gene_embedding.weight  # [V, D], tied to the input embedding
    if torch.is_autocast_enabled(h.device.type):  # the matmul in the autocast dtype, as F.linear would
        dtype = torch.get_autocast_dtype(h.device.type)
        h, weight = h.to(dtype), weight.to(dtype)
    return linear_cross_entropy(h, weight, model.mlm_bias, targets)


def masked_error(
    model: ScFM, hidden: torch.Tensor, gene_ids: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per masked position, the cross-entropy of the gene identity.

    ``cross_entropy(gene_logits(...).float(), ...)``, computed by
    :func:`~scfm_lib.losses.linear_cross_entropy` without an fp32 ``[M, V]`` tensor.

    Parameters
    ----------
    model : ScFM
        A geneformer model.
    hidden : torch.Tensor
        Final states ``[B, 1 + L, D]``, CLS first.
    gene_ids : torch.Tensor
        Long ``[B, L]``, the targets.
    values : torch.Tensor
        Float ``[B, L]`` (not read: the same signature as the scgpt family's).
    mask : torch.Tensor
        Bool ``[B, L]``, the M scored positions.

    Returns
    -------
    torch.Tensor
        fp32 ``[M]`` in nats, cell by cell, positions ascending.
    """
    return _gene_cross_entropy(model, hidden[:, 1:][mask], gene_ids[mask])


def pretraining_loss(
    model: ScFM,
    gene_ids: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    normalizer: float,
    hide: torch.Tensor,
) -> torch.Tensor:
    """The summed cross-entropy divided by ``normalizer``, the last block run at the scored positions alone.

    The same loss as :func:`masked_error` on the full output; ``ScFM.pretraining_loss`` calls it
    once at least one position is scored.

    Parameters
    ----------
    model : ScFM
        A geneformer model.
    gene_ids : torch.Tensor
        Long ``[B, L]`` token ids, the targets.
    values : torch.Tensor
        Float ``[B, L]`` (passed on, not read).
    mask : torch.Tensor
        Bool ``[B, L]``, the scored positions (at least one).
    normalizer : float
        What the summed errors are divided by.
    hide : torch.Tensor
        Bool ``[B, L]``, the positions whose identity is hidden from the input.

    Returns
    -------
    torch.Tensor
        The scalar loss, fp32.
    """
    rows, present = masked_rows(mask)  # [B, P] each
    hidden = model(gene_ids, values, mask=hide, final_rows=rows + 1)  # [B, P, D]; + 1: CLS first
    # hidden[present] lists cell by cell, positions ascending: the order of gene_ids[mask]
    return _gene_cross_entropy(model, hidden[present], gene_ids[mask]).sum() / normalizer
