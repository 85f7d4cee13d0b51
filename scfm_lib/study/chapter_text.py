"""Numbers of the chapters in words: the small formatters the chapters' takeaways share.

Each takes the tables a chapter already holds (records, size tables, the summary's secondary
endpoints) and returns text; none computes a statistic of its own beyond a mean or a filter.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from scfm_lib import stats
from scfm_lib.study.verdicts import format_estimate


def metric_rows(records: pd.DataFrame, mode: str, metric: str) -> pd.DataFrame:
    """The records of one mode and metric: one row per checkpoint that recorded it.

    Parameters
    ----------
    records
        Metric records (:func:`scfm_lib.results.load_records`).
    mode, metric
        The series.

    Returns
    -------
    pandas.DataFrame
        The matching rows (empty where none was recorded).
    """
    return records[(records["mode"] == mode) & (records["metric"] == metric)]


def signed(x: float | None) -> str:
    """Three significant digits with a sign (perturbation shifts can be ~1e-5 cosine units).

    Parameters
    ----------
    x
        The number, None where it is missing.

    Returns
    -------
    str
        E.g. ``"+0.0123"``, or ``"n/a"`` where ``x`` is None or not finite.
    """
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.3g}"


def size_table_point(table: pd.DataFrame, mode: str, metric: str, n_cells: float) -> str:
    """The mean over seeds at one corpus size with its bootstrap CI over seeds, as text.

    Parameters
    ----------
    table
        A size table (:func:`scfm_lib.stats.size_table`).
    mode, metric
        The series.
    n_cells
        The corpus size (0 = the random-init control).

    Returns
    -------
    str
        ``"mean (CI low to high, n seeds)"``, or ``"n/a"`` where the table has no such row.
    """
    row = table[(table["mode"] == mode) & (table["metric"] == metric) & (table["n_cells"] == n_cells)]
    if row.empty:
        return "n/a"
    row = row.iloc[0]
    return (
        f"{signed(row['mean'])} (CI {signed(row['ci_low'])} to {signed(row['ci_high'])}, {int(row['n_seeds'])} seeds)"
    )


def intervals_versus(rows: pd.DataFrame, n_a: float, n_b: float) -> str:
    """Whether the CIs over seeds of two corpus sizes separate, as text.

    Parameters
    ----------
    rows
        One series of a size table.
    n_a, n_b
        The two corpus sizes: ``n_a`` is compared against ``n_b``.

    Returns
    -------
    str
        ``"above it ..."``, ``"below it ..."`` or ``"not clearly apart ..."``.
    """
    a, b = (rows[rows["n_cells"] == n].iloc[0] for n in (n_a, n_b))
    if a["ci_low"] > b["ci_high"]:
        return "above it (the two CIs apart)"
    if a["ci_high"] < b["ci_low"]:
        return "below it (the two CIs apart)"
    return "not clearly apart from it (the two CIs overlap)"


def slope_sentence(records: pd.DataFrame, family: str, metric: str, label: str, n_boot: int, ci: float) -> str:
    """A loss series' slope against corpus size with its bootstrap interval, as a bullet.

    Parameters
    ----------
    records
        One family's records.
    family
        Its name.
    metric
        The loss (``val_loss``, ``masked_loss_heldout``, ...).
    label
        The loss in words.
    n_boot
        Bootstrap resamples.
    ci
        The confidence level.

    Returns
    -------
    str
        ``"- family, label: slope ... per tenfold ... (CI ...; the interval excludes/includes zero; ...)."``
    """
    s = stats.series_summary(records[records["metric"] == metric], n_boot=n_boot, ci=ci)
    verdict = "excludes zero" if s["slope_ci_low"] > 0 or s["slope_ci_high"] < 0 else "includes zero"
    return (
        f"- {family}, {label}: slope {s['slope']:+.4f} per tenfold more pretraining cells "
        f"({ci:.0%} CI {s['slope_ci_low']:+.4f} to {s['slope_ci_high']:+.4f}; the interval {verdict}; "
        f"negative = more data, lower loss)."
    )


def slope_with_ci(row: Mapping) -> str:
    """A slope of a chapter's table with its interval.

    Parameters
    ----------
    row
        A row with ``slope``, ``slope CI low`` and ``slope CI high``.

    Returns
    -------
    str
        ``"+0.0123 (CI -0.0010 to +0.0250)"``.
    """
    return f"{row['slope']:+.4f} (CI {row['slope CI low']:+.4f} to {row['slope CI high']:+.4f})"


def secondary_gain(secondary: pd.DataFrame, family: str, mode: str, metric: str, ci: float) -> str:
    """A secondary series' seed-paired gain from the smallest to the largest corpus, in words.

    Parameters
    ----------
    secondary
        The summary's secondary endpoints (``summary["secondary"]`` as a table).
    family, mode, metric
        The series.
    ci
        The confidence level of its interval.

    Returns
    -------
    str
        The gain with its interval (:func:`scfm_lib.study.verdicts.format_estimate`), or
        ``"not measured"``.
    """
    if secondary.empty:  # fewer than 2 seeds or fractions: no secondary endpoints
        return "not measured"
    rows = secondary[(secondary["family"] == family) & (secondary["mode"] == mode) & (secondary["metric"] == metric)]
    if rows.empty:
        return "not measured"
    r = rows.iloc[0]
    estimate = {"mean": r["gain"], "ci_low": r["gain_ci_low"], "ci_high": r["gain_ci_high"], "n": int(r["n_seeds"])}
    return format_estimate({**estimate, "ci": ci}, digits=4)


def mean_at(records: pd.DataFrame, mode: str, metric: str, which: str) -> float:
    """The mean over seeds of a series at the largest corpus or at the random-init control.

    Parameters
    ----------
    records
        One family's records.
    mode, metric
        The series.
    which
        ``"control"`` (0 cells) or ``"largest"``.

    Returns
    -------
    float
        The mean, NaN where the series was not recorded.
    """
    rows = metric_rows(records, mode, metric)
    if rows.empty:
        return float("nan")
    n = 0 if which == "control" else rows["n_cells"].max()
    return float(rows[rows["n_cells"] == n]["value"].mean())


def null_as_nan(x: float | None) -> float:
    """A number read from JSON, where NaN was written as null.

    Parameters
    ----------
    x
        The number or None.

    Returns
    -------
    float
        ``x``, or NaN for None.
    """
    return float("nan") if x is None else float(x)
