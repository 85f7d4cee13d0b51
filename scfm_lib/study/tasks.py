"""Narrow tasks on labelled datasets of their own: cross-technology and cross-species annotation.

A profile lists them under ``data.tasks`` (name -> :class:`scfm_lib.config.TaskSpec`). Unlike the
annotation task, whose cells come from the downstream dataset, each such task has its own dataset,
which the study uses nowhere else (never in the corpus), its own classes and its own split:

- *cross-technology*, e.g. CellBench's lung cell lines: train on CEL-seq2 cells, test on Drop-seq cells
  (``split_by: technology``, ``test_groups: [Drop-seq]``);
- *cross-species*, e.g. mouse immune cells: the mouse genes reach the human vocabulary through a
  registered ortholog table (``orthologs``), and cells are split at random within each type.

Two jobs own a task. The data job (:func:`prepare_task`, this module) reads the dataset, maps its
genes onto the corpus vocabulary, keeps the classes with enough training cells, splits the cells,
tokenizes them for every family and writes ``data/tasks/<name>.npz`` (labels and split) and
``data/tokens/<family>/task_<name>.npz``; it reports the task's size, split, gene overlap and what
the context can hold. :func:`load_task` reads those files back. The evaluation job scores one
checkpoint on a prepared task: :func:`scfm_lib.study.task_evaluation.evaluate_task`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scfm_lib import data, datasets, evaluate, genes, io
from scfm_lib.config import TaskSpec
from scfm_lib.data import CellTokens, GeneVocab
from scfm_lib.layout import ResultsLayout

if TYPE_CHECKING:  # anndata types, for annotations only
    import anndata as ad

SPLITS = ("train", "val", "test")


def metric(name: str, score: str = "macro_f1") -> str:
    """The record metric of task ``name``: ``macro_f1_<name>`` (or ``accuracy_<name>``).

    Parameters
    ----------
    name : str
        The task's name.
    score : str
        ``"macro_f1"`` or ``"accuracy"``.

    Returns
    -------
    str
        ``<score>_<name>``.
    """
    return f"{score}_{name}"


def read_task_dataset(
    spec: TaskSpec,
) -> tuple[ad.AnnData, ad.AnnData, dict[str, str] | None, dict[str, str] | None]:
    """The task's registered dataset, its genes mapped to human symbols, and the harmonization inputs.

    The inputs (``id_map``, ``orthologs``) are returned for :func:`scfm_lib.genes.harmonization_report`.

    Parameters
    ----------
    spec : TaskSpec
        The task (its ``dataset`` and ``orthologs``).

    Returns
    -------
    as_read : anndata.AnnData
        The dataset as registered.
    harmonized : anndata.AnnData
        The same cells with genes mapped to human symbols.
    id_map : dict of str to str or None
        The Ensembl ID -> symbol table used (None for a dataset with symbols).
    orthologs : dict of str to str or None
        The ortholog table used (None without ``spec.orthologs``).
    """
    as_read = datasets.load(spec.dataset)
    id_map = (
        datasets.load_mapping("gencode_v44_id2name") if genes.identifier_kind(as_read.var_names) == "ensembl" else None
    )
    orthologs = genes.invert_orthologs(datasets.load_mapping(spec.orthologs)) if spec.orthologs else None
    return as_read, genes.harmonize_genes(as_read, id_map=id_map, orthologs=orthologs), id_map, orthologs


def split_task_cells(obs: pd.DataFrame, spec: TaskSpec, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Which cells a task keeps and how they split.

    Cells without a label are dropped. The split is by whole groups (``spec.split_by`` with
    ``spec.test_groups`` as the test split, the other cells 75/25 into train and validation per class),
    or at random per class (60/20/20). A class is kept only with at least ``spec.min_class_cells``
    training cells, so every scored class has been trained on; the cells of other classes leave all
    three splits.

    Parameters
    ----------
    obs : pandas.DataFrame
        The task dataset's cells.
    spec : TaskSpec
        The task (label column, split, ``min_class_cells``).
    seed : int
        Seed of the split.

    Returns
    -------
    keep : numpy.ndarray of int
        Indices (into ``obs``) of the cells the task keeps, sorted.
    split : numpy.ndarray of str
        ``"train"``, ``"val"`` or ``"test"`` for each kept cell.
    report : dict
        ``cells``, ``classes`` (kept), ``dropped_classes`` ({class: training cells}), ``split_cells``.

    Raises
    ------
    ScfmDataError
        When the label column is missing, fewer than two classes have enough training cells, or the
        train or test split ends up empty.
    """
    if spec.label_key not in obs:
        raise data.ScfmDataError(
            f"task on {spec.dataset!r}: obs has no label column {spec.label_key!r} "
            f"(it has {list(obs.columns)}); set label_key in the profile's data.tasks"
        )
    labelled = np.flatnonzero(obs[spec.label_key].notna().to_numpy())
    sub = obs.iloc[labelled]
    parts = data.split_cells(
        sub, by=spec.split_by or None, seed=seed, stratify=spec.label_key, test_groups=spec.test_groups or None
    )
    split = np.empty(len(sub), dtype=object)
    for name, idx in parts.items():
        split[idx] = name
    labels = sub[spec.label_key].astype(str).to_numpy()
    train_counts = pd.Series(labels[split == "train"]).value_counts()
    kept_classes = sorted(train_counts.index[train_counts >= spec.min_class_cells])
    if len(kept_classes) < 2:
        raise data.ScfmDataError(
            f"task on {spec.dataset!r}: {len(kept_classes)} class(es) have >= {spec.min_class_cells} "
            f"training cells ({train_counts.to_dict()}); lower min_class_cells or choose another split"
        )
    kept = np.isin(labels, kept_classes)
    split = split[kept].astype(str)
    report = {
        "cells": int(kept.sum()),
        "classes": kept_classes,
        "dropped_classes": {c: int(n) for c, n in train_counts.items() if c not in kept_classes},
        "split_cells": {s: int((split == s).sum()) for s in SPLITS},
    }
    for s in ("train", "test"):
        if report["split_cells"][s] == 0:
            raise data.ScfmDataError(
                f"task on {spec.dataset!r}: the {s} split is empty after keeping classes "
                f"{kept_classes}; check split_by / test_groups"
            )
    return labelled[kept], split, report


def group_split_words(split_by: str, test_groups: Sequence[str], label_key: str) -> str:
    """A split whose test cells are whole groups, in words (a task's, or the downstream dataset's).

    Parameters
    ----------
    split_by : str
        The ``obs`` column of the groups.
    test_groups : sequence of str
        The groups that form the test split.
    label_key : str
        The label column the other cells are stratified by.

    Returns
    -------
    str
        One sentence.
    """
    return (
        f"whole {split_by} groups: test = {', '.join(map(str, test_groups))}; train and validation "
        f"from the other groups, stratified by {label_key}"
    )


def split_words(spec: TaskSpec) -> str:
    """How a task's cells are split, in words (the summary and the data chapter say it).

    Parameters
    ----------
    spec : TaskSpec
        The task.

    Returns
    -------
    str
        One sentence.
    """
    if spec.split_by:
        return group_split_words(spec.split_by, spec.test_groups, spec.label_key)
    return f"random cells, stratified by {spec.label_key} (60/20/20)"


def prepare_task(
    name: str,
    spec: TaskSpec,
    vocab: GeneVocab,
    families: Sequence[str],
    context_genes: int,
    data_dir: str | Path,
    seed: int = 0,
) -> dict:
    """The data job's part of a task: read, harmonize, split, tokenize, write (see the module docstring).

    Parameters
    ----------
    name : str
        The task's name.
    spec : TaskSpec
        The task's :class:`~scfm_lib.config.TaskSpec`.
    vocab : GeneVocab
        The corpus vocabulary (with gene medians where a family ranks genes by them).
    families : sequence of str
        Model families to tokenize for.
    context_genes : int
        Genes per cell given to the model.
    data_dir : str or pathlib.Path
        The profile's ``results/<profile>/data``.
    seed : int
        Seed of the split (the profile's ``data.seed``).

    Returns
    -------
    dict
        ``dataset``, ``words``, ``split`` (in words), ``cells``, ``classes``, ``dropped_classes``,
        ``split_cells``, ``harmonization`` (detected genes reaching the vocabulary before and after),
        ``context_ceiling`` per family (macro-F1 of a logistic regression on the context genes and on
        all genes, test cells) and ``sha256`` of the task's cells.
    """
    layout = ResultsLayout.of_data_dir(data_dir)
    as_read, adata, id_map, orthologs = read_task_dataset(spec)
    harmonization = genes.harmonization_report(as_read, vocab, id_map=id_map, orthologs=orthologs)
    layer = data.validate(adata, label_key=spec.label_key)
    keep, split, report = split_task_cells(adata.obs, spec, seed)
    adata = adata[keep].copy()
    labels = adata.obs[spec.label_key].astype(str).to_numpy()
    index = {s: np.flatnonzero(split == s) for s in SPLITS}
    _, (y_train, y_test) = data.encode_labels(labels[index["train"]], labels[index["test"]])
    ceilings = {}
    for family in families:
        tokens = data.tokenize(
            adata,
            vocab,
            context_genes,
            layer=layer,
            min_overlap=spec.min_vocab_overlap,
            medians=vocab.medians if family == "geneformer" else None,
        )
        tokens.save(layout.task_tokens(family, name))
        ceilings[family] = evaluate.context_ceiling(
            adata, tokens, len(vocab), index["train"], index["test"], y_train, y_test, seed=seed
        )
    path = layout.task_labels(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, labels=labels.astype(str), split=split.astype(str))
    return {
        "dataset": spec.dataset,
        "words": spec.words,
        "split": split_words(spec),
        **report,
        "harmonization": harmonization,
        "context_ceiling": ceilings,
        "sha256": io.anndata_sha256(adata),
    }


def load_task(
    data_dir: str | Path, name: str, family: str
) -> tuple[CellTokens, list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A prepared task: its tokens for ``family``, its classes, and per split the cell indices and codes.

    A clear error names the data job when the files are missing.

    Parameters
    ----------
    data_dir : str or pathlib.Path
        The profile's data folder (:meth:`scfm_lib.layout.ResultsLayout.of_data_dir`).
    name : str
        The task's name.
    family : str
        The model family whose tokens are read.

    Returns
    -------
    tokens : CellTokens
        All the task's cells.
    classes : list of str
        The classes, sorted.
    index : dict of str to numpy.ndarray
        Split -> positions of its cells in ``tokens``.
    codes : dict of str to numpy.ndarray
        Split -> int64 label codes of its cells.

    Raises
    ------
    FileNotFoundError
        When the data job has not written the task's files.
    """
    layout = ResultsLayout.of_data_dir(data_dir)
    labels_file, tokens_file = layout.task_labels(name), layout.task_tokens(family, name)
    for path in (labels_file, tokens_file):
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: task {name!r} is prepared by the workflow's data job "
                f"(snakemake ... {layout.metrics('data', 'datasets')})"
            )
    stored = np.load(labels_file)
    labels, split = stored["labels"], stored["split"]
    index = {s: np.flatnonzero(split == s) for s in SPLITS}
    classes, codes = data.encode_labels(*(labels[index[s]] for s in SPLITS))
    return CellTokens.load(tokens_file), classes, index, dict(zip(SPLITS, codes))
