"""Cell tokens, the model input: storage (in memory or memory-mapped), gene medians, tokenization."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scfm_lib.data.validation import ScfmDataError, _matrix, _validate_log1p_norm, validate_counts
from scfm_lib.data.vocab import PAD_ID, GeneVocab, check_vocab_overlap
from scfm_lib.io import atomic_path


@dataclass
class CellTokens:
    """The model input: per cell its top expressed genes and their log-normalized values.

    ``CellTokens.load(path, mmap=True)`` leaves the arrays on disk (memory-mapped) and
    :meth:`subset` of such tokens is a lazy view (``rows``): training then reads each batch from
    the file, so its memory does not grow with the corpus.
    """

    gene_ids: np.ndarray  # int64 [n_cells, context], PAD_ID where a cell has fewer expressed genes
    values: np.ndarray  # float32 [n_cells, context], log1p(count / total * 1e4); 0 at padding
    rows: np.ndarray | None = None  # a lazy subset: the cells are these rows of the arrays

    def __post_init__(self) -> None:
        if self.gene_ids.shape != self.values.shape or self.gene_ids.ndim != 2:
            raise ScfmDataError(
                f"gene_ids {self.gene_ids.shape} and values {self.values.shape} must be 2-D arrays of the same shape"
            )

    def __len__(self) -> int:
        return self.gene_ids.shape[0] if self.rows is None else len(self.rows)

    @property
    def context(self) -> int:
        """Context length: token positions per cell (``gene_ids.shape[1]``)."""
        return self.gene_ids.shape[1]

    def take(self, idx: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        """gene_ids and values (in memory) of cells ``idx`` (an index array or a slice).

        Parameters
        ----------
        idx : numpy.ndarray or slice
            Cells, as positions among this object's cells (int array, bool mask or slice).

        Returns
        -------
        gene_ids : numpy.ndarray
            int64, shape ``(n_selected, context)``, ``PAD_ID`` at padding.
        values : numpy.ndarray
            float32, shape ``(n_selected, context)``, 0 at padding.
        """
        rows = idx if self.rows is None else self.rows[idx]
        return np.asarray(self.gene_ids[rows]), np.asarray(self.values[rows])

    def chunks(self, size: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(gene_ids, values) blocks of at most ``size`` cells, in order.

        A pass over the cells that holds one block in memory.

        Parameters
        ----------
        size : int
            Cells per block.

        Yields
        ------
        gene_ids, values : numpy.ndarray
            One block, as :meth:`take` returns it.
        """
        for start in range(0, len(self), size):
            yield self.take(slice(start, start + size))

    def subset(self, idx: np.ndarray | slice) -> CellTokens:
        """The cells ``idx`` as new tokens: a lazy view of a memory-mapped file, in memory otherwise.

        Parameters
        ----------
        idx : numpy.ndarray or slice
            Cells, as positions among this object's cells.

        Returns
        -------
        CellTokens
            The selected cells (sharing the memory map, with ``rows`` set, when this one is mapped).
        """
        if isinstance(self.gene_ids, np.memmap):  # stay on disk: a view of the chosen rows
            rows = np.arange(len(self)) if self.rows is None else self.rows
            return CellTokens(self.gene_ids, self.values, rows=rows[idx])
        return CellTokens(*self.take(idx))

    def save(self, path: str | Path) -> None:
        """Write the cells to an uncompressed ``.npz`` (``gene_ids``, ``values``), atomically.

        Uncompressed, so :meth:`load` can memory-map it.

        Parameters
        ----------
        path : str or pathlib.Path
            The file.

        Returns
        -------
        None
        """
        gene_ids, values = self.take(slice(None))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, gene_ids=gene_ids, values=values)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> CellTokens:
        """Read tokens written by :meth:`save`, into memory or memory-mapped.

        Parameters
        ----------
        path : str or pathlib.Path
            The ``.npz`` file.
        mmap : bool
            Leave the arrays on disk (read-only memory maps).

        Returns
        -------
        CellTokens
            The cells.

        Raises
        ------
        FileNotFoundError
            When ``path`` does not exist.
        ScfmDataError
            When the file is corrupt or truncated (the message says to rerun the data job).
        """
        try:
            if mmap:
                return cls(_npz_memmap(path, "gene_ids"), _npz_memmap(path, "values"))
            with np.load(path) as npz:
                return cls(npz["gene_ids"], npz["values"])
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # truncated or not tokens
            raise ScfmDataError(
                f"{path} cannot be read as cell tokens ({type(err).__name__}: {err}); it is corrupt or "
                "truncated: delete it and rerun the data job, which writes it again"
            ) from err


def _npz_memmap(path: str | Path, name: str) -> np.memmap:
    """A read-only memory map of array ``name`` inside an uncompressed ``.npz`` (what
    :meth:`CellTokens.save` writes: each member is a plain ``.npy`` stored at an offset)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ScfmDataError(f"{path}: {name} is compressed and cannot be memory-mapped; save it with np.savez")
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)  # zip local file header
            start = (
                info.header_offset
                + 30
                + int.from_bytes(local[26:28], "little")
                + int.from_bytes(local[28:30], "little")
            )
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran else "C")


def gene_medians(adata: ad.AnnData, vocab: GeneVocab, layer: str = "counts") -> np.ndarray:
    """Per vocabulary token, the median over cells of the gene's nonzero CP10k-normalized expression.

    Geneformer's normalization factor; 1.0 for special tokens and genes never seen.

    Parameters
    ----------
    adata : anndata.AnnData
        The corpus, shape ``(n_cells, n_genes)``.
    vocab : GeneVocab
        The vocabulary the medians are indexed by.
    layer : str
        ``"counts"``, or ``"log1p_norm"`` for a dataset shipped with log-normalized values only.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(len(vocab),)``, > 0.
    """
    matrix = sp.csc_matrix(_matrix(adata, layer), dtype=np.float64)  # [n_cells, G]
    if layer == "log1p_norm":
        matrix.data = np.expm1(matrix.data)
    total = np.asarray(matrix.sum(1)).ravel()  # [n_cells]
    medians = np.ones(len(vocab), dtype=np.float64)
    for column, token in enumerate(vocab.encode(adata.var_names)):
        lo, hi = matrix.indptr[column], matrix.indptr[column + 1]
        if token >= 0 and hi > lo:
            rows = matrix.indices[lo:hi]
            medians[token] = np.median(matrix.data[lo:hi] / np.maximum(total[rows], 1.0) * 1e4)
    return medians


def tokenize(
    adata: ad.AnnData,
    vocab: GeneVocab,
    context_genes: int,
    layer: str = "counts",
    min_overlap: float = 0.5,
    chunk_size: int = 4096,
    medians: np.ndarray | None = None,
) -> CellTokens:
    """Each cell's top-``context_genes`` expressed vocabulary genes by count, with normalized values.

    Genes are ranked descending, ties by gene order, with ``log1p(count / total * 1e4)`` values; the
    total counts all genes of the cell.

    With ``medians`` (:func:`gene_medians` of the corpus, per token) the genes are ranked instead
    by expression divided by the gene's corpus median: Geneformer's rank-value encoding, which
    lifts genes that are high *for that gene* (transcription factors) above ubiquitous ones.

    ``layer="log1p_norm"`` takes a dataset that ships only log-normalized values (see
    :mod:`scfm_lib.readers`): the ranking is the same (log1p is monotone and the normalization
    is per cell), and the values are used as given, so their normalization target is the
    dataset's, which the data chapter reports.

    Parameters
    ----------
    adata : anndata.AnnData
        The cells, shape ``(n_cells, n_genes)``.
    vocab : GeneVocab
        The gene vocabulary.
    context_genes : int
        Tokens per cell (>= 1); cells with fewer expressed genes are padded.
    layer : str
        ``"counts"`` (raw counts) or ``"log1p_norm"``.
    min_overlap : float
        The smallest share of the data's detected genes that must be in the vocabulary.
    chunk_size : int
        Cells densified at a time.
    medians : numpy.ndarray, optional
        Per-token gene medians, shape ``(len(vocab),)``, for the rank-value encoding.

    Returns
    -------
    CellTokens
        ``gene_ids`` int64 and ``values`` float32, shape ``(n_cells, context_genes)``.

    Raises
    ------
    ScfmDataError
        When ``context_genes < 1``, the layer fails validation, or the vocabulary overlap is below
        ``min_overlap``.
    """
    if context_genes < 1:
        raise ScfmDataError(f"context_genes must be >= 1, got {context_genes}")
    is_counts = layer != "log1p_norm"
    if is_counts:
        validate_counts(adata, layer=layer)
    else:
        _validate_log1p_norm(adata, layer)
    check_vocab_overlap(adata, vocab, min_overlap, layer=layer)
    ids = vocab.encode(adata.var_names)
    known = np.flatnonzero(ids >= 0)
    matrix = _matrix(adata, layer)
    gene_ids = np.full((adata.n_obs, context_genes), PAD_ID, dtype=np.int64)
    values = np.zeros((adata.n_obs, context_genes), dtype=np.float32)
    for start in range(0, adata.n_obs, chunk_size):
        block = matrix[start : start + chunk_size]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        block = block.astype(np.float32)  # [n, G]
        total = block.sum(1, keepdims=True)
        counts = block[:, known]  # [n, G_known]
        key = counts
        if medians is not None:  # expression relative to the gene's corpus median (same per-cell total)
            key = (counts if is_counts else np.expm1(counts)) / medians[ids[known]].astype(np.float32)
        # Stable sort on -key keeps gene order among ties.
        order = np.argsort(-key, axis=1, kind="stable")[:, :context_genes]
        top = np.take_along_axis(counts, order, axis=1)  # [n, context]
        present = top > 0
        rows = slice(start, start + len(block))
        k = order.shape[1]
        gene_ids[rows, :k] = np.where(present, ids[known][order], PAD_ID)
        norm = np.log1p(top / np.maximum(total, 1.0) * 1e4) if is_counts else top
        values[rows, :k] = np.where(present, norm, 0.0)
    return CellTokens(gene_ids, values)
