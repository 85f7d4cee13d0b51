"""The data layer: validation, gene vocabulary, tokens, nested corpus reductions and splits.

Raw integer counts live in ``adata.layers["counts"]`` (scanpy/scvi-tools convention). Every
check raises :class:`ScfmDataError` with a message that names the problem and the fix.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scfm_lib.io import atomic_path, atomic_write

PAD_ID, CLS_ID, MASK_ID = 0, 1, 2
SPECIAL_TOKENS = ("<pad>", "<cls>", "<mask>")


class ScfmDataError(ValueError):
    """The input data cannot be used as given; the message says why and what to do."""


# ------------------------------------------------------------------------------ validation
def _matrix(adata: ad.AnnData, layer: str):
    reason = adata.uns.get("scfm", {}).get("no_counts_reason") if layer == "counts" else None
    if reason:
        raise ScfmDataError(f"this dataset holds no raw counts ({reason}); it cannot be used where counts are "
                            "required (pretraining corpus, count-based QC): pick a dataset with raw counts, or "
                            "tokenize its log-normalized values with tokenize(..., layer='log1p_norm')")
    if layer not in adata.layers:
        hint = ('if adata.X holds raw counts, set adata.layers["counts"] = adata.X.copy()'
                if layer == "counts" else f'store the matrix in adata.layers["{layer}"]')
        raise ScfmDataError(f"layer {layer!r} not found (layers present: {list(adata.layers)}); {hint}")
    return adata.layers[layer]


def _values(matrix) -> np.ndarray:
    """The stored values of a dense or sparse matrix, without densifying a sparse one."""
    if sp.issparse(matrix):
        return np.asarray(matrix.data)
    return np.asarray(matrix).ravel()


def validate_counts(adata: ad.AnnData, layer: str = "counts", required_obs: Sequence[str] = (),
                    label_key: str | None = None) -> None:
    """Check that ``adata.layers[layer]`` holds raw counts and that ``obs`` has the needed columns.

    Raises :class:`ScfmDataError` for: a missing layer, an empty matrix, NaN/Inf, negative
    values, non-integer values (normalized, log or scaled data), duplicated gene or cell names,
    empty cells, missing ``obs`` columns and, with ``label_key``, an unusable label column (see
    :func:`check_labels`).

    Empty cells (no count at all) are an error, not dropped: dropping would change the cells
    the splits and content hashes are computed on behind the user's back; the message gives the
    one-line filter. Empty genes (never detected) are accepted: count tables list every annotated
    gene, they never become tokens (:func:`tokenize` keeps expressed genes only), the vocabulary
    leaves them out (``min_cells``) and :func:`check_vocab_overlap` counts detected genes only.
    """
    _check_not_empty(adata)
    matrix = _matrix(adata, layer)
    values = _values(matrix)
    if values.dtype.kind not in "biuf":
        raise ScfmDataError(f"layer {layer!r} has dtype {values.dtype}; counts must be numeric")
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            n_bad = int((~np.isfinite(values)).sum())
            raise ScfmDataError(f"layer {layer!r} holds {n_bad} NaN or infinite values; counts are finite "
                                "integers: drop or re-count the affected cells")
    if (values < 0).any():
        raise ScfmDataError(f"layer {layer!r} holds negative values (min {values.min():g}); counts are >= 0: "
                            "pass raw UMI/read counts, not scaled or centred data")
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        example = values[values != np.round(values)][:3]
        raise ScfmDataError(f"layer {layer!r} holds non-integer values (e.g. {example.tolist()}): it looks "
                            "normalized, log-transformed or scaled; pass raw integer counts (adata.raw or the "
                            "original count matrix)")
    _check_names_and_cells(adata, matrix, layer)
    _check_obs(adata, required_obs, label_key)


def _check_not_empty(adata: ad.AnnData) -> None:
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ScfmDataError(f"the AnnData is empty ({adata.n_obs} cells x {adata.n_vars} genes); "
                            "check the filtering that produced it")


def _check_names_and_cells(adata: ad.AnnData, matrix, layer: str) -> None:
    """Unique gene and cell names, and no cell without a single nonzero value."""
    if adata.var_names.has_duplicates:
        dups = adata.var_names[adata.var_names.duplicated()].unique()[:5].tolist()
        raise ScfmDataError(f"duplicated gene names, e.g. {dups}; call adata.var_names_make_unique() or "
                            "sum the duplicated genes")
    if adata.obs_names.has_duplicates:
        dups = adata.obs_names[adata.obs_names.duplicated()].unique()[:5].tolist()
        raise ScfmDataError(f"duplicated cell names, e.g. {dups}; call adata.obs_names_make_unique() (or "
                            "anndata.concat(..., index_unique='-') when stacking datasets)")
    empty = np.flatnonzero(np.asarray((matrix != 0).sum(1)).ravel() == 0)
    if len(empty):
        raise ScfmDataError(f"{len(empty)} of {adata.n_obs} cells are empty (no nonzero value in layer {layer!r}), "
                            f"e.g. {adata.obs_names[empty[:3]].tolist()}: they carry no signal; drop them first, e.g. "
                            f"adata = adata[np.asarray((adata.layers[{layer!r}] != 0).sum(1)).ravel() > 0].copy()")


def check_labels(adata_or_obs, label_key: str) -> list[str]:
    """The classes of ``obs[label_key]``, sorted; an error when the column is missing, holds
    missing labels (NaN) or fewer than two classes: no classifier can be trained on it."""
    obs = adata_or_obs.obs if hasattr(adata_or_obs, "obs") else adata_or_obs
    if label_key not in obs.columns:
        raise ScfmDataError(f"label column {label_key!r} not found (obs has {list(obs.columns)}); point the "
                            "profile's data.label_key at the column that holds the cell labels")
    labels = obs[label_key]
    if labels.isna().any():
        raise ScfmDataError(f"{int(labels.isna().sum())} of {len(labels)} cells have no label (NaN) in obs[{label_key!r}]; "
                            f"drop them (adata = adata[adata.obs[{label_key!r}].notna()].copy()) or give them a label")
    classes = sorted(set(labels.astype(str)))
    if len(classes) < 2:
        raise ScfmDataError(f"obs[{label_key!r}] holds a single class ({classes}); annotation needs >= 2 classes: "
                            "point data.label_key at a column with several cell types")
    return classes


def _check_obs(adata: ad.AnnData, required_obs: Sequence[str], label_key: str | None = None) -> None:
    missing = [c for c in required_obs if c not in adata.obs.columns]
    if missing:
        raise ScfmDataError(f"obs column(s) {missing} not found (obs has {list(adata.obs.columns)}); add them "
                            "or point the profile at the right column (e.g. data.label_key)")
    if label_key is not None:
        check_labels(adata, label_key)


def validate(adata: ad.AnnData, required_obs: Sequence[str] = (), label_key: str | None = None) -> str:
    """Validate whichever values the dataset holds: raw counts (``layers["counts"]``) or, for a
    dataset shipped without them, log-normalized values (``layers["log1p_norm"]``), with the same
    checks (see :func:`validate_counts`). Returns the layer name, for :func:`tokenize`."""
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


# ------------------------------------------------------------------------------ vocabulary
class GeneVocab:
    """Gene name <-> token id; ids 0-2 are the special tokens, genes start at 3.

    ``medians`` (float [len(vocab)], per token; see :func:`gene_medians`) are the corpus medians
    the geneformer family's rank-value encoding divides by; they travel with the vocabulary so a
    checkpoint folder tokenizes new data exactly as its training data was tokenized.
    """

    def __init__(self, genes: Sequence[str], medians: Sequence[float] | None = None):
        genes = [str(g) for g in genes]
        if len(set(genes)) != len(genes):
            raise ScfmDataError("the vocabulary has duplicated genes; make gene names unique first")
        self.genes = genes
        self._index = {g: i + len(SPECIAL_TOKENS) for i, g in enumerate(genes)}
        self.medians = None if medians is None else np.asarray(medians, dtype=np.float64)
        if self.medians is not None and (self.medians.shape != (len(self),) or not (self.medians > 0).all()):
            raise ScfmDataError(f"medians must be {len(self)} positive numbers (one per token), got shape "
                                f"{self.medians.shape}")

    def __len__(self) -> int:
        return len(SPECIAL_TOKENS) + len(self.genes)

    def encode(self, names: Sequence[str]) -> np.ndarray:
        """Token ids of ``names`` (int64), -1 for genes outside the vocabulary."""
        return np.array([self._index.get(str(n), -1) for n in names], dtype=np.int64)

    def overlap(self, names: Sequence[str]) -> float:
        """Share of ``names`` found in the vocabulary, in [0, 1]."""
        return float((self.encode(names) >= 0).mean()) if len(names) else 0.0

    def save(self, path: str | Path) -> None:
        medians = None if self.medians is None else self.medians.tolist()
        with atomic_write(path) as fh:
            json.dump({"special_tokens": list(SPECIAL_TOKENS), "genes": self.genes, "medians": medians}, fh)

    @classmethod
    def load(cls, path: str | Path) -> "GeneVocab":
        with open(path) as fh:
            stored = json.load(fh)
        return cls(stored["genes"], stored.get("medians"))


def check_vocab_overlap(adata: ad.AnnData, vocab: GeneVocab, min_overlap: float = 0.5,
                        layer: str | None = None) -> float:
    """The share of the data's genes in the vocabulary; below ``min_overlap`` is an error.

    With ``layer``, only genes detected in at least one cell count: a count table listing every
    annotated gene (most never expressed) is not penalized for genes that carry no signal.
    """
    names = list(adata.var_names)
    if layer is not None:
        detected = np.asarray((_matrix(adata, layer) != 0).sum(0)).ravel() > 0
        names = [n for n, d in zip(names, detected) if d] or names
    share = vocab.overlap(names)
    if share < min_overlap:
        found = int(round(share * len(names)))
        missing = [n for n, i in zip(names, vocab.encode(names)) if i < 0][:5]
        data_ensembl = any(str(n).startswith("ENS") for n in names[:50])
        if data_ensembl and not any(g.startswith("ENS") for g in vocab.genes[:50]):
            hint = ("The data has Ensembl IDs, the vocabulary gene symbols: map them first with "
                    "scfm_lib.genes.harmonize_genes(adata, id_map=scfm_lib.datasets.load_mapping('gencode_v44_id2name')).")
        elif not data_ensembl and any(g.startswith("ENS") for g in vocab.genes[:50]):
            hint = ("The data has gene symbols, the vocabulary Ensembl IDs: map them first with "
                    "scfm_lib.genes.map_genes(adata, scfm_lib.genes.read_mapping(<symbol,Ensembl ID csv>)).")
        elif vocab.overlap(_case_matched(names, vocab)) >= min_overlap:
            hint = ("The names match the vocabulary when case is ignored (e.g. 'Cd3e' for 'CD3E': mouse-style or "
                    "lower-case symbols): map them to the vocabulary's case or, for mouse data, to human orthologs with "
                    "scfm_lib.genes.harmonize_genes(adata, orthologs=<mouse -> human symbol dict>), e.g. the inverse of "
                    "scfm_lib.datasets.load_mapping('ensembl105_human2mouse').")
        elif vocab.overlap([strip_ensembl_version(n) for n in names]) >= min_overlap:
            hint = ("The names match the vocabulary once their version suffix is dropped (e.g. 'ENSG00000010610.10'): "
                    "strip it with scfm_lib.genes.map_genes, which removes Ensembl versions, or rename var_names.")
        else:
            hint = ("Check that the data is of the species and gene annotation the model was pretrained on "
                    "(scfm_lib.genes.harmonize_genes maps IDs and orthologs), or use a model whose vocabulary covers it.")
        raise ScfmDataError(f"only {share:.1%} of the data's detected genes ({found} of {len(names)}) are in the model's "
                            f"vocabulary (need {min_overlap:.0%}); missing e.g. {missing}. {hint}")
    return share


def _case_matched(names: Sequence[str], vocab: GeneVocab) -> list[str]:
    """``names`` spelled as the vocabulary spells them where they differ only in case."""
    upper = {g.upper(): g for g in vocab.genes}
    return [upper.get(str(n).upper(), n) for n in names]


def strip_ensembl_version(name: str) -> str:
    """``ENSG00000010610.10`` -> ``ENSG00000010610``; any other name unchanged."""
    return re.sub(r"^(ENS[A-Z]*G\d+)\.\d+$", r"\1", str(name))


# ------------------------------------------------------------------------------ tokens
@dataclass
class CellTokens:
    """The model input: per cell its top expressed genes and their log-normalized values.

    ``CellTokens.load(path, mmap=True)`` leaves the arrays on disk (memory-mapped) and
    :meth:`subset` of such tokens is a lazy view (``rows``): training then reads each batch from
    the file, so its memory does not grow with the corpus.
    """
    gene_ids: np.ndarray  # int64 [n_cells, context], PAD_ID where a cell has fewer expressed genes
    values: np.ndarray    # float32 [n_cells, context], log1p(count / total * 1e4); 0 at padding
    rows: np.ndarray | None = None  # a lazy subset: the cells are these rows of the arrays

    def __post_init__(self) -> None:
        if self.gene_ids.shape != self.values.shape or self.gene_ids.ndim != 2:
            raise ScfmDataError(f"gene_ids {self.gene_ids.shape} and values {self.values.shape} must be "
                                "2-D arrays of the same shape")

    def __len__(self) -> int:
        return self.gene_ids.shape[0] if self.rows is None else len(self.rows)

    @property
    def context(self) -> int:
        return self.gene_ids.shape[1]

    def take(self, idx) -> tuple[np.ndarray, np.ndarray]:
        """gene_ids and values (in memory) of cells ``idx`` (an index array or a slice)."""
        rows = idx if self.rows is None else self.rows[idx]
        return np.asarray(self.gene_ids[rows]), np.asarray(self.values[rows])

    def chunks(self, size: int = 8192):
        """(gene_ids, values) blocks of at most ``size`` cells, in order: a pass over the cells
        that holds one block in memory."""
        for start in range(0, len(self), size):
            yield self.take(slice(start, start + size))

    def subset(self, idx) -> "CellTokens":
        if isinstance(self.gene_ids, np.memmap):  # stay on disk: a view of the chosen rows
            rows = np.arange(len(self)) if self.rows is None else self.rows
            return CellTokens(self.gene_ids, self.values, rows=rows[idx])
        return CellTokens(*self.take(idx))

    def save(self, path: str | Path) -> None:
        gene_ids, values = self.take(slice(None))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, gene_ids=gene_ids, values=values)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> "CellTokens":
        try:
            if mmap:
                return cls(_npz_memmap(path, "gene_ids"), _npz_memmap(path, "values"))
            with np.load(path) as npz:
                return cls(npz["gene_ids"], npz["values"])
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:   # truncated or not tokens
            raise ScfmDataError(f"{path} cannot be read as cell tokens ({type(err).__name__}: {err}); it is corrupt or "
                                "truncated: delete it and rerun the data job, which writes it again") from err


def _npz_memmap(path: str | Path, name: str) -> np.memmap:
    """A read-only memory map of array ``name`` inside an uncompressed ``.npz`` (what
    :meth:`CellTokens.save` writes: each member is a plain ``.npy`` stored at an offset)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ScfmDataError(f"{path}: {name} is compressed and cannot be memory-mapped; save it with np.savez")
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)                                            # zip local file header
            start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran else "C")


def _validate_log1p_norm(adata: ad.AnnData, layer: str) -> None:
    _check_not_empty(adata)
    matrix = _matrix(adata, layer)
    values = _values(matrix)
    if not np.isfinite(values).all() or (values < 0).any():
        raise ScfmDataError(f"layer {layer!r} must hold finite log1p-normalized values >= 0 (found NaN/Inf or "
                            "negative values: scaled data is not log-normalized); store log1p(CP10k) values, "
                            "e.g. adata.raw.X of a scanpy object, not the output of sc.pp.scale")
    _check_names_and_cells(adata, matrix, layer)


def gene_medians(adata: ad.AnnData, vocab: GeneVocab, layer: str = "counts") -> np.ndarray:
    """Per vocabulary token, the median over cells of the gene's nonzero CP10k-normalized
    expression (Geneformer's normalization factor); 1.0 for special tokens and genes never seen.
    float64 [len(vocab)]."""
    matrix = sp.csc_matrix(_matrix(adata, layer), dtype=np.float64)         # [n_cells, G]
    if layer == "log1p_norm":
        matrix.data = np.expm1(matrix.data)
    total = np.asarray(matrix.sum(1)).ravel()                               # [n_cells]
    medians = np.ones(len(vocab), dtype=np.float64)
    for column, token in enumerate(vocab.encode(adata.var_names)):
        lo, hi = matrix.indptr[column], matrix.indptr[column + 1]
        if token >= 0 and hi > lo:
            rows = matrix.indices[lo:hi]
            medians[token] = np.median(matrix.data[lo:hi] / np.maximum(total[rows], 1.0) * 1e4)
    return medians


def tokenize(adata: ad.AnnData, vocab: GeneVocab, context_genes: int, layer: str = "counts",
             min_overlap: float = 0.5, chunk_size: int = 4096, medians: np.ndarray | None = None) -> CellTokens:
    """Each cell's top-``context_genes`` expressed vocabulary genes by count (descending, ties by
    gene order) with ``log1p(count / total * 1e4)`` values; the total counts all genes of the cell.

    With ``medians`` (:func:`gene_medians` of the corpus, per token) the genes are ranked instead
    by expression divided by the gene's corpus median: Geneformer's rank-value encoding, which
    lifts genes that are high *for that gene* (transcription factors) above ubiquitous ones.

    ``layer="log1p_norm"`` takes a dataset that ships only log-normalized values (see
    :mod:`scfm_lib.readers`): the ranking is the same (log1p is monotone and the normalization
    is per cell), and the values are used as given, so their normalization target is the
    dataset's, which the data chapter reports.
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
        block = matrix[start:start + chunk_size]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        block = block.astype(np.float32)                                   # [n, G]
        total = block.sum(1, keepdims=True)
        counts = block[:, known]                                           # [n, G_known]
        key = counts
        if medians is not None:  # expression relative to the gene's corpus median (same per-cell total)
            key = (counts if is_counts else np.expm1(counts)) / medians[ids[known]].astype(np.float32)
        # Stable sort on -key keeps gene order among ties.
        order = np.argsort(-key, axis=1, kind="stable")[:, :context_genes]
        top = np.take_along_axis(counts, order, axis=1)                    # [n, context]
        present = top > 0
        rows = slice(start, start + len(block))
        k = order.shape[1]
        gene_ids[rows, :k] = np.where(present, ids[known][order], PAD_ID)
        norm = np.log1p(top / np.maximum(total, 1.0) * 1e4) if is_counts else top
        values[rows, :k] = np.where(present, norm, 0.0)
    return CellTokens(gene_ids, values)


# ------------------------------------------------------------------------------ subsets, splits, labels
def nested_subsets(n_cells: int, fractions: Sequence[float], seed: int) -> dict[float, np.ndarray]:
    """Sorted cell indices per fraction; smaller fractions lie inside larger ones.

    One seeded permutation; fraction ``f`` takes its first ``round(f * n_cells)`` cells (at
    least one for ``f > 0``, none for ``f == 0``).
    """
    bad = [f for f in fractions if not 0.0 <= float(f) <= 1.0]
    if bad:
        raise ScfmDataError(f"fractions {bad} are outside [0, 1]; a fraction is a share of the corpus")
    order = np.random.default_rng(seed).permutation(n_cells)
    out = {}
    for f in fractions:
        n = 0 if f == 0 else max(1, int(round(float(f) * n_cells)))
        out[float(f)] = np.sort(order[:n])
    return out



def label_budget_subsets(labels, budgets: Sequence[float], seed: int) -> dict[float, np.ndarray]:
    """Sorted indices into ``labels`` of the labelled training cells kept at each label budget.

    A budget is a share in (0, 1] of each class's cells. Per class (in sorted class order) one
    seeded permutation; budget ``b`` keeps its first ``max(1, round(b * n_class))`` cells. So the
    subsets are stratified (every class keeps at least one labelled cell, and its share),
    nested (a smaller budget's cells lie inside a larger one's) and deterministic for a
    ``seed``. Keys are the budgets as floats; budget 1.0 returns every cell.
    """
    labels = np.asarray(labels).astype(str)
    if labels.ndim != 1 or labels.size == 0:
        raise ScfmDataError(f"labels must be a non-empty 1-D array of cell labels, got shape {labels.shape}")
    bad = [b for b in budgets if not 0.0 < float(b) <= 1.0]  # also catches NaN
    if bad:
        raise ScfmDataError(f"label budgets {bad} are outside (0, 1]; a budget is the share of each class's "
                            "training cells that keep their label")
    rng = np.random.default_rng(seed)
    # Shuffle each class once, for all budgets: taking prefixes of one order is what nests them.
    orders = [members[rng.permutation(len(members))]
              for members in (np.flatnonzero(labels == c) for c in np.unique(labels))]
    out = {}
    for b in budgets:
        kept = [order[:max(1, int(round(float(b) * len(order))))] for order in orders]
        out[float(b)] = np.sort(np.concatenate(kept)).astype(np.int64)
    return out


def split_cells(adata_or_obs, by: str | None = None, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                seed: int = 0, stratify: str | None = None,
                test_groups: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Disjoint ``train``/``val``/``test`` cell indices covering every cell.

    With ``by`` (an ``obs`` column such as ``"donor"`` or ``"batch"``) whole groups go to one split,
    so evaluation always sees unseen donors or batches. Without it cells are split at random,
    per class of the ``stratify`` column if given, so every class keeps its share in each split.
    With ``by`` and ``test_groups`` (a condition shift: train on ``ctrl``, test on ``stim``) the
    cells of those groups are the test split, and the other cells are split into train and
    validation at random in the ratio ``fractions[0] : fractions[1]``, per ``stratify`` class.
    """
    obs = adata_or_obs.obs if hasattr(adata_or_obs, "obs") else adata_or_obs
    if abs(sum(fractions) - 1.0) > 1e-9 or len(fractions) != 3:
        raise ScfmDataError(f"fractions {fractions} must be three shares summing to 1 (train, val, test)")
    if test_groups:
        if by is None or by not in obs.columns:
            raise ScfmDataError(f"test_groups {list(test_groups)} need the obs column they name groups of (by={by!r}); "
                                f"obs has {list(obs.columns)}")
        groups = obs[by].astype(str).to_numpy()
        missing = sorted(set(map(str, test_groups)) - set(groups.tolist()))
        is_test = np.isin(groups, [str(g) for g in test_groups])
        if missing or is_test.all():
            raise ScfmDataError(f"test_groups {list(test_groups)} of {by!r}: "
                                + (f"{missing} not found (groups: {sorted(set(groups.tolist()))})" if missing
                                   else "every cell is a test cell; leave some groups for training"))
        rest = np.flatnonzero(~is_test)
        share = fractions[0] / (fractions[0] + fractions[1])
        inner = split_cells(obs.iloc[rest], by=None, fractions=(share, 1.0 - share, 0.0), seed=seed, stratify=stratify)
        return {"train": np.sort(rest[inner["train"]]), "val": np.sort(rest[inner["val"]]),
                "test": np.flatnonzero(is_test)}
    rng = np.random.default_rng(seed)
    n = len(obs)
    if by is None:
        if stratify is not None and stratify not in obs.columns:
            raise ScfmDataError(f"cannot stratify by {stratify!r}: obs has {list(obs.columns)}")
        strata = obs[stratify].astype(str).to_numpy() if stratify else np.zeros(n, dtype=str)
        parts = {"train": [], "val": [], "test": []}
        for stratum in sorted(set(strata.tolist())):
            members = np.flatnonzero(strata == stratum)
            order = members[rng.permutation(len(members))]
            cut1 = int(round(fractions[0] * len(order)))
            cut2 = int(round((fractions[0] + fractions[1]) * len(order)))
            for name, chunk in zip(parts, (order[:cut1], order[cut1:cut2], order[cut2:])):
                parts[name].append(chunk)
        parts = {k: np.concatenate(v).astype(np.int64) for k, v in parts.items()}
    else:
        if by not in obs.columns:
            raise ScfmDataError(f"cannot split by {by!r}: obs has {list(obs.columns)}")
        groups = np.asarray(pd.unique(obs[by].astype(str)))
        if len(groups) < 3:
            raise ScfmDataError(f"splitting by {by!r} needs >= 3 groups, found {len(groups)}; use by=None "
                                "for a random split")
        groups = groups[rng.permutation(len(groups))]
        n_val = max(1, int(round(fractions[1] * len(groups))))
        n_test = max(1, int(round(fractions[2] * len(groups))))
        n_train = len(groups) - n_val - n_test
        if n_train < 1:
            raise ScfmDataError(f"{len(groups)} groups of {by!r} are too few for three splits")
        assignment = {g: "train" for g in groups[:n_train]}
        assignment.update({g: "val" for g in groups[n_train:n_train + n_val]})
        assignment.update({g: "test" for g in groups[n_train + n_val:]})
        labels = obs[by].astype(str).map(assignment).to_numpy()
        parts = {s: np.flatnonzero(labels == s) for s in ("train", "val", "test")}
    return {k: np.sort(v) for k, v in parts.items()}


def encode_labels(train_labels, *others) -> tuple[list[str], list[np.ndarray]]:
    """Classes (sorted, from the training labels) and integer codes of each label array."""
    for labels in (train_labels, *others):
        missing = pd.isna(np.asarray(labels, dtype=object))
        if missing.any():
            raise ScfmDataError(f"{int(missing.sum())} cells have no label (NaN); drop them before the split, or "
                                "give them a label: a missing label is not a class")
    train_labels = np.asarray(train_labels).astype(str)
    classes = sorted(set(train_labels.tolist()))
    if len(classes) < 2:
        raise ScfmDataError(f"the training labels hold a single class ({classes}); a classifier needs "
                            ">= 2: check the label column and the split")
    index = {c: i for i, c in enumerate(classes)}
    coded = [np.array([index[x] for x in train_labels], dtype=np.int64)]
    for labels in others:
        labels = np.asarray(labels).astype(str)
        unseen = sorted(set(labels.tolist()) - set(classes))
        if unseen:
            raise ScfmDataError(f"labels {unseen} occur in evaluation cells but not in training cells; "
                                "split by another column or drop those cells")
        coded.append(np.array([index[x] for x in labels], dtype=np.int64))
    return classes, coded
