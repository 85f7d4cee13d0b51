"""Checkpoint folders: the seeded initial model, saving and loading verified weights, and run identity.

A checkpoint folder holds ``model.safetensors``, ``checkpoint.json`` (written last, with the
weights' sha256) and, for a pretraining run, ``trainer_state.pt`` (see :mod:`scfm_lib.train`).
:func:`_run_identity` and :func:`_check_same_run` decide whether a folder belongs to the run
that is about to resume or skip it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from scfm_lib.data import CellTokens
from scfm_lib.io import atomic_path, file_sha256, read_json, write_json
from scfm_lib.layout import META, WEIGHTS  # the file names of a checkpoint folder
from scfm_lib.layout import TRAINER_STATE as TRAINER_STATE  # re-exported for scfm_lib.train
from scfm_lib.model import ScFM, ScFMConfig
from scfm_lib.train.batches import tokens_sha256
from scfm_lib.train.config import PretrainConfig


def initial_model(model_config: ScFMConfig, seed: int) -> ScFM:
    """The seeded initialization every run of ``seed`` starts from (and the 0% control keeps).

    Parameters
    ----------
    model_config : ScFMConfig
        The architecture.
    seed : int
        Seed of the initialization.

    Returns
    -------
    ScFM
        The freshly initialized model (train mode).
    """
    return ScFM(model_config, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(model: ScFM, out_dir: str | Path, meta: dict) -> None:
    """Write ``model.safetensors``, then ``checkpoint.json`` (``meta`` + model config + weights hash).

    Parameters
    ----------
    model : ScFM
        The model whose weights are saved.
    out_dir : str or pathlib.Path
        The checkpoint folder.
    meta : dict
        The run's record (step, history, configs, ...), stored in ``checkpoint.json``.

    Returns
    -------
    None
    """
    out_dir = Path(out_dir)
    with atomic_path(out_dir / WEIGHTS) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    write_json(
        out_dir / META,
        {**meta, "model_config": model.config.to_dict(), "weights_sha256": file_sha256(out_dir / WEIGHTS)},
    )


def _rerun_hint(out_dir: Path) -> str:
    return f"delete the folder {out_dir} and rerun the job that made it"


def _read_meta(out_dir: Path) -> dict:
    """``checkpoint.json`` of a checkpoint folder; a truncated or corrupt file is a ValueError
    that says what to do (not a bare JSONDecodeError)."""
    try:
        meta = read_json(out_dir / META)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{out_dir / META} cannot be read ({type(error).__name__}: {error}): the file is truncated "
            f"or corrupt; {_rerun_hint(out_dir)}"
        ) from error
    if not isinstance(meta, dict):
        raise ValueError(f"{out_dir / META} holds no checkpoint record; {_rerun_hint(out_dir)}")
    return meta


def load_checkpoint(out_dir: str | Path) -> ScFM:
    """The model of a checkpoint folder (eval mode), after checking its weights' sha256.

    The weights are checked against the sha256 recorded in ``checkpoint.json``.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        The checkpoint folder.

    Returns
    -------
    ScFM
        The model, in eval mode.

    Raises
    ------
    FileNotFoundError
        When ``checkpoint.json`` or the weights are missing (an incomplete checkpoint).
    ValueError
        When the weights do not match the recorded sha256 (corrupt, truncated or from another run)
        or ``checkpoint.json`` cannot be read.
    """
    out_dir = Path(out_dir)
    meta_path, weights = out_dir / META, out_dir / WEIGHTS
    for path in (meta_path, weights):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the checkpoint is incomplete; {_rerun_hint(out_dir)}")
    meta = _read_meta(out_dir)
    if file_sha256(weights) != meta.get("weights_sha256"):
        raise ValueError(
            f"{weights} does not match the sha256 recorded in {meta_path}: the file is corrupt, "
            f"truncated or from another run; {_rerun_hint(out_dir)}"
        )
    model = ScFM(ScFMConfig.from_dict(meta["model_config"]))
    model.load_state_dict(load_file(str(weights)))
    return model.eval()


def init_checkpoint(model_config: ScFMConfig, seed: int, out_dir: str | Path) -> ScFM:
    """The random-init (0%) control: the initialization of seed ``seed`` saved as a step-0 checkpoint.

    The checkpoint has ``n_train`` 0. Its weights equal those every pretraining run of that seed
    starts from.

    Parameters
    ----------
    model_config, seed
        As :func:`initial_model`.
    out_dir : str or pathlib.Path
        The checkpoint folder to write.

    Returns
    -------
    ScFM
        The control's model, in eval mode.

    Raises
    ------
    ValueError
        When ``out_dir`` already holds a pretrained checkpoint.
    """
    out_dir = Path(out_dir)
    if (out_dir / META).exists() and _read_meta(out_dir).get("step", 0) > 0:
        raise ValueError(
            f"{out_dir} holds a pretrained checkpoint; pick another folder for the random-init "
            "control (or delete this one)"
        )
    model = initial_model(model_config, seed)
    save_checkpoint(
        model,
        out_dir,
        {
            "step": 0,
            "total_steps": 0,
            "n_train": 0,
            "seed": seed,
            "pretrain_config": None,
            "train_sha256": None,
            "history": [],
        },
    )
    return model.eval()


# ---------------------------------------------------------------------------- run identity
def _run_identity(model_config: ScFMConfig, cfg: PretrainConfig, train: CellTokens) -> dict:
    """What makes two runs the same run (the thread count does not change the numbers)."""
    pretrain_config = {k: v for k, v in asdict(cfg).items() if k != "num_threads"}
    return {
        "model_config": model_config.to_dict(),
        "pretrain_config": pretrain_config,
        "n_train": len(train),
        "train_sha256": tokens_sha256(train),
    }


def _check_same_run(stored: dict, run: dict, source: Path) -> None:
    """Refuse to resume (or skip) a checkpoint made by another configuration or other data."""
    if stored.get("pretrain_config") is None:
        raise ValueError(
            f"{source} belongs to a random-init control (step 0), not to this pretraining run; "
            "give the run its own folder or delete this one"
        )
    expected = {
        "model_config": ScFMConfig.from_dict(stored["model_config"]).to_dict(),
        "pretrain_config": {
            k: v for k, v in asdict(PretrainConfig(**stored["pretrain_config"])).items() if k != "num_threads"
        },
        "n_train": stored.get("n_train"),
        "train_sha256": stored.get("train_sha256"),
    }
    differ = []
    for section in ("model_config", "pretrain_config"):
        differ += [
            f"{section}.{k}: {expected[section].get(k)!r} there, {v!r} now"
            for k, v in run[section].items()
            if expected[section].get(k) != v
        ]
    if expected["n_train"] != run["n_train"]:
        differ.append(f"n_train: {expected['n_train']} there, {run['n_train']} now")
    elif expected["train_sha256"] not in (None, run["train_sha256"]):
        differ.append("the training cells differ (train_sha256)")
    if differ:
        raise ValueError(
            f"{source} was written by a different run ({'; '.join(differ)}); delete "
            f"{source.parent} to start over, or pass the configuration and data it was made with"
        )
