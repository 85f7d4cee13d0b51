"""The pretrain job: one grid point pretrained (or its random-init control saved) and its record written.

:func:`pretrain` is what the ``pretrain`` notebook (one page per run of the book) calls, and what a
reader calls to run the grid from Python without papermill::

    for run in P.runs():
        pretrain(P, results_dir, run)
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure

from scfm_lib import data, io, results, runner, train
from scfm_lib.config import Profile, Run
from scfm_lib.layout import ResultsLayout

#: The columns of a pretraining history (scfm_lib.train.pretrain's rows).
HISTORY_COLUMNS = ["step", "train_loss", "val_loss", "lr"]


def loss_name(family: str) -> str:
    """The name of a family's pretraining loss.

    Parameters
    ----------
    family : str
        The model family.

    Returns
    -------
    str
        ``masked-value MSE`` (scgpt) or ``masked-gene cross-entropy`` (geneformer).
    """
    return "masked-value MSE" if family == "scgpt" else "masked-gene cross-entropy"


def _launched(
    profile: Profile,
    results_dir: str | Path,
    run: Run,
    max_steps: int | None,
    budget: str | None,
    profiles_dir: str | Path | None,
) -> dict:
    """The training outcome of the run trained by ``workflow.pretrain_launch`` (e.g. torchrun), in its processes."""
    with tempfile.TemporaryDirectory() as tmp:
        outcome_file = Path(tmp) / "outcome.json"
        command = [*shlex.split(profile.workflow.pretrain_launch), "-m", "scfm_lib.runner", "--profile", profile.name]
        command += ["--profiles-dir", str(profiles_dir)] if profiles_dir is not None else []
        command += ["--results-dir", str(results_dir), "--run-id", run.name, "--outcome", str(outcome_file)]
        command += ["--max-steps", str(max_steps)] if max_steps else []
        command += ["--budget", budget] if budget else []
        print(" ".join(command))
        subprocess.run(command, check=True)
        outcome = json.loads(outcome_file.read_text())
    pretrain_config = profile.pretrain_config(
        max_steps=max_steps, budget=budget, seed=run.seed, num_threads=profile.workflow.threads_per_job
    )
    vocab = data.GeneVocab.load(ResultsLayout(results_dir).vocab)
    model_config = profile.model_config(vocab_size=len(vocab), family=run.family)
    return {**outcome, "model_config": model_config, "pretrain_config": pretrain_config}


def pretrain(
    profile: Profile,
    results_dir: str | Path,
    run: Run,
    *,
    max_steps: int | None = None,
    budget: str | None = None,
    profiles_dir: str | Path | None = None,
    parameters: dict | None = None,
) -> dict:
    """Pretrain one grid point and write its record ``metrics/pretrain/<run id>.json``.

    Trains in this process with :func:`scfm_lib.runner.pretrain_grid_point`, or, when the profile
    sets ``workflow.pretrain_launch`` and the fraction is above 0, once in the launcher's processes
    (which report the outcome back). Then scores the checkpoint's pretraining loss on the fixed
    validation cells.

    Parameters
    ----------
    profile : Profile
        The study's profile.
    results_dir : str or pathlib.Path
        The profile's results folder (the data job has run).
    run : Run
        The grid point (fraction 0 saves the seeded random initialization: the no-pretraining control).
    max_steps : int, optional
        Overrides the profile's pretraining steps.
    budget : str, optional
        Overrides the profile's pretraining budget (``steps``, ``epochs``, ``converge``).
    profiles_dir : str or pathlib.Path, optional
        Where the launcher finds the profile (default: the library's profiles folder).
    parameters : dict, optional
        The parameters to record (a notebook's checked parameters); default
        ``run.parameters(profile, results_dir, max_steps=..., budget=...)``.

    Returns
    -------
    dict
        The record written (:func:`scfm_lib.results.write_metrics`): ``run`` (with ``n_pretrain_cells``),
        the ``val_loss`` record, and in ``extra`` the ``history``, ``seconds``, ``steps``, ``best_step``.
    """
    started = time.perf_counter()
    torch.set_num_threads(profile.workflow.threads_per_job)
    layout = ResultsLayout(results_dir)
    if profile.workflow.pretrain_launch and run.fraction > 0:
        outcome = _launched(profile, results_dir, run, max_steps, budget, profiles_dir)
    else:
        outcome = runner.pretrain_grid_point(profile, results_dir, run, max_steps, budget)
    model_config, pretrain_config = outcome["model_config"], outcome["pretrain_config"]
    history = pd.DataFrame(outcome["history"], columns=HISTORY_COLUMNS)
    # Throughput of this run's training loop (validation included); None when nothing was trained here.
    cells_per_second = (
        outcome["steps_run"] * pretrain_config.batch_size / outcome["seconds"] if outcome["seconds"] else None
    )
    seconds = time.perf_counter() - started
    model = train.load_checkpoint(layout.checkpoint(run.name))
    val = data.CellTokens.load(layout.tokens(run.family, "corpus_val"))
    val_loss = train.reconstruction_loss(model, val, mask_ratio=pretrain_config.mask_ratio, seed=0)
    if parameters is None:
        parameters = run.parameters(profile, results_dir, max_steps=max_steps, budget=budget)
    data_record = io.read_json(layout.metrics("data", "datasets"))
    return results.write_metrics(
        layout.metrics("pretrain", run.name),
        kind="pretrain",
        name=run.name,
        run={
            "family": run.family,
            "fraction": run.fraction,
            "seed": run.seed,
            "n_pretrain_cells": outcome["n_pretrain_cells"],
        },
        records=[{"mode": "pretrain", "metric": "val_loss", "value": val_loss}],
        parameters={**parameters, "model": model_config.to_dict(), "pretrain": pretrain_config.__dict__},
        data_hashes=data_record["provenance"]["data_sha256"],
        extra={
            "seconds": seconds,
            "history": history.to_dict("records"),
            "cells_per_second": cells_per_second,
            "budget": pretrain_config.budget,
            "steps": outcome["step"],
            "best_step": outcome.get("best_step"),
            # a "converge" run that reached its step cap without early stopping has not shown convergence
            "capped": pretrain_config.budget == "converge" and run.fraction > 0 and not outcome.get("stopped_early"),
        },
    )


def plot_history(record: dict) -> Figure | None:
    """The pretraining loss of a pretrain record against optimizer steps, on training batches and validation cells.

    Parameters
    ----------
    record : dict
        A record :func:`pretrain` wrote (``extra.history``).

    Returns
    -------
    matplotlib.figure.Figure or None
        The figure; None for the random-init control (fraction 0: nothing was trained).
    """
    history = pd.DataFrame(record["extra"]["history"], columns=HISTORY_COLUMNS)
    if not len(history):
        print("fraction 0.0: no pretraining; the checkpoint holds the seeded random initialization")
        return None
    run, name = record["run"], loss_name(record["run"]["family"])
    long = history.melt(
        id_vars="step", value_vars=["train_loss", "val_loss"], var_name="split", value_name=name
    ).dropna()
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        sns.lineplot(long, x="step", y=name, hue="split", ax=ax)
    cells = f"{run['n_pretrain_cells']} cells ({run['fraction']:.0%})"
    ax.set_title(f"Pretraining loss, {run['family']}, {cells}, seed {run['seed']}")
    fig.tight_layout()
    return fig
