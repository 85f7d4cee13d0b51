"""The chapters' text helpers (scfm_lib.study.chapter_text, scfm_lib.study.budgets) and the budget heatmap."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from scfm_lib import pl
from scfm_lib.study import budgets, chapter_text


def records():
    rows = []
    for n_cells, values in ((0, [0.1, 0.3]), (100, [0.5, 0.7]), (1000, [0.8, 0.9])):
        rows += [
            {"mode": "knn", "metric": "macro_f1", "n_cells": n_cells, "seed": s, "value": v}
            for s, v in enumerate(values)
        ]
    rows.append({"mode": "finetune", "metric": "macro_f1", "n_cells": 1000, "seed": 0, "value": 0.99})
    return pd.DataFrame(rows)


def test_mean_at_the_largest_corpus_and_the_control():
    assert chapter_text.mean_at(records(), "knn", "macro_f1", "largest") == pytest.approx(0.85)
    assert chapter_text.mean_at(records(), "knn", "macro_f1", "control") == pytest.approx(0.2)
    assert np.isnan(chapter_text.mean_at(records(), "knn", "ari", "largest"))


def test_signed_numbers_and_missing_ones():
    assert chapter_text.signed(0.012345) == "+0.0123"
    assert chapter_text.signed(-2e-5) == "-2e-05"
    assert chapter_text.signed(None) == chapter_text.signed(float("nan")) == "n/a"
    assert np.isnan(chapter_text.null_as_nan(None)) and chapter_text.null_as_nan(1) == 1.0


def test_size_table_point_and_interval_comparison():
    table = pd.DataFrame(
        {
            "mode": "knn",
            "metric": "macro_f1",
            "n_cells": [0, 1000],
            "mean": [0.2, 0.85],
            "ci_low": [0.1, 0.8],
            "ci_high": [0.3, 0.9],
            "n_seeds": 2,
        }
    )
    assert chapter_text.size_table_point(table, "knn", "macro_f1", 1000) == "+0.85 (CI +0.8 to +0.9, 2 seeds)"
    assert chapter_text.size_table_point(table, "knn", "ari", 1000) == "n/a"
    assert chapter_text.intervals_versus(table, 1000, 0).startswith("above it")
    assert chapter_text.intervals_versus(table, 0, 1000).startswith("below it")
    overlapping = table.assign(ci_low=[0.1, 0.25])
    assert chapter_text.intervals_versus(overlapping, 1000, 0).startswith("not clearly apart")


def test_secondary_gain_in_words():
    secondary = pd.DataFrame(
        [
            {
                "family": "scgpt",
                "mode": "knn",
                "metric": "ari",
                "gain": 0.5,
                "gain_ci_low": 0.25,
                "gain_ci_high": 0.75,
                "n_seeds": 3,
            }
        ]
    )
    text = chapter_text.secondary_gain(secondary, "scgpt", "knn", "ari", ci=0.95)
    assert "+0.5" in text and "0.25" in text and "0.75" in text
    assert chapter_text.secondary_gain(secondary, "scgpt", "knn", "nmi", ci=0.95) == "not measured"
    assert chapter_text.secondary_gain(pd.DataFrame(), "scgpt", "knn", "ari", ci=0.95) == "not measured"


def test_slope_with_ci():
    row = {"slope": 0.0123, "slope CI low": -0.001, "slope CI high": 0.025}
    assert chapter_text.slope_with_ci(row) == "+0.0123 (CI -0.0010 to +0.0250)"


def grid():
    return pd.DataFrame(
        {
            "label_budget": [0.1, 0.1, 1.0, 1.0],
            "step_budget": [5, 20, 5, 20],
            "masking_index": [np.nan, 0.5, 0.25, 0.9],
            "masking_index_ci_low": [np.nan, 0.1, np.nan, 0.8],
            "masking_index_ci_high": [np.nan, 0.9, np.nan, 1.0],
        }
    )


def test_budget_cells_in_words():
    g = grid()
    row = g.iloc[1]
    assert budgets.cell_name(row) == "10% of labels, <= 20 steps"
    assert budgets.estimate_with_ci(row, "masking_index", ".2f", ci=0.95) == "0.50 (95% CI 0.10 to 0.90)"
    assert budgets.estimate_with_ci(g.iloc[0], "masking_index", ci=0.95) == "undefined"
    assert "no interval" in budgets.estimate_with_ci(g.iloc[2], "masking_index", ci=0.95)
    assert budgets.interval_texts(g, "masking_index", ".2f") == [
        "undefined",
        "0.50 [0.10, 0.90]",
        "0.25 [n/a, n/a]",
        "0.90 [0.80, 1.00]",
    ]
    assert (
        budgets.grid_corner(g, min, min)["step_budget"] == 5
        and budgets.grid_corner(g, max, max)["masking_index"] == 0.9
    )
    assert budgets.intervals_overlap(g.iloc[1], g.iloc[3], "masking_index") is True
    assert budgets.intervals_overlap(g.iloc[1], g.iloc[3].replace(0.8, 0.95), "masking_index") is False
    assert budgets.intervals_overlap(g.iloc[1], g.iloc[2], "masking_index") is None


def test_budget_heatmap_marks_undefined_cells():
    fig, ax = plt.subplots()
    image = pl.budget_heatmap(grid(), "masking_index", vmin=-1, vmax=1, fmt=".2f", ax=ax)
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("undefined") == 1 and "0.90\n[0.80, 1.00]" in texts
    assert [t.get_text() for t in ax.get_yticklabels()] == ["10%", "100%"]
    assert np.isnan(image.get_array()[0, 0]) or np.ma.is_masked(image.get_array()[0, 0])
    plt.close(fig)
