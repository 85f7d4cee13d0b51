"""Training runners: pretraining learns, resume is exact, checkpoints are verified, finetuning works."""

import json

import numpy as np
import pytest
import torch

from scfm_lib import train
from scfm_lib.data import PAD_ID, CellTokens
from scfm_lib.model import ScFM, ScFMConfig

torch.set_num_threads(1)
CONTEXT = 16


def structured_tokens(n_cells, seed=0):
    """Two cell groups expressing different gene sets, each gene with its own typical value
    (shifted by group): a masked value is predictable from the gene and the cell's group."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, n_cells)
    gene_ids = np.full((n_cells, CONTEXT), PAD_ID, dtype=np.int64)
    values = np.zeros((n_cells, CONTEXT), dtype=np.float32)
    for c in range(n_cells):
        n = rng.integers(8, CONTEXT + 1)
        pool = np.arange(3, 23) if group[c] == 0 else np.arange(23, 43)
        genes = rng.choice(pool, n, replace=False)
        gene_ids[c, :n] = genes
        values[c, :n] = (genes % 5) * 0.8 + 0.5 + 0.7 * group[c] + rng.normal(0, 0.05, n)
    return CellTokens(gene_ids, values), group


MODEL = ScFMConfig(vocab_size=45, context_genes=CONTEXT, d_model=32, n_layers=2, n_heads=2)


def config(**changes):
    return train.PretrainConfig(
        **{
            "max_steps": 40,
            "batch_size": 32,
            "lr": 3e-3,
            "warmup_steps": 5,
            "eval_every": 10,
            "checkpoint_every": 10,
            "bf16": False,
            "seed": 0,
            **changes,
        }
    )


@pytest.fixture(scope="module")
def tokens():
    return structured_tokens(300), structured_tokens(100, seed=1)


def weights(path):
    return train.load_checkpoint(path).state_dict()


def meta(path):
    return json.loads((path / "checkpoint.json").read_text())


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_pretraining_lowers_validation_loss(tmp_path, tokens):
    (train_tokens, _), (val_tokens, _) = tokens
    out = train.pretrain(MODEL, train_tokens, val_tokens, config(max_steps=80), tmp_path / "ck", progress=False)
    initial = train.reconstruction_loss(train.init_checkpoint(MODEL, 0, tmp_path / "init"), val_tokens)
    losses = [h["val_loss"] for h in out["history"]]
    assert [h["step"] for h in out["history"]] == [10, 20, 30, 40, 50, 60, 70, 80]
    assert losses[-1] < 0.3 * initial and losses[-1] < losses[0]
    assert (
        out["val_loss"]
        == losses[-1]
        == pytest.approx(train.reconstruction_loss(weights_model(tmp_path / "ck"), val_tokens))
    )
    # the values' variance is the loss of predicting the mean: the model must beat it
    real = val_tokens.values[val_tokens.gene_ids != PAD_ID]
    assert losses[-1] < 0.5 * real.var()
    m = meta(tmp_path / "ck")
    assert m["step"] == 80 and m["n_train"] == 300 and m["model_config"] == MODEL.to_dict()
    assert m["pretrain_config"]["max_steps"] == 80 and m["history"] == out["history"]
    assert m["train_sha256"] == train.tokens_sha256(train_tokens)
    assert out["steps_run"] == 80 and out["total_steps"] == 80
    assert {"step", "train_loss", "val_loss", "lr"} <= set(out["history"][0])


def weights_model(path) -> ScFM:
    return train.load_checkpoint(path)


GENEFORMER = ScFMConfig(**{**MODEL.to_dict(), "family": "geneformer"})


@pytest.mark.parametrize("bf16, model", [(False, MODEL), (True, MODEL), (False, GENEFORMER)])
def test_resume_after_a_kill_is_bit_identical(tmp_path, tokens, monkeypatch, bf16, model):
    """2k steps straight vs. killed after step k+7 (last checkpoint k) and resumed, for both families."""
    MODEL = model  # noqa: N806 - the family under test
    (train_tokens, _), (val_tokens, _) = tokens
    cfg = config(bf16=bf16, checkpoint_every=20, eval_every=15)  # a history window spans the kill
    train.pretrain(MODEL, train_tokens, val_tokens, cfg, tmp_path / "straight", progress=False)

    original = train.EpochSampler.next_batch
    calls = {"n": 0}

    def dying_next_batch(self, batch_size):
        calls["n"] += 1
        if calls["n"] == 28:
            raise KeyboardInterrupt("killed")
        return original(self, batch_size)

    monkeypatch.setattr(train.EpochSampler, "next_batch", dying_next_batch)
    with pytest.raises(KeyboardInterrupt):
        train.pretrain(MODEL, train_tokens, val_tokens, cfg, tmp_path / "resumed", progress=False)
    assert meta(tmp_path / "resumed")["step"] == 20
    monkeypatch.setattr(train.EpochSampler, "next_batch", original)
    out = train.pretrain(MODEL, train_tokens, val_tokens, cfg, tmp_path / "resumed", progress=False)
    assert out["steps_run"] == 20

    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))
    assert meta(tmp_path / "straight")["history"] == meta(tmp_path / "resumed")["history"]


def test_resume_after_a_kill_between_checkpoint_files(tmp_path, tokens, monkeypatch):
    """Killed after trainer_state.pt of step 20 is written but before the weights and JSON:
    the resume starts from step 20 and still ends bit-identical."""
    (train_tokens, _), (val_tokens, _) = tokens
    train.pretrain(MODEL, train_tokens, val_tokens, config(), tmp_path / "straight", progress=False)

    original = train.save_checkpoint
    calls = {"n": 0}

    def dying_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(train.pretraining, "save_checkpoint", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train.pretrain(MODEL, train_tokens, val_tokens, config(), tmp_path / "resumed", progress=False)
    assert meta(tmp_path / "resumed")["step"] == 10
    assert torch.load(tmp_path / "resumed" / "trainer_state.pt", weights_only=True)["step"] == 20
    monkeypatch.setattr(train.pretraining, "save_checkpoint", original)
    out = train.pretrain(MODEL, train_tokens, val_tokens, config(), tmp_path / "resumed", progress=False)
    assert out["steps_run"] == 20
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))


def test_unresumable_checkpoint_is_refused_clearly(tmp_path, tokens, monkeypatch):
    (train_tokens, _), (val_tokens, _) = tokens
    original = train.EpochSampler.next_batch
    calls = {"n": 0}

    def dying_next_batch(self, batch_size):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt("killed")
        return original(self, batch_size)

    monkeypatch.setattr(train.EpochSampler, "next_batch", dying_next_batch)
    with pytest.raises(KeyboardInterrupt):
        train.pretrain(MODEL, train_tokens, val_tokens, config(max_steps=20), tmp_path / "ck", progress=False)
    monkeypatch.setattr(train.EpochSampler, "next_batch", original)
    state = tmp_path / "ck" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"trainer_state\.pt cannot be read.*delete the folder"):
        train.pretrain(MODEL, train_tokens, val_tokens, config(max_steps=20), tmp_path / "ck", progress=False)
    state.unlink()
    with pytest.raises(FileNotFoundError, match=r"trainer_state\.pt is missing.*delete the folder"):
        train.pretrain(MODEL, train_tokens, val_tokens, config(max_steps=20), tmp_path / "ck", progress=False)


def test_same_seed_same_weights_other_seed_differs(tmp_path, tokens):
    (train_tokens, _), (val_tokens, _) = tokens
    global_state = torch.get_rng_state()
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        train.pretrain(
            MODEL, train_tokens, val_tokens, config(max_steps=10, seed=seed), tmp_path / name, progress=False
        )
    assert torch.equal(torch.get_rng_state(), global_state)  # the caller's RNG is left alone
    a, b, c = (weights(tmp_path / n) for n in "abc")
    assert_same_weights(a, b)
    assert not any(torch.equal(a[k], c[k]) for k in a if "weight" in k and "ln" not in k)


def test_finished_checkpoint_is_not_retrained_and_another_run_is_refused(tmp_path, tokens):
    (train_tokens, _), (val_tokens, _) = tokens
    train.pretrain(MODEL, train_tokens, val_tokens, config(max_steps=10), tmp_path / "ck", progress=False)
    before = (tmp_path / "ck" / "model.safetensors").stat().st_mtime_ns
    out = train.pretrain(
        MODEL, train_tokens, val_tokens, config(max_steps=10, num_threads=1), tmp_path / "ck", progress=False
    )
    assert out["step"] == 10 and out["steps_run"] == 0
    assert (tmp_path / "ck" / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match=r"different run.*pretrain_config\.lr"):
        train.pretrain(MODEL, train_tokens, val_tokens, config(max_steps=10, lr=1e-3), tmp_path / "ck", progress=False)
    with pytest.raises(ValueError, match="n_train"):
        train.pretrain(
            MODEL,
            train_tokens.subset(np.arange(100)),
            val_tokens,
            config(max_steps=10),
            tmp_path / "ck",
            progress=False,
        )
    train.init_checkpoint(MODEL, 0, tmp_path / "init")
    with pytest.raises(ValueError, match="random-init"):
        train.pretrain(MODEL, train_tokens, val_tokens, config(max_steps=10), tmp_path / "init", progress=False)
    with pytest.raises(ValueError, match="pretrained checkpoint"):
        train.init_checkpoint(MODEL, 0, tmp_path / "ck")


def test_epoch_budget_sets_the_number_of_steps(tmp_path, tokens):
    cfg = train.PretrainConfig(budget="epochs", epochs=2.0, batch_size=64)
    assert cfg.total_steps(1000) == 32 and cfg.total_steps(10) == 1 and cfg.total_steps(65) == 3
    assert train.PretrainConfig(max_steps=7).total_steps(10**6) == 7
    with pytest.raises(ValueError, match="epochs"):
        train.PretrainConfig(budget="epochs")
    (train_tokens, _), (val_tokens, _) = tokens
    small = train_tokens.subset(np.arange(50))
    out = train.pretrain(
        MODEL, small, val_tokens, config(budget="epochs", epochs=2.0, batch_size=16), tmp_path / "ck", progress=False
    )
    assert out["step"] == meta(tmp_path / "ck")["step"] == 7  # ceil(2 * 50 / 16)


def test_fewer_cells_than_a_batch(tmp_path, tokens):
    (train_tokens, _), (val_tokens, _) = tokens
    tiny = train_tokens.subset(np.arange(5))
    out = train.pretrain(MODEL, tiny, val_tokens, config(max_steps=4, batch_size=32), tmp_path / "ck", progress=False)
    assert out["step"] == 4 and np.isfinite(out["val_loss"])
    sampler = train.EpochSampler(5, seed=0)
    first = sampler.next_batch(12)
    assert len(first) == 12 and sorted(first[:5]) == list(range(5)) and sorted(first[5:10]) == list(range(5))


def test_geneformer_pretraining_lowers_its_masked_gene_loss(tmp_path, tokens):
    """The two cell groups use disjoint genes: a masked gene is guessable from the cell's others."""
    (train_tokens, _), (val_tokens, _) = tokens
    out = train.pretrain(GENEFORMER, train_tokens, val_tokens, config(max_steps=120), tmp_path / "ck", progress=False)
    initial = train.reconstruction_loss(train.init_checkpoint(GENEFORMER, 0, tmp_path / "init"), val_tokens)
    assert initial == pytest.approx(np.log(45), rel=0.1)  # near-uniform over the vocabulary
    # Knowing the cell's group (20 genes) is worth log(20); the model must at least learn that.
    assert out["val_loss"] < np.log(20) + 0.1


def test_length_bucketing_groups_similar_cells_and_covers_every_cell():
    lengths = np.random.default_rng(0).integers(1, 100, 256)
    sampler = train.EpochSampler(256, seed=0, lengths=lengths, bucket_size=64, batch_size=16)
    batches = [sampler.next_batch(16) for _ in range(16)]  # one epoch
    assert sorted(np.concatenate(batches)) == list(range(256))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    plain = train.EpochSampler(256, seed=0)
    plain_spread = np.mean([np.ptp(lengths[plain.next_batch(16)]) for _ in range(16)])
    assert spread < 0.5 * plain_spread  # batches of similar length


def test_trimmed_batches_compute_the_same_cells():
    """_tensors drops all-padding columns; the embedding of each cell does not change."""
    tokens, _ = structured_tokens(20)
    padded = CellTokens(np.pad(tokens.gene_ids, ((0, 0), (0, 5))), np.pad(tokens.values, ((0, 0), (0, 5))))
    gene_ids, values = train._tensors(padded, np.arange(20))
    assert gene_ids.shape[1] == int((tokens.gene_ids != PAD_ID).sum(1).max())
    model = ScFM(MODEL).eval()
    with torch.no_grad():
        full = model.cell_embedding(torch.from_numpy(padded.gene_ids), torch.from_numpy(padded.values))
        torch.testing.assert_close(model.cell_embedding(gene_ids, values), full, atol=1e-5, rtol=1e-5)


def test_sampler_visits_every_cell_once_per_epoch_and_restores():
    sampler = train.EpochSampler(10, seed=3)
    epoch = np.concatenate([sampler.next_batch(4), sampler.next_batch(4), sampler.next_batch(2)])
    assert sorted(epoch) == list(range(10))
    state = sampler.state_dict()
    ahead = [sampler.next_batch(3) for _ in range(5)]
    sampler.load_state_dict(state)
    assert all(np.array_equal(a, sampler.next_batch(3)) for a in ahead)


def test_learning_rate_schedule():
    cfg = train.PretrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert train.cosine_lr(0, 100, cfg) == pytest.approx(0.1)
    assert train.cosine_lr(9, 100, cfg) == pytest.approx(1.0)
    assert train.cosine_lr(55, 100, cfg) == pytest.approx(0.55)  # half-way through the cosine
    assert train.cosine_lr(100, 100, cfg) == pytest.approx(0.1)


def test_no_weight_decay_on_norms_biases_and_embeddings():
    model = ScFM(MODEL)
    decayed, plain = train.param_groups(model, 1e-3, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert "blocks.0.attn.qkv.weight" in decayed_names and "value_head.0.weight" in decayed_names
    assert not any(k in n for n in decayed_names for k in ("bias", "ln", "embedding", "value_encoder.0"))
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
    binned = ScFM(ScFMConfig(**{**MODEL.to_dict(), "value_encoding": "binned"}))
    assert not any(p is binned.value_encoder.weight for p in train.param_groups(binned, 1e-3, 0.01)[0]["params"])


def test_init_checkpoint_round_trip(tmp_path):
    model = train.init_checkpoint(MODEL, 3, tmp_path / "init")
    loaded = train.load_checkpoint(tmp_path / "init")
    assert loaded.config == MODEL and not loaded.training
    assert_same_weights(model.state_dict(), loaded.state_dict())
    assert_same_weights(loaded.state_dict(), train.initial_model(MODEL, 3).state_dict())
    m = meta(tmp_path / "init")
    assert m["step"] == 0 and m["n_train"] == 0 and m["history"] == []
    other = train.init_checkpoint(MODEL, 4, tmp_path / "other")
    assert not torch.equal(other.gene_embedding.weight, model.gene_embedding.weight)


def test_corrupt_or_missing_checkpoint_is_refused(tmp_path):
    train.init_checkpoint(MODEL, 0, tmp_path / "ck")
    weights_file = tmp_path / "ck" / "model.safetensors"
    data = bytearray(weights_file.read_bytes())
    data[-10] ^= 0xFF  # one flipped byte in the tensor data: still a valid safetensors file
    weights_file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.safetensors.*sha256.*delete the folder"):
        train.load_checkpoint(tmp_path / "ck")
    weights_file.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(ValueError, match="sha256"):
        train.load_checkpoint(tmp_path / "ck")
    weights_file.unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors is missing.*rerun"):
        train.load_checkpoint(tmp_path / "ck")


def test_finetuning_learns_and_leaves_the_encoder_alone(tmp_path, tokens):
    (train_tokens, train_group), (val_tokens, val_group) = tokens
    encoder = train.init_checkpoint(MODEL, 0, tmp_path / "init")
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    cfg = train.FinetuneConfig(max_steps=60, batch_size=32, lr=1e-3, eval_every=10, patience=3, bf16=False)
    classifier, log = train.finetune_classifier(encoder, train_tokens, train_group, val_tokens, val_group, 2, cfg)
    predicted = train.predict(classifier, val_tokens)
    assert predicted.dtype == np.int64 and predicted.shape == (100,)
    assert (predicted == val_group).mean() > 0.95
    assert 0 < log["best_step"] <= log["steps_run"] <= 60
    val_losses = [h["val_loss"] for h in log["history"]]
    assert log["best_val_loss"] == min(val_losses) < val_losses[0]
    assert_same_weights(before, encoder.state_dict())
    assert not encoder.training  # its mode is left as it was, too
    Z = train.embed(encoder, val_tokens, batch_size=64)
    assert Z.shape == (100, 32) and Z.dtype == np.float32
    with torch.no_grad():
        np.testing.assert_allclose(
            Z[:5],
            encoder.cell_embedding(*map(torch.from_numpy, (val_tokens.gene_ids[:5], val_tokens.values[:5]))),
            rtol=1e-5,
            atol=1e-6,
        )
    # same seed, same classifier
    again, _ = train.finetune_classifier(encoder, train_tokens, train_group, val_tokens, val_group, 2, cfg)
    assert_same_weights(classifier.state_dict(), again.state_dict())


def test_finetuning_stops_early_and_keeps_the_best_state(tmp_path, tokens):
    (train_tokens, train_group), (val_tokens, val_group) = tokens
    encoder = train.init_checkpoint(MODEL, 0, tmp_path / "init")
    # labels unrelated to the cells: the validation loss cannot improve for long
    rng = np.random.default_rng(0)
    y_train, y_val = rng.integers(0, 2, len(train_tokens)), rng.integers(0, 2, len(val_tokens))
    cfg = train.FinetuneConfig(max_steps=200, batch_size=32, lr=3e-3, eval_every=5, patience=2, bf16=False)
    classifier, log = train.finetune_classifier(encoder, train_tokens, y_train, val_tokens, y_val, 2, cfg)
    assert log["steps_run"] < 200
    best_loss, _ = train._classifier_eval(classifier, val_tokens, y_val)
    assert best_loss == pytest.approx(log["best_val_loss"], rel=1e-6)


def test_finetuning_rejects_bad_labels(tmp_path, tokens):
    (train_tokens, train_group), (val_tokens, val_group) = tokens
    encoder = train.initial_model(MODEL, 0)
    cfg = train.FinetuneConfig(max_steps=1)
    with pytest.raises(ValueError, match="one label per cell"):
        train.finetune_classifier(encoder, train_tokens, train_group[:-1], val_tokens, val_group, 2, cfg)
    with pytest.raises(ValueError, match=r"\[0, 2\).*encode_labels"):
        train.finetune_classifier(encoder, train_tokens, train_group + 1, val_tokens, val_group, 2, cfg)
    with pytest.raises(ValueError, match="integer class codes"):
        train.finetune_classifier(encoder, train_tokens, train_group.astype(str), val_tokens, val_group, 2, cfg)


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"budget": "tokens"}, "budget"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"batch_size": 0}, "batch_size"),
        ({"min_lr_ratio": 2.0}, "min_lr_ratio"),
        ({"num_threads": 0}, "num_threads"),
    ],
)
def test_pretrain_config_validation(changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        train.PretrainConfig(**changes)


def test_pretrain_refuses_mismatched_tokens(tmp_path, tokens):
    (train_tokens, _), (val_tokens, _) = tokens
    short = CellTokens(train_tokens.gene_ids[:, :8].copy(), train_tokens.values[:, :8].copy())
    with pytest.raises(ValueError, match="context_genes"):
        train.pretrain(MODEL, short, val_tokens, config(), tmp_path / "ck", progress=False)
    with pytest.raises(ValueError, match="init_checkpoint"):
        train.pretrain(MODEL, train_tokens.subset(np.arange(0)), val_tokens, config(), tmp_path / "ck", progress=False)


def test_converge_budget_is_the_steps_run_stopped_early_with_its_best_weights(tmp_path, tokens, monkeypatch):
    """The "converge" arm follows the "steps" arm's trajectory (same schedule over the cap), stops once
    the validation loss has not improved for `patience` evaluations, keeps the best weights, and
    resumes after a kill to the same result."""
    (train_tokens, _), (val_tokens, _) = tokens
    small = train_tokens.subset(np.arange(20))  # 20 cells: overfits, so it stops early
    steps = train.pretrain(
        MODEL, small, val_tokens, config(max_steps=200, checkpoint_every=200), tmp_path / "steps", progress=False
    )
    cfg = config(max_steps=200, budget="converge", patience=2, checkpoint_every=10)
    out = train.pretrain(MODEL, small, val_tokens, cfg, tmp_path / "converge", progress=False)
    assert out["stopped_early"] and out["step"] < 200
    losses = [row["val_loss"] for row in out["history"]]
    assert out["history"] == steps["history"][: len(out["history"])]  # the same trajectory until the stop
    best = int(np.argmin(losses))
    assert out["best_step"] == out["history"][best]["step"] and out["val_loss"] == pytest.approx(min(losses))
    assert all(loss >= losses[best] for loss in losses[best + 1 :]) and len(losses) - 1 - best == 2
    kept = train.load_checkpoint(tmp_path / "converge")
    assert train.reconstruction_loss(kept, val_tokens, cfg.mask_ratio) == pytest.approx(min(losses), rel=1e-5)
    assert meta(tmp_path / "converge")["finished"] and meta(tmp_path / "converge")["best_step"] == out["best_step"]
    again = train.pretrain(MODEL, small, val_tokens, cfg, tmp_path / "converge", progress=False)
    assert again["steps_run"] == 0 and again["best_step"] == out["best_step"]

    original, calls = train.EpochSampler.next_batch, {"n": 0}

    def dying_next_batch(self, batch_size):
        calls["n"] += 1
        if calls["n"] == out["step"] - 5:
            raise KeyboardInterrupt("killed")
        return original(self, batch_size)

    monkeypatch.setattr(train.EpochSampler, "next_batch", dying_next_batch)
    with pytest.raises(KeyboardInterrupt):
        train.pretrain(MODEL, small, val_tokens, cfg, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(train.EpochSampler, "next_batch", original)
    resumed = train.pretrain(MODEL, small, val_tokens, cfg, tmp_path / "resumed", progress=False)
    assert resumed["step"] == out["step"] and resumed["best_step"] == out["best_step"]
    assert_same_weights(weights(tmp_path / "converge"), weights(tmp_path / "resumed"))


def test_keep_ratio_scores_some_positions_with_their_input_shown(tmp_path, tokens):
    from scfm_lib.masks import keep_shown, random_value_mask

    (train_tokens, _), _ = tokens
    gene_ids = torch.from_numpy(train_tokens.gene_ids[:64])
    mask = random_value_mask(gene_ids, 0.5, torch.Generator().manual_seed(0))
    assert keep_shown(mask, 0.0) is mask  # off: the old objective, no draw
    hide = keep_shown(mask, 0.3, torch.Generator().manual_seed(1))  # pretraining draws it after the mask
    assert not (hide & ~mask).any()  # only loss positions are hidden
    assert 0.2 < float((mask & ~hide).sum() / mask.sum()) < 0.4  # ~30% of them stay shown
    with pytest.raises(ValueError, match="keep_ratio"):
        config(keep_ratio=1.0)


def test_emulated_bf16_is_refused_before_any_work_unless_allowed(tmp_path, tokens, monkeypatch):
    """Where the CPU only emulates bf16 (AVX2), bf16 autocast is several times slower than fp32: pretraining
    and finetuning refuse it before writing anything, naming the three ways out; the variable allows it."""
    (train_tokens, train_group), (val_tokens, val_group) = tokens
    monkeypatch.setattr(train.batches, "native_bf16", lambda: False)
    monkeypatch.delenv(train.ALLOW_EMULATED_BF16, raising=False)
    cfg = train.PretrainConfig(max_steps=4, batch_size=32, warmup_steps=1, eval_every=2, checkpoint_every=2, bf16=True)
    with pytest.raises(RuntimeError, match="emulates bf16") as refused:
        train.pretrain(MODEL, train_tokens, val_tokens, cfg, tmp_path / "bf16")
    for fix in ("AVX-512", "SCFM_ALLOW_EMULATED_BF16=1", "bf16: false"):
        assert fix in str(refused.value)
    assert not (tmp_path / "bf16").exists() or not any((tmp_path / "bf16").iterdir())
    encoder = train.init_checkpoint(MODEL, 0, tmp_path / "init")
    fcfg = train.FinetuneConfig(max_steps=2, batch_size=32, eval_every=1, patience=1, bf16=True)
    with pytest.raises(RuntimeError, match="emulates bf16"):
        train.finetune_classifier(encoder, train_tokens, train_group, val_tokens, val_group, 2, fcfg)
    train.pretrain(
        MODEL, train_tokens, val_tokens, train.PretrainConfig(**{**cfg.__dict__, "bf16": False}), tmp_path / "fp32"
    )  # fp32 is never refused
    monkeypatch.setenv(train.ALLOW_EMULATED_BF16, "1")
    train.pretrain(MODEL, train_tokens, val_tokens, cfg, tmp_path / "allowed")
    assert meta(tmp_path / "allowed")["finished"]
