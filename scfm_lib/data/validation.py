"""Validation of the values a dataset holds, and log-normalization.

Raw integer counts live in ``adata.layers["counts"]`` (scanpy/scvi-tools convention); a dataset
shipped without them holds log-normalized values in ``adata.layers["log1p_norm"]``. Every check
raises :class:`ScfmDataError` with a message that names the problem and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    import pandas as pd


class ScfmDataError(ValueError):
    """The input data cannot be used as given; the message says why and what to do."""


def _matrix(adata: ad.AnnData, layer: str):
    reason = adata.uns.get("scfm", {}).get("no_counts_reason") if layer == "counts" else None
    if reason:
        raise ScfmDataError(
            f"this dataset holds no raw counts ({reason}); it cannot be used where counts are "
            "required (pretraining corpus, count-based QC): pick a dataset with raw counts, or "
            "tokenize its log-normalized values with tokenize(..., layer='log1p_norm')"
        )
    if layer not in adata.layers:
        hint = (
            'if adata.X holds raw counts, set adata.layers["counts"] = adata.X.copy()'
            if layer == "counts"
            else f'store the matrix in adata.layers["{layer}"]'
        )
        raise ScfmDataError(f"layer {layer!r} not found (layers present: {list(adata.layers)}); {hint}")
    return adata.layers[layer]


def _values(matrix) -> np.ndarray:
    """The stored values of a dense or sparse matrix, without densifying a sparse one."""
    if sp.issparse(matrix):
        return np.asarray(matrix.data)
    return np.asarray(matrix).ravel()


def validate_counts(
    adata: ad.AnnData, layer: str = "counts", required_obs: Sequence[str] = (), label_key: str | None = None
) -> None:
    """Check that ``adata.layers[layer]`` holds raw counts and that ``obs`` has the needed columns.

    Empty cells (no count at all) are an error, not dropped: dropping would change the cells
    the splits and content hashes are computed on behind the user's back; the message gives the
    one-line filter. Empty genes (never detected) are accepted: count tables list every annotated
    gene, they never become tokens (:func:`tokenize` keeps expressed genes only), the vocabulary
    leaves them out (``min_cells``) and :func:`check_vocab_overlap` counts detected genes only.

    Parameters
    ----------
    adata : anndata.AnnData
        The dataset, shape ``(n_cells, n_genes)``.
    layer : str
        The layer that must hold raw integer counts.
    required_obs : sequence of str
        ``obs`` columns that must exist.
    label_key : str, optional
        An ``obs`` column that must hold usable labels (see :func:`check_labels`).

    Returns
    -------
    None

    Raises
    ------
    ScfmDataError
        For: a missing layer, an empty matrix, NaN/Inf, negative values, non-integer values
        (normalized, log or scaled data), duplicated gene or cell names, empty cells, missing ``obs``
        columns and, with ``label_key``, an unusable label column (see :func:`check_labels`).
    """
    _check_not_empty(adata)
    matrix = _matrix(adata, layer)
    values = _values(matrix)
    if values.dtype.kind not in "biuf":
        raise ScfmDataError(f"layer {layer!r} has dtype {values.dtype}; counts must be numeric")
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            n_bad = int((~np.isfinite(values)).sum())
            raise ScfmDataError(
                f"layer {layer!r} holds {n_bad} NaN or infinite values; counts are finite "
                "integers: drop or re-count the affected cells"
            )
    if (values < 0).any():
        raise ScfmDataError(
            f"layer {layer!r} holds negative values (min {values.min():g}); counts are >= 0: "
            "pass raw UMI/read counts, not scaled or centred data"
        )
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        example = values[values != np.round(values)][:3]
        raise ScfmDataError(
            f"layer {layer!r} holds non-integer values (e.g. {example.tolist()}): it looks "
            "normalized, log-transformed or scaled; pass raw integer counts (adata.raw or the "
            "original count matrix)"
        )
    _check_names_and_cells(adata, matrix, layer)
    _check_obs(adata, required_obs, label_key)


def _check_not_empty(adata: ad.AnnData) -> None:
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ScfmDataError(
            f"the AnnData is empty ({adata.n_obs} cells x {adata.n_vars} genes); check the filtering that produced it"
        )


def _check_names_and_cells(adata: ad.AnnData, matrix, layer: str) -> None:
    """Unique gene and cell names, and no cell without a single nonzero value."""
    if adata.var_names.has_duplicates:
        dups = adata.var_names[adata.var_names.duplicated()].unique()[:5].tolist()
        raise ScfmDataError(
            f"duplicated gene names, e.g. {dups}; call adata.var_names_make_unique() or sum the duplicated genes"
        )
    if adata.obs_names.has_duplicates:
        dups = adata.obs_names[adata.obs_names.duplicated()].unique()[:5].tolist()
        raise ScfmDataError(
            f"duplicated cell names, e.g. {dups}; call adata.obs_names_make_unique() (or "
            "anndata.concat(..., index_unique='-') when stacking datasets)"
        )
    empty = np.flatnonzero(np.asarray((matrix != 0).sum(1)).ravel() == 0)
    if len(empty):
        raise ScfmDataError(
            f"{len(empty)} of {adata.n_obs} cells are empty (no nonzero value in layer {layer!r}), "
            f"e.g. {adata.obs_names[empty[:3]].tolist()}: they carry no signal; drop them first, e.g. "
            f"adata = adata[np.asarray((adata.layers[{layer!r}] != 0).sum(1)).ravel() > 0].copy()"
        )


def check_labels(adata_or_obs: ad.AnnData | pd.DataFrame, label_key: str) -> list[str]:
    """The classes of ``obs[label_key]``, sorted.

    An error when the column is missing, holds missing labels (NaN) or fewer than two classes: no
    classifier can be trained on it.

    Parameters
    ----------
    adata_or_obs : anndata.AnnData or pandas.DataFrame
        The dataset, or its ``obs`` table.
    label_key : str
        The column holding the cell labels.

    Returns
    -------
    list of str
        The distinct labels (as strings), sorted; at least two.

    Raises
    ------
    ScfmDataError
        When the column is missing, holds NaN, or holds a single class.
    """
    obs = adata_or_obs.obs if hasattr(adata_or_obs, "obs") else adata_or_obs
    if label_key not in obs.columns:
        raise ScfmDataError(
            f"label column {label_key!r} not found (obs has {list(obs.columns)}); point the "
            "profile's data.label_key at the column that holds the cell labels"
        )
    labels = obs[label_key]
    if labels.isna().any():
        raise ScfmDataError(
            f"{int(labels.isna().sum())} of {len(labels)} cells have no label (NaN) in obs[{label_key!r}]; "
            f"drop them (adata = adata[adata.obs[{label_key!r}].notna()].copy()) or give them a label"
        )
    classes = sorted(set(labels.astype(str)))
    if len(classes) < 2:
        raise ScfmDataError(
            f"obs[{label_key!r}] holds a single class ({classes}); annotation needs >= 2 classes: "
            "point data.label_key at a column with several cell types"
        )
    return classes


def _check_obs(adata: ad.AnnData, required_obs: Sequence[str], label_key: str | None = None) -> None:
    missing = [c for c in required_obs if c not in adata.obs.columns]
    if missing:
        raise ScfmDataError(
            f"obs column(s) {missing} not found (obs has {list(adata.obs.columns)}); add them "
            "or point the profile at the right column (e.g. data.label_key)"
        )
    if label_key is not None:
        check_labels(adata, label_key)


def validate(adata: ad.AnnData, required_obs: Sequence[str] = (), label_key: str | None = None) -> str:
    """Validate whichever values the dataset holds: raw counts or log-normalized values.

    Raw counts live in ``layers["counts"]``; a dataset shipped without them holds log-normalized
    values in ``layers["log1p_norm"]``, checked the same way (see :func:`validate_counts`).

    Parameters
    ----------
    adata : anndata.AnnData
        The dataset, shape ``(n_cells, n_genes)``.
    required_obs, label_key
        As :func:`validate_counts`.

    Returns
    -------
    str
        The layer validated, ``"counts"`` or ``"log1p_norm"``, for :func:`tokenize`.

    Raises
    ------
    ScfmDataError
        As :func:`validate_counts`; for ``log1p_norm``, also negative or non-finite values.
    """
    if "counts" in adata.layers or "log1p_norm" not in adata.layers:
        validate_counts(adata, "counts", required_obs, label_key)
        return "counts"
    _validate_log1p_norm(adata, "log1p_norm")
    _check_obs(adata, required_obs, label_key)
    return "log1p_norm"


def log_normalize(adata: ad.AnnData, layer: str = "counts", target_sum: float = 1e4) -> ad.AnnData:
    """A copy whose ``X`` is ``log1p(counts / total * target_sum)``; counts stay in ``layers``.

    A dataset that ships only log-normalized values (``layers["log1p_norm"]``, no counts; see
    :mod:`scfm_lib.readers`) gets those values as they are: its own normalization target applies.

    Parameters
    ----------
    adata : anndata.AnnData
        The dataset (in memory or backed), shape ``(n_cells, n_genes)``.
    layer : str
        The layer holding the counts.
    target_sum : float
        Counts per cell after normalization (1e4: CP10k).

    Returns
    -------
    anndata.AnnData
        An in-memory copy with float32 log-normalized ``X`` of shape ``(n_cells, n_genes)``.

    Raises
    ------
    ScfmDataError
        When the layer is missing (or the dataset holds no raw counts).
    """
    import scanpy as sc

    out = adata.to_memory() if adata.isbacked else adata.copy()
    if layer == "counts" and "counts" not in out.layers and "log1p_norm" in out.layers:
        out.X = out.layers["log1p_norm"].astype(np.float32)
        return out
    out.X = _matrix(out, layer).astype(np.float32)
    sc.pp.normalize_total(out, target_sum=target_sum)
    sc.pp.log1p(out)
    return out


def _validate_log1p_norm(adata: ad.AnnData, layer: str) -> None:
    _check_not_empty(adata)
    matrix = _matrix(adata, layer)
    values = _values(matrix)
    if not np.isfinite(values).all() or (values < 0).any():
        raise ScfmDataError(
            f"layer {layer!r} must hold finite log1p-normalized values >= 0 (found NaN/Inf or "
            "negative values: scaled data is not log-normalized); store log1p(CP10k) values, "
            "e.g. adata.raw.X of a scanpy object, not the output of sc.pp.scale"
        )
    _check_names_and_cells(adata, matrix, layer)
