"""scfm_lib.layout: one module builds every path under results/<profile>/, and recognises them.

The acceptance check on a real run (every file a tiny-profile run writes is a layout path) is in
tests/test_workflow.py::test_tiny_profile_builds_the_book; here the paths, the listing and the
workflow's own outputs (a Snakemake dry run) are checked without running anything."""

import doctest
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from scfm_lib import layout, results
from scfm_lib.layout import PATTERNS, ResultsLayout

RUN = "scgpt_f0.1_s1"


def test_each_kind_of_path_is_where_the_layout_says():
    lay = ResultsLayout.of_profile("tiny")
    assert lay.results_dir == Path("results/tiny") == layout.results_dir("tiny")
    assert ResultsLayout.of_profile("tiny", "/repo").results_dir == Path("/repo/results/tiny")
    expected = {
        lay.dataset("corpus"): "data/corpus.h5ad",
        lay.dataset("ood"): "data/ood.h5ad",
        lay.vocab: "data/vocab.json",
        lay.tokens("geneformer", "corpus_train"): "data/tokens/geneformer/corpus_train.npz",
        lay.task_tokens("scgpt", "cross_species"): "data/tokens/scgpt/task_cross_species.npz",
        lay.task_labels("cross_species"): "data/tasks/cross_species.npz",
        lay.checkpoint(RUN): f"checkpoints/{RUN}",
        lay.checkpoint(RUN, control="negative_control"): f"checkpoints/negative_control_{RUN}",
        lay.embedding(RUN): f"embeddings/{RUN}.npy",
        lay.embedding("pca"): "embeddings/pca.npy",
        lay.metrics("scib", RUN): f"metrics/scib/{RUN}.json",
        lay.metrics("data", "datasets"): "metrics/data/datasets.json",
        lay.summary: "summary.json",
        lay.budgets: "budgets.json",
        lay.scib_table: "scib.json",
        lay.executing_dir: "executing",
    }
    for built, relative in expected.items():
        assert built == Path("results/tiny") / relative
    # the data folder alone is enough for code that is handed only it (scfm_lib.study.tasks, evaluate)
    assert ResultsLayout.of_data_dir("results/tiny/data") == lay
    # the older entry points delegate to the layout
    assert results.metrics_path("results/tiny", "evaluate", RUN) == lay.metrics("evaluate", RUN)
    assert doctest.testmod(layout).failed == 0


def test_the_names_other_modules_use_are_the_layouts():
    from scfm_lib import cellmodel, train
    from scfm_lib.study import controls, rates

    assert (train.WEIGHTS, train.META, train.TRAINER_STATE, cellmodel.VOCAB_FILE) == layout.CHECKPOINT_FILES
    assert {controls.NEGATIVE, controls.POSITIVE, rates.KIND} <= set(layout.METRIC_KINDS)
    assert controls.NEGATIVE in layout.CHECKPOINT_CONTROLS
    assert cellmodel.PATH_PATTERN == "results/<profile>/checkpoints/<family>_f<fraction>_s<seed>"


VALID = {
    "data/downstream.h5ad": "dataset",
    "data/vocab.json": "vocab",
    "data/tokens/scgpt/corpus_val.npz": "tokens",
    "data/tokens/geneformer/ood.npz": "tokens",
    "data/tokens/geneformer/task_cross_technology.npz": "task_tokens",
    "data/tasks/cross_technology.npz": "task_labels",
    f"checkpoints/{RUN}/model.safetensors": "checkpoint",
    f"checkpoints/{RUN}/checkpoint.json": "checkpoint",
    f"checkpoints/{RUN}/trainer_state.pt": "checkpoint",
    f"checkpoints/{RUN}/vocab.json": "checkpoint",
    f"checkpoints/negative_control_{RUN}/model.safetensors": "control_checkpoint",
    "embeddings/geneformer_f0.01_s7.npy": "embedding",
    "embeddings/pca.npy": "embedding",
    f"metrics/evaluate/{RUN}.json": "metrics",
    "metrics/rates/geneformer.json": "metrics",
    "metrics/baselines/baselines.json": "metrics",
    f"metrics/negative_control/{RUN}.json": "metrics",
    "summary.json": "summary",
    "budgets.json": "budgets",
    "scib.json": "scib_table",
    f"executing/evaluate_{RUN}.ipynb": "executing",
}
STRAY = [
    "notes.txt",
    "data/vocab.json.tmp",  # an atomic write that never finished
    "data/pbmc.h5ad",  # not a dataset of the study
    "data/tokens/scgpt/corpus.npz",  # not a token set
    "data/tokens/corpus_train.npz",  # no family
    f"checkpoints/{RUN}/optimizer.pt",
    f"checkpoints/positive_control_{RUN}/model.safetensors",  # the positive control keeps no checkpoint
    f"checkpoints/{RUN}",  # a folder name is not a file of it
    "embeddings/umap.npy",
    f"metrics/evaluate/{RUN}.csv",
    f"metrics/unknown/{RUN}.json",
    f"metrics/{RUN}.json",
    "metrics/evaluate/sub/x.json",
    "book/tiny/summary.json",
    "summary.json.bak",
]


def test_the_listing_recognises_every_kind_and_rejects_strays():
    lay = ResultsLayout(Path("results/tiny"))
    for relative, kind in VALID.items():
        assert lay.kind_of(relative) == kind, relative
        assert lay.kind_of(Path("results/tiny") / relative) == kind, relative  # under the folder, as built
    for relative in STRAY:
        assert lay.kind_of(relative) is None, relative
    assert lay.kind_of("/elsewhere/summary.json") is None  # not under the results folder
    assert set(PATTERNS) == set(VALID.values())  # every kind of path has a case above


def test_stray_files_lists_only_what_the_layout_does_not_know(tmp_path):
    lay = ResultsLayout(tmp_path / "results" / "tiny")
    for relative in [*VALID, "notes.txt", f"checkpoints/{RUN}/optimizer.pt"]:
        path = lay.results_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (lay.results_dir / "empty_folder").mkdir()  # folders are not files
    assert lay.stray_files() == [Path(f"checkpoints/{RUN}/optimizer.pt"), Path("notes.txt")]
    assert [p.relative_to(lay.metrics_dir).as_posix() for p in lay.metrics_files("rates")] == ["rates/geneformer.json"]
    assert len(lay.metrics_files()) == 4


# A small profile with every optional job: two families, the rates job and the budget sweep.
SWEEP = {
    "name: tiny": "name: tinyall",
    "families: [scgpt]": "families: [scgpt, geneformer]",
    "regimes: [full]": "regimes: [full], label_budgets: [0.1, 1.0], step_budgets: [5, 20]",
    "rate_candidates: []": "rate_candidates: [0.0001, 0.0003]",
}


def test_every_results_path_the_workflow_names_is_a_layout_path(tmp_path, venv_env):
    text = (REPO / "profiles" / "tiny.yaml").read_text()
    for old, new in SWEEP.items():
        assert old in text
        text = text.replace(old, new)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tinyall.yaml").write_text(text)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--cores", "2", "-n"]
    cmd += ["--config", "profile=tinyall", f"profiles_dir={profiles}"]
    run = subprocess.run(cmd, cwd=tmp_path, env=venv_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    files = [line for line in (run.stdout + run.stderr).splitlines() if re.match(r"\s+(input|output): ", line)]
    named = {path for line in files for path in re.findall(r"results/tinyall/[^\s,]+", line)}
    lay = ResultsLayout.of_profile("tinyall")
    kinds = {path: lay.kind_of(path) for path in named}
    assert None not in kinds.values(), sorted(p for p, k in kinds.items() if k is None)
    expected_kinds = {"dataset", "vocab", "tokens", "embedding", "metrics", "summary", "budgets", "scib_table"}
    assert expected_kinds <= set(kinds.values())
    assert lay.metrics("rates", "geneformer").as_posix() in named and lay.budgets.as_posix() in named
