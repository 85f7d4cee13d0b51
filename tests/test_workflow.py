"""End to end: the tiny profile through Snakemake, papermill and the Jupyter Book build.

These tests run real notebooks in real kernels, so they take minutes, not seconds.
"""
import json
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def _book_root(repo, tmp_path):
    """A working directory holding what the book build needs besides generated files."""
    root = tmp_path / "study"
    (root / "book").mkdir(parents=True)
    shutil.copy(repo / "_config.yml", root)
    for page in (repo / "book").glob("*.md"):
        shutil.copy(page, root / "book")
    return root


def _snakemake(repo, root, env, *extra, profile="tiny", profiles_dir=None):
    config = [f"profile={profile}"] + ([f"profiles_dir={profiles_dir}"] if profiles_dir else [])
    # Targets and options before --config, which takes every following word as a name=value pair.
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "workflow" / "Snakefile"), "--cores", "2",
           *extra, "--config", *config]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=1500)


def test_tiny_profile_builds_the_book(repo, tmp_path, venv_env):
    root = _book_root(repo, tmp_path)
    run = _snakemake(repo, root, venv_env)
    assert run.returncode == 0, run.stderr[-5000:]

    html = root / "_build" / "html"
    pages = {name: (html / "book" / "tiny" / f"{name}.html") for name in
             ["intro", "data", "pretraining", "finetuning", "frozen_zeroshot", "masking"]}
    for name, page in pages.items():
        assert page.exists(), f"{name} page missing"
    for name in ["intro", "data", "pretraining", "finetuning", "frozen_zeroshot", "masking"]:
        text = pages[name].read_text()
        assert re.search(r'<img[^>]+src="[^"]+\.png"', text), f"{name} page shows no figure"
        assert "Traceback" not in text, f"{name} page shows an exception"
    intro = pages["intro"].read_text()
    assert "masking index" in intro.lower()
    assert (html / "book" / "rerun.html").exists() and (html / "book" / "workshop.html").exists()
    assert (html / "book" / "tiny" / "runs" / "evaluate_f0.1_s1.html").exists()
    assert "fraction" in (html / "book" / "rerun.html").read_text()  # generated parameter tables

    # Every job wrote its metrics with provenance beside them.
    metrics = sorted((root / "results" / "tiny" / "metrics").glob("*/*.json"))
    assert len(metrics) == 1 + 3 * 6 + 1  # data, (pretrain, evaluate, scib) x runs, baselines
    assert not list((root / "results" / "tiny" / "executing").glob("*.ipynb"))

    # Rerunning skips finished jobs.
    dry = _snakemake(repo, root, venv_env, "-n")
    assert dry.returncode == 0
    assert "Nothing to be done" in dry.stdout + dry.stderr

    # Same seed, same metrics: rerun one pretraining + evaluation job from scratch.
    evaluated = root / "results" / "tiny" / "metrics" / "evaluate" / "f1.0_s0.json"
    before = json.loads(evaluated.read_text())
    shutil.rmtree(root / "results" / "tiny" / "checkpoints" / "f1.0_s0")
    again = _snakemake(repo, root, venv_env, str(evaluated.relative_to(root)), "--forcerun", "pretrain", "evaluate")
    assert again.returncode == 0, again.stderr[-3000:]
    after = json.loads(evaluated.read_text())
    assert after["records"] == before["records"]
    assert after["provenance"]["created_utc"] >= before["provenance"]["created_utc"]


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


@pytest.mark.parametrize("args, message", [
    (["-p", "fracton", "0.5"], "unknown notebook parameter(s) ['fracton']"),
    (["-p", "fraction", "1.5"], "outside [0.0, 1.0]"),
    (["-p", "seed", "zero"], "parameter 'seed' must be"),
])
def test_notebooks_validate_their_parameters(repo, tmp_path, venv_env, args, message):
    run = subprocess.run([sys.executable, "-m", "papermill", str(repo / "nbs" / "pretrain.ipynb"),
                          str(tmp_path / "out.ipynb"), "-k", "python3", *args],
                         cwd=tmp_path, env=venv_env, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert message in run.stdout + run.stderr
