"""Probes of what a model learnt about genes: gene-embedding geometry and in-silico perturbation.

Two questions, each asked against the synthetic atlas's known biology (``adata.uns``):

1. Do genes of the same program lie together in the input gene-token embedding?
   :func:`gene_embeddings` reads the table, :func:`program_retrieval` scores it: each program
   gene queries all other genes by cosine similarity and the average precision of finding its
   program mates is averaged (mean average precision, MAP), next to its chance level.

2. Does the model know what a gene *does* to a cell? :func:`perturbation_shift` edits the tokens
   (:func:`delete_gene`, :func:`overexpress_gene`), re-embeds the cells and measures how far each
   moves toward a target cell state (Geneformer's in-silico perturbation, scored by cosine).

Ground truth on the synthetic atlas. Cell type A is defined by its programs
(``type_<A>``, ``lineage_<...>``, ``subtype_...``); each program has a driver, its most
strongly loaded member (``adata.uns["program_drivers"]``). With ``target`` = A's mean cell
embedding (``train.embed(model, tokens_A).mean(0)``), a model that learnt the program gives

- ``perturbation_score(model, tokens_B, vocab, driver, "overexpress", target) > 0``: putting
  A's driver at the top of type-B cells moves them toward A;
- ``perturbation_score(model, tokens_A, vocab, driver, "delete", target) < 0``: removing it
  from A's own cells moves them away from A.

A model that did not learn the program (random init) gives shifts of either sign near 0: the
random-init checkpoint (``train.init_checkpoint``) is the control every score is read against.
Deletion only changes cells that hold the gene, so score deletion on cells whose tokens
contain it (:func:`holds_gene`); the others contribute an exact 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import ArrayLike

from scfm_lib.data import PAD_ID, SPECIAL_TOKENS, CellTokens, GeneVocab
from scfm_lib.model import FAMILIES, ScFM
from scfm_lib.train import embed

if TYPE_CHECKING:  # pandas is imported where the probe table is built
    import pandas as pd

MODES = ("delete", "overexpress")


# ------------------------------------------------------------------------------ gene embeddings
def gene_embeddings(model: ScFM, vocab: GeneVocab, genes: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """The input gene-token embeddings of ``genes``, with their names.

    Default: every vocabulary gene, in vocabulary order; row i of the matrix = gene i.

    Parameters
    ----------
    model : ScFM
        The model whose ``gene_embedding`` table is read.
    vocab : GeneVocab
        The model's gene vocabulary.
    genes : sequence of str, optional
        The genes to read; default every vocabulary gene.

    Returns
    -------
    names : list of str
        The genes, in row order.
    matrix : numpy.ndarray
        float32, shape ``(n_genes, d_model)``.

    Raises
    ------
    ValueError
        When a gene is not in the vocabulary.
    """
    names = list(vocab.genes) if genes is None else [str(g) for g in genes]
    ids = vocab.encode(names)
    missing = [n for n, i in zip(names, ids) if i < 0]
    if missing:
        raise ValueError(f"{len(missing)} gene(s) are not in the model's vocabulary, e.g. {missing[:5]}")
    with torch.no_grad():
        matrix = model.gene_embedding.weight[torch.from_numpy(ids)].float().cpu().numpy()
    return names, matrix


def _cosine_matrix(x: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows of x [G, D] -> [G, G] float64; a zero row has
    similarity 0 to everything (rather than NaN)."""
    x = np.asarray(x, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x @ x.T


def _average_precision(scores: np.ndarray, relevant: np.ndarray, k: int | None = None) -> np.ndarray:
    """Average precision of each row's ranking (descending ``scores``) at retrieving its
    ``relevant`` items. scores [Q, N] float, relevant [Q, N] bool, every row with >= 1 relevant
    item -> [Q] float64 in [0, 1].

    AP = sum over relevant items of precision at their rank / n_relevant. Tied scores are scored
    as scikit-learn's ``average_precision_score`` does: a tied block counts at once, each of its
    relevant items getting the precision at the block's end, so ties are neither optimistic nor
    dependent on the order of the items. With ``k``, only the top k positions count and the sum
    is divided by min(k, n_relevant) (AP@k: 1 when the top positions are all mates); a tied
    block cut by k counts its relevant items pro rata (spread evenly over the block).
    """
    Q, N = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)  # [Q, N] descending
    rel = np.take_along_axis(relevant, order, axis=1).astype(np.float64)  # [Q, N]
    hits = np.cumsum(rel, axis=1)  # relevant items in the top i+1
    # First and last position of each position's tie block: a block ends where the next score differs.
    is_end = np.ones((Q, N), dtype=bool)
    is_end[:, :-1] = s[:, :-1] != s[:, 1:]
    is_start = np.ones((Q, N), dtype=bool)
    is_start[:, 1:] = is_end[:, :-1]
    positions = np.arange(N)
    end = np.minimum.accumulate(np.where(is_end, positions, N)[:, ::-1], axis=1)[:, ::-1]  # [Q, N]
    start = np.maximum.accumulate(np.where(is_start, positions, 0), axis=1)  # [Q, N]
    hits_at_end = np.take_along_axis(hits, end, axis=1)
    hits_before = np.take_along_axis(hits, start, axis=1) - np.take_along_axis(rel, start, axis=1)
    spread = (hits_at_end - hits_before) / (end - start + 1)  # block's relevant share, per position
    precision_at_end = hits_at_end / (end + 1)  # [Q, N]
    n_rel = rel.sum(1)
    depth = N if k is None else min(int(k), N)
    return (spread[:, :depth] * precision_at_end[:, :depth]).sum(1) / np.minimum(n_rel, depth)


def _random_ap(n_pos: np.ndarray, n_candidates: int, k: int | None = None) -> np.ndarray:
    """Exact expected AP (or AP@k) of a uniformly random ranking of ``n_candidates`` items of
    which ``n_pos`` are relevant: E[rel_i * hits_i / i] = (p + (i - 1) p (R - 1) / (N - 1)) / i
    with p = R / N, summed over positions i <= k and divided by min(k, R) (Bestgen 2015 for k = N).
    It exceeds R / N for few positives: the first hit lands early by luck often enough."""
    R, N = n_pos.astype(np.float64), float(n_candidates)
    depth = n_candidates if k is None else min(int(k), n_candidates)
    i = np.arange(1, depth + 1, dtype=np.float64)[None, :]  # [1, depth]
    p = (R / N)[:, None]
    pairs = (R * (R - 1) / (N * (N - 1)))[:, None] if N > 1 else np.zeros_like(p)
    return ((p + (i - 1) * pairs) / i).sum(1) / np.minimum(R, depth)


def program_retrieval(
    embeddings: np.ndarray, names: Sequence[str], programs: Mapping[str, Sequence[str]], k: int | None = None
) -> dict[str, float | int]:
    """Do genes of the same program lie together? Mean average precision of retrieving program mates.

    Mates are retrieved by cosine similarity. Queries: every gene of ``names`` that belongs to a
    program with >= 2 members among ``names`` (members outside ``names`` are ignored). Each query
    ranks all *other* genes of ``names`` (program genes and the rest) by cosine similarity of their
    rows in ``embeddings`` [G, D]; its positives are its mates, the union over all its programs. AP
    per query (see :func:`_average_precision`; with ``k``, AP@k), averaged over queries.

    Parameters
    ----------
    embeddings : numpy.ndarray
        Gene embeddings, shape ``(n_genes, d)``, row i = ``names[i]``.
    names : sequence of str
        The genes of the rows (no duplicates).
    programs : mapping of str to sequence of str
        Program name -> its member genes.
    k : int, optional
        Score AP@k (only the top ``k`` positions count); default the full ranking.

    Returns
    -------
    dict
        - ``map``: mean average precision, in [0, 1]; 1 = every gene's nearest genes are its mates;
        - ``chance``: mean over queries of n_positives / n_candidates, in (0, 1]: the precision of a
          random ranking at any depth, and the AP of a random ranking when programs are large;
        - ``map_over_chance``: ``map - chance_ap``, in [-1, 1]; ~0 for an embedding that ignores
          programs (random rankings score ``chance_ap`` on average), > 0 when programs lie together;
        - ``chance_ap``: the exact expected MAP (MAP@k with ``k``) of random rankings, in (0, 1];
          above ``chance`` for small programs (a single mate among 1000 genes: 0.0075 vs 0.001;
          9 mates among 599: 0.025 vs 0.015), so random embeddings score ``map`` ~ ``chance_ap``.
          With ``k``, compare ``map`` with ``chance_ap`` only: ``chance`` is a full-ranking level;
        - ``n_queries``, ``n_programs`` (programs with >= 2 members present), ``n_candidates``.

    Raises
    ------
    ValueError
        When ``embeddings`` is not one row per name, ``names`` repeats a gene, or no program has
        two members among ``names``.
    """
    embeddings = np.asarray(embeddings)
    names = [str(n) for n in names]
    if embeddings.ndim != 2 or len(embeddings) != len(names):
        raise ValueError(f"embeddings {embeddings.shape} must be [G, D] with one row per name ({len(names)} names)")
    if len(set(names)) != len(names):
        raise ValueError("names hold duplicated genes; one embedding row per gene")
    index = {n: i for i, n in enumerate(names)}
    members = {p: sorted({index[g] for g in genes if str(g) in index}) for p, genes in programs.items()}
    members = {p: m for p, m in members.items() if len(m) >= 2}
    if not members:
        raise ValueError(
            "no program has >= 2 member genes among names: nothing to retrieve "
            "(check that names and programs use the same gene identifiers)"
        )
    G = len(names)
    relevant = np.zeros((G, G), dtype=bool)  # relevant[q, c]: c is a mate of q
    for m in members.values():
        relevant[np.ix_(m, m)] = True
    np.fill_diagonal(relevant, False)
    queries = np.flatnonzero(relevant.any(1))
    # Candidates of a query are all genes but itself: drop the diagonal, row by row.
    off_diagonal = ~np.eye(G, dtype=bool)
    sims = _cosine_matrix(embeddings)[queries][off_diagonal[queries]].reshape(len(queries), G - 1)
    rel = relevant[queries][off_diagonal[queries]].reshape(len(queries), G - 1)
    ap = _average_precision(sims, rel, k)
    n_pos = rel.sum(1)
    chance = float(np.mean(n_pos / (G - 1)))
    mean_ap = float(ap.mean())
    chance_ap = float(_random_ap(n_pos, G - 1, k).mean())
    return {
        "map": mean_ap,
        "chance": chance,
        "map_over_chance": mean_ap - chance_ap,
        "chance_ap": chance_ap,
        "n_queries": int(len(queries)),
        "n_programs": len(members),
        "n_candidates": G - 1,
    }


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
