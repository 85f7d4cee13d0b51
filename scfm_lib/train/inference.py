"""Inference on a trained encoder: the masked-prediction loss, and cell embeddings of one or every layer.

All three run in eval mode without gradients and in fp32, batch by batch.
"""

from __future__ import annotations

import numpy as np
import torch

from scfm_lib.data import CellTokens
from scfm_lib.masks import random_value_mask
from scfm_lib.model import ScFM
from scfm_lib.train.batches import _eval_mode, _tensors

VAL_MASK_SEED = 0  # validation masks: the same for every step, run and checkpoint


def reconstruction_loss(
    model: ScFM, tokens: CellTokens, mask_ratio: float = 0.25, seed: int = VAL_MASK_SEED, batch_size: int = 256
) -> float:
    """The family's masked-prediction loss over ``tokens`` (>= 0, lower is better), in fp32.

    The masked-value MSE of the expression head (scgpt) or the cross-entropy of masked gene
    identities (geneformer). Masks come from ``seed``: the same for every model, so the loss is
    comparable across steps, runs and checkpoints of a family.

    Parameters
    ----------
    model : ScFM
        The model.
    tokens : CellTokens
        The cells scored.
    mask_ratio : float
        Share of each cell's genes masked, in (0, 1).
    seed : int
        Seed of the masks (:data:`VAL_MASK_SEED` by default, shared by every validation).
    batch_size : int
        Cells per forward pass.

    Returns
    -------
    float
        Mean loss per masked position, >= 0; NaN for no tokens.
    """
    if len(tokens) == 0:
        return float("nan")
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    with _eval_mode(model):
        for start in range(0, len(tokens), batch_size):
            gene_ids, values = _tensors(tokens, slice(start, start + batch_size))  # [b, l] each
            mask = random_value_mask(gene_ids, mask_ratio, generator)  # [b, l]
            hidden = model(gene_ids, values, mask=mask)  # [b, 1 + l, D]
            total += float(model.masked_error(hidden, gene_ids, values, mask).sum())
            count += int(mask.sum())
    return total / count if count else float("nan")


def embed(
    model: ScFM, tokens: CellTokens, batch_size: int = 256, layer: int | None = None, pooling: str | None = None
) -> np.ndarray:
    """Cell embeddings, eval mode, fp32: the states of ``layer`` pooled by ``pooling``.

    Defaults: the model config's readout, the mean over expressed genes of the penultimate layer;
    see :meth:`ScFM.cell_embedding`.

    Parameters
    ----------
    model : ScFM
        The encoder.
    tokens : CellTokens
        The cells, ``n_cells`` of them.
    batch_size : int
        Cells per forward pass.
    layer : int, optional
        The layer read (0 = input embeddings, negative counts from the end); default the config's readout
        layer.
    pooling : str, optional
        ``"mean"`` (over expressed genes) or ``"cls"``; default the config's.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_cells, d_model)``.
    """
    out = []
    with _eval_mode(model):
        for start in range(0, len(tokens), batch_size):
            batch = _tensors(tokens, slice(start, start + batch_size))
            out.append(model.cell_embedding(*batch, layer=layer, pooling=pooling).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.d_model), dtype=np.float32)


def embed_layers(model: ScFM, tokens: CellTokens, batch_size: int = 256, pooling: str = "mean") -> np.ndarray:
    """The cell embedding of every layer at once.

    Index 0 pools the input embeddings, index ``n_layers`` the last layer after ``ln_f`` (see
    :meth:`ScFM.hidden_states`). One forward pass per batch serves every layer: what the layer-wise
    probe figure reads.

    Parameters
    ----------
    model, tokens, batch_size
        As :func:`embed`.
    pooling : str
        ``"mean"`` (over expressed genes) or ``"cls"``.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_layers + 1, n_cells, d_model)``.
    """
    out = []
    with _eval_mode(model):
        for start in range(0, len(tokens), batch_size):
            gene_ids, values = _tensors(tokens, slice(start, start + batch_size))
            states = model.hidden_states(gene_ids, values)
            out.append(torch.stack([model.pool(h, gene_ids, pooling) for h in states]).float().numpy())
    if not out:
        return np.zeros((model.config.n_layers + 1, 0, model.config.d_model), dtype=np.float32)
    return np.concatenate(out, axis=1)
