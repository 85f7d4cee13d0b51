"""Metric functions (scib-metrics style): arrays in, a float out, the range documented.

Each wraps the scikit-learn reference implementation after validating its input; the tests
check them against independent implementations on constructed cases.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def _check(a, b, name_a: str = "y_true", name_b: str = "y_pred") -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"{name_a} and {name_b} must be 1-D label arrays, got shapes {a.shape} and {b.shape}")
    if len(a) != len(b):
        raise ValueError(f"{name_a} has {len(a)} labels but {name_b} has {len(b)}: they must be the same cells")
    if len(a) == 0:
        raise ValueError(f"{name_a} and {name_b} are empty: nothing to score")
    for name, arr in ((name_a, a), (name_b, b)):
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ValueError(f"{name} holds NaN labels; drop unlabelled cells before scoring")
    return a, b


def accuracy(y_true, y_pred) -> float:
    """Share of cells whose predicted label equals the true one. Range [0, 1]."""
    y_true, y_pred = _check(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def macro_f1(y_true, y_pred) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``y_true``. Range [0, 1].

    Classes predicted but absent from ``y_true`` do not enter the mean (their F1 is undefined),
    so a rare class the test set lacks cannot pull the score down.
    """
    y_true, y_pred = _check(y_true, y_pred)
    return float(skm.f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0))


def ari(labels_true, labels_pred) -> float:
    """Adjusted Rand index of two partitions. Range [-0.5, 1]; 1 = identical, ~0 = chance."""
    a, b = _check(labels_true, labels_pred, "labels_true", "labels_pred")
    return float(skm.adjusted_rand_score(a, b))


def nmi(labels_true, labels_pred) -> float:
    """Normalized mutual information (arithmetic mean normalization). Range [0, 1]."""
    a, b = _check(labels_true, labels_pred, "labels_true", "labels_pred")
    return float(skm.normalized_mutual_info_score(a, b, average_method="arithmetic"))
