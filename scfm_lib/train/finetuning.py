"""Finetuning a cell classifier on a pretrained encoder (full, last-k, head-only, LoRA), and its predictions.

:func:`finetune_classifier` trains a :class:`~scfm_lib.model.CellClassifier` with the regime
:class:`~scfm_lib.train.config.FinetuneConfig` names and early stopping on the validation loss;
:func:`predict` gives its class codes.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from scfm_lib.data import CellTokens
from scfm_lib.model import CellClassifier, ScFM
from scfm_lib.train.batches import EpochSampler, _autocast, _eval_mode, _tensors, check_bf16
from scfm_lib.train.config import LORA_TARGET_MODULES, FinetuneConfig, adamw, param_groups
from scfm_lib.train.inference import embed


def _classifier_eval(
    classifier: CellClassifier, tokens: CellTokens, labels: np.ndarray, batch_size: int = 256
) -> tuple[float, float]:
    """Mean cross-entropy (>= 0) and accuracy (in [0, 1]) over ``tokens``, fp32."""
    loss, correct = 0.0, 0
    with _eval_mode(classifier):
        for start in range(0, len(tokens), batch_size):
            logits = classifier(*_tensors(tokens, slice(start, start + batch_size)))  # [b, C]
            target = torch.from_numpy(labels[start : start + batch_size])
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
        raise ValueError(
            f"{name} must hold integer class codes in [0, {n_classes}); encode string labels "
            "with scfm_lib.data.encode_labels"
        )
    return labels.astype(np.int64)


def _inject_lora(encoder: ScFM, cfg: FinetuneConfig) -> ScFM:
    """Add LoRA adapters to ``encoder`` in place with ``peft.inject_adapter_in_model`` (the encoder is
    a plain nn.Module, so no PeftModel wrapper): each targeted ``nn.Linear`` becomes a
    ``peft.tuners.lora.Linear`` holding the frozen original as ``base_layer`` plus ``lora_A`` and
    ``lora_B`` (B starts at zero, so the adapted encoder first computes exactly what it did).
    Returns the same encoder object; only the adapters require gradients."""
    import peft  # heavy import; only this regime needs it

    config = peft.LoraConfig(
        r=int(cfg.lora_rank),
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules=LORA_TARGET_MODULES,
        bias="none",
    )
    encoder = peft.inject_adapter_in_model(config, encoder)
    adapted = [name for name, module in encoder.named_modules() if isinstance(module, peft.tuners.lora.LoraLayer)]
    if len(adapted) != 4 * len(encoder.blocks):  # model.py renamed a layer: the regex must follow
        raise RuntimeError(
            f"LoRA adapted {adapted}, expected qkv, proj, mlp.0 and mlp.2 of each of the "
            f"{len(encoder.blocks)} blocks; update LORA_TARGET_MODULES in scfm_lib/train/config.py"
        )
    for name, param in encoder.named_parameters():
        param.requires_grad_("lora_" in name)
    return encoder


def _apply_regime(classifier: CellClassifier, cfg: FinetuneConfig) -> None:
    """Set which parameters of ``classifier`` (holding its own copy of the encoder) train."""
    encoder, n_layers = classifier.encoder, len(classifier.encoder.blocks)
    classifier.requires_grad_(cfg.regime == "full")
    if cfg.regime == "last_k":
        for block in encoder.blocks[n_layers - cfg.last_k :]:
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


def finetune_classifier(
    encoder: ScFM,
    train: CellTokens,
    y_train: np.ndarray,
    val: CellTokens,
    y_val: np.ndarray,
    n_classes: int,
    cfg: FinetuneConfig,
    progress: bool = False,
) -> tuple[CellClassifier, dict]:
    """Finetune a linear head on the cell embedding, and the part of the encoder ``cfg.regime`` names.

    Training uses cross-entropy and early stopping on validation loss (see :class:`FinetuneConfig`).

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

    Parameters
    ----------
    encoder
        The pretrained encoder; it is copied, never modified.
    train, y_train
        Tokens of the training cells and their class codes (int, one per cell, in ``[0, n_classes)``;
        :func:`scfm_lib.data.encode_labels` makes them from strings).
    val, y_val
        The validation cells and their class codes: scored at step 0 and every ``cfg.eval_every``
        steps, their loss picks the returned weights and stops training early.
    n_classes
        Number of classes: the head's outputs.
    cfg
        Regime, optimizer, step budget, patience and seed of the run.
    progress
        Show a progress bar.

    Returns
    -------
    classifier : CellClassifier
        The classifier at its best validation evaluation (step 0 = the untrained head on the
        pretrained encoder), in eval mode.
    log : dict
        ``{"best_step", "steps_run", "best_val_loss", "regime", "trainable_parameters",
        "history": [{step, train_loss, val_loss, val_accuracy}]}``; ``trainable_parameters`` counts
        the parameters given to the optimizer (for "full" this includes the pretraining heads, which
        get no gradient from the classification loss).

    Raises
    ------
    ValueError
        When the label codes are not one integer in ``[0, n_classes)`` per cell, or ``cfg.last_k``
        exceeds the encoder's layers.
    RuntimeError
        When ``cfg.bf16`` asks for bf16 where the CPU only emulates it (:func:`check_bf16`).
    """
    y_train = _check_labels(y_train, train, n_classes, "y_train")
    y_val = _check_labels(y_val, val, n_classes, "y_val")
    check_bf16(cfg.bf16)
    if cfg.regime == "last_k" and cfg.last_k > encoder.config.n_layers:  # fail before any work
        raise ValueError(
            f"last_k={cfg.last_k} exceeds the encoder's n_layers={encoder.config.n_layers}; pass "
            f"last_k between 1 and {encoder.config.n_layers} (or regime='full' to train the "
            "embeddings too)"
        )
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # dropout (and, for "lora", the adapters' initialization)
        classifier = CellClassifier(
            copy.deepcopy(encoder), n_classes, generator=torch.Generator().manual_seed(cfg.seed)
        )
        # The head's input standardization, from the starting encoder's training-cell embeddings (as
        # the probe's StandardScaler; a constant dimension keeps scale 1). Without it the head on
        # LayerNorm outputs, whose spread across cells is small, stayed near chance in 300 steps
        # (quick profile, scgpt 100% seed 0: head_only macro-F1 0.085 against the probe's 0.415).
        Z = torch.from_numpy(embed(encoder, train, layer=classifier.layer))  # [N, D], what the head reads
        std = Z.std(0, unbiased=False)
        classifier.feature_mean.copy_(Z.mean(0))
        classifier.feature_std.copy_(torch.where(std > 0, std, torch.ones_like(std)))
        _apply_regime(classifier, cfg)
        optimizer = adamw(
            _trainable(
                param_groups(classifier.encoder, cfg.lr, cfg.weight_decay)
                + param_groups(classifier.head, cfg.head_lr, cfg.weight_decay)
            )
        )
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
                logits = classifier(*_tensors(train, idx))  # [B, C]
            loss = F.cross_entropy(logits.float(), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            optimizer.step()
            window.append(float(loss.detach()))
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                val_loss, val_accuracy = _classifier_eval(classifier, val, y_val)
                history.append(
                    {
                        "step": step,
                        "train_loss": float(np.mean(window)),
                        "val_loss": val_loss,
                        "val_accuracy": val_accuracy,
                    }
                )
                window = []
                if val_loss < best["val_loss"]:
                    best, waited = (
                        {"val_loss": val_loss, "step": step, "state": copy.deepcopy(classifier.state_dict())},
                        0,
                    )
                else:
                    waited += 1
                    if waited >= cfg.patience:
                        break
    classifier.load_state_dict(best["state"])
    classifier.eval()
    return classifier, {
        "best_step": best["step"],
        "steps_run": step,
        "best_val_loss": best["val_loss"],
        "regime": cfg.regime,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "history": history,
    }


def predict(classifier: CellClassifier, tokens: CellTokens, batch_size: int = 256) -> np.ndarray:
    """Predicted class code per cell, eval mode, fp32.

    Parameters
    ----------
    classifier : CellClassifier
        The finetuned classifier.
    tokens : CellTokens
        The cells, ``n_cells`` of them.
    batch_size : int
        Cells per forward pass.

    Returns
    -------
    numpy.ndarray
        int64, shape ``(n_cells,)``: class codes in ``[0, n_classes)``.
    """
    out = []
    with _eval_mode(classifier):
        for start in range(0, len(tokens), batch_size):
            out.append(classifier(*_tensors(tokens, slice(start, start + batch_size))).argmax(1).numpy())
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)
