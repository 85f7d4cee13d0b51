"""Narrow tasks on datasets of their own (scfm_lib.study.tasks, scfm_lib.study.task_evaluation): which
cells a task keeps, how they split, what the data job writes and what the evaluation job records."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scfm_lib import metrics, stats
from scfm_lib.config import ConfigError, TaskSpec, load_profile
from scfm_lib.data import GeneVocab, ScfmDataError
from scfm_lib.study import task_evaluation, tasks


def _obs():
    # technology A: x 20, y 20, z 3 (too few to train on); technology B (the test split): x 5, y 5, z 5; 2 unlabelled
    labels = ["x"] * 20 + ["y"] * 20 + ["z"] * 3 + ["x"] * 5 + ["y"] * 5 + ["z"] * 5 + [None, None]
    tech = ["A"] * 43 + ["B"] * 15 + ["A", "B"]
    return pd.DataFrame({"cell_type": labels, "technology": tech}, index=[f"c{i}" for i in range(len(labels))])


def test_a_group_split_tests_on_the_named_groups_and_keeps_classes_with_training_cells():
    obs = _obs()
    spec = TaskSpec(dataset="d", words="w", split_by="technology", test_groups=["B"], min_class_cells=5)
    keep, split, report = tasks.split_task_cells(obs, spec, seed=0)
    kept = obs.iloc[keep]
    assert kept["cell_type"].notna().all()  # unlabelled cells leave
    assert set(kept["cell_type"]) == {"x", "y"} and report["dropped_classes"] == {"z": 2}  # 3 z cells, 2 in train
    assert (kept["technology"][split == "test"] == "B").all() and (kept["technology"][split != "test"] == "A").all()
    assert report["split_cells"]["test"] == 10 and report["cells"] == 50
    assert report["split_cells"]["train"] + report["split_cells"]["val"] == 40
    assert report["classes"] == ["x", "y"]


def test_a_random_split_keeps_every_class_in_every_split():
    obs = pd.DataFrame({"cell_type": ["a"] * 50 + ["b"] * 30})
    keep, split, report = tasks.split_task_cells(obs, TaskSpec(dataset="d", words="w"), seed=1)
    assert len(keep) == 80 and report["split_cells"] == {"train": 48, "val": 16, "test": 16}
    for s in tasks.SPLITS:
        assert set(obs["cell_type"].iloc[keep[split == s]]) == {"a", "b"}


def test_bad_tasks_name_the_problem():
    with pytest.raises(ScfmDataError, match="no label column 'cell_line'"):
        tasks.split_task_cells(_obs(), TaskSpec(dataset="d", words="w", label_key="cell_line"), seed=0)
    with pytest.raises(ScfmDataError, match="min_class_cells"):
        tasks.split_task_cells(_obs(), TaskSpec(dataset="d", words="w", min_class_cells=500), seed=0)
    with pytest.raises(ConfigError, match="go together"):
        TaskSpec(dataset="d", words="w", split_by="technology")
    with pytest.raises(FileNotFoundError, match="data job"):
        tasks.load_task("/nonexistent/data", "cross_technology", "scgpt")


def test_annotation_records_average_the_finetuning_seeds_by_hand():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    seed_a, seed_b = np.array([0, 0, 1, 1, 2, 1]), np.array([0, 1, 1, 1, 2, 2])
    rows = task_evaluation.annotation_records(
        y_true,
        {"finetune": [seed_a, seed_b], "knn": seed_a},
        {"macro_f1": metrics.macro_f1},
        suffix="_t",
        seed=3,
        n_boot=50,
    )
    by_mode = {r["mode"]: r for r in rows}
    assert {r["metric"] for r in rows} == {"macro_f1_t"}
    expected = np.mean([metrics.macro_f1(y_true, seed_a), metrics.macro_f1(y_true, seed_b)])
    assert by_mode["finetune"]["value"] == pytest.approx(expected) and by_mode["finetune"]["n_finetune_seeds"] == 2
    low_a = stats.cell_bootstrap_ci(y_true, seed_a, metrics.macro_f1, n_boot=50, seed=3)[1]
    low_b = stats.cell_bootstrap_ci(y_true, seed_b, metrics.macro_f1, n_boot=50, seed=3)[1]
    assert by_mode["finetune"]["cell_ci_low"] == pytest.approx((low_a + low_b) / 2)
    assert by_mode["knn"]["value"] == pytest.approx(metrics.macro_f1(y_true, seed_a))


def _two_type_dataset(n=120, n_genes=60, seed=0):
    """Two cell types that express different halves of the genes; batches A and B."""
    rng = np.random.default_rng(seed)
    kind = np.arange(n) % 2
    rates = np.where(kind[:, None] == (np.arange(n_genes) < n_genes // 2)[None, :], 6.0, 0.3)
    counts = rng.poisson(rates).astype(np.float32)
    adata = ad.AnnData(
        X=sp.csr_matrix(counts),
        obs=pd.DataFrame(
            {"cell_type": np.where(kind == 0, "T", "B"), "batch": np.where(np.arange(n) < 80, "A", "B")},
            index=[f"cell{i}" for i in range(n)],
        ),
        var=pd.DataFrame(index=[f"G{i}" for i in range(n_genes)]),
    )
    adata.layers["counts"] = adata.X.copy()
    return adata


def test_a_task_prepared_by_the_data_job_is_scored_frozen_and_finetuned(tmp_path, monkeypatch):
    adata = _two_type_dataset()
    monkeypatch.setattr(tasks, "read_task_dataset", lambda spec: (adata, adata, None, None))
    vocab = GeneVocab(list(adata.var_names[:50]))  # 10 genes the vocabulary lacks
    spec = TaskSpec(dataset="two_types", words="two types", split_by="batch", test_groups=["B"])
    report = tasks.prepare_task(
        "two_types", spec, vocab, ["scgpt"], context_genes=16, data_dir=tmp_path / "data", seed=0
    )
    assert report["split_cells"]["test"] == 40 and report["classes"] == ["B", "T"]
    assert report["harmonization"]["share_after"] == pytest.approx(50 / 60)
    assert report["context_ceiling"]["scgpt"]["all_genes"] > 0.9  # the types are separable
    tokens, classes, index, y = tasks.load_task(tmp_path / "data", "two_types", "scgpt")
    assert len(tokens) == 120 and classes == ["B", "T"] and len(index["test"]) == 40

    from scfm_lib import train

    profile = load_profile("tiny")
    monkeypatch.setattr(profile, "finetune", {**profile.finetune, "max_steps": 4, "eval_every": 2})
    model = train.initial_model(profile.model_config(vocab_size=len(vocab), family="scgpt"), seed=0)
    records, log = task_evaluation.evaluate_task(model, profile, tmp_path, "two_types", "scgpt", 1.0, 0)
    assert {(r["mode"], r["metric"]) for r in records} == {
        (m, f"{s}_two_types") for m in ("finetune", "linear_probe", "knn") for s in ("accuracy", "macro_f1")
    }
    assert all(0 <= r["value"] <= 1 for r in records) and log["classes"] == ["B", "T"]
    again, _ = task_evaluation.evaluate_task(model, profile, tmp_path, "two_types", "scgpt", 1.0, 0)
    assert again == records  # same seed, same numbers


def test_the_summary_scores_a_task_of_its_own_on_its_own_scale():
    from scfm_lib.study import summary, verdicts

    real = load_profile("real")
    assert verdicts.task_metrics(real) == {
        "annotation": "macro_f1",
        "annotation_ood": "macro_f1_ood",
        "cross_technology": "macro_f1_cross_technology",
        "cross_species": "macro_f1_cross_species",
    }
    assert "CEL-seq2" in verdicts.task_words(real, "cross_technology")
    report = {
        "words": "w",
        "dataset": "cellbench_lung_celllines",
        "cells": 1408,
        "split": "whole technology groups",
        "split_cells": {"train": 888, "val": 295, "test": 225},
        "classes": ["A549", "H1975", "H2228", "H838", "HCC827"],
        "dropped_classes": {},
        "harmonization": {"share_before": 0.0, "share_after": 0.32},
        "context_ceiling": {"geneformer": {"context": 0.96, "all_genes": 0.98, "share": 0.98}},
    }
    record = {
        "records": [
            {"mode": "data", "metric": "corpus_cells", "value": 100},
            {"mode": "data", "metric": "downstream_cells", "value": 50},
        ],
        "extra": {"tasks": {"cross_technology": report}},
    }
    margin = verdicts._task_margin(record, "cross_technology", "geneformer")
    assert margin["chance"] == pytest.approx(1 / 5) and margin["ceiling"] == pytest.approx(0.98)
    assert margin["margin"] == pytest.approx(0.1 * (0.98 - 0.2))  # a tenth of its own range
    stated = summary.data_summary(real, record)["tasks"]["cross_technology"]
    assert stated["split_cells"]["test"] == 225 and stated["genes_in_vocabulary"] == {
        "as_read": 0.0,
        "harmonized": 0.32,
    }
