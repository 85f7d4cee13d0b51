"""Stream cells from a TileDB-SOMA experiment (the format of the CELLxGENE Census).

Atlas-scale corpora (tens of millions of cells) do not fit in memory as one AnnData. Here the
corpus stays on disk (or in the cloud): :func:`select_cells` reads only the ``soma_joinid`` of the
cells matching a filter (8 bytes per cell), and :func:`iter_anndata` / :func:`tokenize_soma` read
the count matrix ``chunk_cells`` cells at a time, so memory is bounded by one chunk
(``chunk_cells`` x genes, sparse) plus the small token arrays (cells x context).

Example on a cluster with internet (the Census is public, no credentials)::

    from scfm_lib import soma
    from scfm_lib.data import GeneVocab

    src = soma.SomaSource("census", census_version="2025-01-30",
                          obs_filter=soma.soma_filter(tissue_general="blood", assay="10x 3' v3",
                                                      is_primary_data=True))
    cells = soma.select_cells(src, fractions=[0.01, 0.1, 1.0], seed=0)   # {fraction: soma_joinids}
    tokens = soma.tokenize_soma(src, cells[0.01], GeneVocab.load("vocab.json"), context_genes=1024)
    tokens.save("blood_1pct.npz")

Without internet, point ``uri`` at a local experiment written by
``tiledbsoma.io.from_anndata(uri, adata, measurement_name="RNA", X_layer_name="raw")``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scfm_lib.data import CellTokens, GeneVocab, ScfmDataError, nested_subsets, tokenize

if TYPE_CHECKING:  # imported where a SOMA experiment is opened
    import tiledbsoma


@dataclass
class SomaSource:
    """Where the corpus lives and which cells and matrix of it to read."""

    uri: str  # local SOMA experiment path, or "census"
    census_version: str = "stable"  # only for uri == "census"; pin a dated release for reproducibility
    organism: str = "homo_sapiens"  # experiment inside the Census (ignored for a local experiment)
    measurement: str = "RNA"
    layer: str = "raw"  # X layer holding integer counts
    obs_filter: str | None = None  # SOMA value_filter on obs, e.g. from soma_filter(...)
    var_id_column: str = "feature_name"  # var column with the gene symbols the vocabulary uses
    chunk_cells: int = 2048  # cells per chunk: the memory bound


def _literal(value) -> str:
    # repr() of a Python str/bool/number is a valid literal for SOMA's (Python-ast based) parser,
    # and picks double quotes for values holding an apostrophe, e.g. "10x 3' v3".
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (str, bool, int, float)):
        raise ScfmDataError(f"filter value {value!r} must be a str, bool or number (or a list of them)")
    return repr(value)


def soma_filter(**filters: Any) -> str | None:
    """An obs ``value_filter`` from column=value pairs joined by ``and``.

    Lists become ``in [...]``, ``None`` values are skipped.
    ``soma_filter(tissue_general="blood", is_primary_data=True)`` gives
    ``"tissue_general == 'blood' and is_primary_data == True"``.

    Parameters
    ----------
    **filters
        obs column -> a value (str, bool or number) or a list of them.

    Returns
    -------
    str or None
        The filter; None when every value is None.

    Raises
    ------
    ScfmDataError
        When a value is not a str, bool or number.
    """
    terms = []
    for column, value in filters.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple, np.ndarray, pd.Index)):
            terms.append(f"{column} in [{', '.join(_literal(v) for v in value)}]")
        else:
            terms.append(f"{column} == {_literal(value)}")
    return " and ".join(terms) or None


@contextlib.contextmanager
def open_experiment(source: SomaSource) -> Iterator[tiledbsoma.Experiment]:
    """The opened ``tiledbsoma.Experiment``; checks the measurement, X layer and var column exist.

    Parameters
    ----------
    source : SomaSource
        The experiment (a local path, or the Census) and what to read of it.

    Yields
    ------
    tiledbsoma.Experiment
        The open experiment (closed on exit).

    Raises
    ------
    ScfmDataError
        When the Census cannot be opened (offline), the organism or path is not an experiment, or
        the measurement, layer or var column is missing.
    """
    import tiledbsoma

    if source.uri == "census":
        try:
            import cellxgene_census

            census = cellxgene_census.open_soma(census_version=source.census_version)
        except Exception as err:  # offline: requests/TileDB errors of several kinds
            raise ScfmDataError(
                f"cannot open the CELLxGENE Census (version {source.census_version!r}): "
                f"{_reason(err)}. The Census needs internet access; without it, give "
                "SomaSource(uri=...) the path of a local SOMA experiment instead"
            ) from err
        with census:
            if source.organism not in census["census_data"]:
                raise ScfmDataError(
                    f"organism {source.organism!r} not in the Census; it has {sorted(census['census_data'].keys())}"
                )
            exp = census["census_data"][source.organism]
            _check_experiment(exp, source)
            yield exp
        return
    try:
        exp = tiledbsoma.Experiment.open(str(source.uri))
    except tiledbsoma.SOMAError as err:
        raise ScfmDataError(
            f"{source.uri!r} is not a SOMA experiment ({_reason(err)}); write one from an AnnData with "
            "tiledbsoma.io.from_anndata(uri, adata, measurement_name='RNA', "
            "X_layer_name='raw')"
        ) from err
    with exp:
        _check_experiment(exp, source)
        yield exp


def _reason(err: Exception) -> str:
    # tiledbsoma's C++ errors carry a Python stack trace ("At: ...") in the message: keep line one.
    return str(err).strip().split("\n")[0]


def _check_experiment(exp, source: SomaSource) -> None:
    if source.measurement not in exp.ms:
        raise ScfmDataError(
            f"measurement {source.measurement!r} not found in {source.uri!r}; it has {sorted(exp.ms.keys())}"
        )
    ms = exp.ms[source.measurement]
    if source.layer not in ms.X:
        raise ScfmDataError(
            f"X layer {source.layer!r} not found in measurement {source.measurement!r}; it has "
            f"{sorted(ms.X.keys())} (set SomaSource.layer to the one holding raw counts)"
        )
    if source.var_id_column not in ms.var.keys():
        raise ScfmDataError(
            f"var column {source.var_id_column!r} not found; var has {list(ms.var.keys())} "
            "(set SomaSource.var_id_column to the gene-symbol column)"
        )


def select_cells(source: SomaSource, fractions: Sequence[float], seed: int) -> dict[float, np.ndarray]:
    """Sorted ``soma_joinid`` per fraction of the cells matching ``obs_filter``; seeded and nested.

    A smaller fraction lies inside a larger one, as :func:`data.nested_subsets`.

    Parameters
    ----------
    source : SomaSource
        The experiment and its ``obs_filter``.
    fractions : sequence of float
        Shares of the matching cells, each in [0, 1].
    seed : int
        Seed of the permutation.

    Returns
    -------
    dict of float to numpy.ndarray
        Fraction -> sorted int64 soma_joinids.

    Raises
    ------
    ScfmDataError
        When the filter cannot be applied or matches no cell.
    """
    import tiledbsoma

    with open_experiment(source) as exp:
        try:
            table = exp.obs.read(column_names=["soma_joinid"], value_filter=source.obs_filter).concat()
        except tiledbsoma.SOMAError as err:
            raise ScfmDataError(
                f"obs filter `{source.obs_filter}` cannot be applied ({_reason(err)}); obs columns are "
                f"{list(exp.obs.keys())}"
            ) from err
    ids = np.sort(table.column("soma_joinid").to_numpy())  # int64 [n_matching]
    if len(ids) == 0:
        raise ScfmDataError(
            f"obs filter `{source.obs_filter}` matches no cells in {source.uri!r}; check the "
            "column values (e.g. exp.obs.read(column_names=[...]).concat().to_pandas())"
        )
    return {f: ids[idx] for f, idx in nested_subsets(len(ids), fractions, seed).items()}


def iter_anndata(
    source: SomaSource, joinids: Sequence[int], obs_columns: Sequence[str] = (), genes: Sequence[str] | None = None
) -> Iterator[ad.AnnData]:
    """AnnData chunks of at most ``chunk_cells`` cells, in the order of ``joinids``.

    Each chunk has the counts as CSR in ``layers["counts"]`` (and ``X``, the same object),
    ``var_names`` from ``var_id_column``, ``obs_names`` the soma_joinids (as str) and ``obs`` with
    ``soma_joinid`` plus ``obs_columns``. ``genes`` restricts the columns read (by symbol); note
    that :func:`data.tokenize` normalizes by the total over the genes present, so keep all genes
    for tokenizing.

    Parameters
    ----------
    source : SomaSource
        The experiment, its layer and ``chunk_cells``.
    joinids : sequence of int
        The cells, each once (:func:`select_cells`).
    obs_columns : sequence of str
        Further obs columns to read.
    genes : sequence of str, optional
        Read only these genes (by symbol).

    Yields
    ------
    anndata.AnnData
        One chunk, shape ``(<= chunk_cells, n_genes)``.

    Raises
    ------
    ScfmDataError
        When ``joinids`` repeats a cell or holds one outside the experiment, ``chunk_cells < 1``, an
        obs column is missing, or no requested gene is in var.
    """
    import tiledbsoma

    joinids = np.asarray(joinids, dtype=np.int64)
    if len(np.unique(joinids)) != len(joinids):
        raise ScfmDataError("joinids hold duplicates; pass each cell once")
    if source.chunk_cells < 1:
        raise ScfmDataError(f"chunk_cells must be >= 1, got {source.chunk_cells}")
    with open_experiment(source) as exp:
        missing = [c for c in obs_columns if c not in exp.obs.keys()]
        if missing:
            raise ScfmDataError(f"obs column(s) {missing} not found; obs has {list(exp.obs.keys())}")
        var_query = None
        if genes is not None:
            # Resolve symbols to var joinids once: one small column read, no filter-string quoting.
            var = (
                exp.ms[source.measurement]
                .var.read(column_names=["soma_joinid", source.var_id_column])
                .concat()
                .to_pandas()
            )
            var_ids = var["soma_joinid"].to_numpy()[var[source.var_id_column].isin(list(genes)).to_numpy()]
            if len(var_ids) == 0:
                raise ScfmDataError(f"none of the {len(genes)} requested genes are in var[{source.var_id_column!r}]")
            var_query = tiledbsoma.AxisQuery(coords=(np.sort(var_ids),))
        columns = {
            "obs": ["soma_joinid", *[c for c in obs_columns if c != "soma_joinid"]],
            "var": [source.var_id_column],
        }
        for start in range(0, len(joinids), source.chunk_cells):
            chunk_ids = joinids[start : start + source.chunk_cells]  # int64 [<= chunk_cells]
            query = exp.axis_query(
                source.measurement, obs_query=tiledbsoma.AxisQuery(coords=(chunk_ids,)), var_query=var_query
            )
            try:
                # to_anndata builds obs on a RangeIndex and anndata warns it makes it str: harmless.
                with query, warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Transforming to str index")
                    chunk = query.to_anndata(
                        X_name=source.layer, column_names=columns, var_id_name=source.var_id_column
                    )
            except tiledbsoma.SOMAError as err:  # e.g. a joinid beyond obs' domain
                raise ScfmDataError(
                    f"cannot read cells {chunk_ids[:5].tolist()}... from {source.uri!r} "
                    f"({_reason(err)}); take joinids from select_cells"
                ) from err
            # SOMA returns cells in soma_joinid order, not the order asked for: put them back.
            pos = pd.Index(chunk.obs["soma_joinid"].to_numpy()).get_indexer(chunk_ids)
            if (pos < 0).any():
                raise ScfmDataError(
                    f"soma_joinids {chunk_ids[pos < 0][:5].tolist()} are not cells of "
                    f"{source.uri!r}; take joinids from select_cells"
                )
            chunk = chunk[pos].copy()
            counts = sp.csr_matrix(chunk.X)  # [n_chunk, n_genes]
            chunk.X, chunk.layers["counts"] = counts, counts
            chunk.obs_names = chunk.obs["soma_joinid"].astype(str).to_numpy()
            chunk.var_names = chunk.var_names.astype(str)
            # A symbol shared by several gene ids: the first keeps the name, the others become
            # "SYMBOL-1"... (outside the vocabulary, but still counted in each cell's total).
            if chunk.var_names.has_duplicates:
                chunk.var_names_make_unique()
            yield chunk


def tokenize_soma(
    source: SomaSource,
    joinids: Sequence[int],
    vocab: GeneVocab,
    context_genes: int,
    min_overlap: float = 0.5,
    medians: np.ndarray | None = None,
) -> CellTokens:
    """:func:`data.tokenize` over the cells ``joinids`` (same order), streamed chunk by chunk.

    Only the tokens (n x context) are ever whole in memory, never the count matrix.

    Parameters
    ----------
    source : SomaSource
        The experiment.
    joinids : sequence of int
        The cells, each once.
    vocab : GeneVocab
        The gene vocabulary.
    context_genes : int
        Tokens per cell.
    min_overlap : float
        The smallest share of each chunk's detected genes in the vocabulary.
    medians : numpy.ndarray, optional
        Per-token gene medians for the rank-value encoding (:func:`scfm_lib.data.tokenize`).

    Returns
    -------
    CellTokens
        Shape ``(len(joinids), context_genes)``.
    """
    gene_ids, values = [], []
    for chunk in iter_anndata(source, joinids):
        tokens = tokenize(chunk, vocab, context_genes, layer="counts", min_overlap=min_overlap, medians=medians)
        gene_ids.append(tokens.gene_ids)  # int64 [n_chunk, context]
        values.append(tokens.values)  # float32 [n_chunk, context]
    if not gene_ids:
        return CellTokens(np.zeros((0, context_genes), np.int64), np.zeros((0, context_genes), np.float32))
    return CellTokens(np.concatenate(gene_ids), np.concatenate(values))


def detected_cells(source: SomaSource, joinids: Sequence[int]) -> pd.Series:
    """Per gene (symbol), in how many of the cells ``joinids`` it has a nonzero count; streamed.

    So a vocabulary (:func:`scfm_lib.data.build_vocab` semantics) can be built without loading the
    corpus.

    Parameters
    ----------
    source : SomaSource
        The experiment.
    joinids : sequence of int
        The cells.

    Returns
    -------
    pandas.Series
        int64 counts indexed by gene symbol, in [0, len(joinids)].

    Raises
    ------
    ScfmDataError
        When no cell is given.
    """
    total: pd.Series | None = None
    for chunk in iter_anndata(source, joinids):
        counts = pd.Series(np.asarray((chunk.layers["counts"] > 0).sum(0)).ravel(), index=chunk.var_names)
        total = counts if total is None else total.add(counts, fill_value=0)
    if total is None:
        raise ScfmDataError("no cells given: detected_cells needs at least one soma_joinid")
    return total.astype(np.int64)
