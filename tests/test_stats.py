"""The masking statistic on constructed inputs with known answers."""

import numpy as np
import pandas as pd
import pytest

from scfm_lib import stats

SIZES = [0, 100, 1000, 10000]


def series(fn, mode="m", metric="macro_f1", seeds=3, noise=0.0, rng=None):
    rows = []
    for n in SIZES:
        for s in range(seeds):
            value = fn(n) + (rng.normal(0, noise) if noise else 0.0)
            rows.append(
                {"mode": mode, "metric": metric, "n_cells": n, "fraction": n / 10000, "seed": s, "value": value}
            )
    return pd.DataFrame(rows)


def linear(a, b):
    return lambda n: a + b * np.log10(n) if n > 0 else a - 0.3


def test_slope_of_a_linear_series_is_exact():
    assert stats.size_slope(series(linear(0.5, 0.07))) == pytest.approx(0.07)
    assert stats.size_slope(series(linear(0.5, -0.02))) == pytest.approx(-0.02)
    one_size = series(linear(0.5, 0.1))
    assert np.isnan(stats.size_slope(one_size[one_size["n_cells"].isin([0, 100])]))


def test_spread_includes_the_control():
    df = series(linear(0.5, 0.1))
    assert stats.spread(df) == pytest.approx((0.5 + 0.4) - (0.5 - 0.3))


@pytest.mark.parametrize(
    "s_ft, s_frozen, expected",
    [
        (0.0, 0.1, 1.0),  # finetuning flat, frozen gains: full masking
        (0.1, 0.1, 0.0),  # equally sensitive: no masking
        (0.05, 0.1, 1 / 3),
        (0.2, 0.1, -1 / 3),  # finetuning more sensitive: amplification
        (-0.1, 0.1, 1.0),  # finetuning even loses from scale: the gain is fully hidden
    ],
)
def test_masking_index_values(s_ft, s_frozen, expected):
    assert stats.masking_index(s_ft, s_frozen) == pytest.approx(expected)


def test_masking_index_is_nan_with_nothing_to_mask_and_bounded():
    assert np.isnan(stats.masking_index(0.0, 0.0))
    assert np.isnan(stats.masking_index(0.0, -0.1))  # frozen worsens with data: nothing to mask
    assert np.isnan(stats.masking_index(-0.1, 0.0))  # finetuning falls, frozen flat: not masking
    rng = np.random.default_rng(0)
    for a, b in rng.normal(size=(100, 2)):
        m = stats.masking_index(a, b)
        assert np.isnan(m) if b <= 0 else -1 <= m <= 1


def test_noise_free_series_has_zero_width_intervals():
    est, low, high = stats.bootstrap_over_seeds(series(linear(0.5, 0.07)), stats.size_slope, n_boot=200)
    assert est == low == pytest.approx(high) == pytest.approx(0.07)


def test_bootstrap_is_deterministic_and_resamples_whole_seeds():
    rng = np.random.default_rng(0)
    df = series(linear(0.5, 0.05), noise=0.02, rng=rng)
    a = stats.bootstrap_over_seeds(df, stats.size_slope, n_boot=300, seed=1)
    b = stats.bootstrap_over_seeds(df, stats.size_slope, n_boot=300, seed=1)
    assert a == b
    df = df.reset_index(drop=True)
    picks = stats._resample_seeds(stats._seed_blocks(df), np.random.default_rng(0))
    resample = df.iloc[picks]
    # every drawn seed comes with all its fractions: the pairing across fractions is kept
    assert (resample.groupby("seed")["n_cells"].nunique() == df["n_cells"].nunique()).all()
    assert len(resample) == len(df)


def test_confidence_interval_coverage():
    """A 95% CI over 5 seeds should cover the true slope in most of 60 simulated studies."""
    rng = np.random.default_rng(42)
    covered = 0
    for _ in range(60):
        df = series(linear(0.6, 0.04), seeds=5, noise=0.03, rng=rng)
        _, low, high = stats.bootstrap_over_seeds(df, stats.size_slope, n_boot=400, seed=int(rng.integers(1e6)))
        covered += low <= 0.04 <= high
    # The percentile bootstrap over few seeds under-covers somewhat; far below 0.8 would be a bug.
    assert 0.8 <= covered / 60 <= 1.0


def test_summarize_masking_on_constructed_records():
    frozen = series(linear(0.5, 0.08), mode="linear_probe")
    finetuned = series(lambda n: 0.9, mode="finetune")
    knn = series(linear(0.4, 0.08), mode="knn")
    table = stats.summarize_masking(pd.concat([frozen, finetuned, knn]), n_boot=200)
    assert list(table["frozen_mode"]) == ["linear_probe", "knn"]
    assert table["masking_index"].tolist() == pytest.approx([1.0, 1.0])
    assert table["frozen_slope"].tolist() == pytest.approx([0.08, 0.08])
    assert table["finetuned_spread"].tolist() == pytest.approx([0.0, 0.0])
    same = stats.summarize_masking(
        pd.concat([frozen, frozen.assign(mode="finetune")]), frozen_modes=("linear_probe",), n_boot=200
    )
    assert same["masking_index"].iloc[0] == pytest.approx(0.0)


def test_paired_bootstrap_keeps_checkpoints_together():
    """Shared seed noise cancels in the masking index only if both modes are resampled together."""
    rng = np.random.default_rng(3)
    shared = {(n, s): rng.normal(0, 0.05) for n in SIZES for s in range(4)}
    rows = []
    for (n, s), e in shared.items():
        base = 0.5 + (0.05 * np.log10(n) if n else -0.2)
        rows += [
            {"mode": "linear_probe", "metric": "macro_f1", "n_cells": n, "fraction": 0, "seed": s, "value": base + e},
            {"mode": "finetune", "metric": "macro_f1", "n_cells": n, "fraction": 0, "seed": s, "value": base + e},
        ]
    est, low, high = stats.paired_masking_index(
        pd.DataFrame(rows), finetuned_mode="finetune", frozen_mode="linear_probe", metric="macro_f1", n_boot=300
    )
    assert est == pytest.approx(0.0) and low == pytest.approx(0.0) and high == pytest.approx(0.0)


def test_size_table():
    table = stats.size_table(series(linear(0.5, 0.1), seeds=4), n_boot=100)
    assert len(table) == len(SIZES)
    row = table[table["n_cells"] == 1000].iloc[0]
    assert row["mean"] == pytest.approx(0.8) and row["ci_low"] == pytest.approx(0.8) and row["n_seeds"] == 4


def test_series_summary_refuses_mixed_or_empty_input():
    with pytest.raises(ValueError, match="empty"):
        stats.series_summary(series(linear(0, 0)).iloc[:0])
    with pytest.raises(ValueError, match="one mode"):
        stats.series_summary(pd.concat([series(linear(0, 0)), series(linear(0, 0), mode="other")]))
