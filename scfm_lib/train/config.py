"""The configurations of pretraining and finetuning, and the optimizer and learning-rate schedule both use.

:class:`PretrainConfig` (the pretraining arm: budget, masking, schedule, checkpointing) and
:class:`FinetuneConfig` (the finetuning regime) check their fields when built, so a bad profile
fails before any work. :func:`cosine_lr`, :func:`param_groups` and :func:`adamw` are the
schedule and the AdamW setup the training loops share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

PRETRAIN_BUDGETS = ("steps", "epochs", "converge")


@dataclass
class PretrainConfig:
    """The pretraining arm: budget, masking, learning-rate schedule, checkpointing; checked when built.

    Each field's comment says what it sets; a bad value raises ``ValueError`` before any work.
    """

    max_steps: int = 500  # optimizer steps with budget="steps" (the same for every corpus size);
    # with budget="converge", the cap
    batch_size: int = 64
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.01  # AdamW, on linear-layer matrices only
    warmup_steps: int = 50  # linear warmup, then cosine decay
    min_lr_ratio: float = 0.1  # the cosine schedule ends at min_lr_ratio * lr
    grad_clip: float = 1.0  # max global gradient norm
    mask_ratio: float = 0.25  # share of each cell's genes in the loss (their value or identity hidden)
    keep_ratio: float = 0.0  # share of those loss positions whose input stays shown (BERT's 10%)
    bf16: bool = True  # bfloat16 autocast (CPU and CUDA)
    eval_every: int = 50  # steps between validation losses (and history rows)
    checkpoint_every: int = 100
    seed: int = 0  # initialization, data order, masks, dropout
    # The pretraining arm: "steps": max_steps for every corpus size; "epochs": ceil(epochs * n_train /
    # batch_size); "converge": early stopping on the validation loss (patience evaluations without a
    # relative improvement of min_delta), capped at max_steps, keeping the best weights. The converge arm follows
    # the steps arm's learning-rate schedule (cosine over max_steps), so with the same seed it is the
    # steps arm's run, stopped where early stopping stops it.
    budget: str = "steps"
    epochs: float | None = None
    patience: int = 5  # budget "converge": evaluations without improvement before stopping
    min_delta: float = 0.0  # budget "converge": an improvement is a validation loss below
    # best * (1 - min_delta): relative, so one value suits both families' losses
    num_threads: int | None = None  # torch.set_num_threads; None = leave as is
    bucket_batches: int = 8  # length bucketing: sort each run of this many batches by cell length
    # (short cells then share batches and skip padding); 0 = off
    # torch.compile the training step (0.85-1.03x of eager on this CPU, after ~1 min of compiling; benchmarks/)
    compile: bool = False

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
            raise ValueError(
                f"keep_ratio must be in [0, 1), got {self.keep_ratio}: the share of loss positions whose "
                "input stays shown; BERT uses 0.1"
            )
        if not 0 < self.mask_ratio < 1:
            raise ValueError(
                f"mask_ratio must be in (0, 1), got {self.mask_ratio}: it is the share of each cell's "
                "genes hidden in pretraining; set e.g. mask_ratio: 0.25 (the default)"
            )
        _check_positive(self, ("max_steps", "batch_size", "lr", "grad_clip", "eval_every", "checkpoint_every"))
        if self.warmup_steps < 0 or self.weight_decay < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(
                "warmup_steps and weight_decay must be >= 0 and min_lr_ratio in [0, 1]; got "
                f"{self.warmup_steps}, {self.weight_decay}, {self.min_lr_ratio}"
            )
        _check_threads(self.num_threads)

    def total_steps(self, n_train: int) -> int:
        """Optimizer steps of a run on ``n_train`` cells.

        Parameters
        ----------
        n_train : int
            Training cells of the run.

        Returns
        -------
        int
            ``ceil(epochs * n_train / batch_size)`` (>= 1) with budget ``"epochs"``, else ``max_steps``
            (the cap, for ``"converge"``).
        """
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
    lr: float = 3e-4  # encoder learning rate (constant); for "lora", the adapters' rate
    head_lr: float = 3e-3  # the new linear head starts from scratch: 10x the encoder rate
    weight_decay: float = 0.01
    eval_every: int = 25
    patience: int = 4  # evaluations without validation-loss improvement before stopping
    bf16: bool = True
    seed: int = 0  # head initialization, data order, dropout (and LoRA's initialization)
    grad_clip: float = 1.0
    num_threads: int | None = None
    regime: str = "full"  # one of FINETUNE_REGIMES: "full", "last_k", "head_only", "lora"
    last_k: int = 1  # regime "last_k": how many final transformer blocks train (1..n_layers)
    lora_rank: int = 8  # regime "lora": rank r of each adapter
    lora_alpha: float = 16.0  # regime "lora": the adapter update is scaled by lora_alpha / lora_rank

    def __post_init__(self) -> None:
        _check_positive(self, ("max_steps", "batch_size", "lr", "head_lr", "eval_every", "patience", "grad_clip"))
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        _check_threads(self.num_threads)
        if self.regime not in FINETUNE_REGIMES:
            raise ValueError(
                f"regime must be one of {FINETUNE_REGIMES}, got {self.regime!r}: 'full' trains the "
                "whole encoder, 'last_k' its last last_k blocks, 'head_only' none of it (a linear "
                "probe), 'lora' low-rank adapters; the head always trains"
            )
        if not (isinstance(self.last_k, (int, np.integer)) and self.last_k >= 1):
            raise ValueError(
                f"last_k must be an integer >= 1 (the number of final transformer blocks to train, "
                f"at most the encoder's n_layers), got {self.last_k!r}"
            )
        if not (isinstance(self.lora_rank, (int, np.integer)) and self.lora_rank >= 1):
            raise ValueError(
                f"lora_rank must be an integer >= 1 (the rank of each LoRA adapter, e.g. 8), got {self.lora_rank!r}"
            )
        if not self.lora_alpha > 0:
            raise ValueError(f"lora_alpha must be > 0 (e.g. 2 * lora_rank), got {self.lora_alpha!r}")


def _check_positive(cfg, names: tuple[str, ...]) -> None:
    bad = {n: getattr(cfg, n) for n in names if not getattr(cfg, n) > 0}
    if bad:
        raise ValueError(f"{type(cfg).__name__}: {bad} must be > 0")


def _check_threads(num_threads: int | None) -> None:
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")


# ---------------------------------------------------------------------------- schedule and optimizer
def cosine_lr(step: int, total: int, cfg: PretrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine decay.

    Linear warmup to ``cfg.lr`` over ``cfg.warmup_steps``, then cosine decay to
    ``cfg.min_lr_ratio * cfg.lr`` at ``total``.

    Parameters
    ----------
    step : int
        The optimizer step, 0-based.
    total : int
        Steps of the schedule (:meth:`PretrainConfig.total_steps`).
    cfg : PretrainConfig
        Supplies ``lr``, ``warmup_steps`` and ``min_lr_ratio``.

    Returns
    -------
    float
        The learning rate, in ``[cfg.min_lr_ratio * cfg.lr, cfg.lr]`` after warmup.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def param_groups(module: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on the matrices of linear layers only.

    Not on norms, biases or embeddings (gene, bin, CLS, mask, and the 1 -> D layer that embeds a
    scalar value).

    Parameters
    ----------
    module : torch.nn.Module
        The model whose parameters are grouped.
    lr : float
        The groups' learning rate.
    weight_decay : float
        The decay of the decayed group.

    Returns
    -------
    list of dict
        Two optimizer parameter groups (``params``, ``weight_decay``, ``lr``): decayed, then not.
    """
    decayed = {id(m.weight) for m in module.modules() if isinstance(m, nn.Linear) and m.in_features > 1}
    params = list(module.parameters())
    return [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay, "lr": lr},
        {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0, "lr": lr},
    ]


def adamw(groups: list[dict], **kwargs: object) -> torch.optim.AdamW:
    """The optimizer of pretraining and finetuning: fused AdamW over ``groups``.

    AdamW over ``groups`` (see :func:`param_groups`), fused into one kernel over all parameters
    instead of the default loop of kernels per tensor; ``transformers``' Trainer makes the same
    choice on torch >= 2.8.

    Parameters
    ----------
    groups : list of dict
        Parameter groups (:func:`param_groups`).
    **kwargs
        Passed to :class:`torch.optim.AdamW` (e.g. ``betas``).

    Returns
    -------
    torch.optim.AdamW
        The optimizer.
    """
    return torch.optim.AdamW(groups, fused=True, **kwargs)
