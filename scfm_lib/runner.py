"""The pretraining runner: one grid point of the study, in-process or launched by ``torchrun``.

The pretrain job (:func:`scfm_lib.study.pretrain.pretrain`) calls :func:`pretrain_grid_point`
directly, or, when the profile sets ``workflow.pretrain_launch`` (e.g. ``torchrun --standalone
--nproc_per_node 4``), runs::

    <pretrain_launch> -m scfm_lib.runner --profile P --results-dir R --run-id <run id> --outcome O

so the same code trains on one CPU core, on several processes (gloo) or on several GPUs (NCCL)
with data-parallel training (:func:`scfm_lib.train.pretrain`: every rank draws the same global
batch and computes its share of the rows; gradients are averaged by DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from scfm_lib import data, train
from scfm_lib.config import Profile, Run, load_profile
from scfm_lib.layout import VOCAB, ResultsLayout

if TYPE_CHECKING:
    from scfm_lib.model import ScFM


def init_distributed() -> tuple[int, int]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1): NCCL on GPUs, gloo on CPU.

    Returns
    -------
    rank : int
        This process's rank (0 without torchrun).
    world_size : int
        The number of processes (1 without torchrun).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def pretrained_checkpoint(profile: Profile, results_dir: str | Path, run: Run) -> tuple[ScFM, dict]:
    """The finished pretraining run of a grid point: ``(model, pretrain record)``.

    Parameters
    ----------
    profile : Profile
        The study's profile (its grid names the command that makes a missing run).
    results_dir : str or pathlib.Path
        The profile's results folder.
    run : Run
        The grid point.

    Returns
    -------
    tuple of (ScFM, dict)
        The checkpoint's model (eval mode) and its ``metrics/pretrain/<run id>.json`` record.

    Raises
    ------
    FileNotFoundError
        Naming what is missing (the pretraining record or the checkpoint folder) and the command
        that makes it, when that grid point was never pretrained (a fraction or seed the profile
        does not list, or a run that has not reached it yet).
    """
    from scfm_lib import io

    name = run.name
    layout = ResultsLayout(results_dir)
    record_path = layout.metrics("pretrain", name)
    out_dir = layout.checkpoint(name)
    if not record_path.exists() or not (out_dir / train.META).exists():
        missing = record_path if not record_path.exists() else out_dir
        listed = run in profile.runs()
        make = (
            f"snakemake -s workflow/Snakefile --cores 2 {record_path} --config profile={profile.name}"
            if listed
            else f"papermill nbs/pretrain.ipynb /tmp/pretrain_{name}.ipynb -p profile {profile.name} "
            f"-p results_dir {results_dir} -p run {name}"
        )
        why = (
            ""
            if listed
            else f" (the profile {profile.name!r} does not list this grid point: its "
            f"fractions are {list(profile.fractions)} and its seeds {list(profile.seeds)})"
        )
        raise FileNotFoundError(
            f"checkpoint {name} was never pretrained: {missing} is missing{why}. Pretrain it first with: {make}"
        )
    return train.load_checkpoint(out_dir), io.read_json(record_path)


def pretrain_grid_point(
    profile: Profile,
    results_dir: str | Path,
    run: Run,
    max_steps: int | None = None,
    budget: str | None = None,
    progress: bool = False,
) -> dict:
    """Pretrain (or, for fraction 0, save the random-init control of) one grid point.

    The checkpoint goes to ``results/<profile>/checkpoints/<run id>``, with the vocabulary beside it.

    Parameters
    ----------
    profile : Profile
        The study's profile (model and pretraining settings).
    results_dir : str or pathlib.Path
        The profile's results folder (the data job has run).
    run : Run
        The grid point (fraction 0 = the random-init control).
    max_steps : int, optional
        Overrides the profile's pretraining steps.
    budget : str, optional
        Overrides the profile's pretraining budget (``steps``, ``epochs``, ``converge``).
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        The :func:`train.pretrain` outcome (for the control: an empty history and ``n_train`` 0)
        plus the configs used (``model_config``, ``pretrain_config``) and the corpus subset's size
        (``n_pretrain_cells``).
    """
    family, fraction, seed = run.family, run.fraction, run.seed
    layout = ResultsLayout(results_dir)
    corpus = data.CellTokens.load(layout.tokens(family, "corpus_train"), mmap=True)  # stays on disk
    val = data.CellTokens.load(layout.tokens(family, "corpus_val"))
    subset = data.nested_subsets(len(corpus), [fraction], seed=seed)[fraction]  # the one place it is drawn
    vocab = data.GeneVocab.load(layout.vocab)
    model_config = profile.model_config(vocab_size=len(vocab), family=family)
    pretrain_config = profile.pretrain_config(
        max_steps=max_steps, budget=budget, seed=seed, num_threads=profile.workflow.threads_per_job
    )
    out_dir = layout.checkpoint(run.name)
    writer = init_distributed()[0] == 0  # under torchrun every rank gets here; rank 0 alone writes files
    if fraction == 0.0:
        if writer:
            train.init_checkpoint(model_config, seed=seed, out_dir=out_dir)
        outcome = {"history": [], "step": 0, "total_steps": 0, "n_train": 0, "steps_run": 0, "seconds": 0.0}
    else:
        outcome = train.pretrain(model_config, corpus.subset(subset), val, pretrain_config, out_dir, progress=progress)
    if writer:
        vocab.save(out_dir / VOCAB)  # the checkpoint folder is self-contained for scfm_lib.tl.embed
    return {
        **outcome,
        "n_pretrain_cells": len(subset),
        "model_config": model_config,
        "pretrain_config": pretrain_config,
    }


def main(argv: list[str] | None = None) -> None:
    """The command line: ``python -m scfm_lib.runner --profile P --results-dir R --run-id <run id> ...``.

    Parameters
    ----------
    argv : list of str, optional
        The arguments; default ``sys.argv[1:]``.

    Returns
    -------
    None
    """
    parser = argparse.ArgumentParser(
        prog="python -m scfm_lib.runner", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", required=True)
    parser.add_argument("--profiles-dir", default=None)
    parser.add_argument("--results-dir", required=True)
    # "--run-id", not "--run": torchrun reads an abbreviation of its own --run-path in "--run" and stops
    parser.add_argument("--run-id", dest="run", type=Run.parse, required=True, help="the run id, e.g. scgpt_f0.1_s0")
    parser.add_argument("--outcome", default=None, help="a JSON file rank 0 writes the training outcome to")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--budget", default=None)
    args = parser.parse_args(argv)
    rank, _ = init_distributed()
    profile = load_profile(args.profile, args.profiles_dir)
    outcome = pretrain_grid_point(profile, args.results_dir, args.run, args.max_steps, args.budget, progress=rank == 0)
    if rank == 0 and args.outcome:  # what the launching process records (scfm_lib.study.pretrain)
        trained = {k: v for k, v in outcome.items() if k not in ("model_config", "pretrain_config")}
        Path(args.outcome).write_text(json.dumps(trained))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


if __name__ == "__main__":
    main()
