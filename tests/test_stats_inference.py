"""Inference on top of the masking statistic: equivalence, p-values, multiplicity, per-cell CIs."""

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from scfm_lib import metrics, stats

SIZES = [0, 100, 1000, 10000]
N_BOOT = 300  # enough for stable decisions on these constructed series, and fast


def series(slope, *, seeds=5, noise=0.0, seed=0):
    """One mode/metric series: 0.5 + slope * log10(n_cells), control at 0.2, Gaussian seed noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in SIZES:
        for s in range(seeds):
            value = (0.5 + slope * np.log10(n) if n else 0.2) + rng.normal(0, noise)
            rows.append(
                {"mode": "m", "metric": "macro_f1", "n_cells": n, "fraction": n / 10000, "seed": s, "value": value}
            )
    return pd.DataFrame(rows)


def flat_with_seed_noise(sd, seeds=5):
    """Noisy but with no trend at all: each seed's noise differs between corpus sizes and averages
    to exactly 0 over the seeds at every size, so the sample slope is exactly 0 while resampling
    whole seeds (as the bootstrap does, pairing them across sizes) scatters the slope around it."""
    noise = np.random.default_rng(1).normal(0, sd, size=(seeds, len(SIZES)))
    noise -= noise.mean(0)  # [seeds, sizes], each size's mean 0
    column = {n: j for j, n in enumerate(SIZES)}
    return series(0.0, seeds=seeds).assign(value=lambda d: d["value"] + noise[d["seed"], d["n_cells"].map(column)])


# ------------------------------------------------------------------------------ equivalence
def test_flat_series_with_generous_bound_is_equivalent():
    out = stats.slope_equivalence(series(0.0, noise=0.005), bound=0.05, n_boot=N_BOOT)
    assert out["verdict"] == "equivalent to no trend" and out["equivalent"]
    assert -0.05 <= out["ci_low"] <= out["slope"] <= out["ci_high"] <= 0.05


def test_strong_slope_is_a_trend():
    out = stats.slope_equivalence(series(0.08, noise=0.01), bound=0.02, n_boot=N_BOOT)
    assert out["verdict"] == "trend" and not out["equivalent"] and not out["zero_in_ci95"]


def test_noisy_flat_series_with_tight_bound_is_inconclusive():
    out = stats.slope_equivalence(flat_with_seed_noise(0.05), bound=0.005, n_boot=N_BOOT)
    assert out["verdict"] == "inconclusive" and not out["equivalent"] and out["zero_in_ci95"]


def test_tiny_precise_slope_is_equivalent_although_nonzero():
    """Both criteria hold; equivalence takes precedence and zero_in_ci95 still flags the slope."""
    out = stats.slope_equivalence(series(0.002), bound=0.05, n_boot=N_BOOT)
    assert out["verdict"] == "equivalent to no trend" and not out["zero_in_ci95"]


def test_equivalence_slope_and_interval_match_the_seed_bootstrap():
    df = series(0.03, noise=0.02, seed=4)
    out = stats.slope_equivalence(df, bound=0.05, n_boot=N_BOOT, seed=7)
    est, low, high = stats.bootstrap_over_seeds(df, stats.size_slope, n_boot=N_BOOT, seed=7, ci=0.90)
    assert out["slope"] == stats.size_slope(df) == est
    assert (out["ci_low"], out["ci_high"]) == (low, high)
    assert out["bound"] == 0.05


def test_equivalence_rejects_bad_arguments_and_handles_undefined_slopes():
    with pytest.raises(ValueError, match="bound"):
        stats.slope_equivalence(series(0.0), bound=0.0, n_boot=10)
    one_size = series(0.0, noise=0.01)
    out = stats.slope_equivalence(one_size[one_size["n_cells"].isin([0, 100])], bound=0.1, n_boot=10)
    assert np.isnan(out["slope"]) and np.isnan(out["ci_low"]) and out["verdict"] == "inconclusive"


# ------------------------------------------------------------------------------ bootstrap p-value
def test_bootstrap_pvalue_small_for_trend_large_for_none():
    strong = stats.bootstrap_pvalue_slope(series(0.08, noise=0.01), n_boot=N_BOOT)
    assert strong == pytest.approx(2 / (N_BOOT + 1))  # the smallest attainable value
    flat = flat_with_seed_noise(0.05)
    assert stats.size_slope(flat) == pytest.approx(0.0, abs=1e-12)
    assert stats.bootstrap_pvalue_slope(flat, n_boot=N_BOOT) > 0.5
    assert stats.bootstrap_pvalue_slope(series(0.0), n_boot=N_BOOT) == 1.0  # exactly flat


def test_bootstrap_pvalue_is_deterministic_and_in_range():
    df = series(0.01, noise=0.03, seed=2)
    a = stats.bootstrap_pvalue_slope(df, n_boot=N_BOOT, seed=3)
    assert a == stats.bootstrap_pvalue_slope(df, n_boot=N_BOOT, seed=3)
    assert 0 < a <= 1


# ------------------------------------------------------------------------------ multiplicity
@pytest.mark.parametrize("method, sm_method", [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjust_pvalues_matches_statsmodels(method, sm_method):
    rng = np.random.default_rng(0)
    for size in (1, 2, 7, 50):
        p = rng.uniform(size=size) ** 2  # skewed towards small p, with some ties below
        p[: size // 3] = p[0]  # ties
        expected = multipletests(p, method=sm_method)[1]
        np.testing.assert_allclose(stats.adjust_pvalues(p, method), expected, rtol=1e-12)


@pytest.mark.parametrize("method, sm_method", [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjust_pvalues_leaves_nans_out(method, sm_method):
    rng = np.random.default_rng(1)
    p = rng.uniform(size=20)
    p[[2, 5, 11]] = np.nan
    out = stats.adjust_pvalues(p, method)
    assert np.isnan(out[[2, 5, 11]]).all()
    ok = ~np.isnan(p)
    np.testing.assert_allclose(out[ok], multipletests(p[ok], method=sm_method)[1], rtol=1e-12)
    assert np.isnan(stats.adjust_pvalues([np.nan, np.nan], method)).all()
    assert stats.adjust_pvalues([], method).shape == (0,)


def test_adjust_pvalues_hand_checked():
    p = [0.01, 0.04, 0.03, 0.20]
    # Holm: sorted 0.01,0.03,0.04,0.20 -> 4*.01, 3*.03, max(.09, 2*.04), max(.09, .20)
    np.testing.assert_allclose(stats.adjust_pvalues(p, "holm"), [0.04, 0.09, 0.09, 0.20])
    # BH: 4/1*.01, 4/2*.03=.06, 4/3*.04=.0533, 4/4*.2; step-up minimum from the top
    np.testing.assert_allclose(stats.adjust_pvalues(p, "bh"), [0.04, 4 / 3 * 0.04, 4 / 3 * 0.04, 0.20])
    np.testing.assert_allclose(stats.adjust_pvalues([0.5, 0.6], "holm"), [1.0, 1.0])  # clipped


def test_adjust_pvalues_is_monotone_and_bounded():
    p = np.random.default_rng(2).uniform(size=40)
    for method in ("holm", "bh"):
        out = stats.adjust_pvalues(p, method)
        order = np.argsort(p)
        assert (np.diff(out[order]) >= -1e-15).all() and (out >= p).all() and (out <= 1).all()


def test_adjust_pvalues_rejects_bad_input():
    with pytest.raises(ValueError, match="method"):
        stats.adjust_pvalues([0.1], "bonferroni")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.adjust_pvalues([0.1, 1.5])


# ------------------------------------------------------------------------------ per-cell CIs
def predictions(n_cells, accuracy=0.8, seed=0):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, size=n_cells)
    wrong = rng.uniform(size=n_cells) > accuracy
    return y_true, np.where(wrong, (y_true + 1) % 3, y_true)


def test_cell_bootstrap_ci_contains_point_and_narrows_with_more_cells():
    point, low, high = stats.cell_bootstrap_ci(*predictions(100), metrics.macro_f1, n_boot=100)
    assert point == metrics.macro_f1(*predictions(100))
    assert low <= point <= high
    _, low_big, high_big = stats.cell_bootstrap_ci(*predictions(2000), metrics.macro_f1, n_boot=100)
    assert high_big - low_big < (high - low) / 2  # width ~ 1/sqrt(n): 20x cells, ~4.5x narrower


def test_cell_bootstrap_ci_is_deterministic_and_exact_for_perfect_predictions():
    y = predictions(50)[0]
    assert stats.cell_bootstrap_ci(y, y, metrics.macro_f1, n_boot=20) == (1.0, 1.0, 1.0)
    a = stats.cell_bootstrap_ci(*predictions(80), metrics.macro_f1, n_boot=40, seed=5)
    assert a == stats.cell_bootstrap_ci(*predictions(80), metrics.macro_f1, n_boot=40, seed=5)
    with pytest.raises(ValueError, match="equal length"):
        stats.cell_bootstrap_ci([0, 1], [0], metrics.macro_f1)
