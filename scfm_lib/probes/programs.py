"""Do genes of the same program lie together in the input gene-token embedding?

:func:`gene_embeddings` reads the table, :func:`program_retrieval` scores it: each program gene
queries all other genes by cosine similarity and the average precision of finding its program
mates is averaged (mean average precision, MAP), next to its chance level. The ground truth is the
synthetic atlas's programs (``adata.uns``; see :mod:`scfm_lib.probes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from scfm_lib.data import GeneVocab
from scfm_lib.model import ScFM


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
    # Only the queries' rows of the similarity matrix are needed: [Q, G], not [G, G] (a vocabulary of
    # 13,000 genes would take 1.4 GB and most of the evaluation job's time for 32 queries).
    queries = np.array(sorted({i for m in members.values() for i in m}))  # every member has a mate (>= 2)
    row_of = {gene: row for row, gene in enumerate(queries)}
    relevant = np.zeros((len(queries), G), dtype=bool)  # relevant[q, c]: gene c is a mate of query q
    for m in members.values():
        relevant[np.ix_([row_of[i] for i in m], m)] = True
    relevant[np.arange(len(queries)), queries] = False
    # Candidates of a query are all genes but itself: drop its own column, row by row.
    others = np.ones((len(queries), G), dtype=bool)
    others[np.arange(len(queries)), queries] = False
    unit = np.asarray(embeddings, dtype=np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)  # a zero row: similarity 0, not NaN
    sims = (unit[queries] @ unit.T)[others].reshape(len(queries), G - 1)
    rel = relevant[others].reshape(len(queries), G - 1)
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
