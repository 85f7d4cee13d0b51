"""The study's controls: can the pipeline see an effect, and can it see its absence?

- **Negative control** (:func:`permute_genes`, :func:`negative_control`): the same transformer,
  pretrained with the same budget and seeds on the corpus with each gene's counts permuted
  across cells independently. Every gene keeps its marginal distribution (so the context-free
  predictors of gate 0 are unchanged) while co-expression, the only thing a cell's other genes
  can tell about one gene, is destroyed. Its frozen gain from the smallest to the largest corpus
  must be shown equivalent to 0.
- **Positive control** (:func:`rare_last_order`, :func:`positive_control`): an embedding whose
  frozen quality grows with corpus size by construction: PCA fitted on nested corpora in which
  the rare subtypes (each cell type's second subtype) appear only in the largest fraction,
  scored on subtype annotation with few labels. Its "finetuned" counterpart, a logistic
  regression on the same input that never sees the corpus, cannot gain, so D equals the frozen
  gain: the statistics must detect both.

Both controls write the same records as the evaluate job (``mode``, ``metric``, ``value`` per
run), and :mod:`scfm_lib.study.verdicts` puts them through the same endpoint code as the study.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

from scfm_lib import data, evaluate, io, metrics, results, train
from scfm_lib.config import Profile, Run
from scfm_lib.layout import NEGATIVE_CONTROL as NEGATIVE
from scfm_lib.layout import POSITIVE_CONTROL as POSITIVE
from scfm_lib.layout import ResultsLayout


# ------------------------------------------------------------------------------ constructions
def permute_genes(counts: sp.spmatrix | np.ndarray, seed: int) -> sp.csr_matrix:
    """Each gene's column of ``counts`` permuted across cells, independently per gene.

    Keeps every gene's marginal (the multiset of its counts) and destroys co-expression. Cell
    library sizes change (a cell's counts now come from other cells). Deterministic for ``seed``.

    Parameters
    ----------
    counts : scipy.sparse matrix or numpy.ndarray
        Counts, shape ``(n_cells, n_genes)``.
    seed : int
        Seed of the permutations.

    Returns
    -------
    scipy.sparse.csr_matrix
        The permuted counts, the same shape and dtype (integer values).
    """
    rng = np.random.default_rng(seed)
    csc = sp.csc_matrix(counts)
    n_cells = csc.shape[0]
    indices = csc.indices.copy()
    for g in range(csc.shape[1]):
        lo, hi = csc.indptr[g], csc.indptr[g + 1]
        if hi > lo:  # the nonzero cells of a permuted column are a random draw of as many cells
            indices[lo:hi] = np.sort(rng.choice(n_cells, size=hi - lo, replace=False))
    # The values move with their new rows: a random order of the column's nonzero values.
    values = csc.data.copy()
    for g in range(csc.shape[1]):
        lo, hi = csc.indptr[g], csc.indptr[g + 1]
        values[lo:hi] = rng.permutation(values[lo:hi])
    return sp.csc_matrix((values, indices, csc.indptr), shape=csc.shape).tocsr()


def rare_last_order(is_rare: np.ndarray, seed: int) -> np.ndarray:
    """A seeded order of cells with every rare cell after every common one (each part shuffled).

    Nested prefixes of it (:func:`nested_prefixes`) hold no rare cell until they pass the commons.

    Parameters
    ----------
    is_rare : numpy.ndarray
        bool, shape ``(n_cells,)``.
    seed : int
        Seed of the shuffles.

    Returns
    -------
    numpy.ndarray
        A permutation of ``0 .. n_cells - 1``, shape ``(n_cells,)``.
    """
    rng = np.random.default_rng(seed)
    is_rare = np.asarray(is_rare, dtype=bool)
    common, rare = np.flatnonzero(~is_rare), np.flatnonzero(is_rare)
    return np.concatenate([rng.permutation(common), rng.permutation(rare)])


def nested_prefixes(order: np.ndarray, fractions: Sequence[float], n_cells: int) -> dict[float, np.ndarray]:
    """Sorted cell indices per fraction: the first ``round(f * n_cells)`` cells of ``order``.

    At least one cell for ``f > 0``, as :func:`scfm_lib.data.nested_subsets` cuts its permutation.

    Parameters
    ----------
    order : numpy.ndarray
        An order of the cells (:func:`rare_last_order`).
    fractions : sequence of float
        Shares of the cells, each in [0, 1].
    n_cells : int
        Cells the fractions are shares of.

    Returns
    -------
    dict of float to numpy.ndarray
        Fraction -> sorted cell indices.
    """
    return {float(f): np.sort(order[: 0 if f == 0 else max(1, int(round(float(f) * n_cells)))]) for f in fractions}


def few_labels(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``per_class`` cells of each label, seeded.

    Parameters
    ----------
    labels : numpy.ndarray
        Cell labels, shape ``(n_cells,)``.
    per_class : int
        Cells kept per label.
    seed : int
        Seed of the draw.

    Returns
    -------
    numpy.ndarray
        Sorted indices into ``labels``.
    """
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


# ------------------------------------------------------------------------------ jobs
def _inputs(profile: Profile, results_dir: str | Path, family: str):
    layout = ResultsLayout(results_dir)
    vocab = data.GeneVocab.load(layout.vocab)
    downstream = ad.read_h5ad(layout.dataset("downstream"), backed="r")
    obs = downstream.obs
    split = {s: np.flatnonzero(obs["split"].to_numpy() == s) for s in ("train", "val", "test")}
    tokens = data.CellTokens.load(layout.tokens(family, "downstream"))
    return layout, vocab, obs, split, tokens


def negative_control(profile: Profile, results_dir: str | Path, family: str, progress: bool = False) -> list[dict]:
    """Pretrain ``family`` on the gene-permuted corpus and score each checkpoint's frozen readout.

    Pretraining runs at the smallest and the largest pretrained fraction x the first
    ``study.negative_seeds`` seeds of those fractions (all with 0), with the profile's pretraining
    budget; each checkpoint's primary frozen readout (linear probe, macro-F1 on the test donors) and
    its validation loss on real corpus cells are scored. Writes
    ``metrics/negative_control/<run>.json`` per run (resumable: finished checkpoints are kept).

    Parameters
    ----------
    profile : Profile
        The study's profile.
    results_dir : str or pathlib.Path
        The profile's results folder (its ``data/`` job has run).
    family : str
        The model family.
    progress : bool
        Show pretraining's progress bars.

    Returns
    -------
    list of dict
        The metrics payloads written, one per run; records ``linear_probe``/``macro_f1`` (in
        [0, 1]) and ``pretrain``/``val_loss`` (>= 0).
    """
    layout, vocab, obs, split, tokens = _inputs(profile, results_dir, family)
    corpus = ad.read_h5ad(layout.dataset("corpus"))
    is_train = corpus.obs["pretrain_split"].astype(str).to_numpy() == "train"
    permuted = ad.AnnData(X=None, obs=corpus.obs.iloc[np.flatnonzero(is_train)].copy(), var=corpus.var.copy())
    permuted.layers["counts"] = permute_genes(corpus.layers["counts"][is_train], seed=profile.data.seed)
    medians = vocab.medians if family == "geneformer" else None
    corpus_tokens = data.tokenize(permuted, vocab, profile.data.context_genes, medians=medians)
    val = data.CellTokens.load(layout.tokens(family, "corpus_val"))
    model_config = profile.model_config(vocab_size=len(vocab), family=family)
    pretrained = [f for f in profile.fractions if f > 0]
    ends = sorted({min(pretrained), max(pretrained)})
    classes, (y_train, y_test) = data.encode_labels(
        obs[profile.data.label_key].to_numpy()[split["train"]], obs[profile.data.label_key].to_numpy()[split["test"]]
    )
    data_hashes = io.read_json(layout.metrics("data", "datasets"))["provenance"]["data_sha256"]
    payloads = []
    for fraction in ends:
        seeds = profile.seeds_at(fraction)
        for seed in seeds[: profile.study.negative_seeds or len(seeds)]:
            started = time.perf_counter()
            name = Run(family, fraction, seed).name
            subset = data.nested_subsets(len(corpus_tokens), [fraction], seed=seed)[fraction]
            out_dir = layout.checkpoint(name, control=NEGATIVE)
            cfg = profile.pretrain_config(seed=seed, num_threads=profile.workflow.threads_per_job)
            outcome = train.pretrain(model_config, corpus_tokens.subset(subset), val, cfg, out_dir, progress=progress)
            model = train.load_checkpoint(out_dir)
            Z = {s: train.embed(model, tokens.subset(split[s])) for s in ("train", "test")}
            y_probe = evaluate.linear_probe(Z["train"], y_train, Z["test"], seed=seed)
            records = [
                {"mode": "linear_probe", "metric": "macro_f1", "value": metrics.macro_f1(y_test, y_probe)},
                {"mode": "pretrain", "metric": "val_loss", "value": float(outcome["val_loss"])},
            ]
            payloads.append(
                results.write_metrics(
                    layout.metrics(NEGATIVE, name),
                    kind=NEGATIVE,
                    name=name,
                    run={
                        "family": family,
                        "fraction": fraction,
                        "seed": seed,
                        "n_pretrain_cells": len(subset),
                        "control": "negative",
                    },
                    records=records,
                    parameters={
                        "profile": profile.name,
                        "model": model_config.to_dict(),
                        "pretrain": cfg.__dict__,
                        "permutation_seed": profile.data.seed,
                    },
                    data_hashes=data_hashes,
                    extra={
                        "seconds": time.perf_counter() - started,
                        "history": outcome["history"],
                        "best_step": outcome.get("best_step"),
                        "steps": outcome["step"],
                    },
                )
            )
    return payloads


def positive_control(profile: Profile, results_dir: str | Path, family: str) -> list[dict]:
    """The positive control for ``family``'s tokens, at every pretrained fraction x seed of the profile.

    PCA (``study.positive_n_pcs``) on the token bag of nested corpora whose rare subtypes
    (``cell_subtype`` ending in "b") come last, at every pretrained fraction x seed of the profile;
    a linear probe on it (frozen) and a logistic regression on the whole token bag (the
    corpus-blind "finetuned" counterpart), each trained on ``study.positive_labels_per_class``
    training-donor cells per subtype and scored by macro-F1 over subtypes on the test donors.
    Writes ``metrics/positive_control/<family>_f<f>_s<s>.json``.

    Parameters
    ----------
    profile, results_dir
        As :func:`negative_control`.
    family : str
        The model family whose tokens are read.

    Returns
    -------
    list of dict
        The metrics payloads written, one per run; records ``linear_probe`` and ``finetune`` of
        ``macro_f1_subtype``, in [0, 1].

    Raises
    ------
    ValueError
        When the corpus has no ``cell_subtype`` column (not the synthetic atlas).
    """
    layout, vocab, obs, split, tokens = _inputs(profile, results_dir, family)
    corpus_obs = ad.read_h5ad(layout.dataset("corpus"), backed="r").obs
    train_obs = corpus_obs[corpus_obs["pretrain_split"].astype(str) == "train"]
    if "cell_subtype" not in train_obs:
        raise ValueError(
            "the positive control needs the synthetic atlas' cell_subtype column; set "
            "study.positive_control: false for a corpus without subtypes"
        )
    is_rare = train_obs["cell_subtype"].astype(str).str.endswith("b").to_numpy()
    corpus_bag = evaluate.token_bag(data.CellTokens.load(layout.tokens(family, "corpus_train")), len(vocab))
    bag = evaluate.token_bag(tokens, len(vocab))
    subtypes = obs["cell_subtype"].astype(str).to_numpy()
    pretrained = sorted(f for f in profile.fractions if f > 0)
    data_hashes = io.read_json(layout.metrics("data", "datasets"))["provenance"]["data_sha256"]
    payloads = []
    for seed in profile.seeds:
        labelled = split["train"][few_labels(subtypes[split["train"]], profile.study.positive_labels_per_class, seed)]
        classes, (y_train, y_test) = data.encode_labels(subtypes[labelled], subtypes[split["test"]])
        # the corpus-blind counterpart: the same few labels, all of the input, no corpus
        y_blind = evaluate.linear_probe(bag[labelled], y_train, bag[split["test"]], seed=seed)
        blind = metrics.macro_f1(y_test, y_blind)
        order = rare_last_order(is_rare, seed)
        fractions = [f for f in pretrained if seed in profile.seeds_at(f)]
        for fraction, cells in nested_prefixes(order, fractions, len(order)).items():
            n_pcs = min(profile.study.positive_n_pcs, len(cells) - 1, corpus_bag.shape[1])
            pca = PCA(n_components=n_pcs, random_state=seed).fit(corpus_bag[cells])
            y_probe = evaluate.linear_probe(
                pca.transform(bag[labelled]), y_train, pca.transform(bag[split["test"]]), seed=seed
            )
            name = Run(family, fraction, seed).name
            payloads.append(
                results.write_metrics(
                    layout.metrics(POSITIVE, name),
                    kind=POSITIVE,
                    name=name,
                    run={
                        "family": family,
                        "fraction": fraction,
                        "seed": seed,
                        "n_pretrain_cells": int(len(cells)),
                        "control": "positive",
                    },
                    records=[
                        {
                            "mode": "linear_probe",
                            "metric": "macro_f1_subtype",
                            "value": metrics.macro_f1(y_test, y_probe),
                        },
                        {"mode": "finetune", "metric": "macro_f1_subtype", "value": blind},
                    ],
                    parameters={
                        "profile": profile.name,
                        "n_pcs": n_pcs,
                        "labels_per_class": profile.study.positive_labels_per_class,
                    },
                    data_hashes=data_hashes,
                    extra={"rare_cells_in_corpus": int(is_rare[cells].sum()), "n_subtypes": len(classes)},
                )
            )
    return payloads
