"""Pretraining on masked prediction: the resumable, optionally data-parallel training loop.

:func:`pretrain` runs one pretraining job (budget "steps", "epochs" or "converge") into a
checkpoint folder, resuming an unfinished run bit-identically; the helpers below it wrap the
loss for DistributedDataParallel and talk to torch.distributed when it is initialized.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from scfm_lib.data import CellTokens
from scfm_lib.io import atomic_path
from scfm_lib.masks import keep_shown, random_value_mask
from scfm_lib.model import ScFMConfig
from scfm_lib.train.batches import EpochSampler, _autocast, _tensors, cell_lengths, check_bf16
from scfm_lib.train.checkpoint import (
    META,
    TRAINER_STATE,
    _check_same_run,
    _read_meta,
    _rerun_hint,
    _run_identity,
    initial_model,
    save_checkpoint,
)
from scfm_lib.train.config import PretrainConfig, adamw, cosine_lr, param_groups
from scfm_lib.train.inference import reconstruction_loss


def pretrain(
    model_config: ScFMConfig,
    train: CellTokens,
    val: CellTokens,
    cfg: PretrainConfig,
    out_dir: str | Path,
    progress: bool = True,
) -> dict:
    """Pretrain on masked-value prediction, checkpointing to ``out_dir``.

    If ``out_dir`` holds a finished checkpoint of the same run, returns without training; an
    unfinished one is resumed (bit-identical to an uninterrupted run on CPU); a checkpoint of
    another configuration or other data is an error.

    Parameters
    ----------
    model_config
        The model to pretrain; its ``context_genes`` must equal ``train.context``.
    train
        Tokens of the training cells (at least one; the random-init control is :func:`init_checkpoint`).
    val
        Tokens of the validation cells, scored by :func:`reconstruction_loss` every ``cfg.eval_every`` steps.
    cfg
        Budget, optimizer, schedule, masking, checkpointing and seed of the run.
    out_dir
        The checkpoint folder: written, resumed, or read back when its run is finished.
    progress
        Show a progress bar.

    Returns
    -------
    dict
        ``{"history", "step", "total_steps", "n_train", "val_loss", "best_step", "stopped_early",
        "steps_run", "seconds"}``: ``history`` rows are ``{step, train_loss (mean since the previous row),
        val_loss, lr}``; with budget "converge", ``val_loss`` and ``best_step`` are those of the kept
        (best) weights and ``stopped_early`` says whether early stopping acted before the cap;
        ``steps_run``/``seconds`` count this call only (0 when the run was already finished).

    Raises
    ------
    ValueError
        When ``train`` is empty, its context differs from ``model_config.context_genes``, or
        ``out_dir`` holds a checkpoint of another run or an unreadable ``trainer_state.pt``.
    FileNotFoundError
        When ``out_dir`` holds an unfinished run without its ``trainer_state.pt``.
    RuntimeError
        When ``cfg.bf16`` asks for bf16 where the CPU only emulates it (:func:`check_bf16`).
    """
    if len(train) == 0:
        raise ValueError("no training cells: use init_checkpoint for the random-init (0%) control")
    if train.context != model_config.context_genes:
        raise ValueError(
            f"the training tokens hold {train.context} genes per cell but the model "
            f"config says context_genes={model_config.context_genes}; tokenize with the same context"
        )
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
            return {
                "history": history,
                "step": meta["step"],
                "total_steps": total,
                "n_train": meta["n_train"],
                "val_loss": meta.get("best_val_loss", _last_val_loss(history)),
                "best_step": meta.get("best_step"),
                "stopped_early": bool(meta.get("best_step") is not None and meta["step"] < total),
                "steps_run": 0,
                "seconds": 0.0,
            }
        if not (out_dir / TRAINER_STATE).exists():
            raise FileNotFoundError(
                f"{out_dir / TRAINER_STATE} is missing, so the unfinished run in {out_dir} "
                f"cannot resume; {_rerun_hint(out_dir)}"
            )

    rank, world = _distributed()
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
        torch.manual_seed(cfg.seed)  # dropout's generator; checkpointed below
        model = initial_model(model_config, cfg.seed).train()
        optimizer = adamw(param_groups(model, cfg.lr, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
        objective = _PretrainObjective(model)
        if world > 1:  # gradients are averaged over ranks during backward
            objective = torch.nn.parallel.DistributedDataParallel(objective)
        if cfg.compile:
            objective = torch.compile(objective, dynamic=True)
        check_bf16(cfg.bf16)  # before any work: emulated bf16 would make this run many times slower
        sampler = EpochSampler(
            len(train),
            cfg.seed,
            lengths=cell_lengths(train) if cfg.bucket_batches else None,
            bucket_size=cfg.bucket_batches * cfg.batch_size,
            batch_size=cfg.batch_size,
        )
        mask_generator = torch.Generator().manual_seed(cfg.seed + 1)
        step, history, window = 0, [], []  # window: train losses since the last history row
        # Early stopping (budget "converge"): the best validation loss so far, its step and weights.
        best = {"val_loss": float("inf"), "step": 0, "model": None, "waited": 0}

        if (out_dir / TRAINER_STATE).exists():
            try:
                state = torch.load(out_dir / TRAINER_STATE, weights_only=True)
                state["run"]
            except Exception as error:  # truncated, or written by an older scfm_lib
                raise ValueError(
                    f"{out_dir / TRAINER_STATE} cannot be read ({type(error).__name__}), so the run "
                    f"cannot resume; {_rerun_hint(out_dir)}"
                ) from error
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
                torch.save(
                    {
                        "run": run,
                        "step": step,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "sampler": sampler.state_dict(),
                        "mask_generator": mask_generator.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "history": history,
                        "window": window,
                        "best": best,
                    },
                    tmp,
                )
            done = finished()
            weights = model
            if converge and done and best["model"] is not None:  # early stopping returns its best weights
                weights = initial_model(model_config, cfg.seed)
                weights.load_state_dict(best["model"])
            meta = {
                "step": step,
                "total_steps": total,
                "n_train": len(train),
                "seed": cfg.seed,
                "pretrain_config": asdict(cfg),
                "train_sha256": run["train_sha256"],
                "history": history,
                "finished": done,
            }
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
            mask = random_value_mask(gene_ids, cfg.mask_ratio, mask_generator)  # [B, l] loss positions
            hide = keep_shown(mask, cfg.keep_ratio, mask_generator)  # [B, l] hidden inputs
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
                        best = {
                            "val_loss": val_loss,
                            "step": step,
                            "waited": 0,
                            "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                        }
                    else:
                        best["waited"] += 1
            if step % cfg.checkpoint_every == 0 or finished():
                checkpoint()
        if step == first_step:  # killed after the last trainer_state.pt, before its weights and JSON
            checkpoint()
        bar.close()
    val = best["val_loss"] if converge else _last_val_loss(history)
    return {
        "history": history,
        "step": step,
        "total_steps": total,
        "n_train": len(train),
        "val_loss": val,
        "best_step": best["step"] if converge else None,
        "stopped_early": bool(converge and step < total),
        "steps_run": step - first_step,
        "seconds": time.perf_counter() - started,
    }


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
