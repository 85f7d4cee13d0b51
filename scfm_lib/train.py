"""Training runners: pretraining (masked values), finetuning (annotation), checkpoints, inference.

Kept apart from the ``nn.Module`` (model.py) and from the AnnData API (tl.py). A checkpoint is
a folder::

    model.safetensors   weights
    checkpoint.json     model config, training config, step, history, sha256 of the weights
    trainer_state.pt    optimizer, schedule position, RNG and data-order state (for resume)

Every file is written atomically and ``checkpoint.json`` last, so a folder whose JSON exists
holds a complete checkpoint. Same seed, same numbers on CPU, with or without an interruption.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from scfm_lib.data import CellTokens
from scfm_lib.io import atomic_path, file_sha256, read_json, write_json
from scfm_lib.model import CellClassifier, ScFM, ScFMConfig, random_value_mask


@dataclass
class PretrainConfig:
    max_steps: int = 500               # optimizer steps with budget="steps" (the same for every corpus size)
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1          # the cosine schedule ends at min_lr_ratio * lr
    grad_clip: float = 1.0
    mask_ratio: float = 0.25           # share of each cell's genes whose value is hidden
    bf16: bool = True                  # bfloat16 autocast (CPU and CUDA)
    eval_every: int = 50
    checkpoint_every: int = 100
    seed: int = 0
    budget: str = "steps"              # "steps": max_steps for all; "epochs": ceil(epochs * n / batch)
    epochs: float | None = None
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.budget not in ("steps", "epochs"):
            raise ValueError(f"budget must be 'steps' or 'epochs', got {self.budget!r}")
        if self.budget == "epochs" and not (self.epochs and self.epochs > 0):
            raise ValueError("budget='epochs' needs epochs > 0 (e.g. epochs: 2)")
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.max_steps < 1 or self.batch_size < 1:
            raise ValueError("max_steps and batch_size must be >= 1")

    def total_steps(self, n_train: int) -> int:
        if self.budget == "epochs":
            return max(1, math.ceil(self.epochs * n_train / self.batch_size))
        return self.max_steps


@dataclass
class FinetuneConfig:
    max_steps: int = 300
    batch_size: int = 64
    lr: float = 3e-4                   # encoder learning rate
    head_lr: float = 3e-3              # the new linear head starts from scratch: a larger rate
    weight_decay: float = 0.01
    eval_every: int = 25
    patience: int = 4                  # evaluations without validation improvement before stopping
    bf16: bool = True
    grad_clip: float = 1.0
    seed: int = 0


def _autocast(enabled: bool, device: torch.device):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _decay_groups(model: torch.nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices of linear layers only (not norms, biases, embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        is_matrix = p.ndim >= 2 and "embedding" not in name and "value_encoder.0" not in name
        (decay if is_matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "lr": lr},
            {"params": no_decay, "weight_decay": 0.0, "lr": lr}]


def cosine_lr(step: int, total: int, cfg: PretrainConfig) -> float:
    """Linear warmup to ``cfg.lr``, then cosine decay to ``cfg.min_lr_ratio * cfg.lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class EpochSampler:
    """Seeded shuffled epochs of cell indices, with a state that survives a restart."""

    def __init__(self, n: int, seed: int):
        self.n, self.rng = n, np.random.default_rng(seed)
        self.order, self.position = self.rng.permutation(n), 0

    def next_batch(self, batch_size: int) -> np.ndarray:
        picks = []
        while batch_size > 0:
            if self.position == self.n:
                self.order, self.position = self.rng.permutation(self.n), 0
            take = min(batch_size, self.n - self.position)
            picks.append(self.order[self.position:self.position + take])
            self.position += take
            batch_size -= take
        return np.concatenate(picks)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order, self.position = np.asarray(state["order"]), int(state["position"])


def _tensors(tokens: CellTokens, idx=None, device=torch.device("cpu")) -> tuple[torch.Tensor, torch.Tensor]:
    gene_ids = tokens.gene_ids if idx is None else tokens.gene_ids[idx]
    values = tokens.values if idx is None else tokens.values[idx]
    return torch.from_numpy(np.ascontiguousarray(gene_ids)).to(device), torch.from_numpy(np.ascontiguousarray(values)).to(device)


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(model: ScFM, out_dir: str | Path, meta: dict, trainer_state: dict | None = None) -> None:
    out_dir = Path(out_dir)
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    if trainer_state is not None:
        with atomic_path(out_dir / "trainer_state.pt") as tmp:
            torch.save(trainer_state, tmp)
    write_json(out_dir / "checkpoint.json", {**meta, "model_config": model.config.to_dict(),
                                             "weights_sha256": file_sha256(out_dir / "model.safetensors")})


def load_checkpoint(out_dir: str | Path) -> ScFM:
    """The model of a checkpoint folder, after checking its weights against the recorded hash."""
    out_dir = Path(out_dir)
    meta_path, weights = out_dir / "checkpoint.json", out_dir / "model.safetensors"
    for path in (meta_path, weights):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the checkpoint is incomplete; delete {out_dir} and "
                                    "rerun its pretraining job")
    meta = read_json(meta_path)
    if file_sha256(weights) != meta["weights_sha256"]:
        raise ValueError(f"{weights} does not match the sha256 recorded in {meta_path}: the file is corrupt "
                         f"or truncated; delete {out_dir} and rerun its pretraining job")
    model = ScFM(ScFMConfig.from_dict(meta["model_config"]))
    model.load_state_dict(load_file(str(weights)))
    return model.eval()


def init_checkpoint(model_config: ScFMConfig, seed: int, out_dir: str | Path) -> ScFM:
    """The random-init control: the seeded initialization saved as a step-0 checkpoint."""
    torch.manual_seed(seed)
    model = ScFM(model_config)
    save_checkpoint(model, out_dir, {"step": 0, "total_steps": 0, "n_train": 0, "seed": seed,
                                     "pretrain_config": None, "history": []})
    return model


# ---------------------------------------------------------------------------- pretraining
@torch.no_grad()
def reconstruction_loss(model: ScFM, tokens: CellTokens, mask_ratio: float = 0.25, seed: int = 0,
                        batch_size: int = 256) -> float:
    """Masked-value MSE over ``tokens`` with fixed seeded masks: comparable across checkpoints."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    squared, count = 0.0, 0
    for start in range(0, len(tokens), batch_size):
        gene_ids, values = _tensors(tokens, slice(start, start + batch_size))
        mask = random_value_mask(gene_ids, mask_ratio, generator)
        predicted = model.predict_values(model(gene_ids, values, value_mask=mask))
        squared += float(((predicted[mask] - values[mask]) ** 2).sum())
        count += int(mask.sum())
    return squared / max(count, 1)


def pretrain(model_config: ScFMConfig, train: CellTokens, val: CellTokens, cfg: PretrainConfig,
             out_dir: str | Path, progress: bool = True) -> dict:
    """Pretrain on masked-value prediction; resumes from ``out_dir`` if it holds a checkpoint.

    Returns ``{"history": [...], "step": int, "n_train": int, "seconds": float}``.
    """
    if len(train) == 0:
        raise ValueError("no training cells: use init_checkpoint for the random-init control")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out_dir = Path(out_dir)
    device = torch.device("cpu")
    total = cfg.total_steps(len(train))
    torch.manual_seed(cfg.seed)
    model = ScFM(model_config)
    optimizer = torch.optim.AdamW(_decay_groups(model, cfg.lr, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
    sampler = EpochSampler(len(train), cfg.seed)
    mask_generator = torch.Generator().manual_seed(cfg.seed + 1)
    history, step = [], 0

    if (out_dir / "checkpoint.json").exists():
        meta = read_json(out_dir / "checkpoint.json")
        if meta["step"] >= total:
            return {"history": meta["history"], "step": meta["step"], "n_train": meta["n_train"], "seconds": 0.0}
        model = load_checkpoint(out_dir)
        state = torch.load(out_dir / "trainer_state.pt", weights_only=False)
        optimizer = torch.optim.AdamW(_decay_groups(model, cfg.lr, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["sampler"])
        mask_generator.set_state(state["mask_generator"])
        torch.set_rng_state(state["torch_rng"])
        history, step = meta["history"], meta["step"]

    def checkpoint() -> None:
        meta = {"step": step, "total_steps": total, "n_train": len(train), "seed": cfg.seed,
                "pretrain_config": asdict(cfg), "history": history}
        state = {"optimizer": optimizer.state_dict(), "sampler": sampler.state_dict(),
                 "mask_generator": mask_generator.get_state(), "torch_rng": torch.get_rng_state()}
        save_checkpoint(model, out_dir, meta, state)

    started = time.perf_counter()
    model.train()
    bar = tqdm(total=total, initial=step, disable=not progress, desc="pretrain")
    while step < total:
        lr = cosine_lr(step, total, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        gene_ids, values = _tensors(train, sampler.next_batch(cfg.batch_size), device)
        with _autocast(cfg.bf16, device):
            loss = model.masked_value_loss(gene_ids, values, cfg.mask_ratio, mask_generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        bar.update(1)
        if step % cfg.eval_every == 0 or step == total:
            val_loss = reconstruction_loss(model, val, cfg.mask_ratio, seed=0) if len(val) else float("nan")
            model.train()
            history.append({"step": step, "train_loss": float(loss.detach()), "val_loss": val_loss, "lr": lr})
            bar.set_postfix(val_loss=f"{val_loss:.4f}")
        if step % cfg.checkpoint_every == 0 or step == total:
            checkpoint()
    bar.close()
    return {"history": history, "step": step, "n_train": len(train), "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------------------- finetuning and inference
@torch.no_grad()
def _classifier_loss(classifier: CellClassifier, tokens: CellTokens, labels: np.ndarray, batch_size: int = 256) -> float:
    classifier.eval()
    total = 0.0
    for start in range(0, len(tokens), batch_size):
        gene_ids, values = _tensors(tokens, slice(start, start + batch_size))
        logits = classifier(gene_ids, values)
        total += float(F.cross_entropy(logits, torch.from_numpy(labels[start:start + batch_size]), reduction="sum"))
    return total / len(tokens)


def finetune_classifier(encoder: ScFM, train: CellTokens, y_train: np.ndarray, val: CellTokens, y_val: np.ndarray,
                        n_classes: int, cfg: FinetuneConfig, progress: bool = False) -> tuple[CellClassifier, dict]:
    """Full finetuning (all encoder weights + a linear head), early stopping on validation loss.

    The encoder passed in is copied, never modified. Returns the classifier at its best
    validation step and a log (``best_step``, ``steps_run``, ``best_val_loss``, ``history``).
    """
    if len(train) != len(y_train) or len(val) != len(y_val):
        raise ValueError("tokens and labels differ in length")
    device = torch.device("cpu")
    torch.manual_seed(cfg.seed)
    classifier = CellClassifier(copy.deepcopy(encoder), n_classes)
    optimizer = torch.optim.AdamW(
        _decay_groups(classifier.encoder, cfg.lr, cfg.weight_decay)
        + [{"params": classifier.head.parameters(), "weight_decay": 0.0, "lr": cfg.head_lr}])
    sampler = EpochSampler(len(train), cfg.seed)
    labels = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    y_val = np.asarray(y_val, dtype=np.int64)
    best = {"val_loss": _classifier_loss(classifier, val, y_val), "step": 0,
            "state": copy.deepcopy(classifier.state_dict())}
    history, waited, step = [{"step": 0, "val_loss": best["val_loss"]}], 0, 0
    for step in tqdm(range(1, cfg.max_steps + 1), disable=not progress, desc="finetune"):
        classifier.train()
        idx = sampler.next_batch(cfg.batch_size)
        gene_ids, values = _tensors(train, idx, device)
        with _autocast(cfg.bf16, device):
            logits = classifier(gene_ids, values)
        loss = F.cross_entropy(logits.float(), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(classifier.parameters(), cfg.grad_clip)
        optimizer.step()
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            val_loss = _classifier_loss(classifier, val, y_val)
            history.append({"step": step, "train_loss": float(loss.detach()), "val_loss": val_loss})
            if val_loss < best["val_loss"]:
                best = {"val_loss": val_loss, "step": step, "state": copy.deepcopy(classifier.state_dict())}
                waited = 0
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
    classifier.load_state_dict(best["state"])
    classifier.eval()
    return classifier, {"best_step": best["step"], "steps_run": step, "best_val_loss": best["val_loss"],
                        "history": history}


@torch.no_grad()
def predict(classifier: CellClassifier, tokens: CellTokens, batch_size: int = 256) -> np.ndarray:
    """Predicted class index per cell (int64 [N])."""
    classifier.eval()
    out = [classifier(*_tensors(tokens, slice(s, s + batch_size))).argmax(1).numpy()
           for s in range(0, len(tokens), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


@torch.no_grad()
def embed(model: ScFM, tokens: CellTokens, batch_size: int = 256) -> np.ndarray:
    """Cell embeddings (float32 [N, D]) in fp32, eval mode."""
    model.eval()
    out = [model.cell_embedding(*_tensors(tokens, slice(s, s + batch_size))).float().numpy()
           for s in range(0, len(tokens), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.config.d_model), dtype=np.float32)
