"""The label x step budget grid: the masking statistic per cell of the grid (the budgets chapter)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scfm_lib.stats.inference import adjust_pvalues, bootstrap_pvalue_slope
from scfm_lib.stats.masking import bootstrap_over_seeds, paired_masking_index, size_slope


def budget_cells(
    records: pd.DataFrame, *, finetuned_mode: str = "finetune", metric: str = "macro_f1"
) -> list[tuple[float, int]]:
    """The ``(label_budget, step_budget)`` cells of a budget sweep, sorted.

    Every pair that has finetuned rows. The frozen mode has no step budget; its rows at a label
    budget serve every step budget of that label budget.

    Parameters
    ----------
    records : pandas.DataFrame
        The sweep rows (columns ``mode``, ``metric``, ``label_budget``, ``step_budget``).
    finetuned_mode : str
        The finetuned mode whose rows define the cells.
    metric : str
        The metric.

    Returns
    -------
    list of (float, int)
        The sorted ``(label_budget, step_budget)`` pairs.

    Raises
    ------
    ValueError
        When ``records`` lacks the budget columns (not the rows of a budget sweep).
    """
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
    """The rows of one grid cell.

    Finetuned rows at ``(label_budget, step_budget)`` and frozen rows at ``label_budget`` (any step
    budget). ``step_budget=None`` keeps the frozen rows only.

    Parameters
    ----------
    records : pandas.DataFrame
        The sweep rows (columns ``mode``, ``metric``, ``label_budget``, ``step_budget``).
    label_budget : float
        The cell's label budget.
    step_budget : int or None
        The cell's step budget; None for the frozen rows only.
    finetuned_mode, frozen_mode : str
        The two modes.
    metric : str
        The metric.

    Returns
    -------
    pandas.DataFrame
        The cell's rows of ``records``.
    """
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
    frozen mode). Every bootstrap uses the same ``seed``, so the grid is deterministic for a given
    ``seed``.

    Parameters
    ----------
    records : pandas.DataFrame
        The sweep rows of one model family.
    finetuned_mode, frozen_mode : str
        The finetuned mode and the frozen mode it is compared with.
    metric : str
        The metric.
    n_boot, seed, ci
        As :func:`~scfm_lib.stats.bootstrap_over_seeds`.

    Returns
    -------
    pandas.DataFrame
        One row per ``(label_budget, step_budget)`` (see :func:`budget_cells`), sorted, with:

        - ``finetuned_slope`` / ``probe_slope`` and their ``_ci_low`` / ``_ci_high``: size slopes of the
          finetuned rows of the cell and of the frozen rows at its label budget (the frozen ones repeat
          along a row of the grid), bootstrap CI over seeds (:func:`bootstrap_over_seeds`);
        - ``masking_index`` and its CI: :func:`paired_masking_index` of the cell's rows (in [-1, 1];
          NaN when the frozen slope is not positive);
        - ``finetuned_mean_largest`` / ``finetuned_mean_control`` and ``probe_mean_largest`` /
          ``probe_mean_control``: mean over seeds at the largest corpus and at the random-init control
          (NaN without a control);
        - ``finetuned_slope_p``: :func:`bootstrap_pvalue_slope` of the finetuned slope, and
          ``finetuned_slope_p_holm``: the same, Holm-adjusted over the cells of this grid (both in
          (0, 1]);
        - ``n_runs``: finetuned runs in the cell; ``n_seeds``: distinct seeds among them.

    Raises
    ------
    ValueError
        When ``records`` holds several families, no finetuned row has both budgets, or a label
        budget has no frozen rows.
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
