"""The pretraining masks: which of a cell's gene positions the loss scores, and which of those have
their input hidden.

:func:`random_value_mask` draws the scored positions, :func:`keep_shown` the share of them that
keeps its input shown (BERT's "unchanged" share). Both draw on the CPU from the generator they
are given, so a seed gives the same masks on any device. ``scfm_lib.model`` re-exports both
(its ``__all__``).
"""

from __future__ import annotations

import torch

from scfm_lib.data import PAD_ID


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
