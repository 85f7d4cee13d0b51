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
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from scfm_lib import metrics
from scfm_lib.data import PAD_ID, CellTokens, log_normalize
from scfm_lib.layout import ResultsLayout


def labelled_ood_cells(data_dir, family: str, label_key: str, classes) -> tuple[CellTokens, np.ndarray, int] | None:
    """The out-of-distribution annotation task: the cells of ``<data_dir>/ood.h5ad`` whose type is
    one of ``classes`` (sorted, as :func:`scfm_lib.data.encode_labels` returns them), as
    ``(tokens, label codes, number of OOD cells)``. None where the profile has no labelled OOD set
    (no OOD tokens for ``family``, no ``ood.h5ad``, or no ``label_key`` column in it)."""
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
    """The tissue of each cell in ``obs.iloc[index]`` for annotation within a tissue
    (:func:`scfm_lib.metrics.macro_f1_within`); None where ``obs`` has no ``key`` column or these
    cells come from one tissue (then the task is the plain one)."""
    if key not in obs:
        return None
    groups = obs[key].astype(str).to_numpy()[index]
    return groups if len(np.unique(groups)) > 1 else None


def token_bag(tokens: CellTokens, n_tokens: int) -> np.ndarray:
    """The input a model sees, as a dense matrix [cells, vocabulary]: each cell's token values
    (log1p CP10k) at its context genes, 0 elsewhere. float32."""
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
    """What the context can hold: macro-F1 of a logistic regression (:func:`linear_probe`) on the genes
    the model sees (:func:`token_bag`) against the same on all genes (log-normalized), trained on
    cells ``train`` and scored on cells ``test``. Returns ``{"context", "all_genes", "share"}``
    (``share`` = context / all genes; the study asks for >= 0.95)."""
    full = log_normalize(adata).X
    full = full.toarray() if hasattr(full, "toarray") else np.asarray(full)
    bag = token_bag(tokens, n_tokens)
    all_genes = metrics.macro_f1(y_test, linear_probe(full[train], y_train, full[test], seed=seed))
    context = metrics.macro_f1(y_test, linear_probe(bag[train], y_train, bag[test], seed=seed))
    return {"context": float(context), "all_genes": float(all_genes), "share": float(context / all_genes)}


def classification_scores(y_true, y_pred) -> dict[str, float]:
    return {"accuracy": metrics.accuracy(y_true, y_pred), "macro_f1": metrics.macro_f1(y_true, y_pred)}


def linear_probe(Z_train: np.ndarray, y_train: np.ndarray, Z_test: np.ndarray, seed: int = 0) -> np.ndarray:
    """Standardize, then multinomial logistic regression (L2, C=1) on frozen embeddings.

    Fitted on one BLAS thread: lbfgs follows a slightly different path with another thread count,
    and a checkpoint's probe score then differed between a workflow job (Snakemake sets one thread)
    and the same notebook run by hand on two (seen on the quick profile: macro-F1 0.355 vs 0.351).
    """
    from threadpoolctl import threadpool_limits

    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    with threadpool_limits(limits=1):
        return model.fit(Z_train, y_train).predict(Z_test)


def knn_classify(Z_train: np.ndarray, y_train: np.ndarray, Z_test: np.ndarray, k: int = 15) -> np.ndarray:
    """Majority vote of the ``k`` nearest training cells, Euclidean after standardization."""
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(k, len(Z_train))))
    return model.fit(Z_train, y_train).predict(Z_test)


def leiden_clusters(Z: np.ndarray, resolution: float = 1.0, n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
    """Leiden clusters (scanpy, igraph flavour) of the kNN graph of an embedding."""
    import scanpy as sc

    view = ad.AnnData(np.zeros((len(Z), 1), dtype=np.float32))
    view.obsm["X_emb"] = np.asarray(Z, dtype=np.float32)
    sc.pp.neighbors(view, use_rep="X_emb", n_neighbors=n_neighbors, random_state=seed)
    sc.tl.leiden(view, resolution=resolution, random_state=seed, flavor="igraph", n_iterations=2, directed=False)
    return view.obs["leiden"].astype(int).to_numpy()


def cluster_scores(Z: np.ndarray, labels: np.ndarray, resolution: float = 1.0, seed: int = 0) -> dict:
    """ARI and NMI of Leiden clusters of ``Z`` against ``labels``, and the number of clusters."""
    clusters = leiden_clusters(Z, resolution=resolution, seed=seed)
    return {
        "ari": metrics.ari(labels, clusters),
        "nmi": metrics.nmi(labels, clusters),
        "n_clusters": int(len(np.unique(clusters))),
    }


def enable_jax_compilation_cache(path: str | Path | None = None) -> Path:
    """Keep JAX's compiled programs on disk, so the scIB metrics compile once per machine, not once
    per job: ``path``, else ``$SCFM_JAX_CACHE``, else ``jax/`` in :func:`scfm_lib.datasets.cache_dir`.

    A cached program gives the same numbers. JAX's compilation is the smaller cost it once seemed the
    larger: profiled on the tiny profile's call (7 embeddings, 182 cells), it took about 20 s of 335 s,
    beside about 170 s of pynndescent's numba compilation and 85 s of scib-metrics' ``gc.collect()``
    calls, which :func:`scib_scores` now avoids. Returns the cache folder.
    """
    import jax

    from scfm_lib.datasets import cache_dir

    folder = Path(path or os.environ.get("SCFM_JAX_CACHE") or cache_dir() / "jax")
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)  # skip only trivial programs
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def exact_neighbors(X: np.ndarray, n_neighbors: int):
    """The ``n_neighbors`` nearest cells of every cell of ``X`` (itself first), by exact Euclidean
    search, as scib-metrics' ``NeighborsResults``: the ``neighbor_computer`` :func:`scib_scores`
    gives scib-metrics' ``Benchmarker.prepare``.

    Parameters
    ----------
    X
        Embedding, shape [n_cells, n_dims].
    n_neighbors
        Neighbours per cell, the cell itself included (at most ``n_cells``).

    Returns
    -------
    scib_metrics.nearest_neighbors.NeighborsResults
        ``indices`` and ``distances``, each [n_cells, n_neighbors], nearest first.
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
    embeddings: dict[str, np.ndarray], labels, batches, pre_integrated: np.ndarray | None = None
) -> pd.DataFrame:
    """All scib-metrics metrics for several embeddings of the same cells, unscaled.

    Rows: embedding names; columns: the individual metrics plus ``Bio conservation``,
    ``Batch correction`` and ``Total``. ``batches=None`` (a dataset of one batch) computes the
    bio-conservation metrics alone: no ``Batch correction`` and no ``Total`` column. ``pre_integrated``
    is the unintegrated reference (the PCA of log-normalized counts) that the PCR-comparison metric
    compares against; without it the first embedding's PCA is used, with a warning. One call compiles
    JAX once (cached on disk by :func:`enable_jax_compilation_cache`), which is why it takes every
    embedding at once.

    Neighbours are exact (:func:`exact_neighbors`), not scib-metrics' pynndescent, both for the
    embeddings and inside kBET (its diffusion-map neighbours, which scib-metrics takes from
    ``scib_metrics.nearest_neighbors.pynndescent`` with no option to change it, so that name is
    replaced for the duration of the call): at the study's sizes (hundreds to a few thousand test
    cells) an exact search costs milliseconds, while pynndescent's numba code compiles for about a
    minute in every process and returns approximate neighbour sets (4 of the 24 real-profile
    embeddings differed from the exact ones at e90eb78).
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
    """Baseline: logistic regression on log-normalized highly variable genes (chosen on train)."""
    genes = _hvg_view(adata_train, n_top_genes)
    return linear_probe(_log_expression(adata_train, genes), y_train, _log_expression(adata_test, genes), seed=seed)


def pca_embedding(
    adata_fit: ad.AnnData, *adata_apply: ad.AnnData, n_comps: int = 50, n_top_genes: int = 1000
) -> list[np.ndarray]:
    """Baseline embedding: PCA of log-normalized HVGs, fitted on ``adata_fit`` only and applied to
    it and to each of ``adata_apply`` (so no evaluation cell informs the fit)."""
    genes = _hvg_view(adata_fit, n_top_genes)
    fit = _log_expression(adata_fit, genes)
    pca = PCA(n_components=min(n_comps, *fit.shape), random_state=0).fit(fit)
    return [pca.transform(fit).astype(np.float32)] + [
        pca.transform(_log_expression(a, genes)).astype(np.float32) for a in adata_apply
    ]
