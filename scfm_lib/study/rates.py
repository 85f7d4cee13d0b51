"""Finetuning rates chosen on validation cells, for every corpus fraction.

A rate that suits the 100% checkpoint need not suit a random-init or a 1% one, and a rate at
the pretraining peak can erase what pretraining put in the weights. So for each regime and each
corpus fraction the workflow's ``rates`` job finetunes that fraction's first checkpoint (its
first seed, the first finetuning seed) at every rate of ``study.rate_candidates`` and keeps the
one with the lowest validation loss, the early-stopping criterion. Test cells are never scored.
Every seed of the fraction then finetunes at that rate.
"""

from __future__ import annotations

import time
from pathlib import Path

import anndata as ad
import numpy as np

from scfm_lib import data, io, results, train
from scfm_lib.config import Profile, Run
from scfm_lib.layout import ResultsLayout

KIND = "rates"


def rate_field(regime: str) -> str:
    """The FinetuneConfig field a regime's rate is: the head's for "head_only", the encoder's otherwise.

    Parameters
    ----------
    regime : str
        A finetuning regime.

    Returns
    -------
    str
        ``"head_lr"`` or ``"lr"``.
    """
    return "head_lr" if regime == "head_only" else "lr"


def choose_rates(profile: Profile, results_dir: str | Path, family: str) -> dict:
    """Finetune the first checkpoint of every fraction at every candidate rate; keep the best per fraction.

    Writes and returns ``metrics/rates/<family>.json`` with ``extra["chosen"][regime][str(fraction)]``
    = the rate.

    Parameters
    ----------
    profile : Profile
        The study's profile (regimes, fractions, ``study.rate_candidates``).
    results_dir : str or pathlib.Path
        The profile's results folder (data and checkpoints present).
    family : str
        The model family.

    Returns
    -------
    dict
        The metrics payload written: one ``rate`` record per regime and fraction, and in ``extra``
        the chosen rates and every trial's best validation loss.
    """
    layout = ResultsLayout(results_dir)
    obs = ad.read_h5ad(layout.dataset("downstream"), backed="r").obs
    tokens = data.CellTokens.load(layout.tokens(family, "downstream"))
    split = {s: np.flatnonzero(obs["split"].to_numpy() == s) for s in ("train", "val")}
    labels = obs[profile.data.label_key].to_numpy()
    classes, (y_train, y_val) = data.encode_labels(labels[split["train"]], labels[split["val"]])
    started, trials, chosen = time.perf_counter(), [], {}
    for regime in profile.evaluate.regimes:
        field = rate_field(regime)
        chosen[regime] = {}
        for fraction in profile.fractions:
            seed = profile.seeds_at(fraction)[0]
            model = train.load_checkpoint(layout.checkpoint(Run(family, fraction, seed).name))
            best = None
            for rate in profile.study.rate_candidates:
                cfg = profile.finetune_config(
                    seed=profile.study.finetune_seeds[0], regime=regime, **{field: float(rate)}
                )
                _, log = train.finetune_classifier(
                    model, tokens.subset(split["train"]), y_train, tokens.subset(split["val"]), y_val, len(classes), cfg
                )
                trials.append(
                    {
                        "regime": regime,
                        "fraction": fraction,
                        "seed": seed,
                        "field": field,
                        "rate": float(rate),
                        "best_val_loss": log["best_val_loss"],
                        "best_step": log["best_step"],
                        "steps_run": log["steps_run"],
                    }
                )
                if best is None or log["best_val_loss"] < best[1]:
                    best = (float(rate), log["best_val_loss"])
            chosen[regime][str(float(fraction))] = best[0]
    data_hashes = io.read_json(layout.metrics("data", "datasets"))["provenance"]["data_sha256"]
    records = [
        {"mode": "rate", "metric": f"{regime}_f{fraction}", "value": rate}
        for regime, by in chosen.items()
        for fraction, rate in by.items()
    ]
    return results.write_metrics(
        layout.metrics(KIND, family),
        kind=KIND,
        name=family,
        run={"family": family},
        records=records,
        parameters={"profile": profile.name, "candidates": profile.study.rate_candidates},
        data_hashes=data_hashes,
        extra={"chosen": chosen, "trials": trials, "seconds": time.perf_counter() - started},
    )


def chosen_rate(results_dir: str | Path, family: str, regime: str, fraction: float) -> dict:
    """``{field: rate}`` the rates job chose for this regime and fraction.

    To pass to ``profile.finetune_config``; a clear error when the rates job has not run.

    Parameters
    ----------
    results_dir : str or pathlib.Path
        The profile's results folder.
    family : str
        The model family.
    regime : str
        The finetuning regime.
    fraction : float
        The corpus fraction.

    Returns
    -------
    dict
        ``{"lr": rate}`` or ``{"head_lr": rate}`` (:func:`rate_field`).

    Raises
    ------
    FileNotFoundError
        When the rates job has not written ``metrics/rates/<family>.json``.
    """
    path = ResultsLayout(results_dir).metrics(KIND, family)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the finetuning rates of {family} are chosen by the workflow's "
            f"'rates' job; run snakemake ... {path}"
        )
    return {rate_field(regime): io.read_json(path)["extra"]["chosen"][regime][str(float(fraction))]}
