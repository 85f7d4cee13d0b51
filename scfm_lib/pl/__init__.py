"""Plots of the book (scanpy-style ``pl``): each takes tidy tables and returns the matplotlib Axes.

All figures put pretraining corpus size on a log axis and the random-init control (0 cells) at a
separate position on its left, since log10(0) does not exist.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from scfm_lib.pl.column import (
    COLUMN_INCHES,
    COLUMN_PX,
    FIGURE_DPI,
    MAX_PANELS_PER_ROW,
    MIN_FONT_PT,
    SMALL_FONT_PT,
    column_figure,
    fit_to_column,
    rendered_scale,
    shown_width_px,
    smallest_rendered_font,
    theme,
)

#: How each evaluation mode is named in figures, and its colour, the same in every chapter.
MODE_LABELS = {
    "finetune": "finetuned",
    "linear_probe": "frozen: linear probe",
    "knn": "frozen: kNN",
    "leiden": "zero-shot: Leiden clusters",
    "scib": "zero-shot: scIB",
    "reconstruction": "zero-shot: reconstruction",
    "pretrain": "pretraining validation",
    "hvg_logreg": "baseline: logistic regression on HVGs",
    "pca_knn": "baseline: PCA + kNN",
    "pca_leiden": "baseline: PCA + Leiden",
    "pca": "baseline: PCA",
    # Further finetuning regimes (evaluate.regimes; the first one is always mode "finetune").
    "finetune_full": "finetuned: all weights",
    "finetune_last_k": "finetuned: last blocks",
    "finetune_lora": "finetuned: LoRA adapters",
    "finetune_head_only": "finetuned: head only",
    # Open-ended probes of what the model knows about genes.
    "gene_programs": "open-ended: gene programs",
    "perturbation": "open-ended: in-silico perturbation",
}
# One distinct colour per mode: the 10 colour-blind-safe colours, then Dark2's 8 for the modes beyond
# them, reordered so that the finetuning regimes avoid the orange of the linear probe they are drawn beside.
_PALETTE = dict(
    zip(
        MODE_LABELS,
        sns.color_palette("colorblind", 10) + [sns.color_palette("Dark2", 8)[i] for i in (0, 2, 3, 4, 6, 1, 5, 7)],
    )
)
assert len(_PALETTE) == len(MODE_LABELS), "add colours to _PALETTE: every mode in MODE_LABELS needs one"
_BASELINE_STYLE = {"hvg_logreg": ":", "pca_knn": "--", "pca_leiden": "-.", "pca": "--"}
CONTROL_GAP = 0.6  # distance (in log10 units) of the random-init control left of the smallest corpus


def corpus_size_positions(n_cells: pd.Series) -> pd.Series:
    """x positions: log10(cells) for pretrained runs; the 0-cell control sits left of the smallest.

    Parameters
    ----------
    n_cells : pandas.Series
        Pretraining corpus sizes (cells, >= 0; 0 = the random-init control).

    Returns
    -------
    pandas.Series
        float x positions, same index as ``n_cells``: ``log10(n_cells)`` for ``n_cells > 0``, and
        :data:`CONTROL_GAP` left of the smallest corpus for the control.
    """
    n = n_cells.astype(float)
    smallest = np.log10(n[n > 0].min()) if (n > 0).any() else 0.0
    return pd.Series(np.where(n > 0, np.log10(np.where(n > 0, n, 1.0)), smallest - CONTROL_GAP), index=n.index)


def _format_size_axis(ax: plt.Axes, n_cells: pd.Series) -> None:
    sizes = np.sort(n_cells.unique())
    pos = corpus_size_positions(pd.Series(sizes))
    labels = ["0\n(random init)" if s == 0 else f"{int(s):,}" for s in sizes]
    ax.set_xticks(pos.values, labels, fontsize=SMALL_FONT_PT)
    ax.set_xlabel("pretraining cells (log scale)")


def metric_vs_corpus_size(
    table: pd.DataFrame,
    metric: str,
    modes: list[str],
    *,
    ax: plt.Axes | None = None,
    baselines: pd.DataFrame | None = None,
    ylabel: str | None = None,
) -> plt.Axes:
    """Mean metric per corpus size with its bootstrap CI over seeds, one line per mode.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per (mode, metric, n_cells) with columns ``mean``, ``ci_low``, ``ci_high`` (as
        returned by :func:`scfm_lib.stats.size_table`).
    metric : str
        The metric to draw (a value of ``table["metric"]``).
    modes : list of str
        The evaluation modes to draw, one line each (keys of :data:`MODE_LABELS` name them).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default the current Axes.
    baselines : pandas.DataFrame, optional
        Rows (mode, metric, value) drawn as horizontal lines, for methods with no pretraining.
    ylabel : str, optional
        The y-axis label; default ``metric``.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on.

    Raises
    ------
    ValueError
        When ``table`` has no row for ``metric`` and ``modes``.
    """
    ax = ax or plt.gca()
    rows = table[(table["metric"] == metric) & table["mode"].isin(modes)].copy()
    if rows.empty:
        raise ValueError(f"no rows for metric {metric!r} and modes {modes}")
    rows["x"] = corpus_size_positions(rows["n_cells"])
    for mode in modes:
        r = rows[rows["mode"] == mode].sort_values("x")
        if r.empty:
            continue
        pretrained = r[r["n_cells"] > 0]
        color = _PALETTE.get(mode)
        ax.plot(pretrained["x"], pretrained["mean"], marker="o", color=color, label=MODE_LABELS.get(mode, mode))
        ax.errorbar(
            r["x"],
            r["mean"],
            yerr=[r["mean"] - r["ci_low"], r["ci_high"] - r["mean"]],
            fmt="none",
            ecolor=color,
            capsize=3,
        )
        ax.scatter(r.loc[r["n_cells"] == 0, "x"], r.loc[r["n_cells"] == 0, "mean"], marker="s", color=color, zorder=3)
    if baselines is not None:
        for row in baselines[baselines["metric"] == metric].itertuples():
            ax.axhline(
                row.value,
                color="0.35",
                lw=1,
                ls=_BASELINE_STYLE.get(row.mode, "--"),
                label=MODE_LABELS.get(row.mode, row.mode),
            )
    _format_size_axis(ax, rows["n_cells"])
    ax.set_ylabel(ylabel or metric)
    return ax


def loss_curves(histories: pd.DataFrame, *, ax: plt.Axes | None = None, value: str = "val_loss") -> plt.Axes:
    """Pretraining loss against steps, one line per corpus size (mean over seeds, band = range).

    Parameters
    ----------
    histories : pandas.DataFrame
        Pretraining histories, one row per (run, step) with columns ``n_cells``, ``step`` and
        ``value``'s column.
    ax : matplotlib.axes.Axes, optional
        Where to draw; default the current Axes.
    value : str
        The column drawn (default ``"val_loss"``, the validation masked-value MSE).

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on.
    """
    ax = ax or plt.gca()
    data = histories.dropna(subset=[value]).copy()
    data["pretraining cells"] = data["n_cells"].map(lambda n: f"{int(n):,}")
    order = [f"{int(n):,}" for n in sorted(data["n_cells"].unique(), reverse=True)]
    sns.lineplot(
        data,
        x="step",
        y=value,
        hue="pretraining cells",
        hue_order=order,
        errorbar=("pi", 100),
        palette="viridis",
        ax=ax,
    )
    ax.set_ylabel("validation masked-value MSE" if value == "val_loss" else value)
    return ax


def interval_plot(
    summary: pd.DataFrame,
    estimate: str,
    low: str,
    high: str,
    label: str,
    *,
    ax: plt.Axes | None = None,
    reference: tuple[float, ...] = (0.0,),
) -> plt.Axes:
    """A forest plot: one row per line of ``summary`` (its index as label), estimate with its CI.

    Parameters
    ----------
    summary : pandas.DataFrame
        One row per estimate, its index naming the rows of the plot (top to bottom).
    estimate, low, high : str
        Columns of ``summary``: the point estimate and its interval's bounds.
    label : str
        The x-axis label.
    ax : matplotlib.axes.Axes, optional
        Where to draw; default the current Axes.
    reference : tuple of float
        x values marked by dashed vertical lines (default 0, no effect).

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on.
    """
    ax = ax or plt.gca()
    y = np.arange(len(summary))[::-1]
    est, lo, hi = (summary[c].to_numpy(dtype=float) for c in (estimate, low, high))
    ax.errorbar(est, y, xerr=[est - lo, hi - est], fmt="o", color="0.2", capsize=3)
    for ref in reference:
        ax.axvline(ref, color="0.6", lw=1, ls="--")
    ax.set_yticks(y, [str(i) for i in summary.index], fontsize=SMALL_FONT_PT)
    ax.set_xlabel(label)
    return ax


def label_share(budget: float) -> str:
    """A label budget as a percentage of the training labels.

    Parameters
    ----------
    budget : float
        The share of the training labels, in (0, 1].

    Returns
    -------
    str
        E.g. ``"10%"``.
    """
    return f"{100 * budget:g}%"


def budget_heatmap(
    grid: pd.DataFrame, key: str, *, vmin: float, vmax: float, fmt: str, ax: plt.Axes, cmap: str = "RdBu_r"
) -> plt.cm.ScalarMappable:
    """One family's budget grid as a heatmap: rows = label budget, columns = step budget.

    Each cell shows its value and interval; cells where the value is undefined are hatched grey.

    Parameters
    ----------
    grid : pandas.DataFrame
        A budget grid (:func:`scfm_lib.stats.budget_grid`): ``label_budget``, ``step_budget``, ``key``
        and its ``<key>_ci_low`` / ``<key>_ci_high``.
    key : str
        The column drawn.
    vmin, vmax : float
        The colour scale's range.
    fmt : str
        The numbers' format specification.
    ax : matplotlib.axes.Axes
        Where to draw.
    cmap : str
        The colour map (undefined cells are white beneath the hatching).

    Returns
    -------
    matplotlib.cm.ScalarMappable
        The image, for a colour bar.
    """
    from matplotlib.patches import Rectangle

    labels = sorted(grid["label_budget"].unique())
    steps = sorted(grid["step_budget"].unique())
    matrix = grid.pivot(index="label_budget", columns="step_budget", values=key).reindex(index=labels, columns=steps)
    colormap = plt.get_cmap(cmap).with_extremes(bad="white")
    image = ax.imshow(matrix.to_numpy(dtype=float), cmap=colormap, vmin=vmin, vmax=vmax, aspect="auto")
    for row in grid.to_dict("records"):
        i, j = labels.index(row["label_budget"]), steps.index(row["step_budget"])
        value, low, high = row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"]
        if not np.isfinite(value):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.88", edgecolor="0.55", hatch="///", lw=0))
            ax.text(
                j,
                i,
                "undefined",
                ha="center",
                va="center",
                fontsize=SMALL_FONT_PT,
                color="0.25",
                bbox={"facecolor": "0.88", "edgecolor": "none", "pad": 1},
            )
            continue
        interval = f"[{low:{fmt}}, {high:{fmt}}]" if np.isfinite(low) and np.isfinite(high) else "[no CI]"
        dark = abs((value - (vmin + vmax) / 2) / ((vmax - vmin) / 2)) > 0.6
        ax.text(
            j,
            i,
            f"{value:{fmt}}\n{interval}",
            ha="center",
            va="center",
            fontsize=SMALL_FONT_PT,
            color="white" if dark else "black",
        )
    ax.set_xticks(range(len(steps)), [f"<= {int(s)}" for s in steps], fontsize=SMALL_FONT_PT)
    ax.set_yticks(range(len(labels)), [label_share(b) for b in labels], fontsize=SMALL_FONT_PT)
    ax.set_xlabel("finetuning step budget (most steps)")
    ax.set_ylabel("label budget")
    ax.grid(False)
    return image
