"""Inference on the masking statistic: slope equivalence, bootstrap p-values, multiplicity
adjustment, and the cell bootstrap of one checkpoint's score.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from scfm_lib.stats.masking import _resample_seeds, _seed_blocks, size_slope


def _slope_draws(series: pd.DataFrame, *, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap slopes over seeds, ``[n_boot]``, NaN where undefined.

    The same resamples, in the same order, as ``bootstrap_over_seeds(series, size_slope,
    n_boot=n_boot, seed=seed)``, so intervals taken from these draws match that function's.
    """
    series = series.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    blocks = _seed_blocks(series)
    return np.array([size_slope(series.iloc[_resample_seeds(blocks, rng)]) for _ in range(n_boot)])


def _percentile_interval(draws: np.ndarray, ci: float) -> tuple[float, float]:
    """Percentile interval of the finite draws; NaN when fewer than half the draws are finite
    (the rule of :func:`bootstrap_over_seeds`)."""
    finite = draws[np.isfinite(draws)]
    if len(finite) < len(draws) / 2 or len(finite) == 0:
        return float("nan"), float("nan")
    alpha = (1 - ci) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return float(low), float(high)


def slope_equivalence(
    series: pd.DataFrame, bound: float, *, n_boot: int = 2000, seed: int = 0, ci: float = 0.90
) -> dict:
    """Is the size slope of one series (one mode, one metric) negligible, detectably nonzero, or neither?

    ``bound`` (> 0, in metric units per tenfold more pretraining cells) is the smallest slope that
    would matter. Two questions are asked of the percentile bootstrap over seeds:

    - **equivalence** (TOST, two one-sided tests each at level ``(1 - ci) / 2``, i.e. 0.05 for
      the default ``ci=0.90``): the slope is shown to lie within ``[-bound, bound]`` when the
      whole ``ci`` interval does;
    - **trend**: the slope is shown to differ from 0 when a separate 95% interval excludes 0.

    Parameters
    ----------
    series : pandas.DataFrame
        The rows of one series (columns ``n_cells``, ``seed``, ``value``).
    bound : float
        The smallest slope that matters, > 0.
    n_boot : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling.
    ci : float
        Coverage of the equivalence interval, in (0, 1).

    Returns
    -------
    dict
        ``slope`` (:func:`size_slope`), ``ci_low``/``ci_high`` (the ``ci`` interval), ``bound``,
        ``equivalent`` (bool), ``zero_in_ci95`` (bool; True also when the interval is undefined,
        since then nothing excludes 0) and ``verdict``:

        - ``"equivalent to no trend"`` when ``equivalent``. This takes precedence: a tiny slope
          measured precisely can both exclude 0 and lie inside the bound; it is then real but
          smaller than anything that matters, and ``zero_in_ci95`` still shows that it is nonzero;
        - ``"trend"`` when not equivalent and the 95% interval excludes 0;
        - ``"inconclusive"`` otherwise (too few seeds or too much noise to say either).

    Raises
    ------
    ValueError
        When ``bound <= 0`` or ``ci`` is outside (0, 1).
    """
    if not bound > 0:
        raise ValueError(f"bound must be > 0 (the smallest slope that matters), got {bound}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    slope = size_slope(series)
    draws = _slope_draws(series, n_boot=n_boot, seed=seed)
    low, high = _percentile_interval(draws, ci)
    low95, high95 = _percentile_interval(draws, 0.95)
    equivalent = bool(-bound <= low and high <= bound)  # False for a NaN interval
    zero_in_ci95 = not (low95 > 0 or high95 < 0)  # True for a NaN interval
    verdict = "equivalent to no trend" if equivalent else "trend" if not zero_in_ci95 else "inconclusive"
    return {
        "slope": slope,
        "ci_low": low,
        "ci_high": high,
        "bound": float(bound),
        "equivalent": equivalent,
        "zero_in_ci95": zero_in_ci95,
        "verdict": verdict,
    }


def bootstrap_pvalue_slope(series: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> float:
    """Two-sided bootstrap p-value for "size slope == 0", in (0, 1]; NaN when the slope is undefined.

    ``p = min(1, 2 * min(k_le + 1, k_ge + 1) / (n + 1))`` with ``k_le`` / ``k_ge`` the bootstrap
    slopes ``<= 0`` / ``>= 0`` among the ``n`` finite draws (same resamples as
    :func:`bootstrap_over_seeds`). It is the p-value that matches the percentile interval:
    ``p < 1 - ci`` roughly when the ``ci`` interval excludes 0. The +1 counts the observed data
    as one of the resamples, so p is never exactly 0 and the smallest attainable value is
    ``2 / (n + 1)``: use more draws, not this p-value, to resolve very strong trends.

    Parameters
    ----------
    series : pandas.DataFrame
        The rows of one series (columns ``n_cells``, ``seed``, ``value``).
    n_boot : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling.

    Returns
    -------
    float
        The p-value in (0, 1]; NaN when the slope is undefined.
    """
    if not np.isfinite(size_slope(series)):
        return float("nan")
    draws = _slope_draws(series, n_boot=n_boot, seed=seed)
    draws = draws[np.isfinite(draws)]
    k_le, k_ge = int((draws <= 0).sum()), int((draws >= 0).sum())
    return float(min(1.0, 2 * min(k_le + 1, k_ge + 1) / (len(draws) + 1)))


def adjust_pvalues(pvalues: ArrayLike, method: str = "holm") -> np.ndarray:
    """Multiplicity-adjusted p-values, same shape as the input, in [0, 1].

    ``method="holm"``: Holm's step-down adjustment, controlling the family-wise error rate.
    ``method="bh"``: Benjamini-Hochberg step-up adjustment, controlling the false discovery rate.
    NaN entries (tests that could not be run) stay NaN and do not count towards the number of
    tests. Adjusted values are monotone in the raw ones and never below them.

    Parameters
    ----------
    pvalues : array_like
        Raw p-values in [0, 1] or NaN, any shape.
    method : str
        ``"holm"`` or ``"bh"``.

    Returns
    -------
    numpy.ndarray
        float, the shape of ``pvalues``: the adjusted p-values in [0, 1], NaN where the input is.

    Raises
    ------
    ValueError
        When a p-value lies outside [0, 1] or ``method`` is unknown.
    """
    p = np.asarray(pvalues, dtype=float)
    flat = p.ravel()
    ok = ~np.isnan(flat)
    if ((flat[ok] < 0) | (flat[ok] > 1)).any():
        raise ValueError("p-values must lie in [0, 1] (or be NaN)")
    adjusters = {"holm": _holm, "bh": _benjamini_hochberg}
    if method not in adjusters:
        raise ValueError(f"method must be one of {sorted(adjusters)}, got {method!r}")
    out = np.full(flat.shape, np.nan)
    if ok.any():
        order = np.argsort(flat[ok], kind="stable")
        adjusted = np.empty(order.size)
        adjusted[order] = np.clip(adjusters[method](flat[ok][order]), 0.0, 1.0)
        out[ok] = adjusted
    return out.reshape(p.shape)


def _holm(sorted_p: np.ndarray) -> np.ndarray:
    """Holm on ascending p-values: running maximum of ``(m - i) * p_(i)`` (i from 0)."""
    m = sorted_p.size
    return np.maximum.accumulate((m - np.arange(m)) * sorted_p)


def _benjamini_hochberg(sorted_p: np.ndarray) -> np.ndarray:
    """BH on ascending p-values: running minimum from the top of ``m / (i + 1) * p_(i)``."""
    m = sorted_p.size
    return np.minimum.accumulate((m / np.arange(1, m + 1) * sorted_p)[::-1])[::-1]


def cell_bootstrap_ci(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    metric: Callable[[np.ndarray, np.ndarray], float],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> tuple[float, float, float]:
    """``(point, low, high)``: ``metric(y_true, y_pred)`` and its percentile bootstrap CI over test cells.

    Cells are resampled with replacement (pairs of true and predicted label kept together). This
    is the uncertainty from the finite test set of one run, not the spread over seeds. Resamples
    where the metric is not finite are dropped; the interval is NaN if most of them are.
    Deterministic for a given ``seed``.

    Parameters
    ----------
    y_true, y_pred : array_like
        True and predicted labels of the test cells, shape ``(n_cells,)``.
    metric : callable
        ``(y_true, y_pred) -> float``, e.g. :func:`scfm_lib.metrics.macro_f1`.
    n_boot, seed, ci
        As :func:`~scfm_lib.stats.bootstrap_over_seeds` (here the cells are resampled).

    Returns
    -------
    point : float
        The metric on all test cells (in the metric's range).
    low, high : float
        The percentile interval; NaN when the metric is undefined in most resamples.

    Raises
    ------
    ValueError
        When the label arrays are empty or differ in length.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0 or len(y_true) != len(y_pred):
        raise ValueError(
            f"y_true and y_pred must be non-empty and of equal length, got {len(y_true)} and {len(y_pred)}"
        )
    point = float(metric(y_true, y_pred))
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for b in range(n_boot):  # one resample at a time: an [n_boot, n_cells] index table can be GBs
        rows = rng.integers(0, len(y_true), size=len(y_true))
        draws[b] = metric(y_true[rows], y_pred[rows])
    low, high = _percentile_interval(draws, ci)
    return point, low, high
