"""Training runners: pretraining learns, resume is exact, checkpoints are verified, finetuning works."""
import json

import numpy as np
import pytest
import torch

from scfm_lib import train
from scfm_lib.data import PAD_ID, CellTokens
from scfm_lib.model import ScFMConfig

torch.set_num_threads(1)
CONTEXT = 12


def structured_tokens(n_cells, seed=0):
    """Two cell groups expressing different gene sets, with values tied to the genes: learnable."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, n_cells)
    gene_ids = np.full((n_cells, CONTEXT), PAD_ID, dtype=np.int64)
    values = np.zeros((n_cells, CONTEXT), dtype=np.float32)
    for c in range(n_cells):
        n = rng.integers(6, CONTEXT + 1)
        pool = np.arange(3, 23) if group[c] == 0 else np.arange(23, 43)
        genes = rng.choice(pool, n, replace=False)
        gene_ids[c, :n] = genes
        values[c, :n] = (genes % 5) * 0.8 + 0.5 * group[c] + rng.normal(0, 0.05, n)
    return CellTokens(gene_ids, values), group


MODEL = ScFMConfig(vocab_size=45, context_genes=CONTEXT, d_model=32, n_layers=2, n_heads=2)


def config(**changes):
    return train.PretrainConfig(**{"max_steps": 40, "batch_size": 32, "lr": 3e-3, "warmup_steps": 5,
                                   "eval_every": 10, "checkpoint_every": 10, "bf16": False, "seed": 0, **changes})


@pytest.fixture(scope="module")
def tokens():
    return structured_tokens(300), structured_tokens(100, seed=1)


def weights(path):
    return train.load_checkpoint(path).state_dict()


def test_pretraining_lowers_validation_loss(tmp_path, tokens):
    (train_tokens, _), (val_tokens, _) = tokens
    out = train.pretrain(MODEL, train_tokens, val_tokens, config(max_steps=80), tmp_path / "ck", progress=False)
    losses = [h["val_loss"] for h in out["history"]]
    assert losses[-1] < 0.5 * losses[0]
    initial = train.reconstruction_loss(train.init_checkpoint(MODEL, 0, tmp_path / "init"), val_tokens)
    assert losses[-1] < 0.5 * initial
    meta = json.loads((tmp_path / "ck" / "checkpoint.json").read_text())
    assert meta["step"] == 80 and meta["n_train"] == 300 and meta["model_config"]["d_model"] == 32


@pytest.mark.parametrize("bf16", [False, True])
def test_resume_after_a_kill_is_bit_identical(tmp_path, tokens, monkeypatch, bf16):
    (train_tokens, _), (val_tokens, _) = tokens
    train.pretrain(MODEL, train_tokens, val_tokens, config(bf16=bf16), tmp_path / "straight", progress=False)

    # Kill the second run at step 27: its last checkpoint is step 20, seven steps are lost.
    original = train.EpochSampler.next_batch
    calls = {"n": 0}

    def dying_next_batch(self, batch_size):
        calls["n"] += 1
        if calls["n"] == 28:
            raise KeyboardInterrupt("killed")
        return original(self, batch_size)

    monkeypatch.setattr(train.EpochSampler, "next_batch", dying_next_batch)
    with pytest.raises(KeyboardInterrupt):
        train.pretrain(MODEL, train_tokens, val_tokens, config(bf16=bf16), tmp_path / "resumed", progress=False)
    assert json.loads((tmp_path / "resumed" / "checkpoint.json").read_text())["step"] == 20
    monkeypatch.setattr(train.EpochSampler, "next_batch", original)
    train.pretrain(MODEL, train_tokens, val_tokens, config(bf16=bf16), tmp_path / "resumed", progress=False)

    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    history = [json.loads((tmp_path / d / "checkpoint.json").read_text())["history"] for d in ("straight", "resumed")]
    assert history[0] == history[1]


def test_same_seed_same_weights_other_seed_differs(tmp_path, tokens):
    (train_tokens, _), (val_tokens, _) = tokens
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        train.pretrain(MODEL, train_tokens, val_tokens, config(max_steps=10, seed=seed), tmp_path / name, progress=False)
    a, b, c = (weights(tmp_path / n) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_finished_checkpoint_is_not_retrained(tmp_path, tokens):
    (train_tokens, _), (val_tokens, _) = tokens
    train.pretrain(MODEL, train_tokens, val_tokens, config(max_steps=10), tmp_path / "ck", progress=False)
    before = (tmp_path / "ck" / "model.safetensors").stat().st_mtime_ns
    out = train.pretrain(MODEL, train_tokens, val_tokens, config(max_steps=10), tmp_path / "ck", progress=False)
    assert out["step"] == 10 and (tmp_path / "ck" / "model.safetensors").stat().st_mtime_ns == before


def test_epoch_budget():
    cfg = train.PretrainConfig(budget="epochs", epochs=2.0, batch_size=64)
    assert cfg.total_steps(1000) == 32 and cfg.total_steps(10) == 1
    assert train.PretrainConfig(max_steps=7).total_steps(10**6) == 7
    with pytest.raises(ValueError, match="epochs"):
        train.PretrainConfig(budget="epochs")


def test_learning_rate_schedule():
    cfg = train.PretrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert train.cosine_lr(0, 100, cfg) == pytest.approx(0.1)
    assert train.cosine_lr(9, 100, cfg) == pytest.approx(1.0)
    assert train.cosine_lr(100, 100, cfg) == pytest.approx(0.1)
    assert train.cosine_lr(55, 100, cfg) == pytest.approx(0.55)


def test_corrupt_or_missing_checkpoint_is_refused(tmp_path):
    train.init_checkpoint(MODEL, 0, tmp_path / "ck")
    weights_file = tmp_path / "ck" / "model.safetensors"
    data = weights_file.read_bytes()
    weights_file.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match="sha256.*delete"):
        train.load_checkpoint(tmp_path / "ck")
    weights_file.unlink()
    with pytest.raises(FileNotFoundError, match="missing.*rerun"):
        train.load_checkpoint(tmp_path / "ck")


def test_finetuning_learns_and_leaves_the_encoder_alone(tmp_path, tokens):
    (train_tokens, train_group), (val_tokens, val_group) = tokens
    encoder = train.init_checkpoint(MODEL, 0, tmp_path / "init")
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    cfg = train.FinetuneConfig(max_steps=60, batch_size=32, eval_every=10, patience=3, bf16=False)
    classifier, log = train.finetune_classifier(encoder, train_tokens, train_group, val_tokens, val_group, 2, cfg)
    accuracy = (train.predict(classifier, val_tokens) == val_group).mean()
    assert accuracy > 0.95
    assert log["best_step"] > 0 and log["steps_run"] <= 60
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert train.embed(encoder, val_tokens).shape == (100, 32)
