"""One family's gates, controls, masking contrast D and verdict per narrow task, and the verdict in a sentence.

:func:`family_summary` puts a family's records through the gates (:mod:`scfm_lib.analysis.gates`), the
controls and the masking contrast (:mod:`scfm_lib.analysis.endpoints`) for every narrow task of the profile
(:func:`task_metrics`), and :func:`sentence` says each verdict with its numbers (:func:`format_estimate`).
:mod:`scfm_lib.study.summary` builds the whole ``summary.json`` from it (and re-exports
:func:`format_estimate`, which the chapters import from there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scfm_lib import data, results
from scfm_lib.analysis import endpoints, equivalence, gates
from scfm_lib.config import Profile
from scfm_lib.layout import NEGATIVE_CONTROL, POSITIVE_CONTROL, ResultsLayout
from scfm_lib.study import tasks

#: The narrow tasks of the primary endpoint: name -> metric (the profile's data.task_words says each in words).
#: A profile's data.tasks add tasks of their own (task_metrics).
TASKS = {"annotation": "macro_f1", "annotation_ood": "macro_f1_ood"}
FROZEN_MODE, FINETUNED_MODE = "linear_probe", "finetune"


def task_metrics(profile: Profile) -> dict[str, str]:
    """Every narrow task of the profile -> its primary metric: :data:`TASKS`, then ``data.tasks``.

    Parameters
    ----------
    profile
        The profile (its ``data.tasks`` add tasks of their own).

    Returns
    -------
    dict of str to str
        Task name -> the metric its records carry (``macro_f1``, ``macro_f1_ood``, and
        :func:`scfm_lib.study.tasks.metric` of each task of its own).
    """
    return {**TASKS, **{name: tasks.metric(name) for name in profile.data.tasks}}


def task_words(profile: Profile, task: str) -> str:
    """A narrow task in words, as the summary and the chapters name it.

    Parameters
    ----------
    profile
        The profile.
    task
        A task name of :func:`task_metrics`.

    Returns
    -------
    str
        The words of the task of its own (``data.tasks[task].words``) or of the downstream task
        (``data.task_words[task]``).
    """
    return profile.data.tasks[task].words if task in profile.data.tasks else profile.data.task_words[task]


def format_estimate(e: dict, digits: int = 3, unit: str = "") -> str:
    """``+0.012 (95% CI -0.003 to +0.027, 8 seeds)``: an estimate with its interval, in words.

    Parameters
    ----------
    e
        A paired estimate as a dict (:meth:`scfm_lib.analysis.endpoints.PairedEstimate.to_dict`:
        ``mean``, ``ci``, ``ci_low``, ``ci_high``, ``n``), as read back from JSON (None for NaN).
    digits
        Decimals of the mean and the interval's ends.
    unit
        Words after the mean (``"macro-F1"``); none when empty.

    Returns
    -------
    str
        The mean, signed, with its interval and seeds; ``"... (no interval: n seed(s))"`` when
        the interval is undefined, and ``"undefined"`` when the mean is (or ``e`` is empty).
    """

    def number(key: str) -> float:  # JSON writes NaN as null
        value = (e or {}).get(key)
        return float("nan") if value is None else float(value)

    if not np.isfinite(number("mean")):
        return "undefined"
    unit = f" {unit}" if unit else ""
    if not np.isfinite(number("ci_low")):
        return f"{e['mean']:+.{digits}f}{unit} (no interval: {e.get('n', 0)} seed(s))"
    return (
        f"{e['mean']:+.{digits}f}{unit} ({e['ci']:.0%} CI {e['ci_low']:+.{digits}f} to "
        f"{e['ci_high']:+.{digits}f}, {e['n']} seeds)"
    )


def _series(records: pd.DataFrame, mode: str, metric: str) -> pd.DataFrame:
    rows = records[(records["mode"] == mode) & (records["metric"] == metric)]
    return rows.dropna(subset=["value"])[["fraction", "seed", "n_cells", "value"]]


def _context_free(results_dir: Path, family: str, mask_ratio: float) -> float:
    layout = ResultsLayout(results_dir)
    return gates.context_free_loss(
        data.CellTokens.load(layout.tokens(family, "corpus_train")),
        data.CellTokens.load(layout.tokens(family, "corpus_val")),
        family,
        mask_ratio,
    )


def _convergence(results_dir: Path, family: str) -> dict:
    """How many pretraining runs stopped early (converged) and how many reached the step cap."""
    runs = [
        p
        for p in results.load_payloads(results_dir, "pretrain")
        if p["run"]["family"] == family and p["run"]["fraction"] > 0
    ]
    capped = [p["name"] for p in runs if p["extra"].get("capped")]
    return {"runs": len(runs), "capped": len(capped), "capped_runs": capped}


def _margin(records: pd.DataFrame, baselines: pd.DataFrame, metric: str, n_classes: int) -> dict:
    """A metric's equivalence margin from its range on the task: chance (1 / classes) to the
    logistic regression on highly variable genes (the baselines job; test donors)."""
    ceiling_rows = baselines[(baselines["mode"] == "hvg_logreg") & (baselines["metric"] == "macro_f1")]
    ceiling = float(ceiling_rows["value"].iloc[0]) if len(ceiling_rows) else 1.0
    chance = 1.0 / n_classes
    return {
        "margin": equivalence.equivalence_margin(metric, chance=chance, ceiling=ceiling),
        "chance": chance,
        "ceiling": ceiling,
        "share": equivalence.MARGIN_SHARE,
    }


def _task_margin(data_record: dict, task: str, family: str) -> dict:
    """The equivalence margin of a task of its own: chance (1 / its classes) to the logistic regression
    on all of its genes (the data job's context ceiling, test cells)."""
    report = data_record["extra"]["tasks"][task]
    chance, ceiling = 1.0 / len(report["classes"]), float(report["context_ceiling"][family]["all_genes"])
    return {
        "margin": equivalence.equivalence_margin(tasks.metric(task), chance=chance, ceiling=ceiling),
        "chance": chance,
        "ceiling": ceiling,
        "share": equivalence.MARGIN_SHARE,
    }


def family_summary(
    profile: Profile, results_dir: Path, family: str, baselines: pd.DataFrame, data_record: dict
) -> dict:
    """Gates, controls, D and the verdict of one family, for every task its records hold.

    Parameters
    ----------
    profile
        The profile.
    results_dir
        Its results folder, ``results/<profile>``.
    family
        The model family (``scgpt``, ...).
    baselines
        The baselines job's records (:func:`scfm_lib.results.load_records` with
        ``kinds=("baselines",)``); its ``hvg_logreg`` macro-F1 is the ceiling of the margin.
    data_record
        The data job's record (``metrics/data/datasets.json``), which holds each task of its own's
        classes and ceiling.

    Returns
    -------
    dict
        ``gate0`` (:func:`scfm_lib.analysis.gates.pretraining_gate`), ``convergence`` (``runs``,
        ``capped``, ``capped_runs``), ``margin`` (``margin`` > 0, ``chance`` = 1 / classes,
        ``ceiling`` in [0, 1], ``share``), ``tasks`` (task -> its gate1, gains, D, verdict,
        equivalence, mean per fraction and ``sentence``; macro-F1 values in [0, 1], gains and D in
        [-1, 1]) and, where the profile runs them, ``negative_control`` and ``positive_control``.
    """
    ci = profile.stats.ci
    evaluated = results.load_records(results_dir, kinds=("evaluate",), family=family)
    pretrained = results.load_records(results_dir, kinds=("pretrain",), family=family)
    context_free = _context_free(results_dir, family, profile.pretrain_config().mask_ratio)
    gate0 = gates.pretraining_gate(
        _series(pretrained, "pretrain", "val_loss"), context_free, profile.study.gate_margin, ci
    )
    classes = next(
        p["extra"]["classes"] for p in results.load_payloads(results_dir, "evaluate") if p["run"]["family"] == family
    )
    margin = _margin(evaluated, baselines, "macro_f1", len(classes))
    out = {"gate0": gate0, "convergence": _convergence(results_dir, family), "margin": margin, "tasks": {}}

    negative = _control(results_dir, NEGATIVE_CONTROL, family)
    if negative is not None:
        gain = endpoints.seed_gains(_series(negative, FROZEN_MODE, "macro_f1"))
        estimate = endpoints.paired_estimate(gain.to_numpy(), ci).to_dict()
        eq = equivalence.equivalence(None, margin["margin"], differences=gain.to_numpy())
        loss = _series(negative, "pretrain", "val_loss").groupby("fraction")["value"].mean()
        out["negative_control"] = {
            "gain_frozen": estimate,
            "equivalence": eq,
            "equivalent": eq["equivalent"],
            "val_loss_by_fraction": {float(f): float(v) for f, v in loss.items()},
            "context_free_loss": context_free,
        }
    positive = _control(results_dir, POSITIVE_CONTROL, family)
    if positive is not None:
        contrast = endpoints.masking_contrast(
            _series(positive, FROZEN_MODE, "macro_f1_subtype"),
            _series(positive, FINETUNED_MODE, "macro_f1_subtype"),
            ci,
        )
        out["positive_control"] = {
            **contrast,
            "detected": bool(contrast["gain_frozen"]["ci_low"] > 0 and contrast["D"]["ci_low"] > 0),
        }
    positive_ok = out.get("positive_control", {}).get("detected", True)
    negative_ok = out.get("negative_control", {}).get("equivalent", True)

    for task, metric in task_metrics(profile).items():
        frozen, finetuned = _series(evaluated, FROZEN_MODE, metric), _series(evaluated, FINETUNED_MODE, metric)
        if frozen.empty or finetuned.empty:
            continue
        # A task of its own has its own classes and ceiling; the downstream tasks share the annotation's.
        task_margin = _task_margin(data_record, task, family) if task in profile.data.tasks else margin
        gate1 = gates.representation_gate(frozen, ci)
        contrast = endpoints.masking_contrast(frozen, finetuned, ci)
        call = gates.verdict(
            gate0, gate1, contrast, task_margin["margin"], positive_ok, negative_ok, profile.study.power
        )
        result = {
            "metric": metric,
            "task": task_words(profile, task),
            "frozen_mode": FROZEN_MODE,
            "finetuned_mode": FINETUNED_MODE,
            "margin": task_margin,
            "gate1": gate1,
            **contrast,
            **call,
            "mean_by_fraction": {
                mode: {float(f): float(v) for f, v in s.groupby("fraction")["value"].mean().items()}
                for mode, s in ((FROZEN_MODE, frozen), (FINETUNED_MODE, finetuned))
            },
        }
        result["sentence"] = sentence(family, result, gate0)
        out["tasks"][task] = result
    return out


def _control(results_dir: Path, kind: str, family: str) -> pd.DataFrame | None:
    try:
        return results.load_records(results_dir, kinds=(kind,), family=family)
    except FileNotFoundError:  # the profile runs no such control
        return None


def sentence(family: str, task: dict, gate0: dict) -> str:
    """The verdict of one family and task in one sentence, with its numbers.

    Parameters
    ----------
    family
        The model family.
    task
        The task's result (an entry of ``family_summary(...)["tasks"]`` before its sentence):
        ``task`` (words), ``verdict``, ``reason``, ``D``, ``gate1``, ``detectable_D`` and
        ``equivalence``.
    gate0
        The family's pretraining gate (:func:`scfm_lib.analysis.gates.pretraining_gate`).

    Returns
    -------
    str
        A Markdown sentence: the family and task in bold, the verdict and the numbers behind it.
    """
    D = format_estimate(task["D"])
    head = f"**{family}**, {task['task']}: **{task['verdict']}**"
    if task["verdict"] == "nothing to mask":
        if not gate0["passed"]:
            loss = gate0["loss_by_fraction"][max(gate0["loss_by_fraction"])]
            return (
                f"{head}: {task['reason']} (largest corpus {loss:.4g} against {gate0['context_free_loss']:.4g} for "
                f"the context-free predictor; drop from the smallest corpus "
                f"{format_estimate(gate0['drop_smallest_to_largest'], 4)})."
            )
        g = task["gate1"]
        return (
            f"{head}: {task['reason']} (largest corpus minus random init "
            f"{format_estimate(g['largest_minus_random_init'])}; minus the smallest corpus "
            f"{format_estimate(g['largest_minus_smallest'])} macro-F1). D would be {D}."
        )
    if task["verdict"] == "inconclusive":
        return (
            f"{head}: D = {D}; the design could detect D of {task['detectable_D']:.3f} with 80% power, and "
            f"the equivalence margin is +-{task['equivalence']['margin']:.3f}."
        )
    return f"{head}: D = {D} ({task['reason']})."
