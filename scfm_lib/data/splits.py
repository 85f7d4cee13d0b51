"""Nested corpus reductions, label budgets, train/val/test splits and label codes (all seeded)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from scfm_lib.data.validation import ScfmDataError

if TYPE_CHECKING:
    import anndata as ad


def nested_subsets(n_cells: int, fractions: Sequence[float], seed: int) -> dict[float, np.ndarray]:
    """Sorted cell indices per fraction; smaller fractions lie inside larger ones.

    One seeded permutation; fraction ``f`` takes its first ``round(f * n_cells)`` cells (at
    least one for ``f > 0``, none for ``f == 0``).

    Parameters
    ----------
    n_cells : int
        Cells of the full corpus.
    fractions : sequence of float
        Shares of the corpus, each in [0, 1].
    seed : int
        Seed of the permutation.

    Returns
    -------
    dict of float to numpy.ndarray
        Fraction -> sorted cell indices into the corpus.

    Raises
    ------
    ScfmDataError
        When a fraction lies outside [0, 1].
    """
    bad = [f for f in fractions if not 0.0 <= float(f) <= 1.0]
    if bad:
        raise ScfmDataError(f"fractions {bad} are outside [0, 1]; a fraction is a share of the corpus")
    order = np.random.default_rng(seed).permutation(n_cells)
    out = {}
    for f in fractions:
        n = 0 if f == 0 else max(1, int(round(float(f) * n_cells)))
        out[float(f)] = np.sort(order[:n])
    return out


def label_budget_subsets(labels: ArrayLike, budgets: Sequence[float], seed: int) -> dict[float, np.ndarray]:
    """Sorted indices into ``labels`` of the labelled training cells kept at each label budget.

    A budget is a share in (0, 1] of each class's cells. Per class (in sorted class order) one
    seeded permutation; budget ``b`` keeps its first ``max(1, round(b * n_class))`` cells. So the
    subsets are stratified (every class keeps at least one labelled cell, and its share),
    nested (a smaller budget's cells lie inside a larger one's) and deterministic for a
    ``seed``. Keys are the budgets as floats; budget 1.0 returns every cell.

    Parameters
    ----------
    labels : array_like
        The training cells' labels, shape ``(n_cells,)``.
    budgets : sequence of float
        Label budgets, each in (0, 1].
    seed : int
        Seed of the per-class permutations.

    Returns
    -------
    dict of float to numpy.ndarray
        Budget -> sorted int64 indices into ``labels``.

    Raises
    ------
    ScfmDataError
        When ``labels`` is empty or not 1-D, or a budget lies outside (0, 1].
    """
    labels = np.asarray(labels).astype(str)
    if labels.ndim != 1 or labels.size == 0:
        raise ScfmDataError(f"labels must be a non-empty 1-D array of cell labels, got shape {labels.shape}")
    bad = [b for b in budgets if not 0.0 < float(b) <= 1.0]  # also catches NaN
    if bad:
        raise ScfmDataError(
            f"label budgets {bad} are outside (0, 1]; a budget is the share of each class's "
            "training cells that keep their label"
        )
    rng = np.random.default_rng(seed)
    # Shuffle each class once, for all budgets: taking prefixes of one order is what nests them.
    orders = [
        members[rng.permutation(len(members))] for members in (np.flatnonzero(labels == c) for c in np.unique(labels))
    ]
    out = {}
    for b in budgets:
        kept = [order[: max(1, int(round(float(b) * len(order))))] for order in orders]
        out[float(b)] = np.sort(np.concatenate(kept)).astype(np.int64)
    return out


def split_cells(
    adata_or_obs: ad.AnnData | pd.DataFrame,
    by: str | None = None,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    stratify: str | None = None,
    test_groups: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Disjoint ``train``/``val``/``test`` cell indices covering every cell.

    With ``by`` (an ``obs`` column such as ``"donor"`` or ``"batch"``) whole groups go to one split,
    so evaluation always sees unseen donors or batches. Without it cells are split at random,
    per class of the ``stratify`` column if given, so every class keeps its share in each split.
    With ``by`` and ``test_groups`` (a condition shift: train on ``ctrl``, test on ``stim``) the
    cells of those groups are the test split, and the other cells are split into train and
    validation at random in the ratio ``fractions[0] : fractions[1]``, per ``stratify`` class.

    Parameters
    ----------
    adata_or_obs : anndata.AnnData or pandas.DataFrame
        The cells, or their ``obs`` table.
    by : str, optional
        An ``obs`` column whose groups (>= 3 of them) go whole to one split.
    fractions : tuple of float
        Shares of train, val and test, summing to 1 (of groups when ``by`` is given).
    seed : int
        Seed of the split.
    stratify : str, optional
        An ``obs`` column whose classes keep their share in each split (random splits only).
    test_groups : sequence of str, optional
        Groups of ``by`` that form the test split.

    Returns
    -------
    dict of str to numpy.ndarray
        ``"train"``, ``"val"``, ``"test"`` -> sorted positional cell indices.

    Raises
    ------
    ScfmDataError
        When ``fractions`` are not three shares summing to 1, a named column or test group is
        missing, every cell would be a test cell, or ``by`` has too few groups.
    """
    obs = adata_or_obs.obs if hasattr(adata_or_obs, "obs") else adata_or_obs
    if abs(sum(fractions) - 1.0) > 1e-9 or len(fractions) != 3:
        raise ScfmDataError(f"fractions {fractions} must be three shares summing to 1 (train, val, test)")
    if test_groups:
        if by is None or by not in obs.columns:
            raise ScfmDataError(
                f"test_groups {list(test_groups)} need the obs column they name groups of (by={by!r}); "
                f"obs has {list(obs.columns)}"
            )
        groups = obs[by].astype(str).to_numpy()
        missing = sorted(set(map(str, test_groups)) - set(groups.tolist()))
        is_test = np.isin(groups, [str(g) for g in test_groups])
        if missing or is_test.all():
            raise ScfmDataError(
                f"test_groups {list(test_groups)} of {by!r}: "
                + (
                    f"{missing} not found (groups: {sorted(set(groups.tolist()))})"
                    if missing
                    else "every cell is a test cell; leave some groups for training"
                )
            )
        rest = np.flatnonzero(~is_test)
        share = fractions[0] / (fractions[0] + fractions[1])
        inner = split_cells(obs.iloc[rest], by=None, fractions=(share, 1.0 - share, 0.0), seed=seed, stratify=stratify)
        return {
            "train": np.sort(rest[inner["train"]]),
            "val": np.sort(rest[inner["val"]]),
            "test": np.flatnonzero(is_test),
        }
    rng = np.random.default_rng(seed)
    n = len(obs)
    if by is None:
        if stratify is not None and stratify not in obs.columns:
            raise ScfmDataError(f"cannot stratify by {stratify!r}: obs has {list(obs.columns)}")
        strata = obs[stratify].astype(str).to_numpy() if stratify else np.zeros(n, dtype=str)
        parts = {"train": [], "val": [], "test": []}
        for stratum in sorted(set(strata.tolist())):
            members = np.flatnonzero(strata == stratum)
            order = members[rng.permutation(len(members))]
            cut1 = int(round(fractions[0] * len(order)))
            cut2 = int(round((fractions[0] + fractions[1]) * len(order)))
            for name, chunk in zip(parts, (order[:cut1], order[cut1:cut2], order[cut2:])):
                parts[name].append(chunk)
        parts = {k: np.concatenate(v).astype(np.int64) for k, v in parts.items()}
    else:
        if by not in obs.columns:
            raise ScfmDataError(f"cannot split by {by!r}: obs has {list(obs.columns)}")
        groups = np.asarray(pd.unique(obs[by].astype(str)))
        if len(groups) < 3:
            raise ScfmDataError(
                f"splitting by {by!r} needs >= 3 groups, found {len(groups)}; use by=None for a random split"
            )
        groups = groups[rng.permutation(len(groups))]
        n_val = max(1, int(round(fractions[1] * len(groups))))
        n_test = max(1, int(round(fractions[2] * len(groups))))
        n_train = len(groups) - n_val - n_test
        if n_train < 1:
            raise ScfmDataError(f"{len(groups)} groups of {by!r} are too few for three splits")
        assignment = {g: "train" for g in groups[:n_train]}
        assignment.update({g: "val" for g in groups[n_train : n_train + n_val]})
        assignment.update({g: "test" for g in groups[n_train + n_val :]})
        labels = obs[by].astype(str).map(assignment).to_numpy()
        parts = {s: np.flatnonzero(labels == s) for s in ("train", "val", "test")}
    return {k: np.sort(v) for k, v in parts.items()}


def encode_labels(train_labels: ArrayLike, *others: ArrayLike) -> tuple[list[str], list[np.ndarray]]:
    """Classes (sorted, from the training labels) and integer codes of each label array.

    Parameters
    ----------
    train_labels : array_like
        The training cells' labels, shape ``(n_train,)``; at least two classes.
    *others : array_like
        Further label arrays (validation, test) coded with the training classes.

    Returns
    -------
    classes : list of str
        The training classes, sorted; code i = ``classes[i]``.
    codes : list of numpy.ndarray
        int64 codes of ``train_labels`` then of each of ``others``, in order.

    Raises
    ------
    ScfmDataError
        When a label is missing (NaN), the training labels hold a single class, or another array
        holds a class the training labels lack.
    """
    for labels in (train_labels, *others):
        missing = pd.isna(np.asarray(labels, dtype=object))
        if missing.any():
            raise ScfmDataError(
                f"{int(missing.sum())} cells have no label (NaN); drop them before the split, or "
                "give them a label: a missing label is not a class"
            )
    train_labels = np.asarray(train_labels).astype(str)
    classes = sorted(set(train_labels.tolist()))
    if len(classes) < 2:
        raise ScfmDataError(
            f"the training labels hold a single class ({classes}); a classifier needs "
            ">= 2: check the label column and the split"
        )
    index = {c: i for i, c in enumerate(classes)}
    coded = [np.array([index[x] for x in train_labels], dtype=np.int64)]
    for labels in others:
        labels = np.asarray(labels).astype(str)
        unseen = sorted(set(labels.tolist()) - set(classes))
        if unseen:
            raise ScfmDataError(
                f"labels {unseen} occur in evaluation cells but not in training cells; "
                "split by another column or drop those cells"
            )
        coded.append(np.array([index[x] for x in labels], dtype=np.int64))
    return classes, coded
