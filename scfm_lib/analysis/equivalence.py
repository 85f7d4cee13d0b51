"""Equivalence: each metric's margin (a share of its attainable range) and the TOST of a paired mean.

An effect is "equivalent to 0" when the 90% t-interval over seeds lies inside ``[-margin, margin]``;
the margin of a metric is :data:`MARGIN_SHARE` of the range from chance to the best reference
(:func:`equivalence_margin`). The paired estimates it tests come from
:mod:`scfm_lib.analysis.endpoints`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from scfm_lib.analysis.endpoints import PairedEstimate, t_interval

#: How each metric's equivalence margin is derived: a share of its attainable range on the task.
MARGIN_SHARE = 0.1


def equivalence_margin(
    metric: str, *, chance: float | None = None, ceiling: float | None = None, share: float = MARGIN_SHARE
) -> float:
    """The smallest change of ``metric`` that matters: ``share`` of its attainable range on the task.

    The range runs from what a predictor without information scores (``chance``) to what the
    best reference scores (``ceiling``): for annotation metrics (macro-F1, accuracy) from
    1 / (number of classes) to the logistic regression on all genes; for a pretraining loss
    from the context-free predictor's loss (``chance``) to 0; for clustering agreement (ARI,
    NMI) from 0 to the PCA baseline; for gene-program retrieval from its chance level to 1; for
    perturbation shifts (cosine differences) from 0 to the shift of the input embeddings
    themselves. So an F1 margin and a cosine margin each come from their own scale.

    Parameters
    ----------
    metric : str
        The metric's name, for the error message.
    chance, ceiling : float
        The two ends of the range; ``ceiling`` defaults to 0 (a loss) when only ``chance`` is given.
    share : float
        Share of the range, in (0, 1]; the book uses :data:`MARGIN_SHARE` (a tenth).

    Returns
    -------
    float
        The margin, > 0, in the metric's units.

    Raises
    ------
    ValueError
        When ``chance`` is missing, ``share`` lies outside (0, 1], or the range is empty or undefined.
    """
    if chance is None:
        raise ValueError(f"equivalence_margin({metric!r}) needs the chance end of the range")
    ceiling = 0.0 if ceiling is None else ceiling
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    width = abs(float(ceiling) - float(chance))
    if not np.isfinite(width) or width == 0:
        raise ValueError(f"the range of {metric!r} is empty or undefined (chance {chance}, ceiling {ceiling})")
    return float(share * width)


def equivalence(estimate: PairedEstimate | dict, margin: float, differences: ArrayLike | None = None) -> dict:
    """TOST for a paired mean: equivalent to 0 when the 90% t-interval lies inside ``[-margin, margin]``.

    The interval is the ``1 - 2 * 0.05`` (90%) t-interval. Pass ``differences`` (the per-seed values)
    or an estimate whose interval is already 90%.

    Parameters
    ----------
    estimate : PairedEstimate or dict
        The paired estimate (or its :meth:`PairedEstimate.to_dict`); its interval is used when
        ``differences`` is not given.
    margin : float
        The equivalence margin, > 0 (:func:`equivalence_margin`).
    differences : array_like of float, optional
        The per-seed differences, from which the 90% interval is computed.

    Returns
    -------
    dict
        ``{"margin", "ci90_low", "ci90_high", "equivalent"}``.

    Raises
    ------
    ValueError
        When ``margin <= 0``, or ``estimate``'s interval is not 90% and no ``differences`` are given.
    """
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    if differences is not None:
        _, low, high = t_interval(differences, 0.90)
    else:
        e = estimate if isinstance(estimate, dict) else estimate.to_dict()
        if abs(e["ci"] - 0.90) > 1e-9:
            raise ValueError("equivalence needs the 90% interval: pass the per-seed differences")
        low, high = e["ci_low"], e["ci_high"]
    return {
        "margin": float(margin),
        "ci90_low": float(low),
        "ci90_high": float(high),
        "equivalent": bool(-margin <= low and high <= margin),
    }
