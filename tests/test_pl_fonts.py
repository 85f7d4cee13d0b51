"""Every figure of scfm_lib.pl keeps its type legible at the size the book shows it (>= 9 pt)."""

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from scfm_lib import pl


def size_table():
    rows = []
    for mode in ("finetune", "linear_probe", "knn"):
        for n_cells in (0, 1_000, 10_000, 100_000):
            mean = 0.5 + 0.1 * np.log10(max(n_cells, 1)) / 5
            rows.append(
                {
                    "mode": mode,
                    "metric": "macro_f1",
                    "n_cells": n_cells,
                    "mean": mean,
                    "ci_low": mean - 0.05,
                    "ci_high": mean + 0.05,
                }
            )
    return pd.DataFrame(rows)


def draw_metric_vs_corpus_size(ax):
    baselines = pd.DataFrame([{"mode": "hvg_logreg", "metric": "macro_f1", "value": 0.6}])
    pl.metric_vs_corpus_size(size_table(), "macro_f1", ["finetune", "linear_probe", "knn"], ax=ax, baselines=baselines)
    ax.set_title("scgpt: annotation")
    ax.legend()


def draw_loss_curves(ax):
    histories = pd.DataFrame(
        [
            {"n_cells": n, "seed": seed, "step": step, "val_loss": 1.0 / (step + 1) + seed * 0.01}
            for n in (1_000, 100_000)
            for seed in (0, 1)
            for step in range(0, 100, 10)
        ]
    )
    pl.loss_curves(histories, ax=ax)


def draw_interval_plot(ax):
    summary = pd.DataFrame(
        {"D": [0.1, -0.05, 0.02], "low": [-0.1, -0.2, -0.01], "high": [0.3, 0.1, 0.05]},
        index=["annotation: D", "annotation_ood: D", "positive control: D"],
    )
    pl.interval_plot(summary, "D", "low", "high", "D (macro-F1)", ax=ax)


def draw_budget_heatmap(ax):
    grid = pd.DataFrame(
        [
            {
                "label_budget": label,
                "step_budget": step,
                "masking_index": np.nan if label == 0.01 else 0.3,
                "masking_index_ci_low": -0.2,
                "masking_index_ci_high": 0.8,
            }
            for label in (0.01, 0.1, 1.0)
            for step in (10, 100, 1000)
        ]
    )
    image = pl.budget_heatmap(grid, "masking_index", vmin=-1, vmax=1, fmt=".2f", ax=ax)
    ax.figure.colorbar(image, ax=ax, label="M")


FIGURES = [draw_metric_vs_corpus_size, draw_loss_curves, draw_interval_plot, draw_budget_heatmap]


@pytest.mark.parametrize("draw", FIGURES, ids=lambda f: f.__name__)
def test_every_pl_figure_is_legible_at_column_width(draw):
    with plt.rc_context():
        pl.theme()
        fig, ax = plt.subplots(figsize=(pl.COLUMN_INCHES, 4.5))
        draw(ax)
        smallest = pl.smallest_rendered_font(fig)
        plt.close(fig)
    assert smallest >= pl.MIN_FONT_PT


def test_the_check_sees_small_type_and_figures_wider_than_the_column():
    with plt.rc_context():
        pl.theme()
        fig, ax = plt.subplots(figsize=(pl.COLUMN_INCHES, 3))
        ax.plot([0, 1])
        assert pl.rendered_scale(fig) == 1.0 and pl.smallest_rendered_font(fig) >= pl.MIN_FONT_PT
        ax.text(0.5, 0.5, "tiny", fontsize=8)
        assert pl.smallest_rendered_font(fig) == 8
        plt.close(fig)
        wide, ax = plt.subplots(figsize=(2 * pl.COLUMN_INCHES, 3))  # shown at about half its size
        ax.plot([0, 1])
        assert pl.rendered_scale(wide) == pytest.approx(pl.COLUMN_PX / pl.shown_width_px(wide))
        assert pl.rendered_scale(wide) < 0.7 and pl.smallest_rendered_font(wide) < pl.MIN_FONT_PT
        plt.close(wide)


def test_column_figure_is_one_column_wide_and_refuses_crowded_rows():
    with plt.rc_context():
        fig, axes = pl.column_figure(2, 3, row_height=2.0, sharey=True)
        assert axes.shape == (2, 3)
        assert tuple(fig.get_size_inches()) == pytest.approx((pl.COLUMN_INCHES, 4.0))
        plt.close(fig)
        with pytest.raises(ValueError, match="at most 3 per row"):
            pl.column_figure(1, 4)


def two_panels_with_two_line_axis_labels():
    """The open-ended chapter's perturbation figure: one tight-layout pass left its label off the canvas."""
    fig, axes = pl.column_figure(1, 2, row_height=4.6)
    for ax in axes[0]:
        ax.plot([0, 1, 2, 3], [0.001, -0.003, 0.0025, 0.0033], label="open-ended: in-silico perturbation")
        ax.set_ylabel("overexpressing the driver in other cells:\nshift toward the type (cosine)")
        ax.set_xlabel("pretraining cells (log scale)")
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    return fig


def test_fit_to_column_keeps_the_figure_inside_the_column():
    with plt.rc_context():
        pl.theme()
        fig = two_panels_with_two_line_axis_labels()
        fig.tight_layout()  # one pass, as matplotlib's own
        assert pl.shown_width_px(fig) > pl.COLUMN_PX
        plt.close(fig)
        fig = two_panels_with_two_line_axis_labels()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pl.fit_to_column(fig)
        assert pl.shown_width_px(fig) <= pl.COLUMN_PX and pl.smallest_rendered_font(fig) >= pl.MIN_FONT_PT
        plt.close(fig)


def test_fit_to_column_names_the_text_that_overhangs():
    with plt.rc_context():
        pl.theme()
        fig, axes = pl.column_figure(1, 2)
        axes[0, 1].set_title("a title far too long for half a column of the book, it runs off the page")
        with pytest.warns(UserWarning, match="far too long"):
            pl.fit_to_column(fig)
        plt.close(fig)
