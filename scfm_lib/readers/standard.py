"""The study's AnnData layout every reader returns: counts in ``layers["counts"]``, standard ``obs``.

:func:`standardize` puts a source matrix and its ``obs`` into the layout (see :mod:`scfm_lib.readers`);
:func:`concat` joins datasets that are in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike

from scfm_lib.data import ScfmDataError, validate_counts

#: The ``obs`` columns the study knows by name; a reader fills those its source provides.
STANDARD_OBS = ("cell_type", "batch", "donor", "tissue", "dataset")


def round_near_integers(matrix: ArrayLike | sp.spmatrix, tol: float = 1e-6) -> sp.csr_matrix:
    """Round values that are integers up to float error (``0.999999999999999``); CSR in, CSR out.

    Count tables written through floating point (CSV exports) carry such values. A value further
    than ``tol`` from an integer is left alone, so normalized data still fails validation.

    Parameters
    ----------
    matrix : array_like or scipy.sparse matrix
        Counts, shape ``(n_cells, n_genes)``.
    tol : float
        The largest distance to an integer that is rounded.

    Returns
    -------
    scipy.sparse.csr_matrix
        float64, the same shape, explicit zeros removed.
    """
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    rounded = np.round(matrix.data)
    close = np.abs(matrix.data - rounded) <= tol
    matrix.data = np.where(close, rounded, matrix.data)
    matrix.eliminate_zeros()
    return matrix


def _standard_obs(obs: pd.DataFrame, dataset: str, obs_map: Mapping[str, str] | None) -> pd.DataFrame:
    """A copy of ``obs`` with the standard columns ``obs_map`` names filled in, and ``dataset``."""
    obs = obs.copy()
    for standard, source in (obs_map or {}).items():
        if standard not in STANDARD_OBS:
            raise ScfmDataError(f"obs_map key {standard!r} is not a standard column {STANDARD_OBS}")
        if source not in obs.columns:
            raise ScfmDataError(
                f"dataset {dataset!r}: obs column {source!r} (for {standard!r}) not found; "
                f"the file has {list(obs.columns)}. Fix obs_map in the dataset's registry entry."
            )
        values = obs[source]
        # str() of a missing label would be the class "nan": keep it missing (unlabelled cells)
        obs[standard] = pd.Categorical(values.astype(str).where(values.notna()))
    obs["dataset"] = pd.Categorical([dataset] * len(obs))
    return obs


def standardize(
    adata: ad.AnnData,
    dataset: str,
    counts: ArrayLike | sp.spmatrix,
    obs_map: Mapping[str, str] | None = None,
    reader: str = "",
    path: str | Path = "",
    extra_layers: Mapping[str, object] | None = None,
) -> ad.AnnData:
    """The common layout: counts as CSR in ``layers["counts"]`` and ``X``, standard obs columns.

    Parameters
    ----------
    adata : anndata.AnnData
        The source, whose ``obs``, ``var`` and names are kept.
    dataset : str
        The dataset's name, stored in ``obs["dataset"]`` and ``uns["scfm"]``.
    counts : array_like or scipy.sparse matrix
        The raw counts, shape ``(n_cells, n_genes)``.
    obs_map : mapping of str to str, optional
        A standard column (``"cell_type"``) -> the source's column (``"bulk_labels"``).
    reader : str
        The reader's name, recorded in ``uns["scfm"]``.
    path : str or pathlib.Path
        The source file, recorded in ``uns["scfm"]``.
    extra_layers : mapping of str to matrix, optional
        Further count matrices kept next to ``counts`` (e.g. ``unspliced``).

    Returns
    -------
    anndata.AnnData
        Counts (float32 CSR) in ``layers["counts"]`` and ``X``, standard obs columns, ``uns["scfm"]``.

    Raises
    ------
    ScfmDataError
        When a mapped column is absent or the counts are not counts.
    """
    obs = _standard_obs(adata.obs, dataset, obs_map)
    counts = round_near_integers(counts).astype(np.float32)
    layers = {"counts": counts.copy()}
    layers.update({name: round_near_integers(m).astype(np.float32) for name, m in (extra_layers or {}).items()})
    out = ad.AnnData(X=counts, obs=obs, var=adata.var.copy(), layers=layers)
    out.obs_names = [str(n) for n in adata.obs_names]
    out.var_names = [str(n) for n in adata.var_names]
    out.uns["scfm"] = {"dataset": dataset, "reader": reader, "file": Path(path).name, "values": "counts"}
    validate_counts(out)
    return out


def concat(datasets: Sequence[ad.AnnData], genes: Sequence[str] | None = None) -> ad.AnnData:
    """Stack datasets over a shared gene list (the given ``genes``, else the union).

    A gene a dataset lacks counts 0 there. Only count datasets can be stacked.

    Parameters
    ----------
    datasets : sequence of anndata.AnnData
        Datasets with raw counts.
    genes : sequence of str, optional
        The genes of the result; default the union, in order of appearance.

    Returns
    -------
    anndata.AnnData
        Counts in ``X`` and ``layers["counts"]``, shape ``(sum of cells, n_genes)``; the standard
        obs columns; cell names made unique with a ``-<i>`` suffix.

    Raises
    ------
    ScfmDataError
        When a dataset fails :func:`scfm_lib.data.validate_counts`.
    """
    for a in datasets:
        validate_counts(a)
    genes = list(genes) if genes is not None else list(dict.fromkeys(g for a in datasets for g in a.var_names))
    parts = []
    for a in datasets:
        columns = pd.Index(a.var_names).get_indexer(genes)  # -1: absent in a
        have = columns >= 0
        block = sp.csr_matrix((a.n_obs, len(genes)), dtype=np.float32).tolil()
        block[:, np.flatnonzero(have)] = sp.csr_matrix(a.layers["counts"])[:, columns[have]]
        obs = a.obs[[c for c in STANDARD_OBS if c in a.obs.columns]].copy()
        parts.append(ad.AnnData(X=block.tocsr(), obs=obs, var=pd.DataFrame(index=pd.Index(genes))))
    out = ad.concat(parts, join="outer", merge="first", index_unique="-")
    out.layers["counts"] = out.X.copy()
    return out
