"""Evaluations on embeddings and baselines without pretraining (arrays in, labels or scores out).

- frozen: :func:`linear_probe`, :func:`knn_classify` on cell embeddings;
- zero-shot: :func:`cluster_scores` (Leiden vs true labels), :func:`scib_scores` (scib-metrics);
- baselines: :func:`hvg_logreg` and :func:`pca_embedding` from raw counts;
- the annotation tasks' cells: :func:`labelled_ood_cells`, :func:`tissue_groups`.
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from scfm_lib import metrics
from scfm_lib.data import PAD_ID, CellTokens, log_normalize
from scfm_lib.layout import ResultsLayout

if TYPE_CHECKING:  # scib-metrics imports JAX: only where the scIB metrics run
    from scib_metrics.nearest_neighbors import NeighborsResults


def labelled_ood_cells(
    data_dir: str | Path, family: str, label_key: str, classes: Sequence[str]
) -> tuple[CellTokens, np.ndarray, int] | None:
    """The out-of-distribution annotation task: the cells of ``<data_dir>/ood.h5ad`` of known types.

    The cells kept are those whose type is one of ``classes`` (sorted, as
    :func:`scfm_lib.data.encode_labels` returns them). None where the profile has no labelled OOD set
    (no OOD tokens for ``family``, no ``ood.h5ad``, or no ``label_key`` column in it).

    Parameters
    ----------
    data_dir : str or pathlib.Path
        The profile's data folder (``ood.h5ad``, ``tokens/<family>/ood.npz``).
    family : str
        The model family whose tokens are read.
    label_key : str
        The ``obs`` column of the cell types.
    classes : sequence of str
        The training classes, sorted.

    Returns
    -------
    tuple of (CellTokens, numpy.ndarray, int) or None
        The tokens of the OOD cells of known types, their label codes (indices into ``classes``)
        and the number of OOD cells (all types); None without a labelled OOD set.
    """
    layout = ResultsLayout.of_data_dir(data_dir)
    tokens_path, obs_path = layout.tokens(family, "ood"), layout.dataset("ood")
    if not (tokens_path.exists() and obs_path.exists()):
        return None
    obs = ad.read_h5ad(obs_path, backed="r").obs
    if label_key not in obs:
        return None
    labels = obs[label_key].astype(str).to_numpy()
    seen = np.isin(labels, classes)
    codes = np.searchsorted(np.asarray(classes), labels[seen])
    return CellTokens.load(tokens_path).subset(np.flatnonzero(seen)), codes, len(labels)


def tissue_groups(obs: pd.DataFrame, index: np.ndarray, key: str = "tissue") -> np.ndarray | None:
    """The tissue of each cell in ``obs.iloc[index]``, for annotation within a tissue.

    Scored by :func:`scfm_lib.metrics.macro_f1_within`; None where ``obs`` has no ``key`` column or
    these cells come from one tissue (then the task is the plain one).

    Parameters
    ----------
    obs : pandas.DataFrame
        The cells' annotations.
    index : numpy.ndarray
        Positions of the evaluated cells in ``obs``, shape ``(n_cells,)``.
    key : str
        The tissue column.

    Returns
    -------
    numpy.ndarray or None
        str, shape ``(n_cells,)``; None without a column or with a single tissue.
    """
    if key not in obs:
        return None
    groups = obs[key].astype(str).to_numpy()[index]
    return groups if len(np.unique(groups)) > 1 else None


def token_bag(tokens: CellTokens, n_tokens: int) -> np.ndarray:
    """The input a model sees, as a dense matrix: each cell's token values at its context genes.

    The values are log1p CP10k, 0 elsewhere.

    Parameters
    ----------
    tokens : CellTokens
        The cells, ``n_cells`` of them.
    n_tokens : int
        Columns of the matrix (the vocabulary size, special tokens included).

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_cells, n_tokens)``.
    """
    gene_ids, values = tokens.take(slice(None))
    bag = np.zeros((len(gene_ids), n_tokens), dtype=np.float32)
    rows = np.repeat(np.arange(len(gene_ids)), gene_ids.shape[1])
    keep = gene_ids.ravel() != PAD_ID
    bag[rows[keep], gene_ids.ravel()[keep]] = values.ravel()[keep]
    return bag


def context_ceiling(
    adata: ad.AnnData,
    tokens: CellTokens,
    n_tokens: int,
    train: np.ndarray,
    test: np.ndarray,
    y_train: np.ndarray,
    y_test: np.ndarray,
    seed: int = 0,
) -> dict[str, float]:
    """What the context can hold: macro-F1 on the genes the model sees against the same on all genes.

    A logistic regression (:func:`linear_probe`) on the genes the model sees (:func:`token_bag`)
    against the same on all genes (log-normalized), trained on cells ``train`` and scored on cells
    ``test``.

    Parameters
    ----------
    adata : anndata.AnnData
        The cells with raw counts, shape ``(n_cells, n_genes)``.
    tokens : CellTokens
        The same cells' tokens.
    n_tokens : int
        The vocabulary size (:func:`token_bag`).
    train, test : numpy.ndarray
        Positions of the training and test cells.
    y_train, y_test : numpy.ndarray
        Their labels.
    seed : int
        Seed of the logistic regressions.

    Returns
    -------
    dict of str to float
        ``context`` and ``all_genes`` (macro-F1, in [0, 1]) and ``share`` = context / all genes
        (the study asks for >= 0.95).
    """
    full = log_normalize(adata).X
    full = full.toarray() if hasattr(full, "toarray") else np.asarray(full)
    bag = token_bag(tokens, n_tokens)
    all_genes = metrics.macro_f1(y_test, linear_probe(full[train], y_train, full[test], seed=seed))
    context = metrics.macro_f1(y_test, linear_probe(bag[train], y_train, bag[test], seed=seed))
    return {"context": float(context), "all_genes": float(all_genes), "share": float(context / all_genes)}


def classification_scores(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """Accuracy and macro-F1 of predicted labels.

    Parameters
    ----------
    y_true, y_pred : array_like
        True and predicted labels, shape ``(n_cells,)``.

    Returns
    -------
    dict of str to float
        ``accuracy`` and ``macro_f1``, each in [0, 1].
    """
    return {"accuracy": metrics.accuracy(y_true, y_pred), "macro_f1": metrics.macro_f1(y_true, y_pred)}


def linear_probe(Z_train: np.ndarray, y_train: np.ndarray, Z_test: np.ndarray, seed: int = 0) -> np.ndarray:
    """Standardize, then multinomial logistic regression (L2, C=1) on frozen embeddings.

    Fitted on one BLAS thread: lbfgs follows a slightly different path with another thread count,
    and a checkpoint's probe score then differed between a workflow job (Snakemake sets one thread)
    and the same notebook run by hand on two (seen on the quick profile: macro-F1 0.355 vs 0.351).

    Parameters
    ----------
    Z_train : numpy.ndarray
        Training embeddings, shape ``(n_train, d)``.
    y_train : numpy.ndarray
        Training labels, shape ``(n_train,)``.
    Z_test : numpy.ndarray
        Test embeddings, shape ``(n_test, d)``.
    seed : int
        The regression's random state.

    Returns
    -------
    numpy.ndarray
        Predicted labels, shape ``(n_test,)``, of ``y_train``'s dtype.
    """
    from threadpoolctl import threadpool_limits

    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    with threadpool_limits(limits=1):
        return model.fit(Z_train, y_train).predict(Z_test)


def knn_classify(Z_train: np.ndarray, y_train: np.ndarray, Z_test: np.ndarray, k: int = 15) -> np.ndarray:
    """Majority vote of the ``k`` nearest training cells, Euclidean after standardization.

    Parameters
    ----------
    Z_train, y_train, Z_test
        As :func:`linear_probe`.
    k : int
        Neighbours (at most ``n_train`` are used).

    Returns
    -------
    numpy.ndarray
        Predicted labels, shape ``(n_test,)``.
    """
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(k, len(Z_train))))
    return model.fit(Z_train, y_train).predict(Z_test)


def leiden_clusters(Z: np.ndarray, resolution: float = 1.0, n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
    """Leiden clusters (scanpy, igraph flavour) of the kNN graph of an embedding.

    Parameters
    ----------
    Z : numpy.ndarray
        Embedding, shape ``(n_cells, d)``.
    resolution : float
        Leiden's resolution (higher: more clusters).
    n_neighbors : int
        Neighbours of the kNN graph.
    seed : int
        Seed of the neighbours and of Leiden.

    Returns
    -------
    numpy.ndarray
        int cluster ids, shape ``(n_cells,)``.
    """
    import scanpy as sc

    enable_umap_compilation_cache()
    view = ad.AnnData(np.zeros((len(Z), 1), dtype=np.float32))
    view.obsm["X_emb"] = np.asarray(Z, dtype=np.float32)
    sc.pp.neighbors(view, use_rep="X_emb", n_neighbors=n_neighbors, random_state=seed)
    sc.tl.leiden(view, resolution=resolution, random_state=seed, flavor="igraph", n_iterations=2, directed=False)
    return view.obs["leiden"].astype(int).to_numpy()


def cluster_scores(Z: np.ndarray, labels: np.ndarray, resolution: float = 1.0, seed: int = 0) -> dict:
    """ARI and NMI of Leiden clusters of ``Z`` against ``labels``, and the number of clusters.

    Parameters
    ----------
    Z : numpy.ndarray
        Embedding, shape ``(n_cells, d)``.
    labels : numpy.ndarray
        True labels, shape ``(n_cells,)``.
    resolution : float
        Leiden's resolution.
    seed : int
        Seed of the clustering.

    Returns
    -------
    dict
        ``ari`` in [-0.5, 1], ``nmi`` in [0, 1], ``n_clusters`` (int).
    """
    clusters = leiden_clusters(Z, resolution=resolution, seed=seed)
    return {
        "ari": metrics.ari(labels, clusters),
        "nmi": metrics.nmi(labels, clusters),
        "n_clusters": int(len(np.unique(clusters))),
    }


def enable_jax_compilation_cache(path: str | Path | None = None) -> Path:
    """Keep JAX's compiled programs on disk, so the scIB metrics compile once per machine, not per job.

    The folder is ``path``, else ``$SCFM_JAX_CACHE``, else ``jax/`` in
    :func:`scfm_lib.datasets.cache_dir`.

    A cached program gives the same numbers. JAX's compilation is the smaller cost it once seemed the
    larger: profiled on the tiny profile's call (7 embeddings, 182 cells), it took about 20 s of 335 s,
    beside about 170 s of pynndescent's numba compilation and 85 s of scib-metrics' ``gc.collect()``
    calls, which :func:`scib_scores` now avoids.

    Parameters
    ----------
    path : str or pathlib.Path, optional
        The cache folder (created if missing).

    Returns
    -------
    pathlib.Path
        The cache folder.
    """
    import jax

    from scfm_lib.datasets import cache_dir

    folder = Path(path or os.environ.get("SCFM_JAX_CACHE") or cache_dir() / "jax")
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)  # skip only trivial programs
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


_UMAP_CACHE_ENABLED = False  # set once per process by enable_umap_compilation_cache


def enable_umap_compilation_cache() -> int:
    """Keep umap-learn's numba kernels compiled on disk, so scanpy's neighbours and UMAP compile once per machine.

    ``scanpy.pp.neighbors`` builds its graph with umap-learn's ``fuzzy_simplicial_set`` and
    ``scanpy.tl.umap`` lays it out with umap-learn's ``optimize_layout_euclidean``: numba kernels that
    umap-learn declares without ``cache=True``, so every process compiled them again (about 10 s of
    every evaluation job and chapter that clusters or draws a UMAP, on 2 cores). This turns on numba's
    own on-disk cache for them, as ``cache=True`` would: the cache sits where numba puts it (beside
    umap-learn's sources, or ``$NUMBA_CACHE_DIR``), is keyed on the CPU and the argument types, and
    holds the same machine code, so the numbers are the same. Call it before the first neighbours
    graph of a process; calling it again does nothing.

    Returns
    -------
    int
        How many kernels this call turned the cache on for (0 after the first call).
    """
    global _UMAP_CACHE_ENABLED
    if _UMAP_CACHE_ENABLED:
        return 0
    import umap.layouts
    import umap.spectral
    import umap.umap_
    import umap.utils
    from numba.core.registry import CPUDispatcher

    kernels = [
        kernel
        for module in (umap.umap_, umap.layouts, umap.spectral, umap.utils)
        for kernel in vars(module).values()
        if isinstance(kernel, CPUDispatcher)
    ]
    for kernel in kernels:
        kernel.enable_caching()  # numba's public switch, what the decorator's cache=True calls
    _UMAP_CACHE_ENABLED = True
    return len(kernels)


def exact_neighbors(X: np.ndarray, n_neighbors: int) -> NeighborsResults:
    """The ``n_neighbors`` nearest cells of every cell of ``X`` (itself first), by exact Euclidean search.

    Returned as scib-metrics' ``NeighborsResults``: the ``neighbor_computer`` :func:`scib_scores`
    gives scib-metrics' ``Benchmarker.prepare``.

    Parameters
    ----------
    X : numpy.ndarray
        Embedding, shape ``(n_cells, n_dims)``.
    n_neighbors : int
        Neighbours per cell, the cell itself included (at most ``n_cells``).

    Returns
    -------
    scib_metrics.nearest_neighbors.NeighborsResults
        ``indices`` and ``distances``, each ``(n_cells, n_neighbors)``, nearest first.
    """
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    X = np.asarray(X, dtype=np.float32)
    distances, indices = NearestNeighbors(n_neighbors=n_neighbors, algorithm="brute").fit(X).kneighbors(X)
    return NeighborsResults(indices=indices, distances=distances.astype(np.float32))


def _exact_neighbors_as_pynndescent(X: np.ndarray, n_neighbors: int, random_state: int = 0, n_jobs: int = 1):
    """:func:`exact_neighbors` with ``scib_metrics.nearest_neighbors.pynndescent``'s signature (an exact
    search needs no random state and runs in one thread)."""
    return exact_neighbors(X, n_neighbors)


def scib_scores(
    embeddings: dict[str, np.ndarray],
    labels: ArrayLike,
    batches: ArrayLike | None,
    pre_integrated: np.ndarray | None = None,
) -> pd.DataFrame:
    """All scib-metrics metrics for several embeddings of the same cells, unscaled.

    ``batches=None`` (a dataset of one batch) computes the bio-conservation metrics alone: no
    ``Batch correction`` and no ``Total`` column. ``pre_integrated`` is the unintegrated reference
    (the PCA of log-normalized counts) that the PCR-comparison metric compares against; without it
    the first embedding's PCA is used, with a warning. One call compiles JAX once (cached on disk by
    :func:`enable_jax_compilation_cache`), which is why it takes every embedding at once.

    Neighbours are exact (:func:`exact_neighbors`), not scib-metrics' pynndescent, both for the
    embeddings and inside kBET (its diffusion-map neighbours, which scib-metrics takes from
    ``scib_metrics.nearest_neighbors.pynndescent`` with no option to change it, so that name is
    replaced for the duration of the call): at the study's sizes (hundreds to a few thousand test
    cells) an exact search costs milliseconds, while pynndescent's numba code compiles for about a
    minute in every process and returns approximate neighbour sets (4 of the 24 real-profile
    embeddings differed from the exact ones at e90eb78).

    Parameters
    ----------
    embeddings : dict of str to numpy.ndarray
        Name -> embedding of the same ``n_cells`` cells, shape ``(n_cells, d)``.
    labels : array_like
        Cell types, shape ``(n_cells,)``.
    batches : array_like or None
        Batches (>= 2 distinct), shape ``(n_cells,)``; None for the bio-conservation metrics alone.
    pre_integrated : numpy.ndarray, optional
        The unintegrated reference embedding, shape ``(n_cells, d_pre)``.

    Returns
    -------
    pandas.DataFrame
        Rows: embedding names; columns: the individual metrics plus ``Bio conservation``,
        ``Batch correction`` and ``Total`` (each in [0, 1], unscaled).

    Raises
    ------
    ValueError
        When ``batches`` holds a single batch, or an embedding's cells differ from the labels'.
    """
    from unittest import mock

    import scib_metrics.nearest_neighbors
    from scib_metrics.benchmark import Benchmarker

    enable_jax_compilation_cache()

    from scib_metrics.benchmark import BatchCorrection

    names = list(embeddings)
    n = len(np.asarray(labels))
    if batches is not None and len(np.unique(np.asarray(batches).astype(str))) < 2:
        raise ValueError(
            "scib_scores needs cells from >= 2 batches: batch-correction metrics compare "
            "batches; evaluate on a split that holds several donors or batches, or pass "
            "batches=None for the bio-conservation metrics alone"
        )
    batch_metrics = BatchCorrection() if batches is not None else None
    batches = np.zeros(n, dtype=int) if batches is None else batches
    obs = pd.DataFrame(
        {
            "label": pd.Categorical(np.asarray(labels).astype(str)),
            "batch": pd.Categorical(np.asarray(batches).astype(str)),
        },
        index=[str(i) for i in range(n)],
    )
    adata = ad.AnnData(np.zeros((n, 1), dtype=np.float32), obs=obs)
    for name in names:
        if len(embeddings[name]) != n:
            raise ValueError(f"embedding {name!r} has {len(embeddings[name])} cells, labels have {n}")
        adata.obsm[name] = np.asarray(embeddings[name], dtype=np.float32)
    if pre_integrated is None:
        warnings.warn(
            "scib_scores: no pre_integrated embedding given; using the PCA of the first embedding", stacklevel=2
        )
        pre_integrated = PCA(n_components=min(30, adata.obsm[names[0]].shape[1])).fit_transform(adata.obsm[names[0]])
    adata.obsm["X_pre"] = np.asarray(pre_integrated, dtype=np.float32)
    bench = Benchmarker(
        adata,
        batch_key="batch",
        label_key="label",
        embedding_obsm_keys=names,
        pre_integrated_embedding_obsm_key="X_pre",
        batch_correction_metrics=batch_metrics,
        progress_bar=False,
        n_jobs=1,
    )
    # scib-metrics calls gc.collect() before each metric of each embedding; with torch, JAX and scanpy
    # loaded each full collection walks the whole heap (about a second each). Objects that exist
    # before the benchmark are frozen out of those walks, and released to the collector afterwards.
    gc.freeze()
    try:
        with (
            warnings.catch_warnings(),
            mock.patch.object(scib_metrics.nearest_neighbors, "pynndescent", _exact_neighbors_as_pynndescent),
        ):
            warnings.simplefilter("ignore", UserWarning)  # scib-metrics warns when PCR comparison is clipped at 0
            bench.prepare(neighbor_computer=exact_neighbors)
            bench.benchmark()
    finally:
        gc.unfreeze()
    table = bench.get_results(min_max_scale=False)
    return table.drop(index="Metric Type").astype(float).loc[names]


def _hvg_view(adata_fit: ad.AnnData, n_top_genes: int) -> list[str]:
    import scanpy as sc

    view = log_normalize(adata_fit)
    sc.pp.highly_variable_genes(view, n_top_genes=min(n_top_genes, view.n_vars), flavor="seurat")
    return list(view.var_names[view.var["highly_variable"]])


def _log_expression(adata: ad.AnnData, genes: list[str]) -> np.ndarray:
    x = log_normalize(adata)[:, genes].X
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


def hvg_logreg(
    adata_train: ad.AnnData, y_train: np.ndarray, adata_test: ad.AnnData, n_top_genes: int = 1000, seed: int = 0
) -> np.ndarray:
    """Baseline: logistic regression on log-normalized highly variable genes (chosen on train).

    Parameters
    ----------
    adata_train : anndata.AnnData
        Training cells with raw counts.
    y_train : numpy.ndarray
        Their labels, shape ``(n_train,)``.
    adata_test : anndata.AnnData
        Test cells with raw counts, the same genes.
    n_top_genes : int
        Highly variable genes kept.
    seed : int
        The regression's random state.

    Returns
    -------
    numpy.ndarray
        Predicted labels of the test cells, shape ``(n_test,)``.
    """
    genes = _hvg_view(adata_train, n_top_genes)
    return linear_probe(_log_expression(adata_train, genes), y_train, _log_expression(adata_test, genes), seed=seed)


def pca_embedding(
    adata_fit: ad.AnnData, *adata_apply: ad.AnnData, n_comps: int = 50, n_top_genes: int = 1000
) -> list[np.ndarray]:
    """Baseline embedding: PCA of log-normalized HVGs, fitted on ``adata_fit`` only.

    It is applied to ``adata_fit`` and to each of ``adata_apply`` (so no evaluation cell informs the
    fit).

    Parameters
    ----------
    adata_fit : anndata.AnnData
        Cells with raw counts the HVGs and the PCA are fitted on.
    *adata_apply : anndata.AnnData
        Further cells (the same genes) projected on the fitted components.
    n_comps : int
        Components (at most the fitted matrix's smaller side).
    n_top_genes : int
        Highly variable genes kept.

    Returns
    -------
    list of numpy.ndarray
        float32, shape ``(n_cells_i, n_comps)``: ``adata_fit``'s embedding, then each of
        ``adata_apply``'s.
    """
    genes = _hvg_view(adata_fit, n_top_genes)
    fit = _log_expression(adata_fit, genes)
    pca = PCA(n_components=min(n_comps, *fit.shape), random_state=0).fit(fit)
    return [pca.transform(fit).astype(np.float32)] + [
        pca.transform(_log_expression(a, genes)).astype(np.float32) for a in adata_apply
    ]
