"""Scoring a checkpoint on a narrow task (the evaluation job's part of a task), and annotation records.

:func:`evaluate_task` scores one checkpoint on a task that the data job prepared
(:func:`scfm_lib.study.tasks.prepare_task`, read back by :func:`scfm_lib.study.tasks.load_task`):
frozen (linear probe, kNN on the primary readout) and finetuned (the profile's first regime at the
rate the rates job chose for that fraction on the annotation task's validation cells, once per
finetuning seed), as records ``macro_f1_<name>`` and ``accuracy_<name>`` that the summary turns into
gains, D and a verdict like the annotation task's. :func:`annotation_records` turns predictions into
those records with cell-bootstrap intervals; the evaluation job (:mod:`scfm_lib.study.evaluate`)
writes the annotation task's records with it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scfm_lib import evaluate, metrics
from scfm_lib.config import Profile
from scfm_lib.layout import ResultsLayout
from scfm_lib.study.tasks import SPLITS, load_task

if TYPE_CHECKING:  # torch types, for annotations only
    from scfm_lib.model import ScFM


def annotation_records(
    y_true: np.ndarray, predictions: dict, scores: dict, suffix: str = "", seed: int = 0, n_boot: int = 200
) -> list[dict]:
    """Each score of each mode with its 95% bootstrap interval over the scored cells.

    Parameters
    ----------
    y_true : numpy.ndarray
        Label codes of the scored cells, shape ``(n_cells,)``.
    predictions : dict
        mode -> predicted codes, or a list of them (one per finetuning seed: the record holds the
        mean of their scores and of their bounds).
    scores : dict
        metric name -> ``fn(y_true, y_pred) -> float``.
    suffix : str
        Appended to each metric name (``"_ood"``, ``"_<task>"``).
    seed, n_boot : int
        Of the cell bootstrap (:func:`scfm_lib.stats.cell_bootstrap_ci`).

    Returns
    -------
    list of dict
        One record per mode and score: ``mode``, ``metric``, ``value``, ``cell_ci_low``,
        ``cell_ci_high`` (in the score's range) and ``n_finetune_seeds``.
    """
    from scfm_lib import stats

    out = []
    for mode, y_preds in predictions.items():
        y_preds = y_preds if isinstance(y_preds, list) else [y_preds]
        for name, fn in scores.items():
            value, low, high = np.mean(
                [stats.cell_bootstrap_ci(y_true, y, fn, n_boot=n_boot, seed=seed) for y in y_preds], axis=0
            )
            out.append(
                {
                    "mode": mode,
                    "metric": name + suffix,
                    "value": float(value),
                    "cell_ci_low": float(low),
                    "cell_ci_high": float(high),
                    "n_finetune_seeds": len(y_preds),
                }
            )
    return out


def evaluate_task(
    model: ScFM,
    profile: Profile,
    results_dir: str | Path,
    name: str,
    family: str,
    fraction: float,
    seed: int,
    finetune_max_steps: int | None = None,
) -> tuple[list[dict], dict]:
    """One checkpoint scored on task ``name``: frozen and finetuned (see the module docstring).

    Parameters
    ----------
    model : ScFM
        The checkpoint's model.
    profile : Profile
        The study's profile (evaluation and finetuning settings).
    results_dir : str or pathlib.Path
        The profile's results folder.
    name : str
        The task's name.
    family : str
        The model family.
    fraction, seed
        The checkpoint's corpus fraction and seed (the finetuning rate and seeds follow from them).
    finetune_max_steps : int, optional
        Overrides the profile's finetuning step budget.

    Returns
    -------
    records : list of dict
        Modes ``finetune``, ``linear_probe`` and ``knn``; metrics ``macro_f1_<name>`` and
        ``accuracy_<name>`` (in [0, 1]) with their cell-bootstrap intervals.
    log : dict
        Per finetuning seed the best step, steps run and best validation loss; the classes.
    """
    from scfm_lib import train
    from scfm_lib.study import rates

    tokens, classes, index, y = load_task(ResultsLayout(results_dir).data_dir, name, family)
    view = {s: tokens.subset(index[s]) for s in SPLITS}
    z = {s: train.embed(model, view[s]) for s in ("train", "test")}  # the primary frozen readout
    predictions = {
        "linear_probe": evaluate.linear_probe(z["train"], y["train"], z["test"], seed=seed),
        "knn": evaluate.knn_classify(z["train"], y["train"], z["test"], k=profile.evaluate.knn_k),
    }
    regime = profile.evaluate.regimes[0]  # the benchmark's mode "finetune"
    rate = rates.chosen_rate(results_dir, family, regime, fraction) if profile.study.rate_candidates else {}
    finetuned, runs = [], []
    for finetune_seed in profile.study.finetune_seeds_of(seed):
        cfg = profile.finetune_config(max_steps=finetune_max_steps, seed=finetune_seed, regime=regime, **rate)
        classifier, log = train.finetune_classifier(
            model, view["train"], y["train"], view["val"], y["val"], n_classes=len(classes), cfg=cfg
        )
        finetuned.append(train.predict(classifier, view["test"]))
        runs.append(
            {"finetune_seed": finetune_seed, **{k: log[k] for k in ("best_step", "steps_run", "best_val_loss")}}
        )
    predictions["finetune"] = finetuned
    records = annotation_records(
        y["test"],
        predictions,
        {"accuracy": metrics.accuracy, "macro_f1": metrics.macro_f1},
        suffix=f"_{name}",
        seed=seed,
    )
    return records, {"classes": classes, "finetune_runs": runs, "rate": rate}
