"""What a data job's page shows besides its tables: a UMAP of expression, per-cell QC, gene programs.

Nothing here is written to the results; :mod:`scfm_lib.study.prepare_data` makes the data.
"""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from scfm_lib import data, evaluate, pl


def page_style() -> None:
    """Set how a data page draws and prints: seaborn's whitegrid theme, and table cells shown whole.

    pandas cuts a cell longer than ``display.max_colwidth`` (50 characters) to "...": a sha256, a
    license or a split rule would lose its end, and a reader could not check it.
    """
    sns.set_theme(style="whitegrid", context="notebook")
    pd.set_option("display.max_colwidth", None)


def expression_umap(adata: ad.AnnData, n_comps: int = 30) -> ad.AnnData:
    """Log-normalized expression of a dataset with its PCA, neighbours and UMAP (no integration).

    Parameters
    ----------
    adata : anndata.AnnData
        The dataset (not changed).
    n_comps : int
        PCA components (at most the genes minus one).

    Returns
    -------
    anndata.AnnData
        A log-normalized copy with ``obsm["X_pca"]`` and ``obsm["X_umap"]``.
    """
    import scanpy as sc

    evaluate.enable_umap_compilation_cache()  # bit-identical, saves numba's compilation per process
    view = data.log_normalize(adata)
    sc.pp.pca(view, n_comps=min(n_comps, view.n_vars - 1), random_state=0)
    sc.pp.neighbors(view, random_state=0)
    sc.tl.umap(view, random_state=0)
    return view


def qc_table(datasets: dict[str, ad.AnnData]) -> pd.DataFrame:
    """Library size and detected genes of every cell, with its dataset and technology.

    Parameters
    ----------
    datasets : dict of str to anndata.AnnData
        Dataset name -> dataset with ``layers["counts"]`` and ``obs["technology"]``.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset``, ``technology``, ``library size``, ``detected genes``.
    """
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "dataset": name,
                    "technology": a.obs["technology"].astype(str).values,
                    "library size": np.asarray(a.layers["counts"].sum(1)).ravel(),
                    "detected genes": np.asarray((a.layers["counts"] > 0).sum(1)).ravel(),
                }
            )
            for name, a in datasets.items()
        ]
    )


def program_means(view: ad.AnnData, n_programs: int = 30) -> pd.DataFrame:
    """Mean log-expression of each gene program's members per cell type, the most variable programs.

    Parameters
    ----------
    view : anndata.AnnData
        Log-normalized synthetic dataset (``uns["gene_programs"]``, ``obs["cell_type"]``).
    n_programs : int
        Programs kept, by variance across cell types.

    Returns
    -------
    pandas.DataFrame
        Cell type x program, z-scored across cell types.
    """
    scores = pd.DataFrame(
        {prog: np.asarray(view[:, list(genes)].X.mean(1)).ravel() for prog, genes in view.uns["gene_programs"].items()},
        index=view.obs_names,
    )
    means = scores.groupby(view.obs["cell_type"].values, observed=True).mean()
    means = means.loc[:, means.var().sort_values(ascending=False).index[:n_programs]]
    return (means - means.mean()) / means.std()


def qc_figure(datasets: dict[str, ad.AnnData]) -> plt.Figure:
    """Box plots of counts and detected genes per cell, by technology and dataset.

    Parameters
    ----------
    datasets : dict of str to anndata.AnnData
        Dataset name -> dataset with ``layers["counts"]`` and ``obs["technology"]``.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels: library size (log scale) and detected genes.
    """
    qc = qc_table(datasets)
    fig, axes = pl.column_figure(2, 1, row_height=3.6)  # stacked: the book shows it at its own size
    top, bottom = axes[:, 0]
    sns.boxplot(qc, x="technology", y="library size", hue="dataset", ax=top, fliersize=1, log_scale=True)
    sns.boxplot(qc, x="technology", y="detected genes", hue="dataset", ax=bottom, fliersize=1)
    top.set_title("Counts per cell, by technology")
    bottom.set_title(f"Detected genes per cell (of {next(iter(datasets.values())).n_vars})")
    # One legend, under both panels: inside the top panel it covered the third technology's whisker
    # and outliers (quick's data page at 869b84c).
    top.get_legend().remove()
    sns.move_legend(bottom, "upper center", bbox_to_anchor=(0.5, -0.28), ncol=len(datasets), frameon=False)
    pl.fit_to_column(fig)
    return fig


def umap_figure(view: ad.AnnData, colors: dict[str, str], axes: list[plt.Axes] | None = None) -> plt.Figure:
    """UMAP panels of a dataset (from :func:`expression_umap`), one per ``obs`` column.

    Parameters
    ----------
    view : anndata.AnnData
        A dataset with ``obsm["X_umap"]``.
    colors : dict of str to str
        ``obs`` column -> panel title.
    axes : list of matplotlib.axes.Axes, optional
        Where to draw (default: a new figure with one panel per colour).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import scanpy as sc

    if axes is None:  # one panel a row: the legend of the colours goes right of its UMAP, inside the column
        _, axes = pl.column_figure(len(colors), 1, row_height=4.2)
        axes = list(axes[:, 0])
    for ax, (key, title) in zip(axes, colors.items(), strict=True):
        sc.pl.umap(view, color=key, ax=ax, show=False, title=title, legend_fontsize=pl.MIN_FONT_PT)
    fig = axes[0].figure
    pl.fit_to_column(fig)
    return fig


def program_heatmap(view: ad.AnnData) -> plt.Figure:
    """Heatmap of :func:`program_means`: the gene programs' expression per cell type.

    Parameters
    ----------
    view : anndata.AnnData
        Log-normalized synthetic dataset (``uns["gene_programs"]``, ``obs["cell_type"]``).

    Returns
    -------
    matplotlib.figure.Figure
        The heatmap, z-scores across cell types.
    """
    means = program_means(view)
    fig, axes = pl.column_figure(row_height=5.0)
    ax = axes[0, 0]
    # Every row and column named: seaborn's default names every other one when they crowd, which left
    # 15 of the 30 programs unnamed (quick's data page at 0d164fd).
    sns.heatmap(
        means,
        cmap="vlag",
        center=0,
        ax=ax,
        xticklabels=True,
        yticklabels=True,
        cbar_kws={"label": "z-score across cell types"},
    )
    ax.tick_params(axis="x", labelsize=pl.MIN_FONT_PT)
    ax.set_xlabel(f"gene program ({means.shape[1]} most variable)")
    ax.set_ylabel("cell type")
    pl.fit_to_column(fig)
    return fig


def corpus_and_umap_figure(
    corpus: ad.AnnData | None, view: ad.AnnData, label_key: str, dataset_name: str
) -> plt.Figure:
    """Counts against detected genes per corpus cell (left) and a UMAP coloured by label (right).

    Parameters
    ----------
    corpus : anndata.AnnData or None
        The pretraining corpus with ``layers["counts"]``; None (a streamed corpus) leaves the left panel empty.
    view : anndata.AnnData
        The downstream dataset with ``obsm["X_umap"]`` (:func:`expression_umap`).
    label_key : str
        The ``obs`` column of the UMAP's colours.
    dataset_name : str
        The downstream dataset's name, in the UMAP's title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    fig, axes = pl.column_figure(2, 1, row_height=4.0)  # stacked: the book shows it at its own size
    top, bottom = axes[:, 0]
    if corpus is not None:
        library = np.asarray(corpus.layers["counts"].sum(1)).ravel()
        detected = np.asarray((corpus.layers["counts"] > 0).sum(1)).ravel()
        top.scatter(library, detected, s=6, alpha=0.6)
        top.set_xscale("log")
        top.set_xlabel("counts per cell")
        top.set_ylabel("detected genes per cell")
        top.set_title(f"Pretraining corpus ({corpus.n_obs} cells)")
    return umap_figure(view, {label_key: f"{dataset_name}: {label_key}"}, axes=[bottom])
