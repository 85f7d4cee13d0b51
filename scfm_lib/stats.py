"""The masking statistic: sensitivity to corpus size, spread, masking index, bootstrap CIs.

All functions take the tidy table of :func:`scfm_lib.results.load_records` (columns ``mode``,
``metric``, ``fraction``, ``seed``, ``n_cells``, ``value``), or the rows of one *series* (one
mode and one metric over the grid of fractions x seeds).

Definitions (the book's masking chapter states the same):

- **slope** ``S``: OLS slope of the value against ``log10(n_cells)`` over pretrained runs
  (``n_cells > 0``): change per tenfold more pretraining cells. The random-init control
  (``n_cells == 0``) has no logarithm and is reported beside it.
- **spread**: mean over seeds per fraction; best fraction minus worst, control included. >= 0.
- **masking index** ``M = (S_frozen - S_ft) / (S_frozen + |S_ft|)`` in [-1, 1], defined when the
  frozen representation gains from corpus size (``S_frozen > 0``), NaN otherwise: 1 = finetuning
  gains nothing from scale, 0 = it gains as much as the frozen representation, negative = more.
- **confidence intervals**: percentile bootstrap over seeds, resampling *whole seeds* with
  replacement: a seed is one block (the same initialization, nested data and finetuning seed at
  every fraction), so its scores at all fractions travel together and the pairing survives; for
  the masking index the two modes are resampled together as well. The study's primary endpoint
  (the seed-paired gain and D, :mod:`scfm_lib.analysis.endpoints`) uses t-intervals over seeds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def size_slope(series: pd.DataFrame) -> float:
    """OLS slope of ``value`` on ``log10(n_cells)`` over rows with ``n_cells > 0``.

    NaN when fewer than two distinct corpus sizes are present (no slope can be fitted).
    """
    pretrained = series[series["n_cells"] > 0]
    x = np.log10(pretrained["n_cells"].to_numpy(dtype=float))
    y = pretrained["value"].to_numpy(dtype=float)
    if len(np.unique(x)) < 2:
        return float("nan")
    x_centered = x - x.mean()
    return float((x_centered * (y - y.mean())).sum() / (x_centered**2).sum())


def spread(series: pd.DataFrame) -> float:
    """Best minus worst fraction of the per-fraction mean over seeds (control included), >= 0."""
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
    """Slope and spread of one series, each with its bootstrap CI, plus the control's mean."""
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
    """Masking index of ``frozen_mode`` against ``finetuned_mode`` with its paired bootstrap CI."""
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
    """One row per frozen mode: its series summary, the finetuned one's, and the masking index."""

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
    """Mean and bootstrap CI over seeds per (mode, metric, n_cells): the points of every figure."""
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


# ------------------------------------------------------------------------------ inference
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

    Returns a dict: ``slope`` (:func:`size_slope`), ``ci_low``/``ci_high`` (the ``ci`` interval),
    ``bound``, ``equivalent`` (bool), ``zero_in_ci95`` (bool; True also when the interval is
    undefined, since then nothing excludes 0) and ``verdict``:

    - ``"equivalent to no trend"`` when ``equivalent``. This takes precedence: a tiny slope
      measured precisely can both exclude 0 and lie inside the bound; it is then real but
      smaller than anything that matters, and ``zero_in_ci95`` still shows that it is nonzero;
    - ``"trend"`` when not equivalent and the 95% interval excludes 0;
    - ``"inconclusive"`` otherwise (too few seeds or too much noise to say either).
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
    """
    if not np.isfinite(size_slope(series)):
        return float("nan")
    draws = _slope_draws(series, n_boot=n_boot, seed=seed)
    draws = draws[np.isfinite(draws)]
    k_le, k_ge = int((draws <= 0).sum()), int((draws >= 0).sum())
    return float(min(1.0, 2 * min(k_le + 1, k_ge + 1) / (len(draws) + 1)))


def adjust_pvalues(pvalues, method: str = "holm") -> np.ndarray:
    """Multiplicity-adjusted p-values, same shape as the input, in [0, 1].

    ``method="holm"``: Holm's step-down adjustment, controlling the family-wise error rate.
    ``method="bh"``: Benjamini-Hochberg step-up adjustment, controlling the false discovery rate.
    NaN entries (tests that could not be run) stay NaN and do not count towards the number of
    tests. Adjusted values are monotone in the raw ones and never below them.
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
    y_true,
    y_pred,
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


# ------------------------------------------------------------------------------ budget grid
def budget_cells(
    records: pd.DataFrame, *, finetuned_mode: str = "finetune", metric: str = "macro_f1"
) -> list[tuple[float, int]]:
    """The ``(label_budget, step_budget)`` cells of a budget sweep, sorted: every pair that has
    finetuned rows. The frozen mode has no step budget; its rows at a label budget serve every
    step budget of that label budget."""
    if "label_budget" not in records or "step_budget" not in records:
        raise ValueError(
            "records lack label_budget / step_budget: pass the rows of the budget sweep "
            "(results.load_records(..., kinds=('sweep',)))"
        )
    ft = records[(records["mode"] == finetuned_mode) & (records["metric"] == metric)]
    pairs = ft[["label_budget", "step_budget"]].dropna().drop_duplicates()
    return sorted((float(b), int(s)) for b, s in pairs.itertuples(index=False))


def budget_cell_records(
    records: pd.DataFrame,
    label_budget: float,
    step_budget: int | None,
    *,
    finetuned_mode: str = "finetune",
    frozen_mode: str = "linear_probe",
    metric: str = "macro_f1",
) -> pd.DataFrame:
    """The rows of one grid cell: finetuned rows at ``(label_budget, step_budget)`` and frozen rows at
    ``label_budget`` (any step budget). ``step_budget=None`` keeps the frozen rows only."""
    at_budget = np.isclose(records["label_budget"].astype(float), float(label_budget))
    rows = records[at_budget & (records["metric"] == metric)]
    keep = rows["mode"] == frozen_mode
    if step_budget is not None:
        keep |= (rows["mode"] == finetuned_mode) & np.isclose(rows["step_budget"].astype(float), float(step_budget))
    return rows[keep]


def budget_grid(
    records: pd.DataFrame,
    *,
    finetuned_mode: str = "finetune",
    frozen_mode: str = "linear_probe",
    metric: str = "macro_f1",
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """The masking statistic in every cell of a label x step budget sweep, for one model family.

    ``records``: the sweep rows of one family (:func:`scfm_lib.results.load_records` with
    ``kinds=("sweep",)``; columns ``label_budget`` and ``step_budget``, NaN step budget for the
    frozen mode). One row per ``(label_budget, step_budget)`` (see :func:`budget_cells`), sorted,
    with:

    - ``finetuned_slope`` / ``probe_slope`` and their ``_ci_low`` / ``_ci_high``: size slopes of the
      finetuned rows of the cell and of the frozen rows at its label budget (the frozen ones repeat
      along a row of the grid), bootstrap CI over seeds (:func:`bootstrap_over_seeds`);
    - ``masking_index`` and its CI: :func:`paired_masking_index` of the cell's rows (NaN when the
      frozen slope is not positive);
    - ``finetuned_mean_largest`` / ``finetuned_mean_control`` and ``probe_mean_largest`` /
      ``probe_mean_control``: mean over seeds at the largest corpus and at the random-init control
      (NaN without a control);
    - ``finetuned_slope_p``: :func:`bootstrap_pvalue_slope` of the finetuned slope, and
      ``finetuned_slope_p_holm``: the same, Holm-adjusted over the cells of this grid;
    - ``n_runs``: finetuned runs in the cell; ``n_seeds``: distinct seeds among them.

    Every bootstrap uses the same ``seed``, so the grid is deterministic for a given ``seed``.
    """
    families = records["family"].dropna().unique() if "family" in records else []
    if len(families) > 1:
        raise ValueError(f"budget_grid takes the records of one model family, got {sorted(families)}")
    cells = budget_cells(records, finetuned_mode=finetuned_mode, metric=metric)
    if not cells:
        raise ValueError(f"no {finetuned_mode!r} rows with a label and a step budget for {metric!r}")

    def means(series: pd.DataFrame) -> tuple[float, float]:
        by_size = series.groupby("n_cells")["value"].mean()
        return float(by_size.loc[by_size.index.max()]), float(by_size.get(0, np.nan))

    boot = {"n_boot": n_boot, "seed": seed, "ci": ci}
    frozen_stats: dict[float, tuple] = {}
    rows = []
    for label_budget, step_budget in cells:
        cell = budget_cell_records(
            records, label_budget, step_budget, finetuned_mode=finetuned_mode, frozen_mode=frozen_mode, metric=metric
        )
        ft, frozen = cell[cell["mode"] == finetuned_mode], cell[cell["mode"] == frozen_mode]
        if frozen.empty:
            raise ValueError(
                f"no {frozen_mode!r} rows at label budget {label_budget:g} to compare the finetuned ones with"
            )
        if label_budget not in frozen_stats:
            frozen_stats[label_budget] = (bootstrap_over_seeds(frozen, size_slope, **boot), means(frozen))
        (probe_slope, probe_means) = frozen_stats[label_budget]
        ft_slope = bootstrap_over_seeds(ft, size_slope, **boot)
        index = paired_masking_index(
            cell, finetuned_mode=finetuned_mode, frozen_mode=frozen_mode, metric=metric, **boot
        )
        ft_means = means(ft)
        rows.append(
            {
                "label_budget": label_budget,
                "step_budget": step_budget,
                "finetuned_slope": ft_slope[0],
                "finetuned_slope_ci_low": ft_slope[1],
                "finetuned_slope_ci_high": ft_slope[2],
                "probe_slope": probe_slope[0],
                "probe_slope_ci_low": probe_slope[1],
                "probe_slope_ci_high": probe_slope[2],
                "masking_index": index[0],
                "masking_index_ci_low": index[1],
                "masking_index_ci_high": index[2],
                "finetuned_mean_largest": ft_means[0],
                "finetuned_mean_control": ft_means[1],
                "probe_mean_largest": probe_means[0],
                "probe_mean_control": probe_means[1],
                "finetuned_slope_p": bootstrap_pvalue_slope(ft, n_boot=n_boot, seed=seed),
                "n_runs": len(ft),
                "n_seeds": int(ft["seed"].nunique()),
            }
        )
    grid = pd.DataFrame(rows)
    grid.insert(
        grid.columns.get_loc("finetuned_slope_p") + 1,
        "finetuned_slope_p_holm",
        adjust_pvalues(grid["finetuned_slope_p"].to_numpy(), method="holm"),
    )
    return grid
