"""Frozen readouts of a cell embedding: linear probe and kNN labels, their scores, and the annotation tasks' cells.

Also the context-free ceiling of the token input (:func:`context_ceiling`): what a readout of the
input tokens alone, without any model, reaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from scfm_lib import metrics
from scfm_lib.data import PAD_ID, CellTokens, log_normalize
from scfm_lib.layout import ResultsLayout


def labelled_ood_cells(
    data_dir: str | Path, family: str, label_key: str, classes: Sequence[str]
) -> tuple[CellTokens, np.ndarray, int] | None:
    """The out-of-distribution annotation task: the cells of ``<data_dir>/ood.h5ad`` of known types.

    The cells kept are those whose type is one of ``classes`` (sorted, as
    :func:`scfm_lib.data.encode_labels` returns them). None where the profile has no labelled OOD set
    (no OOD tokens for ``family``, no ``ood.h5ad``, or no ``label_key`` column in it).

    Parameters
    ----------
    data_dir : str or pathlib.Path
        The profile's data folder (``ood.h5ad``, ``tokens/<family>/ood.npz``).
    family : str
        The model family whose tokens are read.
    label_key : str
        The ``obs`` column of the cell types.
    classes : sequence of str
        The training classes, sorted.

    Returns
    -------
    tuple of (CellTokens, numpy.ndarray, int) or None
        The tokens of the OOD cells of known types, their label codes (indices into ``classes``)
        and the number of OOD cells (all types); None without a labelled OOD set.
    """
    layout = ResultsLayout.of_data_dir(data_dir)
    tokens_path, obs_path = layout.tokens(family, "ood"), layout.dataset("ood")
    if not (tokens_path.exists() and obs_path.exists()):
        return None
    obs = ad.read_h5ad(obs_path, backed="r").obs
    if label_key not in obs:
        return None
    labels = obs[label_key].astype(str).to_numpy()
    seen = np.isin(labels, classes)
    codes = np.searchsorted(np.asarray(classes), labels[seen])
    return CellTokens.load(tokens_path).subset(np.flatnonzero(seen)), codes, len(labels)


def tissue_groups(obs: pd.DataFrame, index: np.ndarray, key: str = "tissue") -> np.ndarray | None:
    """The tissue of each cell in ``obs.iloc[index]``, for annotation within a tissue.

    Scored by :func:`scfm_lib.metrics.macro_f1_within`; None where ``obs`` has no ``key`` column or
    these cells come from one tissue (then the task is the plain one).

    Parameters
    ----------
    obs : pandas.DataFrame
        The cells' annotations.
    index : numpy.ndarray
        Positions of the evaluated cells in ``obs``, shape ``(n_cells,)``.
    key : str
        The tissue column.

    Returns
    -------
    numpy.ndarray or None
        str, shape ``(n_cells,)``; None without a column or with a single tissue.
    """
    if key not in obs:
        return None
    groups = obs[key].astype(str).to_numpy()[index]
    return groups if len(np.unique(groups)) > 1 else None


def token_bag(tokens: CellTokens, n_tokens: int) -> np.ndarray:
    """The input a model sees, as a dense matrix: each cell's token values at its context genes.

    The values are log1p CP10k, 0 elsewhere.

    Parameters
    ----------
    tokens : CellTokens
        The cells, ``n_cells`` of them.
    n_tokens : int
        Columns of the matrix (the vocabulary size, special tokens included).

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_cells, n_tokens)``.
    """
    gene_ids, values = tokens.take(slice(None))
    bag = np.zeros((len(gene_ids), n_tokens), dtype=np.float32)
    rows = np.repeat(np.arange(len(gene_ids)), gene_ids.shape[1])
    keep = gene_ids.ravel() != PAD_ID
    bag[rows[keep], gene_ids.ravel()[keep]] = values.ravel()[keep]
    return bag


def context_ceiling(
    adata: ad.AnnData,
    tokens: CellTokens,
    n_tokens: int,
    train: np.ndarray,
    test: np.ndarray,
    y_train: np.ndarray,
    y_test: np.ndarray,
    seed: int = 0,
) -> dict[str, float]:
    """What the context can hold: macro-F1 on the genes the model sees against the same on all genes.

    A logistic regression (:func:`linear_probe`) on the genes the model sees (:func:`token_bag`)
    against the same on all genes (log-normalized), trained on cells ``train`` and scored on cells
    ``test``.

    Parameters
    ----------
    adata : anndata.AnnData
        The cells with raw counts, shape ``(n_cells, n_genes)``.
    tokens : CellTokens
        The same cells' tokens.
    n_tokens : int
        The vocabulary size (:func:`token_bag`).
    train, test : numpy.ndarray
        Positions of the training and test cells.
    y_train, y_test : numpy.ndarray
        Their labels.
    seed : int
        Seed of the logistic regressions.

    Returns
    -------
    dict of str to float
        ``context`` and ``all_genes`` (macro-F1, in [0, 1]) and ``share`` = context / all genes
        (the study asks for >= 0.95).
    """
    full = log_normalize(adata).X
    full = full.toarray() if hasattr(full, "toarray") else np.asarray(full)
    bag = token_bag(tokens, n_tokens)
    all_genes = metrics.macro_f1(y_test, linear_probe(full[train], y_train, full[test], seed=seed))
    context = metrics.macro_f1(y_test, linear_probe(bag[train], y_train, bag[test], seed=seed))
    return {"context": float(context), "all_genes": float(all_genes), "share": float(context / all_genes)}


def classification_scores(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """Accuracy and macro-F1 of predicted labels.

    Parameters
    ----------
    y_true, y_pred : array_like
        True and predicted labels, shape ``(n_cells,)``.

    Returns
    -------
    dict of str to float
        ``accuracy`` and ``macro_f1``, each in [0, 1].
    """
    return {"accuracy": metrics.accuracy(y_true, y_pred), "macro_f1": metrics.macro_f1(y_true, y_pred)}


def linear_probe(Z_train: np.ndarray, y_train: np.ndarray, Z_test: np.ndarray, seed: int = 0) -> np.ndarray:
    """Standardize, then multinomial logistic regression (L2, C=1) on frozen embeddings.

    Fitted on one BLAS thread: lbfgs follows a slightly different path with another thread count,
    and a checkpoint's probe score then differed between a workflow job (Snakemake sets one thread)
    and the same notebook run by hand on two (seen on the quick profile: macro-F1 0.355 vs 0.351).

    Parameters
    ----------
    Z_train : numpy.ndarray
        Training embeddings, shape ``(n_train, d)``.
    y_train : numpy.ndarray
        Training labels, shape ``(n_train,)``.
    Z_test : numpy.ndarray
        Test embeddings, shape ``(n_test, d)``.
    seed : int
        The regression's random state.

    Returns
    -------
    numpy.ndarray
        Predicted labels, shape ``(n_test,)``, of ``y_train``'s dtype.
    """
    from threadpoolctl import threadpool_limits

    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    with threadpool_limits(limits=1):
        return model.fit(Z_train, y_train).predict(Z_test)


def knn_classify(Z_train: np.ndarray, y_train: np.ndarray, Z_test: np.ndarray, k: int = 15) -> np.ndarray:
    """Majority vote of the ``k`` nearest training cells, Euclidean after standardization.

    Parameters
    ----------
    Z_train, y_train, Z_test
        As :func:`linear_probe`.
    k : int
        Neighbours (at most ``n_train`` are used).

    Returns
    -------
    numpy.ndarray
        Predicted labels, shape ``(n_test,)``.
    """
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(k, len(Z_train))))
    return model.fit(Z_train, y_train).predict(Z_test)
