"""The masking statistic on a grid of fractions x seeds: slope, spread, masking index, bootstrap over
seeds, and the tables the book shows (definitions: :mod:`scfm_lib.stats`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def size_slope(series: pd.DataFrame) -> float:
    """OLS slope of ``value`` on ``log10(n_cells)`` over rows with ``n_cells > 0``.

    NaN when fewer than two distinct corpus sizes are present (no slope can be fitted).

    Parameters
    ----------
    series : pandas.DataFrame
        The rows of one series (one mode, one metric), with columns ``n_cells`` and ``value``.

    Returns
    -------
    float
        Change of the value per tenfold more pretraining cells, in metric units (unbounded); NaN
        without two distinct pretrained corpus sizes.
    """
    pretrained = series[series["n_cells"] > 0]
    x = np.log10(pretrained["n_cells"].to_numpy(dtype=float))
    y = pretrained["value"].to_numpy(dtype=float)
    if len(np.unique(x)) < 2:
        return float("nan")
    x_centered = x - x.mean()
    return float((x_centered * (y - y.mean())).sum() / (x_centered**2).sum())


def spread(series: pd.DataFrame) -> float:
    """Best minus worst fraction of the per-fraction mean over seeds (control included), >= 0.

    Parameters
    ----------
    series : pandas.DataFrame
        The rows of one series, with columns ``n_cells`` and ``value``.

    Returns
    -------
    float
        The spread, >= 0, in metric units.
    """
    means = series.groupby("n_cells")["value"].mean()
    return float(means.max() - means.min())


def masking_index(slope_finetuned: float, slope_frozen: float) -> float:
    """``(S_frozen - S_ft) / (S_frozen + |S_ft|)`` for ``S_frozen > 0``, in [-1, 1]; NaN otherwise.

    Masking needs something to mask: a frozen representation that gains from corpus size. When
    ``S_frozen <= 0`` the index is undefined (NaN), not 1: a finetuned score that falls with
    corpus size while the frozen one is flat is not masking. For ``S_frozen > 0``: 1 = finetuning
    gains nothing (or loses) from scale, 0 = it gains as much as the frozen representation,
    negative = it gains more. Preferred to ``1 - S_ft / S_frozen``, which explodes as
    ``S_frozen -> 0``.

    Parameters
    ----------
    slope_finetuned : float
        The finetuned series' size slope ``S_ft`` (:func:`size_slope`).
    slope_frozen : float
        The frozen representation's size slope ``S_frozen``.

    Returns
    -------
    float
        The masking index in [-1, 1]; NaN when ``S_frozen <= 0`` or a slope is not finite.
    """
    if not (np.isfinite(slope_frozen) and np.isfinite(slope_finetuned)) or slope_frozen <= 0:
        return float("nan")
    return float((slope_frozen - slope_finetuned) / (slope_frozen + abs(slope_finetuned)))


def _seed_blocks(series: pd.DataFrame) -> list[np.ndarray]:
    """Row positions of each seed: the blocks of the bootstrap (a seed's rows at every fraction)."""
    return list(series.groupby("seed").indices.values())


def _resample_seeds(blocks: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Row positions of one bootstrap resample: whole seeds drawn with replacement."""
    return np.concatenate([blocks[i] for i in rng.integers(0, len(blocks), size=len(blocks))])


def bootstrap_over_seeds(
    series: pd.DataFrame,
    statistic: Callable[[pd.DataFrame], float],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> tuple[float, float, float]:
    """``(estimate, ci_low, ci_high)``: the statistic and its percentile bootstrap CI over seeds.

    Whole seeds are resampled with replacement (each seed's rows at every fraction together), so
    the pairing of a seed's checkpoints across fractions is kept. Deterministic for a given ``seed``.

    Parameters
    ----------
    series : pandas.DataFrame
        The rows the statistic takes, with a ``seed`` column (the bootstrap's blocks).
    statistic : callable
        Rows -> float, e.g. :func:`size_slope` or :func:`spread`.
    n_boot : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling.
    ci : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    estimate : float
        ``statistic(series)``.
    ci_low, ci_high : float
        The percentile interval; NaN when the statistic is undefined in more than half the
        resamples.
    """
    series = series.reset_index(drop=True)
    estimate = statistic(series)
    rng = np.random.default_rng(seed)
    blocks = _seed_blocks(series)
    draws = np.array([statistic(series.iloc[_resample_seeds(blocks, rng)]) for _ in range(n_boot)])
    draws = draws[np.isfinite(draws)]
    if len(draws) < n_boot / 2:  # the statistic is undefined in most resamples: no honest interval
        return estimate, float("nan"), float("nan")
    alpha = (1 - ci) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return estimate, float(low), float(high)


def series_summary(series: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> pd.Series:
    """Slope and spread of one series, each with its bootstrap CI, plus the control's mean.

    Parameters
    ----------
    series : pandas.DataFrame
        The rows of one mode and one metric (columns ``mode``, ``metric``, ``n_cells``, ``seed``,
        ``value``).
    n_boot, seed, ci
        As :func:`bootstrap_over_seeds`.

    Returns
    -------
    pandas.Series
        ``slope``, ``slope_ci_low``, ``slope_ci_high``, ``spread`` (>= 0), ``spread_ci_low``,
        ``spread_ci_high``, ``mean_largest`` (mean over seeds at the largest corpus),
        ``mean_control`` (at 0 cells; NaN without a control) and ``n_runs``.

    Raises
    ------
    ValueError
        When ``series`` is empty or holds more than one mode or metric.
    """
    if series.empty:
        raise ValueError("empty series: no runs recorded for this mode and metric")
    if series[["mode", "metric"]].drop_duplicates().shape[0] != 1:
        raise ValueError("series_summary takes the rows of one mode and one metric")
    slope = bootstrap_over_seeds(series, size_slope, n_boot=n_boot, seed=seed, ci=ci)
    width = bootstrap_over_seeds(series, spread, n_boot=n_boot, seed=seed, ci=ci)
    means = series.groupby("n_cells")["value"].mean()
    return pd.Series(
        {
            "slope": slope[0],
            "slope_ci_low": slope[1],
            "slope_ci_high": slope[2],
            "spread": width[0],
            "spread_ci_low": width[1],
            "spread_ci_high": width[2],
            "mean_largest": float(means.loc[means.index.max()]),
            "mean_control": float(means.loc[0]) if 0 in means.index else float("nan"),
            "n_runs": len(series),
        }
    )


def _paired(records: pd.DataFrame, mode_a: str, mode_b: str, metric: str) -> pd.DataFrame:
    """One row per (n_cells, seed) with the values of both modes: ``value_a`` and ``value_b``."""
    sub = records[(records["metric"] == metric) & records["mode"].isin([mode_a, mode_b])]
    wide = sub.pivot_table(index=["n_cells", "seed"], columns="mode", values="value").dropna()
    if wide.empty or mode_a not in wide or mode_b not in wide:
        raise ValueError(f"no checkpoint has both {mode_a!r} and {mode_b!r} scores for {metric!r}")
    return wide.rename(columns={mode_a: "value_a", mode_b: "value_b"}).reset_index()


def paired_masking_index(
    records: pd.DataFrame,
    *,
    finetuned_mode: str,
    frozen_mode: str,
    metric: str,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> tuple[float, float, float]:
    """Masking index of ``frozen_mode`` against ``finetuned_mode`` with its paired bootstrap CI.

    Parameters
    ----------
    records : pandas.DataFrame
        The tidy table of :func:`scfm_lib.results.load_records`.
    finetuned_mode, frozen_mode : str
        The two modes compared; each checkpoint (n_cells, seed) scored in both enters, and its two
        scores are resampled together.
    metric : str
        The metric both are scored on.
    n_boot, seed, ci
        As :func:`bootstrap_over_seeds`.

    Returns
    -------
    estimate, ci_low, ci_high : float
        The masking index (:func:`masking_index`, in [-1, 1] or NaN) and its percentile interval.
    """
    paired = _paired(records, finetuned_mode, frozen_mode, metric)

    def statistic(rows: pd.DataFrame) -> float:
        s_ft = size_slope(rows.rename(columns={"value_a": "value"}))
        s_frozen = size_slope(rows.rename(columns={"value_b": "value"}))
        return masking_index(s_ft, s_frozen)

    return bootstrap_over_seeds(paired, statistic, n_boot=n_boot, seed=seed, ci=ci)


def summarize_masking(
    records: pd.DataFrame,
    *,
    finetuned_mode: str = "finetune",
    frozen_modes: tuple[str, ...] = ("linear_probe", "knn"),
    metric: str = "macro_f1",
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """One row per frozen mode: its series summary, the finetuned one's, and the masking index.

    Parameters
    ----------
    records : pandas.DataFrame
        The tidy table of :func:`scfm_lib.results.load_records`.
    finetuned_mode : str
        The finetuned mode.
    frozen_modes : tuple of str
        The frozen modes, one row each.
    metric : str
        The metric summarized.
    n_boot, seed, ci
        As :func:`bootstrap_over_seeds`.

    Returns
    -------
    pandas.DataFrame
        Columns ``frozen_mode``, ``metric``, ``frozen_<k>`` and ``finetuned_<k>`` for every entry
        ``k`` of :func:`series_summary`, ``masking_index`` (in [-1, 1] or NaN),
        ``masking_index_ci_low`` and ``masking_index_ci_high``.
    """

    def one(mode: str) -> pd.Series:
        return series_summary(
            records[(records["mode"] == mode) & (records["metric"] == metric)], n_boot=n_boot, seed=seed, ci=ci
        )

    finetuned = one(finetuned_mode)
    rows = []
    for frozen_mode in frozen_modes:
        index = paired_masking_index(
            records,
            finetuned_mode=finetuned_mode,
            frozen_mode=frozen_mode,
            metric=metric,
            n_boot=n_boot,
            seed=seed,
            ci=ci,
        )
        rows.append(
            {
                "frozen_mode": frozen_mode,
                "metric": metric,
                **{f"frozen_{k}": v for k, v in one(frozen_mode).items()},
                **{f"finetuned_{k}": v for k, v in finetuned.items()},
                "masking_index": index[0],
                "masking_index_ci_low": index[1],
                "masking_index_ci_high": index[2],
            }
        )
    return pd.DataFrame(rows)


def size_table(records: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """Mean and bootstrap CI over seeds per (mode, metric, n_cells): the points of every figure.

    Parameters
    ----------
    records : pandas.DataFrame
        The tidy table of :func:`scfm_lib.results.load_records`.
    n_boot, seed, ci
        As :func:`bootstrap_over_seeds` (here each point's values over seeds are resampled).

    Returns
    -------
    pandas.DataFrame
        One row per (mode, metric, n_cells): ``mode``, ``metric``, ``n_cells``, ``fraction``,
        ``mean``, ``ci_low``, ``ci_high``, ``n_seeds``.
    """
    rows = []
    rng = np.random.default_rng(seed)
    alpha = (1 - ci) / 2
    for (mode, metric, n_cells), group in records.groupby(["mode", "metric", "n_cells"]):
        values = group["value"].to_numpy(dtype=float)
        means = rng.choice(values, size=(n_boot, len(values)), replace=True).mean(1)
        low, high = np.quantile(means, [alpha, 1 - alpha])
        rows.append(
            {
                "mode": mode,
                "metric": metric,
                "n_cells": n_cells,
                "fraction": group["fraction"].iloc[0],
                "mean": values.mean(),
                "ci_low": low,
                "ci_high": high,
                "n_seeds": len(values),
            }
        )
    return pd.DataFrame(rows)
