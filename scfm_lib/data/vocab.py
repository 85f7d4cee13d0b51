"""The gene vocabulary: special token ids, gene name <-> token id, the overlap check, and building it.

The pretraining vocabulary is built from how many corpus cells detect each gene
(:func:`vocab_from_detection`, :func:`build_vocab` for an in-memory corpus);
:func:`overlap_table` reports how much of each dataset it holds. Mapping datasets' gene names onto
its symbols (Ensembl IDs, older releases, orthologs) is :mod:`scfm_lib.genes`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scfm_lib.data.validation import ScfmDataError, _matrix
from scfm_lib.io import atomic_write

PAD_ID, CLS_ID, MASK_ID = 0, 1, 2
SPECIAL_TOKENS = ("<pad>", "<cls>", "<mask>")


class GeneVocab:
    """Gene name <-> token id; ids 0-2 are the special tokens, genes start at 3.

    ``medians`` (float [len(vocab)], per token; see :func:`gene_medians`) are the corpus medians
    the geneformer family's rank-value encoding divides by; they travel with the vocabulary so a
    checkpoint folder tokenizes new data exactly as its training data was tokenized.

    Parameters
    ----------
    genes : sequence of str
        The genes, in token order (gene i gets id ``i + 3``); no duplicates.
    medians : sequence of float, optional
        One positive median per token (special tokens included), shape ``(len(vocab),)``.

    Raises
    ------
    ScfmDataError
        When ``genes`` repeats a gene, or ``medians`` is not one positive number per token.
    """

    def __init__(self, genes: Sequence[str], medians: Sequence[float] | None = None):
        genes = [str(g) for g in genes]
        if len(set(genes)) != len(genes):
            raise ScfmDataError("the vocabulary has duplicated genes; make gene names unique first")
        self.genes = genes
        self._index = {g: i + len(SPECIAL_TOKENS) for i, g in enumerate(genes)}
        self.medians = None if medians is None else np.asarray(medians, dtype=np.float64)
        if self.medians is not None and (self.medians.shape != (len(self),) or not (self.medians > 0).all()):
            raise ScfmDataError(
                f"medians must be {len(self)} positive numbers (one per token), got shape {self.medians.shape}"
            )

    def __len__(self) -> int:
        return len(SPECIAL_TOKENS) + len(self.genes)

    def encode(self, names: Sequence[str]) -> np.ndarray:
        """Token ids of ``names`` (int64), -1 for genes outside the vocabulary.

        Parameters
        ----------
        names : sequence of str
            Gene names.

        Returns
        -------
        numpy.ndarray
            int64, shape ``(len(names),)``: ids >= 3, or -1 for an unknown gene.
        """
        return np.array([self._index.get(str(n), -1) for n in names], dtype=np.int64)

    def overlap(self, names: Sequence[str]) -> float:
        """Share of ``names`` found in the vocabulary, in [0, 1].

        Parameters
        ----------
        names : sequence of str
            Gene names.

        Returns
        -------
        float
            The share in [0, 1] (0 for no names).
        """
        return float((self.encode(names) >= 0).mean()) if len(names) else 0.0

    def save(self, path: str | Path) -> None:
        """Write the vocabulary (special tokens, genes, medians) as JSON, atomically.

        Parameters
        ----------
        path : str or pathlib.Path
            The JSON file (``vocab.json`` of a checkpoint folder).

        Returns
        -------
        None
        """
        medians = None if self.medians is None else self.medians.tolist()
        with atomic_write(path) as fh:
            json.dump({"special_tokens": list(SPECIAL_TOKENS), "genes": self.genes, "medians": medians}, fh)

    @classmethod
    def load(cls, path: str | Path) -> GeneVocab:
        """Read a vocabulary written by :meth:`save`.

        Parameters
        ----------
        path : str or pathlib.Path
            The JSON file.

        Returns
        -------
        GeneVocab
            The vocabulary, with its medians when they were saved.
        """
        with open(path) as fh:
            stored = json.load(fh)
        return cls(stored["genes"], stored.get("medians"))


def check_vocab_overlap(
    adata: ad.AnnData, vocab: GeneVocab, min_overlap: float = 0.5, layer: str | None = None
) -> float:
    """The share of the data's genes in the vocabulary; below ``min_overlap`` is an error.

    With ``layer``, only genes detected in at least one cell count: a count table listing every
    annotated gene (most never expressed) is not penalized for genes that carry no signal.

    Parameters
    ----------
    adata : anndata.AnnData
        The dataset.
    vocab : GeneVocab
        The model's vocabulary.
    min_overlap : float
        The smallest acceptable share, in [0, 1].
    layer : str, optional
        Count only the genes detected in this layer (all genes if none is).

    Returns
    -------
    float
        The share of the (detected) genes in the vocabulary, in [min_overlap, 1].

    Raises
    ------
    ScfmDataError
        When the share is below ``min_overlap``; the message names the likely cause (Ensembl IDs
        against symbols, case, version suffixes, species) and the fix.
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
            hint = (
                "The data has Ensembl IDs, the vocabulary gene symbols: map them first with "
                "scfm_lib.genes.harmonize_genes(adata, id_map=scfm_lib.datasets.load_mapping('gencode_v44_id2name'))."
            )
        elif not data_ensembl and any(g.startswith("ENS") for g in vocab.genes[:50]):
            hint = (
                "The data has gene symbols, the vocabulary Ensembl IDs: map them first with "
                "scfm_lib.genes.map_genes(adata, scfm_lib.genes.read_mapping(<symbol,Ensembl ID csv>))."
            )
        elif vocab.overlap(_case_matched(names, vocab)) >= min_overlap:
            hint = (
                "The names match the vocabulary when case is ignored (e.g. 'Cd3e' for 'CD3E': mouse-style or "
                "lower-case symbols): map them to the vocabulary's case or, for mouse data, to human orthologs with "
                "scfm_lib.genes.harmonize_genes(adata, orthologs=<mouse -> human symbol dict>), e.g. the inverse of "
                "scfm_lib.datasets.load_mapping('ensembl105_human2mouse')."
            )
        elif vocab.overlap([strip_ensembl_version(n) for n in names]) >= min_overlap:
            hint = (
                "The names match the vocabulary once their version suffix is dropped (e.g. 'ENSG00000010610.10'): "
                "strip it with scfm_lib.genes.map_genes, which removes Ensembl versions, or rename var_names."
            )
        else:
            hint = (
                "Check that the data is of the species and gene annotation the model was pretrained on "
                "(scfm_lib.genes.harmonize_genes maps IDs and orthologs), or use a model whose vocabulary covers it."
            )
        raise ScfmDataError(
            f"only {share:.1%} of the data's detected genes ({found} of {len(names)}) are in the model's "
            f"vocabulary (need {min_overlap:.0%}); missing e.g. {missing}. {hint}"
        )
    return share


def _case_matched(names: Sequence[str], vocab: GeneVocab) -> list[str]:
    """``names`` spelled as the vocabulary spells them where they differ only in case."""
    upper = {g.upper(): g for g in vocab.genes}
    return [upper.get(str(n).upper(), n) for n in names]


def strip_ensembl_version(name: str) -> str:
    """``ENSG00000010610.10`` -> ``ENSG00000010610``; any other name unchanged.

    Parameters
    ----------
    name : str
        A gene name or ID.

    Returns
    -------
    str
        The name without an Ensembl version suffix.
    """
    return re.sub(r"^(ENS[A-Z]*G\d+)\.\d+$", r"\1", str(name))


def overlap_table(datasets: Mapping[str, ad.AnnData], vocab: GeneVocab) -> pd.DataFrame:
    """How many of each dataset's genes the vocabulary holds, as named (no harmonization).

    Parameters
    ----------
    datasets : Mapping[str, ad.AnnData]
        Dataset name -> dataset, genes already harmonized to the vocabulary's symbols.
    vocab : GeneVocab
        The pretraining vocabulary.

    Returns
    -------
    pd.DataFrame
        One row per dataset: ``genes`` (its ``n_vars``), ``in vocabulary`` (of them), ``share of
        dataset genes`` and ``share of vocabulary`` (both in [0, 1]).
    """
    rows = {}
    for name, adata in datasets.items():
        found = int((vocab.encode(adata.var_names) >= 0).sum())
        rows[name] = {
            "genes": int(adata.n_vars),
            "in vocabulary": found,
            "share of dataset genes": found / max(adata.n_vars, 1),
            "share of vocabulary": found / max(len(vocab.genes), 1),
        }
    return pd.DataFrame(rows).T


def vocab_from_detection(detected: pd.Series, min_cells: int = 3, max_genes: int | None = None) -> GeneVocab:
    """The pretraining vocabulary from per-gene detection counts.

    Parameters
    ----------
    detected : pd.Series
        Gene symbol -> number of corpus cells in which it has a nonzero count.
    min_cells : int
        A gene enters when detected in at least this many cells.
    max_genes : int or None
        With a number, only the most often detected genes enter (ties broken by the order of
        ``detected``); None keeps every gene that passes ``min_cells``.

    Returns
    -------
    GeneVocab
        The genes kept, in the order of ``detected`` (tokenization breaks count ties by it), after
        the special tokens.

    Raises
    ------
    ScfmDataError
        When no gene is detected in ``min_cells`` cells.
    """
    values = detected.to_numpy()
    keep = np.flatnonzero(values >= min_cells)
    if max_genes is not None and len(keep) > max_genes:
        keep = np.sort(keep[np.argsort(-values[keep], kind="stable")[:max_genes]])
    if len(keep) == 0:
        raise ScfmDataError(f"no corpus gene is detected in >= {min_cells} cells; lower min_cells or check the corpus")
    return GeneVocab([str(g) for g in detected.index[keep]])


def build_vocab(
    corpus: ad.AnnData, min_cells: int = 3, max_genes: int | None = None, layer: str = "counts"
) -> GeneVocab:
    """The pretraining vocabulary of an in-memory corpus (see :func:`vocab_from_detection`).

    A streamed corpus gets its detection counts from :func:`scfm_lib.soma.detected_cells` instead.

    Parameters
    ----------
    corpus : ad.AnnData
        The pretraining corpus, shape ``(n_cells, n_genes)``, genes harmonized to symbols.
    min_cells : int
        A gene enters when it has a nonzero value in at least this many cells.
    max_genes : int or None
        Keep at most this many genes, the most often detected; None for no cap.
    layer : str
        The layer detection is read from (raw ``counts`` by default).

    Returns
    -------
    GeneVocab
        The vocabulary, genes in the corpus's order.

    Raises
    ------
    ScfmDataError
        When no gene is detected in ``min_cells`` cells (from :func:`vocab_from_detection`).
    """
    detected = np.asarray((corpus.layers[layer] > 0).sum(0)).ravel()  # [n_genes]
    return vocab_from_detection(pd.Series(detected, index=corpus.var_names), min_cells, max_genes)
