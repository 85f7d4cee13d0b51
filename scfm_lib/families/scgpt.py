"""The scgpt family (scGPT-style): a cell is the set of its top-N expressed genes, each position a
gene-token embedding plus an embedding of the gene's log-normalized value, with no positional
embedding (genes form a set).

Pretraining hides the value of a share of each cell's genes and predicts it from each gene's own
hidden state (:func:`predict_values`) and, with ``mvc_weight > 0``, from the cell embedding alone
(:func:`predict_values_from_cell`): scGPT's "MVC" term is what trains the cell embedding. Squared
error at the scored positions.

What :class:`scfm_lib.model.ScFM` asks of a family (:mod:`scfm_lib.families`): :func:`build` (its
layers, added to the model), :func:`init_weights`, :func:`embed_input`, :func:`masked_error` and
:func:`pretraining_loss`. The heads are functions of the model, not methods: ``scgpt.predict_values(model,
hidden)``.

Shapes: B cells, L gene positions, D model width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from scfm_lib.model_config import ScFMConfig

if TYPE_CHECKING:  # model.py imports this module; the model type is for annotations only
    from scfm_lib.model import ScFM


def build(model: ScFM, cfg: ScFMConfig) -> None:
    """Add the family's layers to ``model``: value encoder, mask embedding, expression head, MVC query.

    Called by ``ScFM.__init__`` after the shared layers; the order of the assignments fixes the
    order of the parameters (state_dict keys, optimizer groups, the random draws of the init).

    Parameters
    ----------
    model : ScFM
        The model under construction (its shared layers already built, ``gene_query`` None).
    cfg : ScFMConfig
        Reads ``d_model``, ``value_encoding``, ``n_bins`` and ``mvc_weight``.
    """
    if cfg.value_encoding == "continuous":
        model.value_encoder = nn.Sequential(nn.Linear(1, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, cfg.d_model))
    else:
        model.value_encoder = nn.Embedding(cfg.n_bins, cfg.d_model)
    model.mask_value_embedding = nn.Parameter(torch.zeros(cfg.d_model))  # replaces a hidden gene's value embedding
    model.value_head = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, 1))
    # MVC objective: each gene becomes a query that reads its value off the cell embedding.
    model.gene_query = nn.Linear(cfg.d_model, cfg.d_model) if cfg.mvc_weight > 0 else None


@torch.no_grad()
def init_weights(model: ScFM, generator: torch.Generator | None) -> None:
    """Initialize the family's parameters that are not linear or embedding layers: the mask embedding.

    Parameters
    ----------
    model : ScFM
        The model, its linear and embedding layers and CLS already initialized (the draws follow theirs).
    generator : torch.Generator or None
        The generator of the initialization; None: torch's global one.
    """
    nn.init.normal_(model.mask_value_embedding, 0.0, 0.02, generator=generator)


def encode_values(model: ScFM, values: torch.Tensor) -> torch.Tensor:
    """Embed expression values.

    Parameters
    ----------
    model : ScFM
        An scgpt model.
    values : torch.Tensor
        Float ``[B, L]``, log1p(CP10k) expression; clipped to ``[0, max_value]``.

    Returns
    -------
    torch.Tensor
        Value embeddings ``[B, L, D]``: an MLP of the value ("continuous") or the embedding of
        its bin on an even grid of ``n_bins`` over ``[0, max_value]`` ("binned").
    """
    values = values.clamp(0.0, model.config.max_value)
    if model.config.value_encoding == "continuous":
        return model.value_encoder(values.unsqueeze(-1))  # [B, L, D]
    bins = (values / model.config.max_value * (model.config.n_bins - 1)).round().long()  # [B, L] in [0, n_bins)
    return model.value_encoder(bins)  # [B, L, D]


def embed_input(model: ScFM, gene_ids: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The input embedding of the gene positions: gene token plus value, a hidden value replaced.

    Parameters
    ----------
    model : ScFM
        An scgpt model.
    gene_ids : torch.Tensor
        Long ``[B, L]`` token ids (checked by the caller).
    values : torch.Tensor
        Float ``[B, L]`` log1p(CP10k) values.
    mask : torch.Tensor or None
        Bool ``[B, L]``, True = value hidden (its embedding becomes ``mask_value_embedding``); None: none.

    Returns
    -------
    torch.Tensor
        ``[B, L, D]``, without the CLS position.
    """
    value_emb = encode_values(model, values)  # [B, L, D]
    if mask is not None:
        value_emb = torch.where(mask.unsqueeze(-1), model.mask_value_embedding.to(value_emb.dtype), value_emb)
    return model.gene_embedding(gene_ids) + value_emb  # [B, L, D]


def predict_values(model: ScFM, hidden: torch.Tensor) -> torch.Tensor:
    """The expression head: each gene's value from its own hidden state.

    Parameters
    ----------
    model : ScFM
        An scgpt model.
    hidden : torch.Tensor
        Final states ``[B, 1 + L, D]``, CLS first (CLS is skipped).

    Returns
    -------
    torch.Tensor
        Predicted log1p(CP10k) values ``[B, L]``.
    """
    return model.value_head(hidden[:, 1:]).squeeze(-1)


def predict_values_from_cell(model: ScFM, cell: torch.Tensor, gene_ids: torch.Tensor) -> torch.Tensor:
    """Each gene's value from the cell embedding alone (scGPT's MVC): <query(gene), cell>.

    Parameters
    ----------
    model : ScFM
        An scgpt model with ``mvc_weight > 0``.
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
    if model.gene_query is None:
        raise ValueError("this model has no cell-embedding head (family geneformer, or mvc_weight=0)")
    query = model.gene_query(model.gene_embedding(gene_ids))  # [B, L, D]
    return (query * cell.unsqueeze(1)).sum(-1)  # [B, L]


def masked_error(
    model: ScFM, hidden: torch.Tensor, gene_ids: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per scored position, the squared error of the expression head (:func:`predict_values`).

    Parameters
    ----------
    model : ScFM
        An scgpt model.
    hidden : torch.Tensor
        Final states ``[B, 1 + L, D]``, CLS first.
    gene_ids : torch.Tensor
        Long ``[B, L]`` (not read: the same signature as the geneformer family's).
    values : torch.Tensor
        Float ``[B, L]`` log1p(CP10k), the targets.
    mask : torch.Tensor
        Bool ``[B, L]``, the M scored positions.

    Returns
    -------
    torch.Tensor
        fp32 ``[M]`` in (log1p CP10k)^2, cell by cell, positions ascending.
    """
    return (predict_values(model, hidden).float()[mask] - values.float()[mask]) ** 2


def pretraining_loss(
    model: ScFM,
    gene_ids: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    normalizer: float,
    hide: torch.Tensor,
) -> torch.Tensor:
    """The summed squared error divided by ``normalizer``, plus ``mvc_weight`` x the same from the cell.

    ``ScFM.pretraining_loss`` calls it once at least one position is scored.

    Parameters
    ----------
    model : ScFM
        An scgpt model.
    gene_ids : torch.Tensor
        Long ``[B, L]`` token ids.
    values : torch.Tensor
        Float ``[B, L]`` log1p(CP10k) values, the targets.
    mask : torch.Tensor
        Bool ``[B, L]``, the scored positions (at least one).
    normalizer : float
        What the summed errors are divided by.
    hide : torch.Tensor
        Bool ``[B, L]``, the positions whose value is hidden from the input.

    Returns
    -------
    torch.Tensor
        The scalar loss, fp32.
    """
    hidden = model(gene_ids, values, mask=hide)  # [B, 1 + L, D]
    loss = masked_error(model, hidden, gene_ids, values, mask).sum() / normalizer
    if model.gene_query is not None:
        # scGPT's MVC: every gene's value from the CLS state of the last layer (its cell embedding).
        from_cell = predict_values_from_cell(model, hidden[:, 0], gene_ids).float()[mask]
        loss = loss + model.config.mvc_weight * ((from_cell - values.float()[mask]) ** 2).sum() / normalizer
    return loss
