"""The study's endpoint statistics, each against a hand computation or a reference implementation."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from scfm_lib.analysis import endpoints as ep
from scfm_lib.analysis import equivalence, linearity, power


def test_t_interval_matches_the_textbook_formula():
    d = np.array([0.03, 0.01, 0.05, -0.01, 0.02, 0.04, 0.00, 0.02])
    mean, low, high = ep.t_interval(d, 0.95)
    half = 2.364624251592785 * d.std(ddof=1) / np.sqrt(8)  # t_{0.975, 7}, from a table
    assert mean == pytest.approx(0.16 / 8)
    assert (low, high) == pytest.approx((0.02 - half, 0.02 + half))
    # scipy's own t-interval agrees
    assert (low, high) == pytest.approx(sps.t.interval(0.95, 7, loc=d.mean(), scale=sps.sem(d)))


def test_sign_flip_pvalue_by_hand():
    # 3 seeds, all positive: of the 8 sign assignments only all-plus and all-minus reach |mean| 2/3*...
    assert ep.sign_flip_pvalue([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    # [1, -1, 2]: |mean| 2/3; assignments with |sum| >= 2: (+,-,+) 2, (-,+,-) -2, (+,+,+) 4, (-,-,-) -4,
    # (-,-,+) 2... enumerate by hand below with a plain loop as the reference
    d = np.array([1.0, -1.0, 2.0])
    hits = sum(abs(np.dot(s, d)) >= abs(d.sum()) - 1e-12 for s in itertools.product((1, -1), repeat=3))
    assert ep.sign_flip_pvalue(d) == pytest.approx(hits / 8)
    # the smallest attainable p-value with 8 seeds is 2 / 256
    assert ep.sign_flip_pvalue(np.arange(1, 9)) == pytest.approx(2 / 256)


def test_paired_estimate_t_test_matches_scipy():
    rng = np.random.default_rng(0)
    d = rng.normal(0.02, 0.03, size=8)
    e = ep.paired_estimate(d)
    assert e.p_t == pytest.approx(sps.ttest_1samp(d, 0).pvalue)
    assert e.n == 8 and e.sd == pytest.approx(d.std(ddof=1))
    assert e.excludes_zero == (e.ci_low > 0 or e.ci_high < 0)


def _series(values: dict[float, list[float]], n_cells: int = 1000) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"fraction": f, "seed": s, "n_cells": int(f * n_cells), "value": v}
            for f, vs in values.items()
            for s, v in enumerate(vs)
        ]
    )


def test_seed_gains_are_paired_by_seed():
    series = _series({0.0: [0.5, 0.5], 0.01: [0.1, 0.4], 1.0: [0.3, 0.9]})
    gains = ep.seed_gains(series)
    assert gains.to_dict() == pytest.approx({0: 0.2, 1: 0.5})  # the control (fraction 0) is not an endpoint


def test_masking_contrast_is_the_difference_of_paired_gains():
    frozen = _series({0.01: [0.1, 0.2, 0.3], 1.0: [0.4, 0.4, 0.5]})
    finetuned = _series({0.01: [0.8, 0.8, 0.9], 1.0: [0.8, 0.9, 0.9]})
    out = ep.masking_contrast(frozen, finetuned)
    d = np.array([0.3, 0.2, 0.2]) - np.array([0.0, 0.1, 0.0])
    assert out["D"]["mean"] == pytest.approx(d.mean())
    assert out["D"]["ci_low"] == pytest.approx(ep.t_interval(d)[1])
    assert out["seeds"] == [0, 1, 2]


def test_power_against_a_simulation():
    sd, n, effect = 0.03, 8, 0.035
    rng = np.random.default_rng(1)
    draws = rng.normal(effect, sd, size=(20000, n))
    simulated = np.mean(sps.ttest_1samp(draws, 0, axis=1).pvalue < 0.05)
    assert power.paired_t_power(effect, sd, n) == pytest.approx(simulated, abs=0.01)
    mde = power.detectable_effect(sd, n)
    assert power.paired_t_power(mde, sd, n) == pytest.approx(0.8, abs=1e-6)
    assert power.seeds_for_power(mde * 1.001, sd) == n and power.seeds_for_power(mde * 0.99, sd) == n + 1


def test_lack_of_fit_matches_a_dummy_regression_and_rejects_curvature():
    # A reference: the classic lack-of-fit F from two OLS fits, computed here with statsmodels-style
    # formulas written out directly on design matrices.
    rng = np.random.default_rng(2)
    fractions, seeds = [0.01, 0.1, 1.0], range(6)
    rows = []
    for s in seeds:
        shift = rng.normal(0, 0.05)
        for f in fractions:
            x = np.log10(f * 10000)
            rows.append(
                {
                    "fraction": f,
                    "seed": s,
                    "n_cells": int(f * 10000),
                    "value": 0.5 + shift + 0.1 * (x - 3) ** 2 + rng.normal(0, 0.01),
                }
            )
    series = pd.DataFrame(rows)
    out = linearity.lack_of_fit(series)
    y = series["value"].to_numpy()
    x = np.log10(series["n_cells"].to_numpy(float))
    S = np.eye(6)[series["seed"].to_numpy()]
    F_ = np.eye(3)[series["fraction"].map({0.01: 0, 0.1: 1, 1.0: 2}).to_numpy()]
    sse = lambda X: float(((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2).sum())  # noqa: E731
    sse_line, sse_means = sse(np.column_stack([S, x])), sse(np.column_stack([S, F_[:, 1:]]))
    F = (sse_line - sse_means) / 1 / (sse_means / (18 - 6 - 3 + 1))
    assert out["F"] == pytest.approx(F) and out["df1"] == 1 and out["df2"] == 10
    assert out["p"] < 1e-6  # strong curvature is rejected
    straight = series.assign(value=0.5 + 0.1 * np.log10(series["n_cells"]) + rng.normal(0, 0.01, len(series)))
    fit = linearity.lack_of_fit(straight)
    assert fit["p"] > 0.01 and fit["slope"] == pytest.approx(0.1, abs=0.02)
    assert np.isnan(linearity.lack_of_fit(series[series["fraction"] != 0.1])["F"])  # two fractions: no test


def test_equivalence_margin_and_tost():
    assert equivalence.equivalence_margin("macro_f1", chance=0.1, ceiling=0.9) == pytest.approx(0.08)
    assert equivalence.equivalence_margin("loss", chance=0.62) == pytest.approx(0.062)
    with pytest.raises(ValueError, match="empty"):
        equivalence.equivalence_margin("x", chance=0.5, ceiling=0.5)
    tight = np.array([0.001, -0.002, 0.0, 0.002, -0.001, 0.001, 0.0, -0.001])
    assert equivalence.equivalence(None, 0.01, differences=tight)["equivalent"]
    noisy = np.array([0.05, -0.06, 0.04, -0.05, 0.06, -0.04, 0.05, -0.05])
    assert not equivalence.equivalence(None, 0.01, differences=noisy)["equivalent"]
    shifted = tight + 0.02  # precise but outside the margin
    assert not equivalence.equivalence(None, 0.01, differences=shifted)["equivalent"]


def test_power_functions_stay_importable_from_endpoints():
    # the masking chapter (nbs/masking.ipynb) and book/workshop.md call them as endpoints.<name>
    for name in ("paired_t_power", "detectable_effect", "seeds_for_power"):
        assert getattr(ep, name) is getattr(power, name)
