"""CellModel: one loaded checkpoint, any AnnData; the same numbers as the train functions it calls."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import scfm_lib as sl
from scfm_lib import data, tl, train
from scfm_lib.atlas import AtlasConfig, SyntheticAtlas
from scfm_lib.cellmodel import CellModel
from scfm_lib.data import ScfmDataError
from scfm_lib.model import ScFMConfig

torch.set_num_threads(1)


def atlas(n_cells=60, seed=0):
    return SyntheticAtlas(AtlasConfig(n_genes=200, n_donors=8)).sample(n_cells, seed=seed)


def make_checkpoint(folder, adata, family="scgpt", medians=True, **changes):
    """A tiny random-init checkpoint folder as the pretraining job writes it (weights, config, vocab)."""
    vocab = data.GeneVocab(list(adata.var_names))
    if medians:
        vocab = data.GeneVocab(vocab.genes, data.gene_medians(adata, vocab))
    config = ScFMConfig(
        **{
            "vocab_size": len(vocab),
            "context_genes": 16,
            "d_model": 16,
            "n_layers": 1,
            "n_heads": 2,
            "family": family,
            **changes,
        }
    )
    train.init_checkpoint(config, seed=0, out_dir=folder)
    vocab.save(folder / "vocab.json")
    return folder


@pytest.fixture(params=["scgpt", "geneformer"])
def checkpoint(request, tmp_path):
    return make_checkpoint(tmp_path / "ck", atlas(), family=request.param)


def test_load_reads_the_folder_once(checkpoint):
    model = CellModel.load(checkpoint)
    assert isinstance(model, CellModel) and sl.CellModel is CellModel
    assert model.checkpoint_dir == checkpoint and model.family in ("scgpt", "geneformer")
    assert model.context_genes == 16 and len(model.vocab) == model.model.config.vocab_size
    assert not model.model.training
    assert model.pretrain_mask_ratio == 0.25  # the random-init control records no pretraining config
    text = repr(model)
    for part in (model.family, "d_model=16", "n_layers=1", "200 genes", str(checkpoint), "not finetuned"):
        assert part in text
    assert (model.medians is None) == (model.family == "scgpt")


def test_embed_equals_train_embed_on_the_same_tokens(checkpoint):
    adata = atlas()
    model = CellModel(checkpoint)
    model.embed(adata, batch_size=7)
    vocab = data.GeneVocab.load(checkpoint / "vocab.json")
    medians = vocab.medians if model.family == "geneformer" else None
    tokens = data.tokenize(adata, vocab, 16, medians=medians)
    expected = train.embed(train.load_checkpoint(checkpoint), tokens)
    assert adata.obsm["X_scfm"].shape == (60, 16) and adata.obsm["X_scfm"].dtype == np.float32
    np.testing.assert_array_equal(adata.obsm["X_scfm"], expected)
    again = adata.copy()
    tl.embed(again, model, key_added="X_via_tl")  # tl.embed takes a loaded model as well as a folder
    np.testing.assert_array_equal(again.obsm["X_via_tl"], expected)


def test_embed_takes_log_normalized_values_of_a_dataset_without_counts(checkpoint):
    adata = atlas()
    counts = adata.layers["counts"].toarray() if hasattr(adata.layers["counts"], "toarray") else adata.layers["counts"]
    adata.layers["log1p_norm"] = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)
    model = CellModel(checkpoint)
    model.embed(adata, layer="log1p_norm")
    tokens = data.tokenize(adata, model.vocab, 16, layer="log1p_norm", medians=model.medians)
    np.testing.assert_array_equal(adata.obsm["X_scfm"], train.embed(train.load_checkpoint(checkpoint), tokens))
    adata.layers["log1p_norm"][0, 0] = -1.0  # scaled data is refused with the fix
    with pytest.raises(ScfmDataError, match="log1p-normalized values"):
        model.embed(adata, layer="log1p_norm")


def test_reconstruction_loss_equals_train_reconstruction_loss(checkpoint):
    adata = atlas()
    model = CellModel(checkpoint)
    vocab = model.vocab
    tokens = data.tokenize(adata, vocab, 16, medians=vocab.medians if model.family == "geneformer" else None)
    encoder = train.load_checkpoint(checkpoint)
    assert model.reconstruction_loss(adata) == train.reconstruction_loss(encoder, tokens, mask_ratio=0.25, seed=0)
    loss = model.reconstruction_loss(adata, mask_ratio=0.5, seed=3)
    assert loss == train.reconstruction_loss(encoder, tokens, mask_ratio=0.5, seed=3)
    assert np.isfinite(loss) and loss > 0


def test_reconstruction_loss_defaults_to_the_pretraining_mask_ratio(tmp_path):
    ck = make_checkpoint(tmp_path / "ck", atlas())
    meta = json.loads((ck / train.META).read_text())
    meta["pretrain_config"] = {"mask_ratio": 0.4}
    (ck / train.META).write_text(json.dumps(meta))
    model = CellModel(ck)
    adata = atlas()
    assert model.pretrain_mask_ratio == 0.4
    assert model.reconstruction_loss(adata) == model.reconstruction_loss(adata, mask_ratio=0.4)


def test_finetune_and_predict_write_labels_beat_chance_and_are_seeded(tmp_path):
    adata = atlas(240, seed=1)
    ck = make_checkpoint(tmp_path / "ck", adata)
    split = data.split_cells(adata, fractions=(0.5, 0.25, 0.25), seed=0, stratify="lineage")
    adata.obs["split"] = "test"
    for name in ("train", "val"):
        adata.obs.iloc[split[name], adata.obs.columns.get_loc("split")] = name
    model = CellModel(ck)
    with pytest.raises(RuntimeError, match="finetune"):
        model.predict(adata)
    log = model.finetune(adata, "lineage", split_key="split", max_steps=60, eval_every=20, batch_size=32, bf16=False)
    assert log["n_train"] == len(split["train"]) and log["n_val"] == len(split["val"])
    assert model.classes == sorted(adata.obs["lineage"].astype(str).unique()) and "4 classes" in repr(model)
    test = adata[split["test"]].copy()
    model.predict(test)
    predicted = test.obs["scfm_prediction"]
    assert isinstance(predicted.dtype, pd.CategoricalDtype) and list(predicted.cat.categories) == model.classes
    accuracy = float((predicted.astype(str) == test.obs["lineage"].astype(str)).mean())
    assert accuracy > 0.5  # 4 lineages: chance is about 0.25
    # the encoder the model embeds with is the pretrained one, untouched by finetuning
    for key, value in train.load_checkpoint(ck).state_dict().items():
        assert torch.equal(model.model.state_dict()[key], value)
    # same seed, same classifier
    other = CellModel(ck)
    other.finetune(
        adata,
        "lineage",
        split_key="split",
        config=train.FinetuneConfig(max_steps=60, eval_every=20, batch_size=32, bf16=False),
    )
    other.predict(test, key_added="again")
    assert (test.obs["again"] == test.obs["scfm_prediction"]).all()
    for key, value in model.classifier.state_dict().items():
        assert torch.equal(other.classifier.state_dict()[key], value)


def test_finetune_default_split_is_a_stratified_validation_share(tmp_path):
    adata = atlas(80)
    model = CellModel(make_checkpoint(tmp_path / "ck", adata))
    log = model.finetune(adata, "lineage", max_steps=2, eval_every=1, regime="head_only", bf16=False)
    assert log["n_train"] + log["n_val"] == 80 and 12 <= log["n_val"] <= 20 and log["regime"] == "head_only"
    model.predict(adata, key_added="pred")
    assert set(adata.obs["pred"].astype(str)) <= set(model.classes)


def test_finetune_refuses_unusable_labels_and_splits(tmp_path):
    adata = atlas()
    model = CellModel(make_checkpoint(tmp_path / "ck", adata))
    with pytest.raises(ScfmDataError, match="label column 'nope' not found"):
        model.finetune(adata, "nope")
    with pytest.raises(ScfmDataError, match="split column 'nope' not found"):
        model.finetune(adata, "lineage", split_key="nope")
    adata.obs["split"] = "train"
    with pytest.raises(ScfmDataError, match="no validation cells"):
        model.finetune(adata, "lineage", split_key="split")
    with pytest.raises(TypeError):
        model.finetune(adata, "lineage", not_a_setting=1)


def test_missing_folder_and_files_say_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*checkpoints/<family>_f<fraction>_s<seed>"):
        CellModel(tmp_path / "nowhere")
    ck = make_checkpoint(tmp_path / "checkpoints" / "scgpt_f1.0_s0", atlas())
    with pytest.raises(FileNotFoundError, match=r"not a checkpoint folder.*scgpt_f1\.0_s0"):
        CellModel(tmp_path / "checkpoints")
    (ck / "vocab.json").rename(tmp_path / "vocab.json")
    with pytest.raises(FileNotFoundError, match="vocab.json is missing.*data/vocab.json"):
        CellModel(ck)
    (tmp_path / "vocab.json").rename(ck / "vocab.json")
    (ck / train.WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        CellModel.load(ck)


def test_a_foreign_or_broken_vocabulary_is_refused(tmp_path):
    adata = atlas()
    ck = make_checkpoint(tmp_path / "ck", adata)
    data.GeneVocab(list(adata.var_names)[:150]).save(ck / "vocab.json")
    with pytest.raises(ValueError, match="another run's vocabulary"):
        CellModel(ck)
    (ck / "vocab.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot be read"):
        CellModel(ck)


def test_geneformer_vocabulary_without_medians_is_refused(tmp_path):
    ck = make_checkpoint(tmp_path / "ck", atlas(), family="geneformer", medians=False)
    with pytest.raises(ScfmDataError, match="no gene medians"):
        CellModel(ck)
    make_checkpoint(tmp_path / "ok", atlas(), family="scgpt", medians=False)
    assert CellModel(tmp_path / "ok").medians is None  # scgpt ranks by count: no medians needed


def test_counts_and_gene_overlap_are_checked(checkpoint):
    model = CellModel(checkpoint)
    adata = atlas()
    no_counts = adata.copy()
    del no_counts.layers["counts"]
    with pytest.raises(ScfmDataError, match="layer 'counts' not found"):
        model.embed(no_counts)
    normalized = adata.copy()
    normalized.layers["counts"] = normalized.layers["counts"].astype(np.float32) * 0.5
    with pytest.raises(ScfmDataError, match="non-integer"):
        model.reconstruction_loss(normalized)
    foreign = adata.copy()
    foreign.var_names = [f"ENSG{i:05d}" for i in range(foreign.n_vars)]
    with pytest.raises(ScfmDataError, match="vocabulary"):
        model.embed(foreign)
    assert "X_scfm" not in foreign.obsm


def test_importing_the_package_does_not_import_torch():
    # sl.CellModel (resolved by the package's __getattr__, see test_load_reads_the_folder_once) imports torch
    # only when asked for; importing torch in the subprocess would cost seconds.
    code = "import sys, scfm_lib as sl; assert 'torch' not in sys.modules and 'CellModel' not in vars(sl)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("native", [False, True])
def test_finetune_without_a_config_uses_bf16_only_where_the_cpu_runs_it(tmp_path, monkeypatch, native):
    """The default finetuning works on any CPU: bf16 where it is native, fp32 where it would be emulated
    (train.check_bf16 would refuse emulated bf16)."""
    adata = atlas(80)
    model = CellModel(make_checkpoint(tmp_path / "ck", adata))
    for where in (train, train.batches):  # what CellModel asks, and what check_bf16 asks
        monkeypatch.setattr(where, "native_bf16", lambda: native)
    monkeypatch.delenv(train.ALLOW_EMULATED_BF16, raising=False)
    used = []
    original = train.finetune_classifier
    monkeypatch.setattr(train, "finetune_classifier", lambda *a, **k: used.append(a[6].bf16) or original(*a, **k))
    model.finetune(adata, "lineage", max_steps=2, eval_every=1, regime="head_only")
    assert used == [native]
