"""Training runners: pretraining (masked values), finetuning (annotation), checkpoints, inference.

Kept apart from the ``nn.Module`` (model.py) and from the AnnData API (tl.py). A checkpoint is
a folder::

    model.safetensors   the weights
    checkpoint.json     model config, pretraining config, step, history, n_train, sha256 of the weights
    trainer_state.pt    everything a resume needs, in one file: weights, optimizer, step (the
                        learning-rate schedule is a function of the step), RNG and data-order state

Every file is written atomically (``trainer_state.pt`` first, ``checkpoint.json`` last), so a
folder whose JSON exists holds a complete checkpoint, and a run killed at any moment resumes
from its last ``trainer_state.pt``. Same seed, same numbers on CPU, with or without a kill.
The initialization, data order and masks use their own seeded generators; torch's global
generator (used by dropout only) is seeded, checkpointed and restored for the caller.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from scfm_lib.data import PAD_ID, CellTokens
from scfm_lib.io import atomic_path, file_sha256, read_json, write_json
from scfm_lib.model import CellClassifier, ScFM, ScFMConfig, keep_shown, random_value_mask

WEIGHTS, META, TRAINER_STATE = "model.safetensors", "checkpoint.json", "trainer_state.pt"
DEVICE = torch.device("cpu")
VAL_MASK_SEED = 0  # validation masks: the same for every step, run and checkpoint


PRETRAIN_BUDGETS = ("steps", "epochs", "converge")


@dataclass
class PretrainConfig:
    max_steps: int = 500               # optimizer steps with budget="steps" (the same for every corpus size);
                                       # with budget="converge", the cap
    batch_size: int = 64
    lr: float = 1e-3                   # peak learning rate
    weight_decay: float = 0.01         # AdamW, on linear-layer matrices only
    warmup_steps: int = 50             # linear warmup, then cosine decay
    min_lr_ratio: float = 0.1          # the cosine schedule ends at min_lr_ratio * lr
    grad_clip: float = 1.0             # max global gradient norm
    mask_ratio: float = 0.25           # share of each cell's genes in the loss (their value or identity hidden)
    keep_ratio: float = 0.0            # share of those loss positions whose input stays shown (BERT's 10%)
    bf16: bool = True                  # bfloat16 autocast (CPU and CUDA)
    eval_every: int = 50               # steps between validation losses (and history rows)
    checkpoint_every: int = 100
    seed: int = 0                      # initialization, data order, masks, dropout
    # The pretraining arm: "steps": max_steps for every corpus size; "epochs": ceil(epochs * n_train /
    # batch_size); "converge": early stopping on the validation loss (patience evaluations without a
    # relative improvement of min_delta), capped at max_steps, keeping the best weights. The converge arm follows
    # the steps arm's learning-rate schedule (cosine over max_steps), so with the same seed it is the
    # steps arm's run, stopped where early stopping stops it.
    budget: str = "steps"
    epochs: float | None = None
    patience: int = 5                  # budget "converge": evaluations without improvement before stopping
    min_delta: float = 0.0             # budget "converge": an improvement is a validation loss below
                                       # best * (1 - min_delta): relative, so one value suits both families' losses
    num_threads: int | None = None     # torch.set_num_threads; None = leave as is
    bucket_batches: int = 8            # length bucketing: sort each run of this many batches by cell length
                                       # (short cells then share batches and skip padding); 0 = off
    compile: bool = False              # torch.compile the training step (0.85-1.03x of eager on this CPU, after ~1 min of compiling; benchmarks/)

    def __post_init__(self) -> None:
        if self.bucket_batches < 0:
            raise ValueError(f"bucket_batches must be >= 0, got {self.bucket_batches}")
        if self.budget not in PRETRAIN_BUDGETS:
            raise ValueError(f"budget must be one of {PRETRAIN_BUDGETS}, got {self.budget!r}")
        if self.patience < 1 or not 0 <= self.min_delta < 1:
            raise ValueError(f"patience must be >= 1 and min_delta in [0, 1), got {self.patience} and {self.min_delta}")
        if self.budget == "epochs" and not (self.epochs is not None and self.epochs > 0):
            raise ValueError(f"budget='epochs' needs epochs > 0 (e.g. epochs=2.0), got epochs={self.epochs}")
        if not 0 <= self.keep_ratio < 1:
            raise ValueError(f"keep_ratio must be in [0, 1), got {self.keep_ratio}: the share of loss positions whose "
                             "input stays shown; BERT uses 0.1")
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}: it is the share of each cell's "
                             "genes hidden in pretraining; set e.g. mask_ratio: 0.25 (the default)")
        _check_positive(self, ("max_steps", "batch_size", "lr", "grad_clip", "eval_every", "checkpoint_every"))
        if self.warmup_steps < 0 or self.weight_decay < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("warmup_steps and weight_decay must be >= 0 and min_lr_ratio in [0, 1]; got "
                             f"{self.warmup_steps}, {self.weight_decay}, {self.min_lr_ratio}")
        _check_threads(self.num_threads)

    def total_steps(self, n_train: int) -> int:
        """Optimizer steps of a run on ``n_train`` cells."""
        if self.budget == "epochs":
            return max(1, math.ceil(self.epochs * n_train / self.batch_size))
        return self.max_steps


FINETUNE_REGIMES = ("full", "last_k", "head_only", "lora")
# The Linear layers of every transformer block that LoRA adapts: attention qkv and output projection, and
# both MLP layers (Block.mlp is Sequential(Linear, GELU, Linear)). A regex on the encoder's module names
# (peft matches it in full), so the pretraining heads' Linear layers (value_head.0, ...) are left out.
LORA_TARGET_MODULES = r"blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(0|2))"


@dataclass
class FinetuneConfig:
    """Finetuning of a :class:`CellClassifier`; ``regime`` picks which weights train:

    - ``"full"``: every encoder weight and the head.
    - ``"last_k"``: the last ``last_k`` transformer blocks, the final LayerNorm (``ln_f``) and the head;
      the embeddings, the earlier blocks and everything else stay frozen.
    - ``"head_only"``: the head on the frozen encoder (kept in eval mode, so no dropout): a linear
      probe on the cell embedding (CLS or mean, the encoder's ``pooling``), fitted by this loop.
    - ``"lora"``: LoRA adapters (peft; rank ``lora_rank``, scale ``lora_alpha / lora_rank``) on the
      attention qkv/proj and both MLP Linear layers of every block, and the head; base weights frozen.

    ``lr`` is the rate of whatever trains in the encoder (blocks, adapters); ``head_lr`` the head's.
    """
    max_steps: int = 300
    batch_size: int = 64
    lr: float = 3e-4                   # encoder learning rate (constant); for "lora", the adapters' rate
    head_lr: float = 3e-3              # the new linear head starts from scratch: 10x the encoder rate
    weight_decay: float = 0.01
    eval_every: int = 25
    patience: int = 4                  # evaluations without validation-loss improvement before stopping
    bf16: bool = True
    seed: int = 0                      # head initialization, data order, dropout (and LoRA's initialization)
    grad_clip: float = 1.0
    num_threads: int | None = None
    regime: str = "full"               # one of FINETUNE_REGIMES: "full", "last_k", "head_only", "lora"
    last_k: int = 1                    # regime "last_k": how many final transformer blocks train (1..n_layers)
    lora_rank: int = 8                 # regime "lora": rank r of each adapter
    lora_alpha: float = 16.0           # regime "lora": the adapter update is scaled by lora_alpha / lora_rank

    def __post_init__(self) -> None:
        _check_positive(self, ("max_steps", "batch_size", "lr", "head_lr", "eval_every", "patience", "grad_clip"))
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        _check_threads(self.num_threads)
        if self.regime not in FINETUNE_REGIMES:
            raise ValueError(f"regime must be one of {FINETUNE_REGIMES}, got {self.regime!r}: 'full' trains the "
                             "whole encoder, 'last_k' its last last_k blocks, 'head_only' none of it (a linear "
                             "probe), 'lora' low-rank adapters; the head always trains")
        if not (isinstance(self.last_k, (int, np.integer)) and self.last_k >= 1):
            raise ValueError(f"last_k must be an integer >= 1 (the number of final transformer blocks to train, "
                             f"at most the encoder's n_layers), got {self.last_k!r}")
        if not (isinstance(self.lora_rank, (int, np.integer)) and self.lora_rank >= 1):
            raise ValueError(f"lora_rank must be an integer >= 1 (the rank of each LoRA adapter, e.g. 8), "
                             f"got {self.lora_rank!r}")
        if not self.lora_alpha > 0:
            raise ValueError(f"lora_alpha must be > 0 (e.g. 2 * lora_rank), got {self.lora_alpha!r}")


def _check_positive(cfg, names: tuple[str, ...]) -> None:
    bad = {n: getattr(cfg, n) for n in names if not getattr(cfg, n) > 0}
    if bad:
        raise ValueError(f"{type(cfg).__name__}: {bad} must be > 0")


def _check_threads(num_threads: int | None) -> None:
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")


# ---------------------------------------------------------------------------- building blocks
def cosine_lr(step: int, total: int, cfg: PretrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup to ``cfg.lr`` over
    ``cfg.warmup_steps``, then cosine decay to ``cfg.min_lr_ratio * cfg.lr`` at ``total``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def param_groups(module: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on the matrices of linear layers only; not on norms, biases or
    embeddings (gene, bin, CLS, mask, and the 1 -> D layer that embeds a scalar value)."""
    decayed = {id(m.weight) for m in module.modules() if isinstance(m, nn.Linear) and m.in_features > 1}
    params = list(module.parameters())
    return [{"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay, "lr": lr},
            {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0, "lr": lr}]


def adamw(groups: list[dict], **kwargs) -> torch.optim.AdamW:
    """The optimizer of pretraining and finetuning: AdamW over ``groups`` (see :func:`param_groups`),
    fused into one kernel over all parameters instead of the default loop of kernels per tensor;
    ``transformers``' Trainer makes the same choice on torch >= 2.8."""
    return torch.optim.AdamW(groups, fused=True, **kwargs)


class EpochSampler:
    """Batches of cell indices from seeded shuffled epochs; a state that survives a restart.

    A batch that crosses an epoch boundary continues in the next shuffled epoch, so with fewer
    cells than ``batch_size`` a batch holds cells more than once (each with its own masks).

    Length bucketing (``lengths`` and ``bucket_size``): each shuffled epoch is cut into runs of
    ``bucket_size`` cells, each run is sorted by cell length, cut into batches of ``batch_size``
    and those batches are shuffled, so a batch holds cells of similar length and the padding
    that :func:`_tensors` trims away is short. Epochs stay random; only batch composition changes.
    """

    def __init__(self, n: int, seed: int, lengths: np.ndarray | None = None, bucket_size: int = 0,
                 batch_size: int = 1):
        if n < 1:
            raise ValueError("EpochSampler needs at least one cell")
        self.n, self.rng = n, np.random.default_rng(seed)
        self.lengths, self.bucket_size, self.batch_size = lengths, bucket_size, batch_size
        self.order, self.position = self._epoch(), 0

    def _epoch(self) -> np.ndarray:
        order = self.rng.permutation(self.n)
        if self.lengths is None or self.bucket_size <= self.batch_size:
            return order
        runs = []
        for start in range(0, self.n, self.bucket_size):
            run = order[start:start + self.bucket_size]
            run = run[np.argsort(-self.lengths[run], kind="stable")]               # longest first
            batches = [run[i:i + self.batch_size] for i in range(0, len(run), self.batch_size)]
            runs += [batches[i] for i in self.rng.permutation(len(batches))]
        return np.concatenate(runs)

    def next_batch(self, batch_size: int) -> np.ndarray:
        picks = []
        while batch_size > 0:
            if self.position == self.n:
                self.order, self.position = self._epoch(), 0
            take = min(batch_size, self.n - self.position)
            picks.append(self.order[self.position:self.position + take])
            self.position += take
            batch_size -= take
        return np.concatenate(picks)                                         # [batch_size] int64

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": torch.from_numpy(self.order.astype(np.int64)),
                "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order, self.position = state["order"].numpy().copy(), int(state["position"])


def _tensors(tokens: CellTokens, idx=slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """gene_ids [b, l] int64 and values [b, l] float32 of cells ``idx``, where l <= L drops the
    columns that are padding in every cell of the batch (padding trails in both tokenizations,
    and padded keys are masked, so the trimmed batch computes the same cells)."""
    gene_ids, values = tokens.take(idx)
    longest = max(1, int((gene_ids != PAD_ID).sum(1).max())) if len(gene_ids) else 1
    gene_ids = np.ascontiguousarray(gene_ids[:, :longest], dtype=np.int64)
    values = np.ascontiguousarray(values[:, :longest], dtype=np.float32)
    return torch.from_numpy(gene_ids).to(DEVICE), torch.from_numpy(values).to(DEVICE)


def cell_lengths(tokens: CellTokens) -> np.ndarray:
    """Genes per cell (non-padding positions), int64 [N]: what length bucketing sorts by."""
    return np.concatenate([(g != PAD_ID).sum(1) for g, _ in tokens.chunks()] or [np.zeros(0)]).astype(np.int64)


def _autocast(enabled: bool):
    return torch.autocast(device_type=DEVICE.type, dtype=torch.bfloat16, enabled=enabled)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no grad inside; the module's previous mode restored after."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was_training)


def tokens_sha256(tokens: CellTokens) -> str:
    """A content hash of tokens (shapes, dtypes and bytes): identifies a run's training cells."""
    h = hashlib.sha256()
    for which in (0, 1):  # all gene ids, then all values; streamed, so a memory-mapped corpus stays on disk
        dtype = (tokens.gene_ids, tokens.values)[which].dtype
        h.update(f"{dtype.str}{(len(tokens), tokens.context)}".encode())
        for block in tokens.chunks():
            h.update(np.ascontiguousarray(block[which]).tobytes())
    return h.hexdigest()


def initial_model(model_config: ScFMConfig, seed: int) -> ScFM:
    """The seeded initialization every run of ``seed`` starts from (and the 0% control keeps)."""
    return ScFM(model_config, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(model: ScFM, out_dir: str | Path, meta: dict) -> None:
    """Write ``model.safetensors``, then ``checkpoint.json`` (``meta`` + model config + weights hash)."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir / WEIGHTS) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    write_json(out_dir / META, {**meta, "model_config": model.config.to_dict(),
                                "weights_sha256": file_sha256(out_dir / WEIGHTS)})


def _rerun_hint(out_dir: Path) -> str:
    return f"delete the folder {out_dir} and rerun the job that made it"


def _read_meta(out_dir: Path) -> dict:
    """``checkpoint.json`` of a checkpoint folder; a truncated or corrupt file is a ValueError
    that says what to do (not a bare JSONDecodeError)."""
    try:
        meta = read_json(out_dir / META)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{out_dir / META} cannot be read ({type(error).__name__}: {error}): the file is truncated "
                         f"or corrupt; {_rerun_hint(out_dir)}") from error
    if not isinstance(meta, dict):
        raise ValueError(f"{out_dir / META} holds no checkpoint record; {_rerun_hint(out_dir)}")
    return meta


def load_checkpoint(out_dir: str | Path) -> ScFM:
    """The model of a checkpoint folder (eval mode), after checking its weights against the
    sha256 recorded in ``checkpoint.json``."""
    out_dir = Path(out_dir)
    meta_path, weights = out_dir / META, out_dir / WEIGHTS
    for path in (meta_path, weights):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the checkpoint is incomplete; {_rerun_hint(out_dir)}")
    meta = _read_meta(out_dir)
    if file_sha256(weights) != meta.get("weights_sha256"):
        raise ValueError(f"{weights} does not match the sha256 recorded in {meta_path}: the file is corrupt, "
                         f"truncated or from another run; {_rerun_hint(out_dir)}")
    model = ScFM(ScFMConfig.from_dict(meta["model_config"]))
    model.load_state_dict(load_file(str(weights)))
    return model.eval()


def init_checkpoint(model_config: ScFMConfig, seed: int, out_dir: str | Path) -> ScFM:
    """The random-init (0%) control: the initialization of seed ``seed`` saved as a step-0
    checkpoint (``n_train`` 0). Its weights equal those every pretraining run of that seed
    starts from."""
    out_dir = Path(out_dir)
    if (out_dir / META).exists() and _read_meta(out_dir).get("step", 0) > 0:
        raise ValueError(f"{out_dir} holds a pretrained checkpoint; pick another folder for the random-init "
                         "control (or delete this one)")
    model = initial_model(model_config, seed)
    save_checkpoint(model, out_dir, {"step": 0, "total_steps": 0, "n_train": 0, "seed": seed,
                                     "pretrain_config": None, "train_sha256": None, "history": []})
    return model.eval()


# ---------------------------------------------------------------------------- pretraining
def reconstruction_loss(model: ScFM, tokens: CellTokens, mask_ratio: float = 0.25, seed: int = VAL_MASK_SEED,
                        batch_size: int = 256) -> float:
    """The family's masked-prediction loss over ``tokens`` (>= 0, lower is better), fp32: the
    masked-value MSE of the expression head (scgpt) or the cross-entropy of masked gene
    identities (geneformer). Masks come from ``seed``: the same for every model, so the loss is
    comparable across steps, runs and checkpoints of a family. NaN for no tokens."""
    if len(tokens) == 0:
        return float("nan")
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    with _eval_mode(model):
        for start in range(0, len(tokens), batch_size):
            gene_ids, values = _tensors(tokens, slice(start, start + batch_size))  # [b, l] each
            mask = random_value_mask(gene_ids, mask_ratio, generator)             # [b, l]
            hidden = model(gene_ids, values, mask=mask)                           # [b, 1 + l, D]
            total += float(model.masked_error(hidden, gene_ids, values, mask).sum())
            count += int(mask.sum())
    return total / count if count else float("nan")


def _run_identity(model_config: ScFMConfig, cfg: PretrainConfig, train: CellTokens) -> dict:
    """What makes two runs the same run (the thread count does not change the numbers)."""
    pretrain_config = {k: v for k, v in asdict(cfg).items() if k != "num_threads"}
    return {"model_config": model_config.to_dict(), "pretrain_config": pretrain_config,
            "n_train": len(train), "train_sha256": tokens_sha256(train)}


def _check_same_run(stored: dict, run: dict, source: Path) -> None:
    """Refuse to resume (or skip) a checkpoint made by another configuration or other data."""
    if stored.get("pretrain_config") is None:
        raise ValueError(f"{source} belongs to a random-init control (step 0), not to this pretraining run; "
                         "give the run its own folder or delete this one")
    expected = {"model_config": ScFMConfig.from_dict(stored["model_config"]).to_dict(),
                "pretrain_config": {k: v for k, v in asdict(PretrainConfig(**stored["pretrain_config"])).items()
                                    if k != "num_threads"},
                "n_train": stored.get("n_train"), "train_sha256": stored.get("train_sha256")}
    differ = []
    for section in ("model_config", "pretrain_config"):
        differ += [f"{section}.{k}: {expected[section].get(k)!r} there, {v!r} now"
                   for k, v in run[section].items() if expected[section].get(k) != v]
    if expected["n_train"] != run["n_train"]:
        differ.append(f"n_train: {expected['n_train']} there, {run['n_train']} now")
    elif expected["train_sha256"] not in (None, run["train_sha256"]):
        differ.append("the training cells differ (train_sha256)")
    if differ:
        raise ValueError(f"{source} was written by a different run ({'; '.join(differ)}); delete "
                         f"{source.parent} to start over, or pass the configuration and data it was made with")


def pretrain(model_config: ScFMConfig, train: CellTokens, val: CellTokens, cfg: PretrainConfig,
             out_dir: str | Path, progress: bool = True) -> dict:
    """Pretrain on masked-value prediction, checkpointing to ``out_dir``.

    If ``out_dir`` holds a finished checkpoint of the same run, returns without training; an
    unfinished one is resumed (bit-identical to an uninterrupted run on CPU); a checkpoint of
    another configuration or other data is an error.

    Returns ``{"history", "step", "total_steps", "n_train", "val_loss", "best_step", "stopped_early",
    "steps_run", "seconds"}``: ``history`` rows are ``{step, train_loss (mean since the previous row),
    val_loss, lr}``; with budget "converge", ``val_loss`` and ``best_step`` are those of the kept
    (best) weights and ``stopped_early`` says whether early stopping acted before the cap;
    ``steps_run``/``seconds`` count this call only (0 when the run was already finished).
    """
    if len(train) == 0:
        raise ValueError("no training cells: use init_checkpoint for the random-init (0%) control")
    if train.context != model_config.context_genes:
        raise ValueError(f"the training tokens hold {train.context} genes per cell but the model "
                         f"config says context_genes={model_config.context_genes}; tokenize with the same context")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out_dir = Path(out_dir)
    total = cfg.total_steps(len(train))
    run = _run_identity(model_config, cfg, train)

    if (out_dir / META).exists():
        meta = _read_meta(out_dir)
        _check_same_run(meta, run, out_dir / META)
        if meta.get("finished", meta["step"] >= total):
            history = meta["history"]
            return {"history": history, "step": meta["step"], "total_steps": total, "n_train": meta["n_train"],
                    "val_loss": meta.get("best_val_loss", _last_val_loss(history)), "best_step": meta.get("best_step"),
                    "stopped_early": bool(meta.get("best_step") is not None and meta["step"] < total),
                    "steps_run": 0, "seconds": 0.0}
        if not (out_dir / TRAINER_STATE).exists():
            raise FileNotFoundError(f"{out_dir / TRAINER_STATE} is missing, so the unfinished run in {out_dir} "
                                    f"cannot resume; {_rerun_hint(out_dir)}")

    rank, world = _distributed()
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
        torch.manual_seed(cfg.seed)          # dropout's generator; checkpointed below
        model = initial_model(model_config, cfg.seed).train()
        optimizer = adamw(param_groups(model, cfg.lr, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
        objective = _PretrainObjective(model)
        if world > 1:  # gradients are averaged over ranks during backward
            objective = torch.nn.parallel.DistributedDataParallel(objective)
        if cfg.compile:
            objective = torch.compile(objective, dynamic=True)
        sampler = EpochSampler(len(train), cfg.seed, lengths=cell_lengths(train) if cfg.bucket_batches else None,
                               bucket_size=cfg.bucket_batches * cfg.batch_size, batch_size=cfg.batch_size)
        mask_generator = torch.Generator().manual_seed(cfg.seed + 1)
        step, history, window = 0, [], []  # window: train losses since the last history row
        # Early stopping (budget "converge"): the best validation loss so far, its step and weights.
        best = {"val_loss": float("inf"), "step": 0, "model": None, "waited": 0}

        if (out_dir / TRAINER_STATE).exists():
            try:
                state = torch.load(out_dir / TRAINER_STATE, weights_only=True)
                state["run"]
            except Exception as error:  # truncated, or written by an older scfm_lib
                raise ValueError(f"{out_dir / TRAINER_STATE} cannot be read ({type(error).__name__}), so the run "
                                 f"cannot resume; {_rerun_hint(out_dir)}") from error
            _check_same_run(state["run"], run, out_dir / TRAINER_STATE)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            sampler.load_state_dict(state["sampler"])
            mask_generator.set_state(state["mask_generator"])
            torch.set_rng_state(state["torch_rng"])
            step, history, window = state["step"], state["history"], state["window"]
            best = state["best"]

        converge = cfg.budget == "converge"

        def finished() -> bool:
            return step >= total or (converge and best["waited"] >= cfg.patience)

        def checkpoint() -> None:
            if rank != 0:  # one writer; the others wait for it
                _barrier(world)
                return
            with atomic_path(out_dir / TRAINER_STATE) as tmp:
                torch.save({"run": run, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "sampler": sampler.state_dict(), "mask_generator": mask_generator.get_state(),
                            "torch_rng": torch.get_rng_state(), "history": history, "window": window,
                            "best": best}, tmp)
            done = finished()
            weights = model
            if converge and done and best["model"] is not None:  # early stopping returns its best weights
                weights = initial_model(model_config, cfg.seed)
                weights.load_state_dict(best["model"])
            meta = {"step": step, "total_steps": total, "n_train": len(train), "seed": cfg.seed,
                    "pretrain_config": asdict(cfg), "train_sha256": run["train_sha256"], "history": history,
                    "finished": done}
            if converge:
                meta.update(best_step=best["step"], best_val_loss=best["val_loss"])
            save_checkpoint(weights, out_dir, meta)
            _barrier(world)

        first_step, started = step, time.perf_counter()
        bar = tqdm(total=total, initial=step, disable=not progress, desc="pretrain")
        while not finished():
            lr = cosine_lr(step, total, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # Every rank draws the same global batch and masks, then computes its share of the
            # rows; the loss is normalized by the global masked count, so the ranks' averaged
            # gradients equal the single-process gradient (see ScFM.pretraining_loss).
            gene_ids, values = _tensors(train, sampler.next_batch(cfg.batch_size))  # [B, l] each
            mask = random_value_mask(gene_ids, cfg.mask_ratio, mask_generator)     # [B, l] loss positions
            hide = keep_shown(mask, cfg.keep_ratio, mask_generator)                # [B, l] hidden inputs
            mine = slice(rank, None, world)
            with _autocast(cfg.bf16):
                loss = objective(gene_ids[mine], values[mine], mask[mine], float(mask.sum()) / world, hide[mine])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            window.append(_mean_over_ranks(loss.detach(), world))
            bar.update(1)
            if step % cfg.eval_every == 0 or step == total:
                val_loss = reconstruction_loss(model, val, cfg.mask_ratio)
                history.append({"step": step, "train_loss": float(np.mean(window)), "val_loss": val_loss, "lr": lr})
                window = []
                bar.set_postfix(train_loss=f"{history[-1]['train_loss']:.4f}", val_loss=f"{val_loss:.4f}")
                if converge:
                    if val_loss < best["val_loss"] * (1 - cfg.min_delta):
                        best = {"val_loss": val_loss, "step": step, "waited": 0,
                                "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                    else:
                        best["waited"] += 1
            if step % cfg.checkpoint_every == 0 or finished():
                checkpoint()
        if step == first_step:  # killed after the last trainer_state.pt, before its weights and JSON
            checkpoint()
        bar.close()
    val = best["val_loss"] if converge else _last_val_loss(history)
    return {"history": history, "step": step, "total_steps": total, "n_train": len(train),
            "val_loss": val, "best_step": best["step"] if converge else None,
            "stopped_early": bool(converge and step < total), "steps_run": step - first_step,
            "seconds": time.perf_counter() - started}


class _PretrainObjective(nn.Module):
    """The pretraining loss as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, gene_ids, values, mask, normalizer, hide):
        return self.model.pretraining_loss(gene_ids, values, mask, normalizer, hide)


def _distributed() -> tuple[int, int]:
    """(rank, world size) of a torch.distributed run (torchrun), (0, 1) otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist
        dist.barrier()


def _mean_over_ranks(loss: torch.Tensor, world: int) -> float:
    """The global batch's loss: each rank holds its rows' share, scaled by the world size."""
    if world > 1:
        import torch.distributed as dist
        loss = loss.clone()
        dist.all_reduce(loss)
        loss = loss / world
    return float(loss)


def _last_val_loss(history: list[dict]) -> float:
    value = history[-1]["val_loss"] if history else None
    return float("nan") if value is None else float(value)


# ---------------------------------------------------------------------------- finetuning and inference
def _classifier_eval(classifier: CellClassifier, tokens: CellTokens, labels: np.ndarray,
                     batch_size: int = 256) -> tuple[float, float]:
    """Mean cross-entropy (>= 0) and accuracy (in [0, 1]) over ``tokens``, fp32."""
    loss, correct = 0.0, 0
    with _eval_mode(classifier):
        for start in range(0, len(tokens), batch_size):
            logits = classifier(*_tensors(tokens, slice(start, start + batch_size)))  # [b, C]
            target = torch.from_numpy(labels[start:start + batch_size])
            loss += float(F.cross_entropy(logits.float(), target, reduction="sum"))
            correct += int((logits.argmax(1) == target).sum())
    return loss / len(tokens), correct / len(tokens)


def _check_labels(labels, tokens: CellTokens, n_classes: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(tokens):
        raise ValueError(f"{name} has shape {labels.shape}; it needs one label per cell ({len(tokens)} cells)")
    if len(labels) == 0:
        raise ValueError(f"{name} is empty: finetuning needs training and validation cells")
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"{name} must hold integer class codes in [0, {n_classes}); encode string labels "
                         "with scfm_lib.data.encode_labels")
    return labels.astype(np.int64)


def _inject_lora(encoder: ScFM, cfg: FinetuneConfig) -> ScFM:
    """Add LoRA adapters to ``encoder`` in place with ``peft.inject_adapter_in_model`` (the encoder is
    a plain nn.Module, so no PeftModel wrapper): each targeted ``nn.Linear`` becomes a
    ``peft.tuners.lora.Linear`` holding the frozen original as ``base_layer`` plus ``lora_A`` and
    ``lora_B`` (B starts at zero, so the adapted encoder first computes exactly what it did).
    Returns the same encoder object; only the adapters require gradients."""
    import peft  # heavy import; only this regime needs it

    config = peft.LoraConfig(r=int(cfg.lora_rank), lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                             target_modules=LORA_TARGET_MODULES, bias="none")
    encoder = peft.inject_adapter_in_model(config, encoder)
    adapted = [name for name, module in encoder.named_modules() if isinstance(module, peft.tuners.lora.LoraLayer)]
    if len(adapted) != 4 * len(encoder.blocks):  # model.py renamed a layer: the regex must follow
        raise RuntimeError(f"LoRA adapted {adapted}, expected qkv, proj, mlp.0 and mlp.2 of each of the "
                           f"{len(encoder.blocks)} blocks; update LORA_TARGET_MODULES in scfm_lib/train.py")
    for name, param in encoder.named_parameters():
        param.requires_grad_("lora_" in name)
    return encoder


def _apply_regime(classifier: CellClassifier, cfg: FinetuneConfig) -> None:
    """Set which parameters of ``classifier`` (holding its own copy of the encoder) train."""
    encoder, n_layers = classifier.encoder, len(classifier.encoder.blocks)
    classifier.requires_grad_(cfg.regime == "full")
    if cfg.regime == "last_k":
        for block in encoder.blocks[n_layers - cfg.last_k:]:
            block.requires_grad_(True)
        encoder.ln_f.requires_grad_(True)
    elif cfg.regime == "lora":
        classifier.encoder = _inject_lora(encoder, cfg)
    classifier.head.requires_grad_(True)


def _train_mode(classifier: CellClassifier, regime: str) -> None:
    """Training mode, except a frozen encoder ("head_only") computes in eval mode (no dropout), so the
    head sees exactly the embeddings :func:`embed` returns."""
    classifier.train()
    if regime == "head_only":
        classifier.encoder.eval()


def _trainable(groups: list[dict]) -> list[dict]:
    """``groups`` without frozen parameters, and without groups that end up empty."""
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    return [g for g in groups if g["params"]]


def finetune_classifier(encoder: ScFM, train: CellTokens, y_train: np.ndarray, val: CellTokens, y_val: np.ndarray,
                        n_classes: int, cfg: FinetuneConfig, progress: bool = False) -> tuple[CellClassifier, dict]:
    """Finetune a linear head on the cell embedding, and the part of the encoder ``cfg.regime`` names
    (see :class:`FinetuneConfig`), with cross-entropy and early stopping on validation loss.

    Regimes: ``"full"`` (default) trains every weight; ``"last_k"`` the last ``cfg.last_k`` blocks,
    ``ln_f`` and the head; ``"head_only"`` the head alone on the frozen encoder, i.e. a linear probe
    (multinomial logistic regression on the frozen CLS/mean embedding, standardized with the training
    cells' mean and spread as the probe's StandardScaler does): the same model the probe fits,
    differing only by the optimizer (AdamW with weight decay, a step budget and early stopping, in
    bf16 autocast if ``cfg.bf16``); ``"lora"`` LoRA adapters (peft) on each block's attention and MLP
    Linear layers plus the head. Frozen parameters get ``requires_grad=False`` and are not given to
    the optimizer, so they stay bit-identical. With regime "lora" the returned encoder holds peft's
    LoRA layers (``...qkv.base_layer.weight``, ``...qkv.lora_A.default.weight``, ...): it computes
    like an ScFM (``predict``, ``embed``) but its state_dict keys differ from a plain ScFM's.

    The encoder passed in is copied, never modified. Returns the classifier at its best
    validation evaluation (step 0 = the untrained head on the pretrained encoder) and a log
    ``{"best_step", "steps_run", "best_val_loss", "regime", "trainable_parameters",
    "history": [{step, train_loss, val_loss, val_accuracy}]}``; ``trainable_parameters`` counts
    the parameters given to the optimizer (for "full" this includes the pretraining heads, which
    get no gradient from the classification loss).
    """
    y_train = _check_labels(y_train, train, n_classes, "y_train")
    y_val = _check_labels(y_val, val, n_classes, "y_val")
    if cfg.regime == "last_k" and cfg.last_k > encoder.config.n_layers:  # fail before any work
        raise ValueError(f"last_k={cfg.last_k} exceeds the encoder's n_layers={encoder.config.n_layers}; pass "
                         f"last_k between 1 and {encoder.config.n_layers} (or regime='full' to train the "
                         "embeddings too)")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # dropout (and, for "lora", the adapters' initialization)
        classifier = CellClassifier(copy.deepcopy(encoder), n_classes, generator=torch.Generator().manual_seed(cfg.seed))
        # The head's input standardization, from the starting encoder's training-cell embeddings (as
        # the probe's StandardScaler; a constant dimension keeps scale 1). Without it the head on
        # LayerNorm outputs, whose spread across cells is small, stayed near chance in 300 steps
        # (quick profile, scgpt 100% seed 0: head_only macro-F1 0.085 against the probe's 0.415).
        Z = torch.from_numpy(embed(encoder, train, layer=classifier.layer))  # [N, D], what the head reads
        std = Z.std(0, unbiased=False)
        classifier.feature_mean.copy_(Z.mean(0))
        classifier.feature_std.copy_(torch.where(std > 0, std, torch.ones_like(std)))
        _apply_regime(classifier, cfg)
        optimizer = adamw(_trainable(param_groups(classifier.encoder, cfg.lr, cfg.weight_decay)
                                     + param_groups(classifier.head, cfg.head_lr, cfg.weight_decay)))
        trainable = [p for p in classifier.parameters() if p.requires_grad]
        sampler = EpochSampler(len(train), cfg.seed)
        labels = torch.from_numpy(y_train)

        val_loss, val_accuracy = _classifier_eval(classifier, val, y_val)
        history = [{"step": 0, "train_loss": None, "val_loss": val_loss, "val_accuracy": val_accuracy}]
        best = {"val_loss": val_loss, "step": 0, "state": copy.deepcopy(classifier.state_dict())}
        waited, step, window = 0, 0, []
        for step in tqdm(range(1, cfg.max_steps + 1), disable=not progress, desc="finetune"):
            _train_mode(classifier, cfg.regime)  # again after each evaluation, which restores train()
            idx = sampler.next_batch(cfg.batch_size)
            with _autocast(cfg.bf16):
                logits = classifier(*_tensors(train, idx))                   # [B, C]
            loss = F.cross_entropy(logits.float(), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            optimizer.step()
            window.append(float(loss.detach()))
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                val_loss, val_accuracy = _classifier_eval(classifier, val, y_val)
                history.append({"step": step, "train_loss": float(np.mean(window)), "val_loss": val_loss,
                                "val_accuracy": val_accuracy})
                window = []
                if val_loss < best["val_loss"]:
                    best, waited = {"val_loss": val_loss, "step": step,
                                    "state": copy.deepcopy(classifier.state_dict())}, 0
                else:
                    waited += 1
                    if waited >= cfg.patience:
                        break
    classifier.load_state_dict(best["state"])
    classifier.eval()
    return classifier, {"best_step": best["step"], "steps_run": step, "best_val_loss": best["val_loss"],
                        "regime": cfg.regime, "trainable_parameters": sum(p.numel() for p in trainable),
                        "history": history}


def predict(classifier: CellClassifier, tokens: CellTokens, batch_size: int = 256) -> np.ndarray:
    """Predicted class code per cell (int64 [N]), eval mode, fp32."""
    out = []
    with _eval_mode(classifier):
        for start in range(0, len(tokens), batch_size):
            out.append(classifier(*_tensors(tokens, slice(start, start + batch_size))).argmax(1).numpy())
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def embed(model: ScFM, tokens: CellTokens, batch_size: int = 256, layer: int | None = None,
          pooling: str | None = None) -> np.ndarray:
    """Cell embeddings (float32 [N, D]), eval mode, fp32: the states of ``layer`` pooled by
    ``pooling`` (defaults: the model config's readout, the mean over expressed genes of the
    penultimate layer; see :meth:`ScFM.cell_embedding`)."""
    out = []
    with _eval_mode(model):
        for start in range(0, len(tokens), batch_size):
            batch = _tensors(tokens, slice(start, start + batch_size))
            out.append(model.cell_embedding(*batch, layer=layer, pooling=pooling).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.d_model), dtype=np.float32)


def embed_layers(model: ScFM, tokens: CellTokens, batch_size: int = 256, pooling: str = "mean") -> np.ndarray:
    """The cell embedding of every layer at once (float32 [n_layers + 1, N, D]): index 0 pools the
    input embeddings, index ``n_layers`` the last layer after ``ln_f`` (see :meth:`ScFM.hidden_states`).
    One forward pass per batch serves every layer: what the layer-wise probe figure reads."""
    out = []
    with _eval_mode(model):
        for start in range(0, len(tokens), batch_size):
            gene_ids, values = _tensors(tokens, slice(start, start + batch_size))
            states = model.hidden_states(gene_ids, values)
            out.append(torch.stack([model.pool(h, gene_ids, pooling) for h in states]).float().numpy())
    if not out:
        return np.zeros((model.config.n_layers + 1, 0, model.config.d_model), dtype=np.float32)
    return np.concatenate(out, axis=1)
