"""Metric functions against independent implementations and constructed cases."""

import itertools
from math import comb

import numpy as np
import pytest

from scfm_lib import metrics


def reference_ari(a, b):
    """Hubert & Arabie's adjusted Rand index from the contingency table."""
    ua, ub = np.unique(a), np.unique(b)
    table = np.array([[np.sum((a == x) & (b == y)) for y in ub] for x in ua])
    index = sum(comb(int(n), 2) for n in table.ravel())
    rows = sum(comb(int(n), 2) for n in table.sum(1))
    cols = sum(comb(int(n), 2) for n in table.sum(0))
    expected = rows * cols / comb(len(a), 2)
    return (index - expected) / (0.5 * (rows + cols) - expected)


def reference_nmi(a, b):
    n = len(a)
    ua, ub = np.unique(a), np.unique(b)
    p = np.array([[np.sum((a == x) & (b == y)) / n for y in ub] for x in ua])
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = (p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum()
    h = lambda q: -(q[q > 0] * np.log(q[q > 0])).sum()  # noqa: E731
    return mi / ((h(pa) + h(pb)) / 2)


def reference_macro_f1(t, p):
    scores = []
    for c in np.unique(t):
        tp = np.sum((t == c) & (p == c))
        precision = tp / max(np.sum(p == c), 1)
        recall = tp / np.sum(t == c)
        scores.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return np.mean(scores)


@pytest.mark.parametrize("seed", range(5))
def test_against_reference_implementations(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.6, t, rng.integers(0, 5, 200))
    assert metrics.accuracy(t, p) == pytest.approx(np.mean(t == p))
    assert metrics.macro_f1(t, p) == pytest.approx(reference_macro_f1(t, p))
    assert metrics.ari(t, p) == pytest.approx(reference_ari(t, p))
    assert metrics.nmi(t, p) == pytest.approx(reference_nmi(t, p))


def test_constructed_cases():
    t = np.array([0, 0, 1, 1, 2, 2])
    assert metrics.accuracy(t, t) == 1.0 and metrics.macro_f1(t, t) == 1.0
    relabelled = np.array([5, 5, 3, 3, 9, 9])  # same partition, other names
    assert metrics.ari(t, relabelled) == pytest.approx(1.0)
    assert metrics.nmi(t, relabelled) == pytest.approx(1.0)
    assert metrics.nmi(t, np.zeros(6)) == pytest.approx(0.0)
    # A class predicted but absent from y_true does not enter the macro mean.
    assert metrics.macro_f1(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 7])) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.accuracy(["a", "b"], ["a", "c"]) == 0.5


def test_ranges_over_random_labels():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 3, 30), rng.integers(0, 3, 30)
        assert -0.5 <= metrics.ari(a, b) <= 1
        assert 0 <= metrics.nmi(a, b) <= 1
        assert 0 <= metrics.macro_f1(a, b) <= 1


@pytest.mark.parametrize(
    "args, fragment",
    [
        (([0, 1], [0]), "same cells"),
        (([], []), "empty"),
        (([0.0, np.nan], [0, 1]), "NaN"),
        ((np.zeros((2, 2)), np.zeros((2, 2))), "1-D"),
    ],
)
def test_bad_input(args, fragment):
    for fn in (metrics.accuracy, metrics.macro_f1, metrics.ari, metrics.nmi):
        with pytest.raises(ValueError, match=fragment):
            fn(*args)


def test_permutation_invariance_of_clustering_scores():
    rng = np.random.default_rng(1)
    t, p = rng.integers(0, 3, 60), rng.integers(0, 4, 60)
    for perm in itertools.islice(itertools.permutations(range(4)), 5):
        q = np.array(perm)[p]
        assert metrics.ari(t, q) == pytest.approx(metrics.ari(t, p))
        assert metrics.nmi(t, q) == pytest.approx(metrics.nmi(t, p))


def test_macro_f1_within_groups_against_a_hand_count():
    """Two tissues: a per-tissue macro-F1 worked out by hand, then averaged with equal weight."""
    y_true = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    y_pred = np.array([0, 1, 1, 1, 2, 2, 3, 3])
    tissue = np.array(["lung"] * 4 + ["gut"] * 4)
    # lung, types {0, 1}: F1(0) = 2/3, F1(1) = 2*1*(2/3)/(1+2/3) = 0.8
    # gut, types {2, 3}: F1(2) = 2*1*(2/3)/(1+2/3) = 0.8, F1(3) = 2*0.5*1/1.5 = 2/3
    expected = ((2 / 3 + 0.8) / 2 + (0.8 + 2 / 3) / 2) / 2
    assert metrics.macro_f1_within(y_true, y_pred, tissue) == pytest.approx(expected)
    # a prediction of another tissue's type only costs the true type's recall
    assert metrics.macro_f1_within(np.array([0, 1]), np.array([0, 2]), np.array(["a", "a"])) == pytest.approx(0.5)
    assert metrics.macro_f1_within(y_true, y_true, tissue) == 1.0
    # one group: the plain macro-F1
    assert metrics.macro_f1_within(y_true, y_pred, np.zeros(8)) == pytest.approx(metrics.macro_f1(y_true, y_pred))
    with pytest.raises(ValueError, match="one group per cell"):
        metrics.macro_f1_within(y_true, y_pred, tissue[:3])


@pytest.mark.parametrize("labels", ["int", "str"])
def test_macro_f1_is_scikit_learns_bit_for_bit(labels):
    """The count-based macro-F1 returns exactly scikit-learn's f1_score(labels=unique(y_true),
    average="macro", zero_division=0), also where predictions hold labels y_true lacks."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(300):
        n, k = int(rng.integers(1, 80)), int(rng.integers(1, 9))
        t, p = rng.integers(0, k, n), rng.integers(0, k + 2, n)  # k, k+1: predicted, never true
        if labels == "str":
            t, p = np.array([f"type{x}" for x in t]), np.array([f"type{x}" for x in p])
        expected = f1_score(t, p, labels=np.unique(t), average="macro", zero_division=0)
        assert metrics.macro_f1(t, p) == expected
