"""Gene identifiers across datasets: map Ensembl IDs to symbols, mouse to human, older releases'
symbols to current ones, and report how many genes reach a vocabulary before and after.

Datasets name genes differently (symbols, versioned Ensembl IDs, another species). The model's
vocabulary is one list of human gene symbols, so every dataset is mapped onto symbols before it
is tokenized, and the overlap that remains is reported per dataset: a dataset whose genes mostly
fall outside the vocabulary cannot be evaluated fairly, and :func:`scfm_lib.data.tokenize`
refuses it. Building the vocabulary from the corpus (:func:`~scfm_lib.data.build_vocab`,
:func:`~scfm_lib.data.vocab_from_detection`) and the per-dataset :func:`~scfm_lib.data.overlap_table`
are in :mod:`scfm_lib.data.vocab`, beside :class:`~scfm_lib.data.GeneVocab`. The marker gene
programs of the probes (:data:`MARKER_PROGRAMS`, :func:`program_ground_truth`) are in
:mod:`scfm_lib.marker_programs`, re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scfm_lib.data import GeneVocab, ScfmDataError, strip_ensembl_version
from scfm_lib.marker_programs import MARKER_PROGRAMS, program_ground_truth  # noqa: F401 (re-exported)

_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")


def identifier_kind(names: Sequence[str]) -> str:
    """Whether a dataset names its genes by Ensembl gene ID or by symbol.

    Parameters
    ----------
    names : Sequence[str]
        Gene names, e.g. ``adata.var_names``.

    Returns
    -------
    str
        ``"ensembl"`` when more than half of the names are Ensembl gene IDs (``ENSG00000141510``,
        version suffix ``.17`` allowed, other species' ``ENSMUSG…`` too), else ``"symbol"`` (also
        for no names at all).
    """
    names = [str(n) for n in names]
    if not names:
        return "symbol"
    share = np.mean([bool(_ENSEMBL.match(n)) for n in names])
    return "ensembl" if share > 0.5 else "symbol"


def read_mapping(path: str | Path, header: bool = False) -> dict[str, str]:
    """Read a two-column gene table (``from,to``: Ensembl ID -> symbol, or ortholog pairs) as a dict.

    Parameters
    ----------
    path : str or Path
        The CSV file; only its first two columns are read.
    header : bool
        Whether its first line is a header (skipped) rather than a first pair.

    Returns
    -------
    dict[str, str]
        From -> to. Rows with an empty target (e.g. a gene without ortholog) are dropped, Ensembl
        version suffixes (``.17``) are stripped from the keys, whitespace from the targets; a key
        listed twice keeps its last row.

    Raises
    ------
    ScfmDataError
        When the file does not exist, or is not a CSV of at least two columns.
    """
    if not Path(path).is_file():
        raise ScfmDataError(
            f"mapping file {path} does not exist; pass the path of a two-column CSV (from,to), "
            "or a registered table: scfm_lib.datasets.load_mapping('gencode_v44_id2name')"
        )
    try:
        table = pd.read_csv(path, header=0 if header else None, usecols=[0, 1], dtype=str).dropna()
    except (ValueError, pd.errors.ParserError) as err:  # one column, or not a CSV
        raise ScfmDataError(
            f"mapping file {path} is not a two-column CSV (from,to) ({type(err).__name__}: {err}); "
            "write one identifier pair per line, e.g. 'ENSG00000010610,CD4'"
        ) from err
    keys = table.iloc[:, 0].map(strip_ensembl_version)
    return dict(zip(keys, table.iloc[:, 1].str.strip()))


def map_genes(adata: ad.AnnData, mapping: Mapping[str, str], what: str = "gene names") -> ad.AnnData:
    """A copy of the dataset with its genes renamed through ``mapping``.

    Unmapped genes are dropped; genes mapped onto the same name are merged. Only raw counts can be
    summed meaningfully, so the ``counts`` layer sums the duplicates while every other layer (e.g.
    ``log1p_norm``) keeps the first of them; ``X`` becomes the ``counts`` layer when there is one,
    else ``log1p_norm``, else the first duplicates of ``X``. Ensembl version suffixes are stripped
    from ``var_names`` before the lookup. Records ``uns["scfm"]["gene_mapping"]``: the genes
    before, the genes mapped and the genes after.

    Parameters
    ----------
    adata : ad.AnnData
        The dataset, shape ``(n_cells, n_genes)``; not modified.
    mapping : Mapping[str, str]
        Old name -> new name (e.g. Ensembl ID -> symbol, mouse symbol -> human symbol).
    what : str
        What the names are, for the error message (e.g. ``"Ensembl IDs"``).

    Returns
    -------
    ad.AnnData
        Shape ``(n_cells, n_unique_targets)``, genes in the order of their first occurrence; ``obs``
        and ``uns`` copied, other ``var`` columns, ``obsm`` and ``varm`` dropped; matrices CSR.

    Raises
    ------
    ScfmDataError
        When no gene is in the mapping (wrong table, identifiers or species).
    """
    names = pd.Index(adata.var_names.astype(str)).map(strip_ensembl_version)
    targets = names.map(lambda n: mapping.get(n))
    keep = np.flatnonzero(targets.notna())
    if len(keep) == 0:
        raise ScfmDataError(
            f"none of the {adata.n_vars} {what} (e.g. {list(names[:3])}) are in the mapping; "
            "check that the mapping file matches the dataset's identifiers and species"
        )
    kept_targets = pd.Index(targets[keep])
    unique = pd.Index(pd.unique(kept_targets))
    # [n_kept, n_unique] 0/1 matrix that sums duplicated targets
    collapse = sp.csr_matrix(
        (np.ones(len(keep), dtype=np.float32), (np.arange(len(keep)), unique.get_indexer(kept_targets))),
        shape=(len(keep), len(unique)),
    )
    first = keep[~kept_targets.duplicated()]  # same order as unique
    layers = {}
    for name, matrix in adata.layers.items():
        if name == "counts":
            layers[name] = (sp.csr_matrix(matrix)[:, keep] @ collapse).tocsr()
        else:
            layers[name] = sp.csr_matrix(matrix)[:, first]
    x = layers.get("counts", layers.get("log1p_norm"))
    if x is None:
        x = sp.csr_matrix(adata.X)[:, first]
    out = ad.AnnData(X=x, obs=adata.obs.copy(), var=pd.DataFrame(index=unique.astype(str)), layers=layers)
    out.uns = dict(adata.uns)
    out.uns["scfm"] = {
        **dict(adata.uns.get("scfm", {})),
        "gene_mapping": {"genes_before": int(adata.n_vars), "mapped": int(len(keep)), "genes_after": int(len(unique))},
    }
    return out


def _needs_id_map(names: Sequence[str], id_map: Mapping[str, str] | None) -> bool:
    """Whether ``names`` are Ensembl IDs (then ``id_map`` is required: an error names the table)."""
    if identifier_kind(names) != "ensembl":
        return False
    if id_map is None:
        raise ScfmDataError(
            "the genes are Ensembl IDs (e.g. " + str(list(names[:2])) + ") but the "
            "vocabulary uses gene symbols: pass id_map (e.g. the registry resource "
            "'gencode_v44_id2name', via scfm_lib.datasets.load_mapping)"
        )
    return True


def release_symbol_map(symbols: Sequence[str], ensembl_ids: Sequence[str], id_map: Mapping[str, str]) -> dict[str, str]:
    """Symbols of an older annotation release -> their current names, through their Ensembl IDs.

    Datasets aligned to hg19 name genes as that release did (``RP11-206L10.2``, ``FAM138A``); a
    GRCh38 dataset names some of the same genes otherwise, so the two would meet in a vocabulary
    as different genes. A gene table of the old release that pairs each symbol with its Ensembl ID
    (10x Genomics' hg19 ``genes.tsv``, e.g. ``var`` of ``pbmc3k_10x_labeled``) gives each old symbol
    the name its ID has today (``id_map``, e.g. GENCODE v44).

    Parameters
    ----------
    symbols, ensembl_ids : Sequence[str]
        The old release's gene table: one symbol and its Ensembl gene ID (version allowed) per gene.
    id_map : Mapping[str, str]
        Ensembl ID -> current symbol (``datasets.load_mapping("gencode_v44_id2name")``).

    Returns
    -------
    dict
        Old symbol -> current symbol, only where the two differ. Left out, so kept as they are: a
        symbol whose ID has no current name (a retired gene), a symbol that is itself a current name
        (it may name another gene today; a dataset naming it cannot say which), and a symbol whose
        IDs have several current names.

    Raises
    ------
    ValueError
        When ``symbols`` and ``ensembl_ids`` differ in length.
    """
    if len(symbols) != len(ensembl_ids):
        raise ValueError(f"symbols ({len(symbols)}) and ensembl_ids ({len(ensembl_ids)}) must pair one to one")
    current = set(id_map.values())
    targets: dict[str, set[str]] = {}
    for symbol, gene_id in zip(map(str, symbols), map(str, ensembl_ids)):
        name = id_map.get(strip_ensembl_version(gene_id))
        if name is not None:
            targets.setdefault(symbol, set()).add(name)
    return {
        symbol: next(iter(names))
        for symbol, names in targets.items()
        if len(names) == 1 and symbol not in current and next(iter(names)) != symbol
    }


def harmonize_genes(
    adata: ad.AnnData,
    id_map: Mapping[str, str] | None = None,
    orthologs: Mapping[str, str] | None = None,
    symbol_map: Mapping[str, str] | None = None,
) -> ad.AnnData:
    """The dataset with its genes named by the vocabulary's symbols (of the target species).

    Ensembl IDs go through ``id_map`` (ID -> symbol); otherwise symbols of an older release go
    through ``symbol_map`` (:func:`release_symbol_map`; symbols it does not hold are kept); then,
    if given, ``orthologs`` maps symbols of another species (e.g. mouse -> human). Each step is
    :func:`map_genes`: unmapped genes are dropped, genes renamed onto one symbol are summed (counts).

    Parameters
    ----------
    adata : ad.AnnData
        The dataset, shape ``(n_cells, n_genes)``; not modified.
    id_map : Mapping[str, str] or None
        Ensembl ID -> symbol (e.g. ``datasets.load_mapping("gencode_v44_id2name")``); required when
        most ``var_names`` are Ensembl IDs (:func:`identifier_kind`).
    orthologs : Mapping[str, str] or None
        Symbol of the dataset's species -> symbol of the vocabulary's (e.g.
        :func:`invert_orthologs` of a human -> mouse table); None for a same-species dataset.
    symbol_map : Mapping[str, str] or None
        Old-release symbol -> current symbol; ignored when the names are Ensembl IDs.

    Returns
    -------
    ad.AnnData
        ``adata`` itself when nothing needed mapping, else a mapped copy (see :func:`map_genes`).

    Raises
    ------
    ScfmDataError
        When the names are Ensembl IDs and ``id_map`` is None, or a mapping reaches no gene.
    """
    out = adata
    if _needs_id_map(adata.var_names, id_map):
        out = map_genes(out, id_map, "Ensembl IDs")
    elif symbol_map and adata.var_names.isin(list(symbol_map)).any():
        out = map_genes(out, {n: symbol_map.get(n, n) for n in adata.var_names.astype(str)}, "gene symbols")
    if orthologs is not None:
        out = map_genes(out, orthologs, "genes for the ortholog table")
    return out


def invert_orthologs(human_to_other: Mapping[str, str]) -> dict[str, str]:
    """Other-species symbol -> human symbol, from a human -> other table.

    Parameters
    ----------
    human_to_other : Mapping[str, str]
        E.g. ``datasets.load_mapping("ensembl105_human2mouse")`` (human symbol -> mouse symbol).

    Returns
    -------
    dict
        Mouse (other) symbol -> human symbol; a symbol with several human orthologs keeps the first
        in the table's order (the table holds one-to-many rows both ways).
    """
    inverted: dict[str, str] = {}
    for human, other in human_to_other.items():
        inverted.setdefault(other, human)
    return inverted


def harmonized_names(
    names: Sequence[str],
    id_map: Mapping[str, str] | None = None,
    orthologs: Mapping[str, str] | None = None,
    symbol_map: Mapping[str, str] | None = None,
) -> pd.Index:
    """Name by name, what :func:`harmonize_genes` turns each gene into.

    Parameters
    ----------
    names : Sequence[str]
        Gene names (symbols or Ensembl IDs, possibly versioned); judged as a whole by
        :func:`identifier_kind`, as :func:`harmonize_genes` judges ``var_names``.
    id_map, orthologs, symbol_map : Mapping[str, str] or None
        As for :func:`harmonize_genes`: Ensembl IDs (version stripped) go through ``id_map``, symbols
        of an older release through ``symbol_map``, then the symbols through ``orthologs``.

    Returns
    -------
    pandas.Index
        One entry per name, in order: the harmonized symbol, or ``None`` where harmonization drops it.
    """
    out = pd.Index([str(n) for n in names], dtype=object)
    if _needs_id_map(out, id_map):
        out = pd.Index([id_map.get(strip_ensembl_version(n)) for n in out], dtype=object)
    elif symbol_map:
        out = pd.Index([symbol_map.get(n, n) for n in out], dtype=object)
    if orthologs is not None:
        out = pd.Index([None if n is None else orthologs.get(strip_ensembl_version(n)) for n in out], dtype=object)
    return out


def harmonization_report(
    adata: ad.AnnData,
    vocabulary: Sequence[str] | GeneVocab,
    id_map: Mapping[str, str] | None = None,
    orthologs: Mapping[str, str] | None = None,
    id_column: str | None = None,
    layer: str | None = None,
    symbol_map: Mapping[str, str] | None = None,
) -> dict[str, int | float]:
    """How many of a dataset's detected genes reach a vocabulary, before and after harmonization.

    A gene is *detected* when it has a nonzero value in at least one cell; genes never detected
    never become tokens, so they are not counted. *Before* compares the dataset's own names
    (``var_names``) with the vocabulary; *after* compares what :func:`harmonize_genes` makes of
    them (Ensembl IDs to symbols through ``id_map``, version suffixes stripped, then ``orthologs``
    for another species; ``symbol_map`` for symbols of an older release, e.g. hg19-era clone names
    ``RP11-...`` renamed since). ``id_column`` harmonizes a ``var`` column of Ensembl IDs (e.g.
    ``"ensembl_id"``) instead of the names.

    Parameters
    ----------
    adata : ad.AnnData
        The dataset, as :func:`scfm_lib.datasets.load` returns it.
    vocabulary : Sequence[str] or GeneVocab
        Target gene symbols (a list, or a :class:`~scfm_lib.data.GeneVocab`).
    id_map : Mapping[str, str] or None
        Ensembl ID -> symbol (e.g. ``datasets.load_mapping("gencode_v44_id2name")``); required when
        the names are Ensembl IDs.
    orthologs : Mapping[str, str] or None
        Symbol of the dataset's species -> vocabulary symbol, e.g. ``invert_orthologs(human2mouse)``
        for a mouse dataset and a human vocabulary.
    symbol_map : Mapping[str, str] or None
        Old-release symbol -> current symbol (:func:`release_symbol_map`).
    id_column : str or None
        A ``var`` column whose identifiers are harmonized instead of ``var_names``.
    layer : str or None
        Where detection is read; default ``counts``, else ``log1p_norm``, else ``X``.

    Returns
    -------
    dict
        ``genes`` (all), ``detected``, ``in_vocabulary_before`` and ``in_vocabulary_after`` (detected
        genes whose name, resp. harmonized name, is in the vocabulary), ``symbols_after`` (distinct
        vocabulary symbols those map to: harmonization sums genes mapped onto one symbol),
        ``dropped`` (detected genes harmonization drops, no mapping) and ``share_before`` /
        ``share_after`` (of the detected genes, 0-1).

    Raises
    ------
    ScfmDataError
        When ``id_column`` is not a column of ``var`` (or, through :func:`harmonized_names`, the
        names are Ensembl IDs and ``id_map`` is None).
    """
    targets = set(vocabulary.genes if isinstance(vocabulary, GeneVocab) else (str(g) for g in vocabulary))
    layer = layer or next((name for name in ("counts", "log1p_norm") if name in adata.layers), None)
    matrix = sp.csr_matrix(adata.layers[layer] if layer else adata.X)
    detected = np.asarray((matrix != 0).sum(0)).ravel() > 0  # [n_genes]
    if id_column is not None and id_column not in adata.var.columns:
        raise ScfmDataError(f"var column {id_column!r} not found (var has {list(adata.var.columns)})")
    source = adata.var[id_column].astype(str) if id_column else adata.var_names
    own = pd.Index(adata.var_names.astype(str))[detected]
    after = harmonized_names(source, id_map, orthologs, symbol_map)[
        detected
    ]  # ID kind judged on all genes, as harmonize_genes
    reached = [n for n in after if n is not None and n in targets]
    n_detected = int(detected.sum())
    before = int(own.isin(list(targets)).sum())
    return {
        "genes": int(adata.n_vars),
        "detected": n_detected,
        "in_vocabulary_before": before,
        "in_vocabulary_after": len(reached),
        "symbols_after": len(set(reached)),
        "dropped": int(sum(n is None for n in after)),
        "share_before": before / max(n_detected, 1),
        "share_after": len(reached) / max(n_detected, 1),
    }
