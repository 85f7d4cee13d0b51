"""One reader per file format (h5ad, 10x, HDF5 count matrices, count tables), each into the study's layout.

:func:`read` dispatches by the registry's reader name (:data:`READERS`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scfm_lib.data import ScfmDataError, validate
from scfm_lib.readers.standard import _standard_obs, standardize


# ------------------------------------------------------------------------------ formats
def read_h5ad(
    path: str | Path,
    dataset: str,
    counts: str | None = "layers/counts",
    obs_map: Mapping[str, str] | None = None,
    no_counts_reason: str = "",
    keep_layers: Sequence[str] = (),
) -> ad.AnnData:
    """An ``.h5ad`` file; ``counts`` says where its raw counts are.

    ``counts`` is ``"X"``, ``"raw.X"`` or ``"layers/<name>"``. ``None`` declares a file without
    counts: its ``raw.X`` (or ``X``) is kept as log-normalized values in ``layers["log1p_norm"]``
    and ``no_counts_reason`` is recorded, so any step that needs counts refuses it.
    ``keep_layers`` names further count layers of the file to keep (e.g. ``("spliced", "unspliced")``).

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.h5ad`` file.
    dataset : str
        The dataset's name.
    counts : str or None
        Where the raw counts are: ``"X"``, ``"raw.X"``, ``"layers/<name>"``, or None (no counts).
    obs_map : mapping of str to str, optional
        A standard column -> the file's column.
    no_counts_reason : str
        Why the file holds no counts (with ``counts=None``).
    keep_layers : sequence of str
        Further count layers to keep.

    Returns
    -------
    anndata.AnnData
        As :func:`read_anndata`.

    Raises
    ------
    ScfmDataError
        As :func:`read_anndata`.
    """
    with warnings.catch_warnings():  # old files keep graphs in uns; anndata moves them and says so
        warnings.filterwarnings("ignore", message="Moving element from .uns", category=FutureWarning)
        source = ad.read_h5ad(path)
    return read_anndata(source, dataset, counts, obs_map, no_counts_reason, keep_layers, path)


def read_anndata(
    source: ad.AnnData,
    dataset: str,
    counts: str | None = "layers/counts",
    obs_map: Mapping[str, str] | None = None,
    no_counts_reason: str = "",
    keep_layers: Sequence[str] = (),
    path: str | Path = "",
) -> ad.AnnData:
    """An in-memory AnnData into the study's layout, with the options of :func:`read_h5ad`.

    Used for a dataset rebuilt in memory (from the files of a package, :mod:`scfm_lib.dataset_wheels`),
    so that it comes out exactly as the ``.h5ad`` it reproduces would.

    Parameters
    ----------
    source : anndata.AnnData
        The AnnData as the ``.h5ad`` file would hold it.
    dataset, counts, obs_map, no_counts_reason, keep_layers
        As for :func:`read_h5ad`.
    path : str or pathlib.Path
        Recorded in ``uns["scfm"]["file"]`` and error messages only.

    Returns
    -------
    anndata.AnnData
        Counts in ``layers["counts"]`` and ``X`` (or ``log1p_norm`` with ``counts=None``), standard obs.

    Raises
    ------
    ScfmDataError
        When a named layer or ``.raw`` is missing, ``counts`` is not a known location, the values
        without counts are scaled, or the data fails validation.
    """
    missing = [name for name in keep_layers if name not in source.layers]
    if missing:
        raise ScfmDataError(
            f"{path or dataset}: layer(s) {missing} not found (layers: {list(source.layers)}); "
            "fix keep_layers in the dataset's registry entry"
        )
    extra = {name: source.layers[name] for name in keep_layers}  # before raw.X replaces source
    if counts is None:
        values = source.raw.X if source.raw is not None else source.X
        var = source.raw.var if source.raw is not None else source.var
        values = sp.csr_matrix(values, dtype=np.float32)
        if values.nnz and (values.data < 0).any():
            raise ScfmDataError(f"{path}: the values are scaled (negative entries), not log-normalized")
        out = ad.AnnData(
            X=values,
            obs=_standard_obs(source.obs, dataset, obs_map),
            var=var.copy(),
            layers={"log1p_norm": values.copy()},
        )
        out.uns["scfm"] = {
            "dataset": dataset,
            "reader": "h5ad",
            "file": Path(path).name,
            "values": "log1p_norm",
            "no_counts_reason": no_counts_reason or f"{Path(path).name} holds no raw counts",
        }
        validate(out)  # NaN/Inf, duplicated names, empty cells
        return out
    if counts == "X":
        matrix = source.X
    elif counts == "raw.X":
        if source.raw is None:
            raise ScfmDataError(f"{path}: counts='raw.X' but the file has no .raw; use counts='X' or a layer")
        matrix, source = source.raw.X, source.raw.to_adata()
    elif counts.startswith("layers/"):
        name = counts.split("/", 1)[1]
        if name not in source.layers:
            raise ScfmDataError(
                f"{path}: layer {name!r} not found (layers: {list(source.layers)}); "
                "set counts to 'X', 'raw.X' or an existing layer"
            )
        matrix = source.layers[name]
    else:
        raise ScfmDataError(f"counts={counts!r}: use 'X', 'raw.X', 'layers/<name>' or None")
    return standardize(source, dataset, matrix, obs_map, "h5ad", path, extra)


def read_10x(path: str | Path, dataset: str, var_names: str = "gene_symbols") -> ad.AnnData:
    """Cell Ranger output: a ``filtered_feature_bc_matrix/`` folder (mtx) or an ``.h5`` file.

    Parameters
    ----------
    path : str or pathlib.Path
        The matrix folder or the ``.h5`` file.
    dataset : str
        The dataset's name.
    var_names : str
        ``"gene_symbols"`` or ``"gene_ids"`` (Ensembl IDs) as gene names.

    Returns
    -------
    anndata.AnnData
        The study's layout (:func:`standardize`).

    Raises
    ------
    ScfmDataError
        When ``path`` is neither a folder nor an ``.h5`` file, or the counts fail validation.
    """
    import scanpy as sc

    path = Path(path)
    if path.is_dir():
        source = sc.read_10x_mtx(path, var_names=var_names, make_unique=True)
        reader = "10x_mtx"
    elif path.suffix == ".h5":
        source = sc.read_10x_h5(path)
        if var_names == "gene_ids":
            source.var_names = source.var["gene_ids"].astype(str)
        source.var_names_make_unique()
        reader = "10x_h5"
    else:
        raise ScfmDataError(
            f"{path}: a 10x dataset is a matrix folder (matrix.mtx[.gz], features.tsv[.gz], "
            "barcodes.tsv[.gz]) or a Cell Ranger .h5 file"
        )
    return standardize(source, dataset, source.X, None, reader, path)


def _h5_matrix(node) -> sp.csr_matrix:
    """A dense dataset, or a group holding CSR/CSC arrays (``data``, ``indices``, ``indptr``, ``shape``)."""
    import h5py

    if isinstance(node, h5py.Dataset):
        return sp.csr_matrix(node[()])
    shape = tuple(int(s) for s in (node["shape"][()] if "shape" in node else node.attrs["shape"]))
    arrays = (node["data"][()], node["indices"][()], node["indptr"][()])
    encoding = node.attrs.get("encoding-type", node.attrs.get("h5sparse_format", "csr"))
    encoding = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
    build = sp.csc_matrix if encoding.startswith("csc") else sp.csr_matrix
    return build(arrays, shape=shape).tocsr()


def _h5_strings(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel()]


def read_hdf5_counts(
    path: str | Path,
    dataset: str,
    matrix_key: str = "X",
    label_key: str | None = "Y",
    genes_key: str | None = None,
    cells_key: str | None = None,
    genes_x_cells: bool = False,
) -> ad.AnnData:
    """The HDF5 layout of deep-clustering benchmarks (scDeepCluster, scziDesk, ...).

    A cells x genes count matrix under ``matrix_key`` (dense, or a CSR/CSC group), a label vector
    under ``label_key`` (stored as ``obs["cell_type"]``) and optional gene and cell names.
    ``genes_x_cells`` transposes a matrix stored the other way round.

    Parameters
    ----------
    path : str or pathlib.Path
        The HDF5 file.
    dataset : str
        The dataset's name.
    matrix_key : str
        The count matrix's key.
    label_key : str or None
        The labels' key; None for none.
    genes_key, cells_key : str or None
        The gene and cell names' keys; None numbers them (``gene_0``, ``cell_0``, ...).
    genes_x_cells : bool
        The matrix is stored genes x cells.

    Returns
    -------
    anndata.AnnData
        The study's layout (:func:`standardize`).

    Raises
    ------
    ScfmDataError
        When a key is missing, or the names and labels do not fit the matrix's shape.
    """
    import h5py

    with h5py.File(path, "r") as fh:
        missing = [k for k in (matrix_key, label_key, genes_key, cells_key) if k and k not in fh]
        if missing:
            raise ScfmDataError(
                f"{path}: key(s) {missing} not found; the file holds {sorted(fh.keys())}. "
                "Set matrix_key/label_key/genes_key/cells_key in the registry entry."
            )
        matrix = _h5_matrix(fh[matrix_key])
        if genes_x_cells:
            matrix = matrix.T.tocsr()
        n_cells, n_genes = matrix.shape
        labels = _h5_strings(fh[label_key][()]) if label_key else None
        genes = _h5_strings(fh[genes_key][()]) if genes_key else [f"gene_{i}" for i in range(n_genes)]
        cells = _h5_strings(fh[cells_key][()]) if cells_key else [f"cell_{i}" for i in range(n_cells)]
    if len(genes) != n_genes or len(cells) != n_cells or (labels is not None and len(labels) != n_cells):
        raise ScfmDataError(
            f"{path}: matrix is {n_cells} x {n_genes} but there are {len(cells)} cell names, "
            f"{len(genes)} gene names and {len(labels) if labels else 0} labels; "
            "if the matrix is genes x cells set genes_x_cells=True"
        )
    obs = pd.DataFrame(index=pd.Index(cells))
    if labels is not None:
        obs["cell_type"] = pd.Categorical(labels)
    source = ad.AnnData(X=matrix, obs=obs, var=pd.DataFrame(index=pd.Index(genes)))
    return standardize(source, dataset, matrix, None, "hdf5_counts", path)


def read_count_table(
    path: str | Path,
    dataset: str,
    genes_x_cells: bool = False,
    sep: str | None = None,
    obs: pd.DataFrame | None = None,
    obs_map: Mapping[str, str] | None = None,
) -> ad.AnnData:
    """A CSV/TSV count table (``.csv``, ``.tsv``, ``.txt``, optionally gzipped).

    Names are in the first row and column; cells are rows unless ``genes_x_cells``. ``obs``, if
    given, is a per-cell table (indexed by cell name) to join, e.g. a separate label file.

    Parameters
    ----------
    path : str or pathlib.Path
        The table.
    dataset : str
        The dataset's name.
    genes_x_cells : bool
        Cells are columns.
    sep : str, optional
        The separator; default tab for ``.tsv``/``.txt``, comma otherwise.
    obs : pandas.DataFrame, optional
        Per-cell annotations indexed by cell name (every cell must have a row).
    obs_map : mapping of str to str, optional
        A standard column -> a column of ``obs``.

    Returns
    -------
    anndata.AnnData
        The study's layout (:func:`standardize`).

    Raises
    ------
    ScfmDataError
        When the table holds non-numeric columns, or a cell has no row in ``obs``.
    """
    path = Path(path)
    if sep is None:
        sep = "\t" if any(s in path.suffixes for s in (".tsv", ".txt")) else ","
    table = pd.read_csv(path, sep=sep, index_col=0)
    if genes_x_cells:
        table = table.T
    non_numeric = [c for c, kind in table.dtypes.items() if kind.kind not in "biuf"][:5]
    if non_numeric:
        raise ScfmDataError(
            f"{path}: non-numeric column(s) {non_numeric} in the count table; keep only counts "
            "(labels go in a separate obs table)"
        )
    cell_obs = pd.DataFrame(index=table.index.astype(str))
    if obs is not None:
        missing = cell_obs.index.difference(obs.index.astype(str))
        if len(missing):
            raise ScfmDataError(f"{path}: {len(missing)} cells have no row in the obs table, e.g. {list(missing[:3])}")
        cell_obs = obs.set_axis(obs.index.astype(str)).loc[cell_obs.index]
    source = ad.AnnData(
        X=sp.csr_matrix(table.to_numpy(dtype=np.float64)),
        obs=cell_obs,
        var=pd.DataFrame(index=table.columns.astype(str)),
    )
    return standardize(source, dataset, source.X, obs_map, "count_table", path)


READERS = {"h5ad": read_h5ad, "10x": read_10x, "hdf5_counts": read_hdf5_counts, "count_table": read_count_table}


def read(path: str | Path, reader: str, dataset: str, **kwargs: Any) -> ad.AnnData:
    """Dispatch to a reader by name (``h5ad``, ``10x``, ``hdf5_counts``, ``count_table``).

    Parameters
    ----------
    path : str or pathlib.Path
        The file or folder.
    reader : str
        A key of :data:`READERS`.
    dataset : str
        The dataset's name.
    **kwargs
        The reader's options (a registry entry's ``reader_kwargs``).

    Returns
    -------
    anndata.AnnData
        The study's layout.

    Raises
    ------
    ScfmDataError
        When the reader is unknown or ``path`` does not exist (and as the reader raises).
    """
    if reader not in READERS:
        raise ScfmDataError(f"unknown reader {reader!r}; readers: {sorted(READERS)}")
    if not Path(path).exists():
        raise ScfmDataError(f"{path} does not exist; check the path (or the dataset's registry entry)")
    return READERS[reader](path, dataset, **kwargs)
