"""Finetuning regimes: full, last_k blocks, head_only (a linear probe), LoRA adapters (peft)."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_train import MODEL, structured_tokens

from scfm_lib import train
from scfm_lib.model import CellClassifier, ScFMConfig

torch.set_num_threads(1)
STEPS = 40
LORA_RANK = 4  # r << d_model=32; the default r=8 is a quarter of this toy model's width


def finetune_config(**changes):
    return train.FinetuneConfig(
        **{
            "max_steps": STEPS,
            "batch_size": 32,
            "lr": 1e-3,
            "eval_every": 10,
            "patience": 3,
            "bf16": False,
            "seed": 0,
            **changes,
        }
    )


REGIME_CONFIGS = {
    "full": {},
    "last_k": {"last_k": 1},
    "head_only": {},
    "lora": {"lora_rank": LORA_RANK, "lora_alpha": 2.0 * LORA_RANK},
}


@pytest.fixture(scope="module")
def data():
    (train_tokens, y_train), (val_tokens, y_val) = structured_tokens(300), structured_tokens(100, seed=1)
    return train_tokens, y_train, val_tokens, y_val


@pytest.fixture(scope="module")
def encoder():
    return train.initial_model(MODEL, 0).eval()


@pytest.fixture(scope="module")
def runs(data, encoder):
    """One finetuning per regime (lazily), shared by the tests below; the encoder's state before."""
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    cache = {}

    def run(regime):
        if regime not in cache:
            cfg = finetune_config(regime=regime, **REGIME_CONFIGS[regime])
            cache[regime] = train.finetune_classifier(encoder, *data[:2], *data[2:], 2, cfg)
        return cache[regime]

    return run, before


def assert_encoder_untouched(encoder, before):
    """The encoder passed in: same weights, same module types (no adapters), same mode."""
    state = encoder.state_dict()
    assert state.keys() == before.keys()
    for name in before:
        assert torch.equal(state[name], before[name]), name
    assert all(type(m) is torch.nn.Linear for n, m in encoder.named_modules() if n.endswith(("qkv", "proj")))
    assert not encoder.training and all(p.requires_grad for p in encoder.parameters())


def n_params(params):
    return sum(p.numel() for p in params)


@pytest.mark.parametrize("regime", train.FINETUNE_REGIMES)
def test_every_regime_learns_and_predicts(regime, runs, data, encoder):
    run, before = runs
    classifier, log = run(regime)
    _, _, val_tokens, y_val = data
    untrained_accuracy = log["history"][0]["val_accuracy"]
    predicted = train.predict(classifier, val_tokens)
    assert predicted.dtype == np.int64 and predicted.shape == (len(val_tokens),)
    accuracy = (predicted == y_val).mean()
    assert accuracy > untrained_accuracy + 0.2 and accuracy > 0.85
    assert log["best_val_loss"] < 0.95 * log["history"][0]["val_loss"]
    loss, acc = train._classifier_eval(classifier, val_tokens, y_val)
    assert loss == pytest.approx(log["best_val_loss"], rel=1e-6) and acc == accuracy
    assert log["regime"] == regime
    trainable = [p for p in classifier.parameters() if p.requires_grad]
    assert log["trainable_parameters"] == n_params(trainable)
    assert not classifier.training
    assert_encoder_untouched(encoder, before)


def test_trainable_parameter_counts(runs, encoder):
    run, _ = runs
    counts = {regime: run(regime)[1]["trainable_parameters"] for regime in train.FINETUNE_REGIMES}
    head = 32 * 2 + 2
    block = n_params(encoder.blocks[-1].parameters())
    d, d_ff = MODEL.d_model, MODEL.d_ff
    adapters_per_block = LORA_RANK * ((d + 3 * d) + (d + d) + (d + d_ff) + (d_ff + d))  # r * (in + out)
    assert counts["full"] == n_params(encoder.parameters()) + head
    assert counts["last_k"] == block + 2 * d + head  # last block + ln_f + head
    assert counts["head_only"] == head
    assert counts["lora"] == MODEL.n_layers * adapters_per_block + head
    assert counts["lora"] < 0.2 * counts["full"]


def test_head_only_keeps_the_encoder_bit_identical(runs, encoder):
    run, before = runs
    classifier, log = run("head_only")
    initial = CellClassifier(copy.deepcopy(encoder), 2, generator=torch.Generator().manual_seed(0)).state_dict()
    trained = classifier.state_dict()
    assert trained.keys() == initial.keys()
    changed = {name for name in initial if not torch.equal(initial[name], trained[name])}
    assert changed == {"head.weight", "head.bias", "feature_mean", "feature_std"}
    assert not any(p.requires_grad for p in classifier.encoder.parameters())
    assert_encoder_untouched(encoder, before)


def test_head_only_is_a_linear_probe_on_the_frozen_embedding(data):
    """With dropout in the encoder, head_only still trains the head on exactly the eval-mode
    embeddings embed() returns: the same AdamW loop on precomputed embeddings gives the same head."""
    train_tokens, y_train, val_tokens, y_val = data
    encoder = train.initial_model(ScFMConfig(**{**MODEL.to_dict(), "dropout": 0.5, "pooling": "mean"}), 0)
    steps = 15
    cfg = finetune_config(regime="head_only", max_steps=steps, eval_every=steps, head_lr=1e-2)
    classifier, log = train.finetune_classifier(encoder, train_tokens, y_train, val_tokens, y_val, 2, cfg)
    assert log["best_step"] == steps

    embeddings = torch.from_numpy(train.embed(encoder, train_tokens, layer=classifier.layer))  # [N, D], eval mode
    embeddings = (embeddings - embeddings.mean(0)) / embeddings.std(0, unbiased=False)  # as StandardScaler
    head = CellClassifier(copy.deepcopy(encoder), 2, generator=torch.Generator().manual_seed(cfg.seed)).head
    optimizer = train.adamw(train.param_groups(head, cfg.head_lr, cfg.weight_decay))
    sampler, labels = train.EpochSampler(len(train_tokens), cfg.seed), torch.from_numpy(y_train)
    for _ in range(steps):
        idx = sampler.next_batch(cfg.batch_size)
        loss = F.cross_entropy(head(embeddings[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip)
        optimizer.step()
    torch.testing.assert_close(classifier.head.weight, head.weight, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(classifier.head.bias, head.bias, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("regime", ["head_only", "full"])
def test_the_head_sees_the_training_cells_standardized(regime, data):
    """The head's input is the embedding standardized over the training cells under the starting
    encoder, as the probe's StandardScaler does, in every regime. Without it the head on LayerNorm
    outputs (the CLS position's: spread across cells ~0.1 against offsets ~1 here) stayed near
    chance on the quick profile."""
    train_tokens, y_train, val_tokens, y_val = data
    encoder = train.initial_model(ScFMConfig(**{**MODEL.to_dict(), "pooling": "cls"}), 0).eval()
    cfg = finetune_config(regime=regime, max_steps=5, eval_every=5)
    classifier, _ = train.finetune_classifier(encoder, train_tokens, y_train, val_tokens, y_val, 2, cfg)
    Z = torch.from_numpy(
        train.embed(encoder, train_tokens, layer=classifier.layer)
    )  # the starting encoder's, as the head reads
    standardized = (Z - classifier.feature_mean) / classifier.feature_std
    torch.testing.assert_close(standardized.mean(0), torch.zeros(Z.shape[1]), atol=1e-4, rtol=0)
    torch.testing.assert_close(standardized.std(0, unbiased=False), torch.ones(Z.shape[1]), atol=1e-4, rtol=0)
    assert Z.std(0).mean() < 0.5 < Z.mean(0).abs().mean()  # the case the standardization is for
    # the forward pass applies it: logits = head(standardized embedding)
    if regime == "head_only":
        with torch.no_grad():
            logits = classifier(*train._tensors(train_tokens, slice(0, 8)))
            torch.testing.assert_close(logits, classifier.head(standardized[:8]), atol=1e-5, rtol=1e-5)


def test_last_k_trains_only_the_last_block_and_final_norm(runs, encoder):
    run, before = runs
    classifier, _ = run("last_k")
    trained = classifier.encoder.state_dict()
    last = f"blocks.{MODEL.n_layers - 1}."
    for name, value in before.items():
        if name.startswith(last) or name.startswith("ln_f."):
            continue
        assert torch.equal(trained[name], value), f"{name} is frozen under last_k=1 but changed"
    for name in ("gene_embedding.weight", "cls_embedding", "blocks.0.attn.qkv.weight"):
        assert torch.equal(trained[name], before[name])
    for name in before:
        if name.startswith(last) and name.endswith("weight"):
            assert not torch.equal(trained[name], before[name]), f"{name} trains under last_k=1 but did not change"
    assert not torch.equal(trained["ln_f.weight"], before["ln_f.weight"])
    grads = {n for n, p in classifier.named_parameters() if p.requires_grad}
    assert grads == {
        n for n, _ in classifier.named_parameters() if n.startswith(("encoder." + last, "encoder.ln_f.", "head."))
    }
    assert_encoder_untouched(encoder, before)


def test_last_k_equal_to_the_depth_trains_every_block(data, encoder):
    train_tokens, y_train, val_tokens, y_val = data
    cfg = finetune_config(regime="last_k", last_k=MODEL.n_layers, max_steps=2, eval_every=1)
    classifier, log = train.finetune_classifier(encoder, train_tokens, y_train, val_tokens, y_val, 2, cfg)
    blocks = n_params(encoder.blocks.parameters())
    assert log["trainable_parameters"] == blocks + 2 * MODEL.d_model + 66
    assert torch.equal(classifier.encoder.gene_embedding.weight, encoder.gene_embedding.weight)


def test_lora_trains_adapters_and_leaves_base_weights(runs, encoder):
    run, before = runs
    classifier, log = run("lora")
    trained = classifier.encoder.state_dict()
    adapters = {n for n in trained if "lora_" in n}
    assert len(adapters) == 2 * 4 * MODEL.n_layers  # A and B on qkv, proj, mlp.0, mlp.2
    for i in range(MODEL.n_layers):
        for layer in ("attn.qkv", "attn.proj", "mlp.0", "mlp.2"):
            assert f"blocks.{i}.{layer}.lora_A.default.weight" in adapters
    # every original weight is still there, unchanged (the adapted layers keep it as base_layer)
    for name, value in before.items():
        stored = name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        stored = stored if stored in trained else name
        assert torch.equal(trained[stored], value), name
    assert len(trained) == len(before) + len(adapters)
    # the adapters moved away from their initialization (lora_B starts at zero)
    torch.manual_seed(0)
    cfg = finetune_config(regime="lora", **REGIME_CONFIGS["lora"])
    initial = train._inject_lora(copy.deepcopy(encoder), cfg).state_dict()
    for name in adapters:
        assert not torch.equal(trained[name], initial[name]), f"{name} did not train"
        if "lora_B" in name:
            assert not initial[name].any()
    assert {n for n, p in classifier.named_parameters() if p.requires_grad} == {"encoder." + n for n in adapters} | {
        "head.weight",
        "head.bias",
    }
    assert log["trainable_parameters"] < 0.2 * run("full")[1]["trainable_parameters"]
    assert_encoder_untouched(encoder, before)
    # the adapted encoder still embeds like an ScFM
    assert train.embed(classifier.encoder, structured_tokens(5)[0]).shape == (5, MODEL.d_model)


def test_lora_with_bf16_and_the_geneformer_family(data):
    train_tokens, y_train, val_tokens, y_val = data
    encoder = train.initial_model(ScFMConfig(**{**MODEL.to_dict(), "family": "geneformer"}), 1)
    cfg = finetune_config(regime="lora", bf16=True, max_steps=3, eval_every=3)
    classifier, log = train.finetune_classifier(encoder, train_tokens, y_train, val_tokens, y_val, 2, cfg)
    assert np.isfinite(log["history"][-1]["train_loss"]) and log["steps_run"] == 3
    assert train.predict(classifier, val_tokens).shape == (len(val_tokens),)
    # geneformer's MLM transform has Linear layers too, but LoRA adapts the blocks only
    assert not any("lora_" in n for n, _ in classifier.encoder.named_parameters() if n.startswith("mlm_transform"))


def reference_full_finetune(encoder, train_tokens, y_train, val_tokens, y_val, n_classes, cfg):
    """The finetuning loop as it was before regimes existed (full finetuning), kept verbatim but
    for the head's input standardization (added later, for every regime) and train.adamw (fused)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        classifier = CellClassifier(
            copy.deepcopy(encoder), n_classes, generator=torch.Generator().manual_seed(cfg.seed)
        )
        Z = torch.from_numpy(train.embed(encoder, train_tokens, layer=classifier.layer))
        classifier.feature_mean.copy_(Z.mean(0))
        classifier.feature_std.copy_(Z.std(0, unbiased=False))
        optimizer = train.adamw(
            train.param_groups(classifier.encoder, cfg.lr, cfg.weight_decay)
            + train.param_groups(classifier.head, cfg.head_lr, cfg.weight_decay)
        )
        sampler = train.EpochSampler(len(train_tokens), cfg.seed)
        labels = torch.from_numpy(y_train)
        val_loss, _ = train._classifier_eval(classifier, val_tokens, y_val)
        best = {"val_loss": val_loss, "state": copy.deepcopy(classifier.state_dict())}
        waited = 0
        classifier.train()
        for step in range(1, cfg.max_steps + 1):
            idx = sampler.next_batch(cfg.batch_size)
            with train._autocast(cfg.bf16):
                logits = classifier(*train._tensors(train_tokens, idx))
            loss = F.cross_entropy(logits.float(), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(classifier.parameters(), cfg.grad_clip)
            optimizer.step()
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                val_loss, _ = train._classifier_eval(classifier, val_tokens, y_val)
                if val_loss < best["val_loss"]:
                    best, waited = {"val_loss": val_loss, "state": copy.deepcopy(classifier.state_dict())}, 0
                else:
                    waited += 1
                    if waited >= cfg.patience:
                        break
    classifier.load_state_dict(best["state"])
    return classifier


@pytest.mark.parametrize("bf16", [False, True])
def test_full_is_the_default_and_unchanged(data, encoder, bf16):
    train_tokens, y_train, val_tokens, y_val = data
    settings = {"max_steps": 12, "batch_size": 32, "lr": 1e-3, "eval_every": 4, "patience": 3, "bf16": bf16}
    default_cfg = train.FinetuneConfig(**settings)
    assert default_cfg.regime == "full"
    default, default_log = train.finetune_classifier(encoder, train_tokens, y_train, val_tokens, y_val, 2, default_cfg)
    full, full_log = train.finetune_classifier(
        encoder, train_tokens, y_train, val_tokens, y_val, 2, train.FinetuneConfig(**settings, regime="full")
    )
    reference = reference_full_finetune(encoder, train_tokens, y_train, val_tokens, y_val, 2, default_cfg)
    assert default_log == full_log and default_log["best_step"] > 0
    for other in (full, reference):
        a, b = default.state_dict(), other.state_dict()
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"regime": "partial"}, r"regime must be one of \('full', 'last_k', 'head_only', 'lora'\).*'partial'"),
        ({"regime": "last_k", "last_k": 0}, r"last_k must be an integer >= 1"),
        ({"lora_rank": 0}, r"lora_rank must be an integer >= 1"),
        ({"regime": "lora", "lora_alpha": 0.0}, r"lora_alpha must be > 0"),
    ],
)
def test_bad_regime_settings_are_refused(changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        train.FinetuneConfig(**changes)


def test_last_k_beyond_the_depth_is_refused(data, encoder):
    train_tokens, y_train, val_tokens, y_val = data
    cfg = finetune_config(regime="last_k", last_k=MODEL.n_layers + 1)
    with pytest.raises(ValueError, match=r"last_k=3 exceeds the encoder's n_layers=2; pass last_k between 1 and 2"):
        train.finetune_classifier(encoder, train_tokens, y_train, val_tokens, y_val, 2, cfg)


@pytest.mark.parametrize("regime", train.FINETUNE_REGIMES)
def test_the_optimizer_holds_exactly_the_trainable_parameters(regime, data, encoder, monkeypatch):
    train_tokens, y_train, val_tokens, y_val = data
    given = []

    class RecordingAdamW(torch.optim.AdamW):
        def __init__(self, params, *args, **kwargs):
            params = list(params)
            given.extend(p for group in params for p in group["params"])
            super().__init__(params, *args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    cfg = finetune_config(regime=regime, **REGIME_CONFIGS[regime], max_steps=1, eval_every=1)
    classifier, log = train.finetune_classifier(encoder, train_tokens, y_train, val_tokens, y_val, 2, cfg)
    trainable = [p for p in classifier.parameters() if p.requires_grad]
    assert len(given) == len({id(p) for p in given}) == len(trainable)
    assert {id(p) for p in given} == {id(p) for p in trainable}
    assert n_params(given) == log["trainable_parameters"]
