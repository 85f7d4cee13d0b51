"""Nested, stratified label budgets for training-cell subsets."""

import numpy as np
import pytest

from scfm_lib.data import ScfmDataError, label_budget_subsets

BUDGETS = [0.01, 0.05, 0.1, 0.25, 1.0]


def labels(seed=0):
    """Imbalanced classes: 500, 120, 30 and 3 cells, shuffled."""
    values = np.repeat(["T", "B", "NK", "rare"], [500, 120, 30, 3])
    return np.random.default_rng(seed).permutation(values)


def test_budgets_nest():
    subsets = label_budget_subsets(labels(), BUDGETS, seed=0)
    assert list(subsets) == BUDGETS
    for small, large in zip(BUDGETS, BUDGETS[1:]):
        assert set(subsets[small]) <= set(subsets[large])
    np.testing.assert_array_equal(subsets[1.0], np.arange(len(labels())))


def test_every_class_at_every_budget_with_its_share():
    y = labels()
    subsets = label_budget_subsets(y, BUDGETS, seed=0)
    classes, sizes = np.unique(y, return_counts=True)
    for b, idx in subsets.items():
        assert (np.diff(idx) > 0).all()  # sorted, no duplicates
        kept = dict(zip(*np.unique(y[idx], return_counts=True)))
        assert kept == {c: max(1, int(round(b * n))) for c, n in zip(classes, sizes)}


def test_deterministic_by_seed_and_different_across_seeds():
    y = labels()
    a = label_budget_subsets(y, BUDGETS, seed=3)
    b = label_budget_subsets(y, BUDGETS, seed=3)
    c = label_budget_subsets(y, BUDGETS, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in BUDGETS)
    assert not np.array_equal(a[0.1], c[0.1])


def test_accepts_lists_and_integer_labels():
    out = label_budget_subsets([1, 1, 2, 2, 2, 2], [0.5], seed=0)
    assert len(out[0.5]) == 1 + 2


@pytest.mark.parametrize("budgets", [[0.0], [-0.1], [1.5], [0.1, float("nan")]])
def test_budgets_outside_unit_interval_are_refused(budgets):
    with pytest.raises(ScfmDataError, match=r"outside \(0, 1\]"):
        label_budget_subsets(labels(), budgets, seed=0)


def test_empty_labels_are_refused():
    with pytest.raises(ScfmDataError, match="non-empty"):
        label_budget_subsets([], [0.5], seed=0)
