"""The label x step budget grid of a profile with a sweep: one workflow job, before the chapters.

For each annotation task the sweep scored and each model family, the masking index, the slopes and
their intervals in every cell of the grid (:func:`scfm_lib.stats.budget_grid`), written to
``budgets.json`` (the budgets and recommendations chapters read it)::

    python -m scfm_lib.study.budgets --profile quick --results-dir results/quick
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scfm_lib import io, results, stats
from scfm_lib.config import ConfigError, Profile, load_profile
from scfm_lib.layout import ResultsLayout
from scfm_lib.pl import label_share

#: The main task's metric, the finetuned and the frozen readout compared in every cell.
METRIC, FINETUNED, FROZEN = "macro_f1", "finetune", "linear_probe"

#: Every annotation task a sweep may score: metric -> words (older sweeps scored the main task only).
TASKS = {"macro_f1": "held-out donors", "macro_f1_tissue": "within a tissue", "macro_f1_ood": "out of distribution"}


def sweep_records(profile: Profile, results_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The sweep records of each model family (each family is its own study: its grid uses its own runs).

    Parameters
    ----------
    profile
        The profile.
    results_dir
        Its results folder, ``results/<profile>``.

    Returns
    -------
    dict of str to pandas.DataFrame
        Family -> its sweep records (:func:`scfm_lib.results.load_records`).
    """
    return {family: results.load_records(results_dir, kinds=("sweep",), family=family) for family in profile.families}


def build_budgets(profile: Profile, results_dir: str | Path) -> dict:
    """The budget grids of every task and family, as written to ``budgets.json``.

    Parameters
    ----------
    profile
        A profile with a budget sweep (``evaluate.label_budgets`` and ``evaluate.step_budgets``).
    results_dir
        Its results folder, ``results/<profile>``.

    Returns
    -------
    dict
        The design (families, metric, modes, regime, budgets, n_boot, ci), ``grids`` (family -> the
        main task's grid records), ``tasks`` (metric -> words, the tasks every family's sweep scored)
        and ``task_grids`` (metric -> family -> grid records).

    Raises
    ------
    ConfigError
        For a profile without a budget sweep.
    """
    if not profile.evaluate.has_sweep:
        raise ConfigError(
            f"profile {profile.name!r} sets no budget sweep: give evaluate.label_budgets and evaluate.step_budgets"
        )
    records = sweep_records(profile, results_dir)
    tasks = {
        metric: name
        for metric, name in TASKS.items()
        if all(metric in set(records[family]["metric"]) for family in profile.families)
    }
    task_grids = {
        metric: {
            family: stats.budget_grid(
                records[family],
                finetuned_mode=FINETUNED,
                frozen_mode=FROZEN,
                metric=metric,
                n_boot=profile.stats.n_boot,
                ci=profile.stats.ci,
            ).to_dict("records")
            for family in profile.families
        }
        for metric in tasks
    }
    return {
        "families": profile.families,
        "metric": METRIC,
        "finetuned_mode": FINETUNED,
        "frozen_mode": FROZEN,
        "regime": profile.evaluate.regimes[0],
        "label_budgets": profile.evaluate.label_budgets,
        "step_budgets": profile.evaluate.step_budgets,
        "n_boot": profile.stats.n_boot,
        "ci": profile.stats.ci,
        "p_adjustment": "holm, across the cells of each family's grid",
        "grids": task_grids[METRIC],
        "tasks": tasks,
        "task_grids": task_grids,
    }


def write_budgets(profile: Profile, results_dir: str | Path, parameters: dict) -> dict:
    """Build the budget grids (:func:`build_budgets`) and write them to ``budgets.json``.

    Parameters
    ----------
    profile
        A profile with a budget sweep.
    results_dir
        Its results folder, ``results/<profile>``.
    parameters
        The job's parameters, stored in the file's provenance.

    Returns
    -------
    dict
        What was written, provenance included.
    """
    layout = ResultsLayout(results_dir)
    data_record = io.read_json(layout.metrics("data", "datasets"))
    budgets = {
        **build_budgets(profile, results_dir),
        "provenance": io.provenance(parameters, data_record["provenance"]["data_sha256"]),
    }
    io.write_json(layout.budgets, budgets)
    return budgets


def grid_frame(grid_records: list[dict]) -> pd.DataFrame:
    """One grid of ``budgets.json`` as a table, undefined values (written as null) as NaN.

    Parameters
    ----------
    grid_records
        The records of one grid (``budgets["grids"][family]``).

    Returns
    -------
    pandas.DataFrame
        One row per grid cell; every column numeric.
    """
    return pd.DataFrame(grid_records).apply(pd.to_numeric)


def number_or_na(x: float, fmt: str = "+.3f") -> str:
    """A number formatted with ``fmt``, ``"n/a"`` where it is not finite.

    Parameters
    ----------
    x
        The number.
    fmt
        Its format specification.

    Returns
    -------
    str
        The formatted number or ``"n/a"``.
    """
    return "n/a" if not np.isfinite(x) else format(x, fmt)


def estimate_with_ci(row: Mapping, key: str, fmt: str = "+.3f", *, ci: float) -> str:
    """An estimate of a grid cell with its interval, honest about undefined values and intervals.

    Parameters
    ----------
    row
        A grid cell (a record of :func:`scfm_lib.stats.budget_grid`).
    key
        The estimate's column; its bounds are ``<key>_ci_low`` and ``<key>_ci_high``.
    fmt
        The numbers' format specification.
    ci
        The interval's confidence level (for its label); keyword-only, so a chapter can fix it once
        with ``functools.partial`` and still pass ``fmt`` by position.

    Returns
    -------
    str
        ``"estimate (95% CI low to high)"``, or ``"undefined"``.
    """
    if not np.isfinite(row[key]):
        return "undefined"
    low, high = row[f"{key}_ci_low"], row[f"{key}_ci_high"]
    interval = (
        f"{ci:.0%} CI {low:{fmt}} to {high:{fmt}}"
        if np.isfinite(low) and np.isfinite(high)
        else "no interval: undefined in most resamples"
    )
    return f"{row[key]:{fmt}} ({interval})"


def cell_name(row: Mapping) -> str:
    """A grid cell's budgets in words.

    Parameters
    ----------
    row
        A grid cell.

    Returns
    -------
    str
        E.g. ``"10% of labels, <= 20 steps"``.
    """
    return f"{label_share(row['label_budget'])} of labels, <= {int(row['step_budget'])} steps"


def interval_texts(grid: pd.DataFrame, key: str, fmt: str) -> list[str]:
    """Each grid cell's estimate and interval as ``"value [low, high]"``, for a table.

    Parameters
    ----------
    grid
        A budget grid.
    key
        The estimate's column (bounds ``<key>_ci_low``, ``<key>_ci_high``).
    fmt
        The numbers' format specification.

    Returns
    -------
    list of str
        One text per row of ``grid``; ``"undefined"`` where the estimate is not finite.
    """
    return [
        (
            "undefined"
            if not np.isfinite(r[key])
            else f"{r[key]:{fmt}} [{number_or_na(r[key + '_ci_low'], fmt)}, {number_or_na(r[key + '_ci_high'], fmt)}]"
        )
        for r in grid.to_dict("records")
    ]


def grid_corner(grid: pd.DataFrame, label_pick: Callable, step_pick: Callable) -> pd.Series:
    """One corner of a budget grid, e.g. the fewest labels and steps (``min, min``).

    Parameters
    ----------
    grid
        A budget grid.
    label_pick, step_pick
        ``min`` or ``max``: which label budget, then which step budget at it.

    Returns
    -------
    pandas.Series
        The grid cell.
    """
    row = grid[(grid["label_budget"] == label_pick(grid["label_budget"]))]
    return row[row["step_budget"] == step_pick(row["step_budget"])].iloc[0]


def intervals_overlap(a: Mapping, b: Mapping, key: str) -> bool | None:
    """Whether the intervals of one estimate in two grid cells overlap.

    Parameters
    ----------
    a, b
        Two grid cells.
    key
        The estimate's column (bounds ``<key>_ci_low``, ``<key>_ci_high``).

    Returns
    -------
    bool or None
        None where a bound is undefined.
    """
    bounds = [a[f"{key}_ci_low"], a[f"{key}_ci_high"], b[f"{key}_ci_low"], b[f"{key}_ci_high"]]
    if not np.all(np.isfinite(bounds)):
        return None
    return not (bounds[1] < bounds[2] or bounds[3] < bounds[0])


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m scfm_lib.study.budgets --profile P --results-dir R``.

    Parameters
    ----------
    argv
        The arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        prog="python -m scfm_lib.study.budgets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", required=True)
    parser.add_argument("--profiles-dir", default="profiles")
    parser.add_argument("--results-dir", required=True)
    args = parser.parse_args(argv)
    parameters = {"profile": args.profile, "profiles_dir": args.profiles_dir, "results_dir": args.results_dir}
    budgets = write_budgets(load_profile(args.profile, args.profiles_dir), args.results_dir, parameters)
    print(f"budgets: {len(budgets['tasks'])} tasks x {len(budgets['families'])} families")


if __name__ == "__main__":
    main()
