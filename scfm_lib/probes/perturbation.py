"""Does the model know what a gene *does* to a cell? In-silico perturbation (Geneformer's).

:func:`perturbation_shift` edits the tokens (:func:`delete_gene`, :func:`overexpress_gene`),
re-embeds the cells and measures how far each moves toward a target cell state, by cosine;
:func:`perturbation_score` averages it and :func:`perturbation_probe` runs it for every cell type's
driver gene. What the scores should be, and the random-init control they are read against, is in
:mod:`scfm_lib.probes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from scfm_lib.data import PAD_ID, SPECIAL_TOKENS, CellTokens, GeneVocab
from scfm_lib.model import FAMILIES, ScFM
from scfm_lib.train import embed

if TYPE_CHECKING:  # pandas is imported where the probe table is built
    import pandas as pd

MODES = ("delete", "overexpress")


# ------------------------------------------------------------------------------ token edits
def _gene_id(vocab: GeneVocab, gene: str | int) -> int:
    if isinstance(gene, (int, np.integer)):
        gene_id = int(gene)
        if not len(SPECIAL_TOKENS) <= gene_id < len(vocab):
            raise ValueError(
                f"gene id {gene_id} is not a gene token of this vocabulary ([{len(SPECIAL_TOKENS)}, {len(vocab)}))"
            )
        return gene_id
    gene_id = int(vocab.encode([gene])[0])
    if gene_id < 0:
        raise ValueError(f"gene {gene!r} is not in the model's vocabulary")
    return gene_id


def _check_gene_id(gene_id: int) -> int:
    if int(gene_id) < len(SPECIAL_TOKENS):
        raise ValueError(f"gene_id {gene_id} is a special token (ids < {len(SPECIAL_TOKENS)}); pass a gene's token id")
    return int(gene_id)


def holds_gene(tokens: CellTokens, gene_id: int) -> np.ndarray:
    """Which cells have ``gene_id`` among their tokens.

    Parameters
    ----------
    tokens : CellTokens
        The cells, ``n_cells`` of them.
    gene_id : int
        A gene's token id (not a special token).

    Returns
    -------
    numpy.ndarray
        bool, shape ``(n_cells,)``.
    """
    gene_ids, _ = tokens.take(slice(None))
    return (gene_ids == _check_gene_id(gene_id)).any(1)


def delete_gene(tokens: CellTokens, gene_id: int) -> CellTokens:
    """``tokens`` without ``gene_id``.

    Each cell drops the gene and the genes after it move one position left, with padding (PAD_ID,
    value 0) filling the end. The other genes keep their order, so a geneformer cell keeps its
    ranking with the gene taken out. Cells without the gene come back unchanged. Pure: returns new
    arrays.

    Parameters
    ----------
    tokens : CellTokens
        The cells.
    gene_id : int
        A gene's token id (not a special token).

    Returns
    -------
    CellTokens
        New arrays of the same shape, int64 ids and float32 values.
    """
    gene_id = _check_gene_id(gene_id)
    gene_ids, values = tokens.take(slice(None))
    keep = (gene_ids != gene_id) & (gene_ids != PAD_ID)  # [N, L]
    order = np.argsort(~keep, axis=1, kind="stable")  # kept positions first, in order
    new_ids = np.take_along_axis(gene_ids, order, axis=1).astype(np.int64)
    new_values = np.take_along_axis(values, order, axis=1).astype(np.float32)
    tail = np.arange(gene_ids.shape[1])[None, :] >= keep.sum(1, keepdims=True)
    new_ids[tail], new_values[tail] = PAD_ID, 0.0
    return CellTokens(new_ids, new_values)


def overexpress_gene(tokens: CellTokens, gene_id: int, family: str) -> CellTokens:
    """``tokens`` with ``gene_id`` as each cell's top gene.

    Its value becomes the cell's largest value (0 for a cell without genes). Pure: returns new
    arrays.

    - ``geneformer`` (the order is the expression): the gene moves to rank 0 (or is inserted
      there), the genes ranked above it move down one; a cell with a full context that lacked
      the gene loses its last (lowest-ranked) gene.
    - ``scgpt`` (a cell is a set of genes with values; positions carry nothing): a cell holding
      the gene only gets its value raised, in place; a cell lacking it gets it inserted at
      position 0 (tokens stay sorted by value), losing its last (lowest) gene if full.

    Parameters
    ----------
    tokens, gene_id
        As :func:`delete_gene`.
    family : str
        The model family, ``"geneformer"`` or ``"scgpt"``.

    Returns
    -------
    CellTokens
        New arrays of the same shape, int64 ids and float32 values.

    Raises
    ------
    ValueError
        When ``family`` is not a model family.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    gene_id = _check_gene_id(gene_id)
    gene_ids, values = tokens.take(slice(None))
    present = gene_ids != PAD_ID
    top = np.where(present, values, -np.inf).max(1) if values.shape[1] else np.zeros(len(values))
    top = np.where(np.isfinite(top), top, 0.0).astype(np.float32)  # [N]
    held = (gene_ids == gene_id).any(1)
    # Insert at the front of the cell without the gene: shift right by one, dropping the last slot.
    rest = delete_gene(CellTokens(gene_ids, values), gene_id)
    new_ids = np.concatenate([np.full((len(gene_ids), 1), gene_id), rest.gene_ids[:, :-1]], axis=1)
    new_values = np.concatenate([top[:, None], rest.values[:, :-1]], axis=1).astype(np.float32)
    if family == "scgpt":
        in_place = np.where(gene_ids == gene_id, top[:, None], values).astype(np.float32)
        new_ids = np.where(held[:, None], gene_ids, new_ids)
        new_values = np.where(held[:, None], in_place, new_values)
    return CellTokens(new_ids.astype(np.int64), new_values.astype(np.float32))


# ------------------------------------------------------------------------------ in-silico perturbation
def _cosine_to(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of x [N, D] to target [D] -> [N] float64."""
    x, target = np.asarray(x, dtype=np.float64), np.asarray(target, dtype=np.float64)
    norms = np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(target), 1e-12)
    return x @ target / norms


def perturbation_shift(
    model: ScFM,
    tokens: CellTokens,
    vocab: GeneVocab,
    gene: str | int,
    mode: str,
    target_embedding: np.ndarray,
    batch_size: int = 256,
) -> np.ndarray:
    """Per cell, how far perturbing ``gene`` moves the cell embedding toward ``target_embedding``.

    The shift is ``cos(after, target) - cos(before, target)``. Embeddings are in eval mode and fp32,
    so the shift is deterministic.

    Parameters
    ----------
    model : ScFM
        The model embedding the cells.
    tokens : CellTokens
        The cells, ``n_cells`` of them.
    vocab : GeneVocab
        The model's own gene vocabulary.
    gene : str or int
        A vocabulary gene name or token id.
    mode : str
        ``"delete"`` (:func:`delete_gene`) or ``"overexpress"`` (:func:`overexpress_gene` for the
        model's family).
    target_embedding : numpy.ndarray
        Shape ``(d_model,)``: e.g. the mean embedding (``train.embed``) of the cells of the state the
        gene drives.
    batch_size : int
        Cells per forward pass.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n_cells,)``, in [-2, 2]; > 0 = toward the target.

    Raises
    ------
    ValueError
        When ``mode`` is unknown, ``target_embedding`` is not a ``d_model`` vector, or the gene lies
        outside the model's vocabulary.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    target = np.asarray(target_embedding, dtype=np.float64).ravel()
    if target.shape != (model.config.d_model,):
        raise ValueError(
            f"target_embedding must be a [{model.config.d_model}] vector (the model's d_model), "
            f"got shape {np.shape(target_embedding)}"
        )
    gene_id = _gene_id(vocab, gene)
    if gene_id >= model.config.vocab_size:
        raise ValueError(
            f"gene id {gene_id} lies outside the model's vocabulary ({model.config.vocab_size} tokens): "
            "pass the model's own GeneVocab"
        )
    edited = (
        delete_gene(tokens, gene_id) if mode == "delete" else overexpress_gene(tokens, gene_id, model.config.family)
    )
    before = embed(model, tokens, batch_size)  # [N, D]
    after = embed(model, edited, batch_size)  # [N, D]
    return _cosine_to(after, target) - _cosine_to(before, target)


def perturbation_score(
    model: ScFM,
    tokens: CellTokens,
    vocab: GeneVocab,
    gene: str | int,
    mode: str,
    target_embedding: np.ndarray,
    batch_size: int = 256,
) -> float:
    """Mean :func:`perturbation_shift` over the cells, in [-2, 2].

    > 0 = the perturbation moves the cells toward the target, < 0 = away, ~0 = no effect.

    Parameters
    ----------
    model, tokens, vocab, gene, mode, target_embedding, batch_size
        As :func:`perturbation_shift`.

    Returns
    -------
    float
        The mean shift in [-2, 2] (NaN for no cells).
    """
    shift = perturbation_shift(model, tokens, vocab, gene, mode, target_embedding, batch_size)
    return float(shift.mean()) if len(shift) else float("nan")


def perturbation_probe(
    model: ScFM,
    tokens: CellTokens,
    cell_types: ArrayLike,
    vocab: GeneVocab,
    drivers: Mapping[str, str],
    n_cells: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """The in-silico perturbation probe of one checkpoint, one row per cell type with a driver.

    For cell type A with driver gene g (``drivers[A]``, in the vocabulary) and target = the mean
    embedding of A's cells in ``tokens``:

    - ``overexpress_toward``: :func:`perturbation_score` of overexpressing g in up to ``n_cells``
      cells of the *other* types (seeded draw): > 0 = they move toward A;
    - ``delete_away``: minus the score of deleting g from up to ``n_cells`` of A's cells that hold
      it: > 0 = they move away from A (NaN when none holds it).

    Both in [-2, 2], ~0 for a model that did not learn what g does (the random-init control).
    Cell types with fewer than 2 cells, no other types, or a driver outside the vocabulary are
    skipped.

    Parameters
    ----------
    model : ScFM
        The checkpoint's model.
    tokens : CellTokens
        The cells, ``n_cells`` of them.
    cell_types : array_like
        The label of each cell of ``tokens``, shape ``(n_cells,)``.
    vocab : GeneVocab
        The model's gene vocabulary.
    drivers : mapping of str to str
        Cell type -> its driver gene (``adata.uns["program_drivers"]`` of the atlas).
    n_cells : int
        At most this many cells perturbed per cell type and direction.
    seed : int
        Seed of the draw of cells.

    Returns
    -------
    pandas.DataFrame
        Columns ``cell_type``, ``driver``, ``overexpress_toward``, ``delete_away`` (both in
        [-2, 2]), ``n_overexpressed``, ``n_deleted``.

    Raises
    ------
    ValueError
        When ``cell_types`` does not label every cell of ``tokens``.
    """
    import pandas as pd

    cell_types = np.asarray(cell_types).astype(str)
    if len(cell_types) != len(tokens):
        raise ValueError(f"cell_types has {len(cell_types)} labels for {len(tokens)} cells")
    rng = np.random.default_rng(seed)
    known = set(vocab.genes)
    rows = []
    for cell_type, gene in sorted(drivers.items()):
        members = np.flatnonzero(cell_types == cell_type)
        others = np.flatnonzero(cell_types != cell_type)
        if len(members) < 2 or len(others) == 0 or gene not in known:
            continue
        target = embed(model, tokens.subset(members)).mean(0)
        pick = np.sort(rng.choice(others, size=min(n_cells, len(others)), replace=False))
        toward = perturbation_score(model, tokens.subset(pick), vocab, gene, "overexpress", target)
        holders = members[holds_gene(tokens.subset(members), _gene_id(vocab, gene))]
        holders = (
            np.sort(rng.choice(holders, size=min(n_cells, len(holders)), replace=False)) if len(holders) else holders
        )
        away = (
            -perturbation_score(model, tokens.subset(holders), vocab, gene, "delete", target)
            if len(holders)
            else np.nan
        )
        rows.append(
            {
                "cell_type": cell_type,
                "driver": gene,
                "overexpress_toward": toward,
                "delete_away": away,
                "n_overexpressed": len(pick),
                "n_deleted": len(holders),
            }
        )
    return pd.DataFrame(
        rows, columns=["cell_type", "driver", "overexpress_toward", "delete_away", "n_overexpressed", "n_deleted"]
    )
