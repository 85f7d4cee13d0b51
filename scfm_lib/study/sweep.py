"""The sweep job: one checkpoint finetuned and probed over label and step budgets.

:func:`sweep` is what the ``sweep`` notebook calls, and what a reader calls from Python::

    for run in P.runs():
        sweep(P, results_dir, run)

The checkpoint is finetuned (the profile's main regime, ``evaluate.regimes[0]``) and linearly
probed with a share of the training labels (``evaluate.label_budgets``: stratified by cell type,
nested, seeded by the run's seed) times a budget of finetuning steps (``evaluate.step_budgets``);
the probe has no step budget. Each classifier is scored by macro-F1 on the test cells, within each
tissue and on the out-of-distribution cells, where the profile has them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import torch

from scfm_lib import data, metrics, results, runner, train
from scfm_lib import evaluate as readouts
from scfm_lib.config import ConfigError, Profile, Run
from scfm_lib.layout import ResultsLayout


def _task_scores(
    predict: Callable[[Any], np.ndarray],
    test_input: Any,
    y_test: np.ndarray,
    test_tissues: np.ndarray | None,
    ood: tuple | None,
    ood_input: Any,
) -> dict[str, float]:
    """macro-F1 of one classifier (``predict``: its input -> label codes) on each task the profile has."""
    y_pred = predict(test_input)
    scores = {"macro_f1": metrics.macro_f1(y_test, y_pred)}
    if test_tissues is not None:
        scores["macro_f1_tissue"] = metrics.macro_f1_within(y_test, y_pred, test_tissues)
    if ood is not None:
        scores["macro_f1_ood"] = metrics.macro_f1(ood[1], predict(ood_input))
    return scores


def sweep(profile: Profile, results_dir: str | Path, run: Run, *, parameters: dict | None = None) -> dict:
    """Sweep one pretrained checkpoint over label x step budgets and write ``metrics/sweep/<run id>.json``.

    Parameters
    ----------
    profile : Profile
        The study's profile (``evaluate.label_budgets`` and ``evaluate.step_budgets`` set).
    results_dir : str or pathlib.Path
        The profile's results folder (the data and pretrain jobs have run).
    run : Run
        The grid point.
    parameters : dict, optional
        The parameters to record (a notebook's checked parameters); default
        ``run.parameters(profile, results_dir)``.

    Returns
    -------
    dict
        The record written: ``records`` of mode (``finetune``, ``linear_probe``), metric, value,
        ``label_budget`` and ``step_budget`` (None for the probe), and in ``extra`` the finetuning
        logs and the labelled cells per label budget.

    Raises
    ------
    ConfigError
        When the profile sets no budget sweep.
    """
    if not profile.evaluate.has_sweep:
        raise ConfigError(
            f"profile {profile.name!r} sets no budget sweep: give evaluate.label_budgets and evaluate.step_budgets"
        )
    started = time.perf_counter()
    torch.set_num_threads(profile.workflow.threads_per_job)
    layout = ResultsLayout(results_dir)
    obs = ad.read_h5ad(layout.dataset("downstream"), backed="r").obs.copy()
    tokens = data.CellTokens.load(layout.tokens(run.family, "downstream"))
    split = {s: np.flatnonzero(obs["split"].values == s) for s in ("train", "val", "test")}
    labels = obs[profile.data.label_key].values
    classes, (y_train, y_val, y_test) = data.encode_labels(
        labels[split["train"]], labels[split["val"]], labels[split["test"]]
    )
    model, pretrain_record = runner.pretrained_checkpoint(profile, results_dir, run)
    budgets = data.label_budget_subsets(labels[split["train"]], profile.evaluate.label_budgets, seed=run.seed)
    ood = readouts.labelled_ood_cells(layout.data_dir, run.family, profile.data.label_key, classes)
    test_tissues = readouts.tissue_groups(obs, split["test"])
    train_embedding = train.embed(model, tokens.subset(split["train"]))
    test_embedding = train.embed(model, tokens.subset(split["test"]))
    ood_embedding = train.embed(model, ood[0]) if ood is not None else None
    regime = profile.evaluate.regimes[0]
    records, logs = [], []
    for budget, kept in budgets.items():

        def probe(Z: np.ndarray, kept: np.ndarray = kept) -> np.ndarray:
            return readouts.linear_probe(train_embedding[kept], y_train[kept], Z, seed=run.seed)

        scores = _task_scores(probe, test_embedding, y_test, test_tissues, ood, ood_embedding)
        records += [
            {"mode": "linear_probe", "metric": metric, "value": value, "label_budget": budget, "step_budget": None}
            for metric, value in scores.items()
        ]
        for steps in profile.evaluate.step_budgets:
            cfg = profile.finetune_config(max_steps=steps, seed=run.seed, regime=regime)
            classifier, log = train.finetune_classifier(
                model,
                tokens.subset(split["train"][kept]),
                y_train[kept],
                tokens.subset(split["val"]),
                y_val,
                n_classes=len(classes),
                cfg=cfg,
            )
            scores = _task_scores(
                partial(train.predict, classifier),
                tokens.subset(split["test"]),
                y_test,
                test_tissues,
                ood,
                ood[0] if ood is not None else None,
            )
            records += [
                {"mode": "finetune", "metric": metric, "value": value, "label_budget": budget, "step_budget": steps}
                for metric, value in scores.items()
            ]
            logs.append(
                {
                    "label_budget": budget,
                    "step_budget": steps,
                    "best_step": log["best_step"],
                    "steps_run": log["steps_run"],
                }
            )
    if parameters is None:
        parameters = run.parameters(profile, results_dir)
    return results.write_metrics(
        layout.metrics("sweep", run.name),
        kind="sweep",
        name=run.name,
        run=pretrain_record["run"],
        records=records,
        parameters={
            **parameters,
            "regime": regime,
            "label_budgets": profile.evaluate.label_budgets,
            "step_budgets": profile.evaluate.step_budgets,
            "finetune": profile.finetune_config(regime=regime).__dict__,
        },
        data_hashes=pretrain_record["provenance"]["data_sha256"],
        extra={
            "seconds": time.perf_counter() - started,
            "finetune_logs": logs,
            "labelled_cells": {str(b): int(len(idx)) for b, idx in budgets.items()},
        },
    )
