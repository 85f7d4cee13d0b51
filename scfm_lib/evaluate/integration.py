"""The scIB integration metrics (scib-metrics, in JAX) of several embeddings at once.

:func:`scib_scores` runs scib-metrics' ``Benchmarker`` with an exact neighbour search
(:func:`exact_neighbors`) and a seeded eigensolver (:func:`seeded_eigsh`);
:func:`enable_jax_compilation_cache` keeps JAX's compiled programs on disk.
"""

from __future__ import annotations

import contextlib
import gc
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import anndata as ad
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.decomposition import PCA

if TYPE_CHECKING:  # scib-metrics imports JAX: only where the scIB metrics run
    from scib_metrics.nearest_neighbors import NeighborsResults


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


#: The seed of ARPACK's starting vector inside scib-metrics' diffusion maps (:func:`seeded_eigsh`).
EIGSH_SEED = 0


@contextlib.contextmanager
def seeded_eigsh(seed: int = EIGSH_SEED) -> Iterator[None]:
    """Within the block, ``scipy.sparse.linalg.eigsh`` starts ARPACK from a seeded random vector.

    kBET's diffusion maps (``scib_metrics.utils.diffusion_nn``) call ``eigsh`` with no starting vector,
    and SciPy (1.17 here) then draws one from the operating system's entropy: the same embedding got kBET
    0.966 and 0.977 in two runs of the quick profile (bc6c7e8, 8a79f74). Each call gets a fresh
    generator with ``seed``, so a result does not depend on the calls before it. A caller that passes
    ``v0`` or ``rng`` itself is left alone.

    Parameters
    ----------
    seed : int
        Seed of the generator each ``eigsh`` call starts from.

    Yields
    ------
    None
        ``scipy.sparse.linalg.eigsh`` is the seeded one until the block ends, then the original again.
    """
    import scipy.sparse.linalg

    eigsh = scipy.sparse.linalg.eigsh

    def eigsh_from_seed(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("v0") is None and kwargs.get("rng") is None:
            kwargs["rng"] = np.random.default_rng(seed)
        return eigsh(*args, **kwargs)

    with mock.patch.object(scipy.sparse.linalg, "eigsh", eigsh_from_seed):
        yield


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
    embeddings differed from the exact ones at e90eb78). ARPACK's starting vector in those diffusion
    maps is seeded (:func:`seeded_eigsh`), so the same embeddings give the same scores.

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
            seeded_eigsh(),
        ):
            warnings.simplefilter("ignore", UserWarning)  # scib-metrics warns when PCR comparison is clipped at 0
            bench.prepare(neighbor_computer=exact_neighbors)
            bench.benchmark()
    finally:
        gc.unfreeze()
    table = bench.get_results(min_max_scale=False)
    return table.drop(index="Metric Type").astype(float).loc[names]
