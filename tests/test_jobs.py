"""The grid's jobs as library functions, run from Python without papermill (scfm_lib.config.Run,
scfm_lib.study.pretrain, evaluate, sweep): on a small synthetic atlas written the way the data job writes it."""

import ast
import json

import numpy as np
import pytest
from conftest import REPO

from scfm_book import CHAPTERS, CONTROL_TEMPLATES
from scfm_lib import atlas_datasets, data, io, results
from scfm_lib.config import Run, load_profile
from scfm_lib.layout import ResultsLayout
from scfm_lib.study.evaluate import evaluate
from scfm_lib.study.pretrain import plot_history, pretrain
from scfm_lib.study.sweep import sweep


def test_a_run_is_named_as_the_files_are_and_parsed_back():
    profile = load_profile("tiny")
    for run in profile.runs():
        assert Run.parse(run.name) == run
    assert Run("scgpt", 1, 0).name == "scgpt_f1.0_s0"  # the fraction is a float however it is given
    assert Run("geneformer", 0.03, 7).name == "geneformer_f0.03_s7"
    assert profile.run_ids() == [run.name for run in profile.runs()]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("scgpt_f1_s0", "scgpt_f1.0_s0"),  # another spelling of a run: the message names its id
        ("scgpt_f0.10_s0", "scgpt_f0.1_s0"),
        ("scgpt-f0.1-s0", "not a run id"),
        ("bert_f0.1_s0", "not a model family"),
        ("scgpt_f1.5_s0", "outside"),
        ("scgpt_f0.1_sX", "not a run id"),
    ],
)
def test_a_malformed_run_id_names_what_is_wrong(name, reason):
    with pytest.raises(ValueError, match=reason):
        Run.parse(name)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A results folder after the data job, and a profile small enough to run the grid in seconds."""
    profile = load_profile("tiny")
    profile.data.n_corpus, profile.data.n_downstream, profile.data.n_ood = 300, 400, 100
    profile.pretrain = {**profile.pretrain, "max_steps": 4, "eval_every": 2, "checkpoint_every": 2}
    profile.finetune = {**profile.finetune, "max_steps": 4, "eval_every": 2}
    profile.evaluate.label_budgets, profile.evaluate.step_budgets = [0.5, 1.0], [2, 4]
    profile.evaluate.perturbation_cells = 5
    results_dir = tmp_path_factory.mktemp("results") / "tiny"
    layout = ResultsLayout(results_dir)
    datasets = atlas_datasets.make_study_datasets(
        profile.atlas_config(),
        n_corpus=300 + 50,
        n_downstream=400,
        n_ood=100,
        seed=0,
        heldout_tissues=profile.data.heldout_tissues,
    )
    corpus, downstream = datasets["corpus"], datasets["downstream"]
    is_val = np.zeros(corpus.n_obs, dtype=bool)
    is_val[np.random.default_rng(0).choice(corpus.n_obs, 50, replace=False)] = True
    corpus.obs["pretrain_split"] = np.where(is_val, "val", "train")
    downstream.obs["split"] = "train"
    for split_name, idx in data.split_cells(downstream, by=profile.data.split_by, seed=0).items():
        downstream.obs.iloc[idx, downstream.obs.columns.get_loc("split")] = split_name
    vocab = data.GeneVocab(list(corpus.var_names))
    vocab.save(layout.vocab)
    sets = {
        "corpus_train": corpus[~is_val],
        "corpus_val": corpus[is_val],
        "downstream": downstream,
        "ood": datasets["ood"],
    }
    for name, adata in sets.items():
        data.tokenize(adata, vocab, profile.data.context_genes).save(layout.tokens("scgpt", name))
    for name, adata in datasets.items():
        adata.write_h5ad(layout.dataset(name))
    hashes = {name: io.anndata_sha256(adata) for name, adata in datasets.items()}
    results.write_metrics(
        layout.metrics("data", "datasets"),
        kind="data",
        name="datasets",
        run={},
        records=[],
        parameters={},
        data_hashes=hashes,
    )
    return profile, results_dir


def test_the_grid_runs_from_python_and_each_job_returns_the_record_it_writes(study):
    profile, results_dir = study
    layout = ResultsLayout(results_dir)
    grid = [Run("scgpt", 1.0, 0), Run("scgpt", 0.1, 0), Run("scgpt", 0.0, 0)]
    pretrained = {run: pretrain(profile, results_dir, run) for run in grid}
    n_corpus = len(data.CellTokens.load(layout.tokens("scgpt", "corpus_train")))
    for run, record in pretrained.items():
        assert record == io.read_json(layout.metrics("pretrain", run.name))
        assert record["run"] == {
            "family": "scgpt",
            "fraction": run.fraction,
            "seed": 0,
            "n_pretrain_cells": len(data.nested_subsets(n_corpus, [run.fraction], seed=0)[run.fraction]),
        }
        assert (layout.checkpoint(run.name) / "vocab.json").exists()
        # called from Python, a job records the parameters its notebook takes: the run id, not its parts
        assert record["provenance"]["parameters"]["run"] == run.name
        assert not {"family", "fraction", "seed"} & set(record["provenance"]["parameters"])
    assert pretrained[Run("scgpt", 1.0, 0)]["run"]["n_pretrain_cells"] == n_corpus
    assert (
        pretrained[Run("scgpt", 0.0, 0)]["extra"]["history"] == []
        and plot_history(pretrained[Run("scgpt", 0.0, 0)]) is None
    )
    assert pretrained[Run("scgpt", 1.0, 0)]["extra"]["steps"] == 4 and plot_history(pretrained[Run("scgpt", 1.0, 0)])
    again = pretrain(profile, results_dir, Run("scgpt", 0.1, 0))  # finished: read back, the same numbers
    assert again["records"] == pretrained[Run("scgpt", 0.1, 0)]["records"]

    run = Run("scgpt", 0.1, 0)
    record = evaluate(profile, results_dir, run)
    written = io.read_json(layout.metrics("evaluate", run.name))
    assert (record["name"], record["run"], record["records"]) == (written["name"], written["run"], written["records"])
    scores = {(r["mode"], r["metric"]): r["value"] for r in record["records"]}
    for key in [
        ("finetune", "macro_f1"),
        ("linear_probe", "macro_f1"),
        ("knn", "accuracy"),
        ("leiden", "ari"),
        ("reconstruction", "masked_loss_heldout"),
        ("reconstruction", "unseen_tissue_gap"),
        ("linear_probe", "macro_f1_ood"),
        ("gene_programs", "map"),
    ]:
        assert key in scores, key
    n_test = int((data_split := np.load(layout.embedding(run.name))).shape[0])
    assert data_split.shape[1] == profile.model_config(vocab_size=301, family="scgpt").d_model and n_test > 0
    for confusion in record["confusion"].values():  # rows normalized: the shares of each true type
        assert all(sum(row.values()) == pytest.approx(1.0) for row in confusion.values())
    assert evaluate(profile, results_dir, run)["records"] == record["records"]  # same seed, same numbers

    swept = sweep(profile, results_dir, run)
    written = io.read_json(layout.metrics("sweep", run.name))
    assert (swept["name"], swept["run"], swept["records"]) == (written["name"], written["run"], written["records"])
    budgets = {(r["mode"], r["label_budget"], r["step_budget"]) for r in swept["records"] if r["metric"] == "macro_f1"}
    assert budgets == {("linear_probe", b, None) for b in (0.5, 1.0)} | {
        ("finetune", b, s) for b in (0.5, 1.0) for s in (2, 4)
    }


@pytest.mark.parametrize("template", ["pretrain", "evaluate", "sweep"])
def test_a_job_notebook_parses_its_run_id_once_in_its_second_cell(template):
    """``-p run <id>`` is parsed by Run.parse in the cell after the parameters cell: a malformed id
    (``scgpt_f1_s0``) fails there, before any work, with Run.parse's message."""
    nb = json.loads((REPO / "nbs" / f"{template}.ipynb").read_text())
    parameters, check = ("".join(c["source"]) for c in [c for c in nb["cells"] if c["cell_type"] == "code"][:2])
    for given, expected in [("scgpt_f1_s0", None), ("geneformer_f1.0_s0", Run("geneformer", 1.0, 0))]:
        namespace: dict = {}
        exec(parameters, namespace)  # the notebook's own cells
        namespace["run"] = given  # what papermill injects after the parameters cell
        if expected is None:
            with pytest.raises(ValueError, match="not a run id as written; the run's id is 'scgpt_f1.0_s0'"):
                exec(check, namespace)
        else:
            exec(check, namespace)
            assert namespace["grid_point"] == expected and namespace["params"]["run"] == given


def test_evaluating_a_run_never_pretrained_names_the_command_that_makes_it(study):
    profile, results_dir = study
    with pytest.raises(FileNotFoundError, match="scgpt_f0.3_s1 was never pretrained.*papermill nbs/pretrain.ipynb"):
        evaluate(profile, results_dir, Run("scgpt", 0.3, 1))


#: Job notebooks: the data job (synthetic or real), the per-run jobs, the baselines and the per-family controls.
JOB_TEMPLATES = ("data", "data_real", "pretrain", "evaluate", "sweep", "baselines", *CONTROL_TEMPLATES)


def test_job_notebooks_are_parameters_one_call_and_figures():
    """A job notebook holds no function or class of its own and at most 30 code lines (blank lines
    aside): its work is a library function. Every template in nbs/ is a job, a chapter or the intro."""
    templates = {path.stem for path in (REPO / "nbs").glob("*.ipynb")}
    assert templates == {*JOB_TEMPLATES, *(name for name, _ in CHAPTERS), "intro"}
    for template in JOB_TEMPLATES:
        nb = json.loads((REPO / "nbs" / f"{template}.ipynb").read_text())
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        tree = ast.parse("\n".join(line for line in code.splitlines() if not line.lstrip().startswith("%")))
        definitions = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert not definitions, f"nbs/{template}.ipynb defines {definitions}: move them into scfm_lib"
        n_lines = sum(1 for line in code.splitlines() if line.strip())
        assert n_lines <= 30, f"nbs/{template}.ipynb has {n_lines} code lines (at most 30)"
