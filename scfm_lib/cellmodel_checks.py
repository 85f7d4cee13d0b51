"""The checks :class:`scfm_lib.cellmodel.CellModel` runs on what it is given, each error naming the
fix: the checkpoint folder (its three files), the vocabulary in it, and the training and validation
cells of :meth:`~scfm_lib.cellmodel.CellModel.finetune`. ``scfm_lib.cellmodel`` re-exports the names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from scfm_lib import data, train
from scfm_lib.layout import VOCAB, ResultsLayout
from scfm_lib.model import ScFM

VOCAB_FILE = VOCAB
_LAYOUT = ResultsLayout.of_profile("<profile>")  # where the workflow puts checkpoints, for the messages below
PATH_PATTERN = str(_LAYOUT.checkpoint("<family>_f<fraction>_s<seed>"))


def _check_folder(checkpoint_dir: Path) -> None:
    """A FileNotFoundError naming what is missing and where checkpoints are, unless the folder holds
    the three files of a checkpoint."""
    if not checkpoint_dir.is_dir():
        what = "is a file, not a folder" if checkpoint_dir.exists() else "does not exist"
        raise FileNotFoundError(
            f"checkpoint folder {checkpoint_dir} {what}: pass a folder {PATH_PATTERN} (e.g. "
            "results/quick/checkpoints/geneformer_f1.0_s0), which the pretraining job writes"
        )
    needed = (train.META, train.WEIGHTS, VOCAB_FILE)
    missing = [name for name in needed if not (checkpoint_dir / name).exists()]
    if not missing:
        return
    inside = sorted(p.name for p in checkpoint_dir.iterdir() if p.is_dir() and (p / train.META).exists())
    if len(missing) == len(needed) and inside:
        raise FileNotFoundError(
            f"{checkpoint_dir} is not a checkpoint folder but holds {len(inside)}: pass one of "
            f"them, e.g. {checkpoint_dir / inside[0]} (all: {inside[:8]}"
            f"{'...' if len(inside) > 8 else ''})"
        )
    if missing == [VOCAB_FILE]:
        raise FileNotFoundError(
            f"{checkpoint_dir / VOCAB_FILE} is missing: the checkpoint needs the gene vocabulary "
            f"it was trained with; copy {_LAYOUT.vocab} of its profile into "
            "the folder (the pretraining job puts it there)"
        )
    raise FileNotFoundError(
        f"checkpoint folder {checkpoint_dir} lacks {missing} (a checkpoint holds {list(needed)}): "
        f"it is incomplete or not a checkpoint; pass a folder {PATH_PATTERN}, or delete this "
        "one and rerun the pretraining job that made it"
    )


def _load_vocab(checkpoint_dir: Path, model: ScFM) -> data.GeneVocab:
    path = checkpoint_dir / VOCAB_FILE
    try:
        vocab = data.GeneVocab.load(path)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        if isinstance(error, data.ScfmDataError):
            raise
        kind = "not valid JSON" if isinstance(error, json.JSONDecodeError) else "not a gene vocabulary"
        fix = f"copy the results/<profile>/data/{VOCAB_FILE} the checkpoint was trained with into the folder"
        raise ValueError(f"{path} cannot be read ({kind}: {type(error).__name__}: {error}); {fix}") from error
    if len(vocab) != model.config.vocab_size:
        raise ValueError(
            f"{path} has {len(vocab)} tokens but the weights in {checkpoint_dir} were trained with "
            f"vocab_size={model.config.vocab_size}: it is another run's vocabulary; copy the "
            f"results/<profile>/data/{VOCAB_FILE} of the checkpoint's own profile into the folder"
        )
    return vocab


def _finetune_split(
    adata: AnnData, label_key: str, split_key: str | None, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) cell indices: the caller's ``split_key`` column, or a stratified random split."""
    if split_key is None:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        split = data.split_cells(
            adata, fractions=(1.0 - val_fraction, val_fraction, 0.0), seed=seed, stratify=label_key
        )
        where = f"a {val_fraction:.0%} stratified validation split of {adata.n_obs} cells; pass more cells or split_key"
    else:
        if split_key not in adata.obs.columns:
            raise data.ScfmDataError(
                f"split column {split_key!r} not found (obs has {list(adata.obs.columns)}); "
                "add a column with 'train' and 'val' cells, or pass split_key=None for a "
                "random validation split"
            )
        column = adata.obs[split_key].astype(str).to_numpy()
        split = {name: np.flatnonzero(column == name) for name in ("train", "val")}
        where = f"obs[{split_key!r}] (values {list(pd.unique(column))[:5]}); mark some cells 'train' and some 'val'"
    for name in ("train", "val"):
        if len(split[name]) == 0:
            raise data.ScfmDataError(f"no {'training' if name == 'train' else 'validation'} cells in {where}")
    return split["train"], split["val"]
