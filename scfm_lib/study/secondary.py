"""The study's secondary endpoints: every series but the primary one, with its tests, gain and slope.

:func:`secondary_endpoints` gives each other series (mode x metric of each family) its lack-of-fit test,
seed-paired gain and per-seed slope, Holm-adjusted over all rows; :mod:`scfm_lib.study.summary` writes
its rows to ``summary.json`` (``secondary``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scfm_lib import results
from scfm_lib.analysis import endpoints, linearity
from scfm_lib.config import Profile
from scfm_lib.study.verdicts import FINETUNED_MODE, FROZEN_MODE


def secondary_endpoints(profile: Profile, results_dir: Path) -> pd.DataFrame:
    """Every other series (mode x metric of each family) with its tests, gain and slope.

    Each series gets its lack-of-fit test, its seed-paired gain and per-seed slope (t-intervals),
    and the gain's t-test p-value adjusted by Holm over all rows (the primary endpoint is not among
    them). Slopes are quoted only where the line is not rejected. Series with fewer than two
    pretrained fractions or seeds are left out.

    Parameters
    ----------
    profile
        The profile.
    results_dir
        Its results folder, ``results/<profile>``.

    Returns
    -------
    pandas.DataFrame
        One row per series: family, mode, metric, n_seeds, gain with gain_ci_low and gain_ci_high
        (largest minus smallest corpus, in the metric's units), p and p_holm (in [0, 1]),
        lack_of_fit_F (>= 0) and lack_of_fit_p (in [0, 1]), linear (the line not rejected at
        0.05, or not testable), slope with slope_ci_low and slope_ci_high (change per tenfold more cells; NaN where
        not linear). No rows (and no columns) when no series qualifies.
    """
    rows = []
    for family in profile.families:
        records = results.load_records(results_dir, kinds=("evaluate", "scib"), family=family)
        for (mode, metric), series in records.groupby(["mode", "metric"]):
            series = series.dropna(subset=["value"])
            if (mode, metric) == (FROZEN_MODE, "macro_f1") or (mode, metric) == (FINETUNED_MODE, "macro_f1"):
                continue  # the primary endpoint's ingredients
            if mode == "gene_programs" and metric == "chance_ap":
                continue  # a property of the vocabulary, the same for every checkpoint
            pretrained = series[series["fraction"] > 0]
            if pretrained["fraction"].nunique() < 2 or pretrained["seed"].nunique() < 2:
                continue
            fit = linearity.lack_of_fit(series)
            gain = endpoints.seed_gains(series)
            g = endpoints.paired_estimate(gain.to_numpy(), profile.stats.ci)
            slopes = _seed_slopes(pretrained)
            s = endpoints.paired_estimate(slopes, profile.stats.ci)
            linear = bool(np.isnan(fit["p"]) or fit["p"] >= 0.05)
            rows.append(
                {
                    "family": family,
                    "mode": mode,
                    "metric": metric,
                    "n_seeds": g.n,
                    "gain": g.mean,
                    "gain_ci_low": g.ci_low,
                    "gain_ci_high": g.ci_high,
                    "p": g.p_t,
                    "lack_of_fit_F": fit["F"],
                    "lack_of_fit_p": fit["p"],
                    "linear": linear,
                    "slope": s.mean if linear else np.nan,
                    "slope_ci_low": s.ci_low if linear else np.nan,
                    "slope_ci_high": s.ci_high if linear else np.nan,
                }
            )
    table = pd.DataFrame(rows)
    if len(table):
        from scfm_lib import stats

        table["p_holm"] = stats.adjust_pvalues(table["p"].to_numpy(), "holm")
    return table


def _seed_slopes(pretrained: pd.DataFrame) -> np.ndarray:
    """Each seed's OLS slope of value on log10(cells) over its pretrained fractions (seeds with >= 2)."""
    out = []
    for _, rows in pretrained.groupby("seed"):
        x = np.log10(rows["n_cells"].to_numpy(float))
        if len(np.unique(x)) >= 2:
            y = rows["value"].to_numpy(float)
            out.append(float(np.polyfit(x, y, 1)[0]))
    return np.array(out)
