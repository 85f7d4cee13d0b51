"""Zero-shot structure of an embedding: Leiden clusters of its kNN graph scored against the true types.

scanpy builds the graph with umap-learn's numba kernels; :func:`enable_umap_compilation_cache` keeps
them compiled on disk so each process does not compile them again.
"""

from __future__ import annotations

import anndata as ad
import numpy as np

from scfm_lib import metrics


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
