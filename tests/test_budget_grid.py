"""The masking statistic over the label x step budget grid (stats.budget_grid) on constructed sweeps."""

import numpy as np
import pandas as pd
import pytest

from scfm_lib import stats

SIZES = [0, 100, 1000, 10000]
LABEL_BUDGETS = [0.1, 1.0]
STEP_BUDGETS = [5, 20, 100]
N_BOOT = 40  # the constructed sweeps are noiseless (or nearly): few resamples suffice


def sweep(ft_slope=lambda b, s: 0.0, probe_slope=lambda b: 0.1, *, seeds=3, noise=0.0, seed=0, family="scgpt"):
    """Sweep records of one family: probe 0.3 + probe_slope(b) * log10(n), control 0.1; finetuned
    0.6 + ft_slope(b, s) * log10(n), control 0.2; optional Gaussian noise per run."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in SIZES:
        for s in range(seeds):
            run = {
                "kind": "sweep",
                "family": family,
                "fraction": n / 10000,
                "seed": s,
                "n_cells": n,
                "metric": "macro_f1",
            }
            for b in LABEL_BUDGETS:
                value = (0.3 + probe_slope(b) * np.log10(n) if n else 0.1) + rng.normal(0, noise)
                rows.append({**run, "mode": "linear_probe", "value": value, "label_budget": b, "step_budget": None})
                for steps in STEP_BUDGETS:
                    value = (0.6 + ft_slope(b, steps) * np.log10(n) if n else 0.2) + rng.normal(0, noise)
                    rows.append({**run, "mode": "finetune", "value": value, "label_budget": b, "step_budget": steps})
    return pd.DataFrame(rows)


def grid(records, **kw):
    return stats.budget_grid(records, n_boot=N_BOOT, seed=0, ci=0.95, **kw)


def test_one_row_per_budget_cell_in_order():
    out = grid(sweep())
    assert len(out) == len(LABEL_BUDGETS) * len(STEP_BUDGETS)
    assert list(zip(out["label_budget"], out["step_budget"])) == [(b, s) for b in LABEL_BUDGETS for s in STEP_BUDGETS]
    assert out["step_budget"].map(type).eq(int).all()
    assert (out["n_runs"] == 3 * len(SIZES)).all() and (out["n_seeds"] == 3).all()
    assert stats.budget_cells(sweep()) == [(b, s) for b in LABEL_BUDGETS for s in STEP_BUDGETS]


def test_flat_finetuned_and_rising_probe_is_full_masking():
    out = grid(sweep(ft_slope=lambda b, s: 0.0, probe_slope=lambda b: 0.1))
    for col in ("masking_index", "masking_index_ci_low", "masking_index_ci_high"):
        assert out[col].to_numpy() == pytest.approx(1.0)
    for col in ("probe_slope", "probe_slope_ci_low", "probe_slope_ci_high"):
        assert out[col].to_numpy() == pytest.approx(0.1)
    for col in ("finetuned_slope", "finetuned_slope_ci_low", "finetuned_slope_ci_high"):
        assert out[col].to_numpy() == pytest.approx(0.0, abs=1e-12)
    assert out["finetuned_mean_largest"].to_numpy() == pytest.approx(0.6)
    assert out["finetuned_mean_control"].to_numpy() == pytest.approx(0.2)
    assert out["probe_mean_largest"].to_numpy() == pytest.approx(0.7)
    assert out["probe_mean_control"].to_numpy() == pytest.approx(0.1)
    assert (out["finetuned_slope_p"] == 1.0).all() and (out["finetuned_slope_p_holm"] == 1.0).all()


def test_partial_masking_and_holm_across_cells():
    # Finetuning gains 0.05 per tenfold at the longest step budget only, the probe 0.1 everywhere.
    out = grid(sweep(ft_slope=lambda b, s: 0.05 if s == 100 else 0.0)).set_index(["label_budget", "step_budget"])
    trend = out.xs(100, level="step_budget")
    assert trend["finetuned_slope"].to_numpy() == pytest.approx(0.05)
    assert trend["masking_index"].to_numpy() == pytest.approx((0.1 - 0.05) / (0.1 + 0.05))
    flat = out.drop(index=100, level="step_budget")
    assert flat["masking_index"].to_numpy() == pytest.approx(1.0)
    # Every resample of a noiseless trend is positive: p = 2 / (n + 1), Holm multiplies by the 6 tests.
    assert trend["finetuned_slope_p"].to_numpy() == pytest.approx(2 / (N_BOOT + 1))
    assert trend["finetuned_slope_p_holm"].to_numpy() == pytest.approx(6 * 2 / (N_BOOT + 1))
    assert (flat["finetuned_slope_p_holm"] == 1.0).all()


def test_negative_probe_slope_leaves_the_index_undefined():
    out = grid(sweep(probe_slope=lambda b: -0.05 if b == 0.1 else 0.1)).set_index("label_budget")
    few = out.loc[0.1]
    assert few["probe_slope"].to_numpy() == pytest.approx(-0.05)
    assert few[["masking_index", "masking_index_ci_low", "masking_index_ci_high"]].isna().all().all()
    assert out.loc[1.0, "masking_index"].to_numpy() == pytest.approx(1.0)


def test_probe_statistics_repeat_along_a_row_of_the_grid():
    out = grid(sweep(noise=0.02))
    per_budget = out.groupby("label_budget")[["probe_slope", "probe_slope_ci_low", "probe_slope_ci_high"]].nunique()
    assert (per_budget == 1).all().all()


def test_noisy_grid_is_deterministic_for_a_seed_and_intervals_hold_the_estimate():
    records = sweep(ft_slope=lambda b, s: 0.02, noise=0.02, seeds=4)
    a, b = grid(records), grid(records)
    pd.testing.assert_frame_equal(a, b)
    other = stats.budget_grid(records, n_boot=N_BOOT, seed=1)
    assert not np.allclose(a["finetuned_slope_ci_low"], other["finetuned_slope_ci_low"])
    for key in ("finetuned_slope", "probe_slope", "masking_index"):
        assert (a[f"{key}_ci_low"] <= a[key]).all() and (a[key] <= a[f"{key}_ci_high"]).all()
    assert ((a["finetuned_slope_p"] <= a["finetuned_slope_p_holm"]) & (a["finetuned_slope_p_holm"] <= 1)).all()


def test_cell_records_pair_the_probe_with_one_step_budget():
    records = sweep()
    cell = stats.budget_cell_records(records, 1.0, 20)
    assert set(cell["mode"]) == {"finetune", "linear_probe"}
    assert (cell.loc[cell["mode"] == "finetune", "step_budget"] == 20).all()
    assert (cell["label_budget"] == 1.0).all() and len(cell) == 2 * 3 * len(SIZES)
    assert set(stats.budget_cell_records(records, 1.0, None)["mode"]) == {"linear_probe"}


def test_refuses_mixed_families_missing_probes_and_non_sweep_records():
    with pytest.raises(ValueError, match="one model family"):
        grid(pd.concat([sweep(family="scgpt"), sweep(family="geneformer")]))
    records = sweep()
    with pytest.raises(ValueError, match="label budget 0.1"):
        grid(records[~((records["mode"] == "linear_probe") & (records["label_budget"] == 0.1))])
    with pytest.raises(ValueError, match="label_budget"):
        grid(records.drop(columns=["label_budget", "step_budget"]))
