"""Generated pages: the table of contents follows the profile; parameter tables follow the notebooks."""

import nbformat
import pytest
import yaml

import scfm_book as book
from scfm_lib.config import load_profile


def _two_family_sweep_profile():
    """The tiny profile with both families and a budget sweep: every kind of run page."""
    profile = load_profile("tiny")
    profile.families = ["scgpt", "geneformer"]
    profile.evaluate.label_budgets, profile.evaluate.step_budgets = [0.1, 1.0], [5, 20]
    return profile


def test_toc_lists_every_chapter_and_run(tmp_path):
    profile = _two_family_sweep_profile()
    path = book.write_toc(profile, tmp_path)
    toc = yaml.safe_load(path.read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    runs = [s["file"] for s in toc["parts"][-1]["chapters"][0]["sections"]]
    assert toc["root"] == "book/tiny/intro"
    assert [f"book/tiny/{name}" for name, _ in book.CHAPTERS] == files[: len(book.CHAPTERS)]
    # pretrain, evaluate, sweep per run + baselines + the per-family controls
    assert len(runs) == 3 * len(profile.runs()) + 1 + len(book.control_templates(profile))
    assert "book/tiny/runs/negative_control_scgpt" in runs and "book/tiny/runs/positive_control_geneformer" in runs
    assert "book/tiny/runs/evaluate_geneformer_f0.1_s1" in runs
    assert "book/tiny/runs/sweep_geneformer_f0.1_s1" in runs


def test_profile_without_a_sweep_has_no_budget_chapter():
    profile = load_profile("tiny")  # the workshop profile runs no sweep
    assert not profile.evaluate.has_sweep
    toc = book.toc(profile)
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert "book/tiny/budgets" not in files and "book/tiny/recommendations" in files
    assert book.run_templates(profile) == ("pretrain", "evaluate")
    assert "book/tiny/budgets" in [
        c["file"] for part in book.toc(_two_family_sweep_profile())["parts"] for c in part["chapters"]
    ]


def test_committed_toc_is_the_quick_profile(repo):
    committed = yaml.safe_load((repo / "_toc.yml").read_text())
    quick = load_profile("quick")
    assert committed == book.toc(quick, book.included_profiles(quick, repo))


def test_included_profile_gets_its_chapters_and_runs(tmp_path):
    tiny, quick = load_profile("tiny"), load_profile("quick")
    tiny.book_includes = ["quick"]
    assert book.included_profiles(tiny, tmp_path) == []  # not run yet: left out
    (tmp_path / "book" / "quick").mkdir(parents=True)
    (tmp_path / "book" / "quick" / "intro.ipynb").write_text("{}")
    toc = yaml.safe_load(book.write_toc(tiny, tmp_path).read_text())
    assert toc["root"] == "book/tiny/intro"
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert "book/quick/intro" in files and "book/quick/masking" in files
    appendix = toc["parts"][-1]["chapters"]
    assert [c["file"] for c in appendix] == ["book/tiny/runs", "book/quick/runs"]
    assert len(appendix[1]["sections"]) == len(book.run_templates(quick)) * len(quick.runs()) + 1 + len(
        book.control_templates(quick)
    )


def test_every_notebook_template_has_documented_typed_parameters(repo):
    templates = sorted((repo / "nbs").glob("*.ipynb"))
    assert {p.stem for p in templates} >= {"data", "pretrain", "evaluate", "baselines", "intro", "masking"}
    for path in templates:
        params = book.notebook_parameters(path)
        names = [p["name"] for p in params]
        assert names[:3] == ["profile", "profiles_dir", "results_dir"], path
        nb = nbformat.read(path, as_version=4)
        assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code"), (
            f"{path}: outputs not stripped"
        )
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert "parameters" in first_code.metadata.get("tags", []), f"{path}: parameters must be the first code cell"


def test_papermill_reads_every_parameter_of_every_template(repo, caplog):
    """papermill parses each parameters cell as the library does: the same names, and no "Unable to
    parse line" warning, so a correctly spelled -p option never prints the words a typo prints."""
    import logging

    import papermill as pm

    for path in sorted((repo / "nbs").glob("*.ipynb")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="papermill"):
            seen = list(pm.inspect_notebook(str(path)))
        assert not [r.getMessage() for r in caplog.records], path.name
        assert seen == [p["name"] for p in book.notebook_parameters(path)], path.name


def test_parameter_tables(repo):
    text = book.parameter_tables(repo / "nbs")
    assert "### `nbs/pretrain.ipynb`" in text
    assert '| `run` | `str` | `"scgpt_f0.1_s0"` |' in text  # the grid point, one parameter


def test_parameter_line_without_comment_is_refused(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("seed: int = 0")])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, tmp_path / "x.ipynb")
    with pytest.raises(ValueError, match="# what it is"):
        book.notebook_parameters(tmp_path / "x.ipynb")


def test_every_metrics_file_carries_provenance_and_the_runs_page_lists_it(tmp_path, repo):
    """What was tried, on record: each job's metrics JSON holds its parameters, data hashes, package
    versions and git commit, and the appendix page lists every job with those fields."""
    import json
    import subprocess

    from scfm_lib import io, results

    jobs = [
        ("data", "datasets", {"profile": "tiny"}, {"corpus": "a" * 64, "downstream": "b" * 64}),
        ("pretrain", "scgpt_f0.1_s0", {"run": "scgpt_f0.1_s0", "max_steps": None}, {"corpus": "a" * 64}),
        ("evaluate", "scgpt_f0.1_s0", {"run": "scgpt_f0.1_s0", "finetune_max_steps": 4}, {"downstream": "b" * 64}),
    ]
    for kind, name, parameters, hashes in jobs:
        results.write_metrics(
            results.metrics_path(tmp_path, kind, name),
            kind=kind,
            name=name,
            run={},
            records=[{"mode": "m", "metric": "x", "value": 1.0}],
            parameters=parameters,
            data_hashes=hashes,
        )
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    for kind, name, parameters, hashes in jobs:
        prov = json.loads(results.metrics_path(tmp_path, kind, name).read_text())["provenance"]
        assert prov["parameters"] == parameters and prov["data_sha256"] == hashes
        assert set(prov["versions"]) == set(io.RECORDED_PACKAGES)
        assert prov["versions"]["torch"] == torch_version() and prov["python"]
        assert prov["git_commit"].startswith(head) and prov["created_utc"]

    page = book.runs_page(load_profile("tiny"), tmp_path)
    header = next(line for line in page.splitlines() if line.startswith("| job"))
    assert all(column in header for column in ("commit", "data sha256", "versions", "parameters"))
    rows = [line for line in page.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == len(jobs)
    for kind, name, parameters, hashes in jobs:
        row = next(r for r in rows if r.startswith(f"| {kind} | `{name}`"))
        assert f"`{head[:12]}" in row  # the commit
        assert all(f"{k}:{v[:12]}" in row for k, v in hashes.items())  # the data hashes
        assert f"torch {torch_version()}" in row and "numpy " in row and "python " in row  # the versions
        assert json.dumps(parameters, sort_keys=True) in row  # the parameters


def torch_version():
    from importlib import metadata

    return metadata.version("torch")


def test_performance_page_is_built_from_the_benchmark_results(tmp_path):
    import json

    machine = {"cpu": "Test CPU", "cores": 2, "torch_threads": 2, "torch": "2.13.0", "python": "3.11"}
    row = {
        "family": "geneformer",
        "size": "base",
        "d_model": 256,
        "n_layers": 4,
        "context": 256,
        "vocab": 20003,
        "batch": 32,
        "cells_per_s": 52.5,
        "tokens_per_s": 9400.0,
        "tflops": 0.2,
        "mfu_bf16": 0.531,
        "speedup_vs_peer_fp32": 5.04,
        "speedup_vs_peer_bf16": 3.9,
        "speedup_vs_peer_bf16_median": 3.6,
    }
    (tmp_path / "train_throughput.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "created_utc": "2026-11-26T00:00:00Z",
                "peaks_flops": {"bf16": 4e11, "fp32": 1.8e11},
                "rows": [row],
                "encoder": {"base": {"seconds": 1.0, "tflops": 0.2, "mfu_bf16": 0.507}},
                "compiled": [],
            }
        )
    )
    (tmp_path / "attention.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "created_utc": "2026-11-26T00:00:00Z",
                "shape": {"batch": 32, "heads": 8, "length": 200, "head_size": 32},
                "milliseconds": {"sdpa_fp32": 40.0, "sdpa_bf16": 60.0},
            }
        )
    )
    page = book.performance_page(tmp_path)
    assert "| geneformer | base (256 x 4) | 52.5 | 9,400 | 0.200 | 53.1% | 5.0x | 3.9x | 3.6x |" in page
    assert "| sdpa_bf16 | 60.0 | 1.50x |" in page
    assert "runs at 5.0x at D = 256 the peer's fp32 cells/s and at 3.6x at D = 256 its bf16" in page
    assert "51% at base" in page
    assert "on earlier machines" not in page  # no earlier/ folder: no table

    # a file kept from an earlier machine (written before the instruction sets were recorded) gets its row
    (tmp_path / "earlier").mkdir()
    earlier = {**json.loads((tmp_path / "train_throughput.json").read_text()), "created_utc": "2026-11-01T00:00:00Z"}
    earlier["rows"] = [{**row, "peer_bf16_cells_per_s": 13.5}, {**row, "size": "small"}]
    (tmp_path / "earlier" / "train_throughput_2026-11-01.json").write_text(json.dumps(earlier))
    page = book.performance_page(tmp_path)
    assert "| 2026-11-01 | Test CPU | not recorded | 0.40 | geneformer | 52.5 | 13.5 | 3.9x | 3.6x |" in page
    assert page.count("| 2026-11-01 |") == 1  # base size only
    assert "## Memory as the corpus grows" not in page  # no memory.json: no section
    assert "No benchmark results yet" in book.performance_page(tmp_path / "absent")


FAKE_PAPERMILL = """
import sys
from pathlib import Path
calls = Path(sys.argv[1])
calls.write_text(calls.read_text() + "x" if calls.exists() else "x")
message = sys.argv[2] if len(calls.read_text()) <= int(sys.argv[3]) else ""
if message:
    print(message, file=sys.stderr)
    sys.exit(1)
"""


@pytest.mark.parametrize(
    "message, failures, exit_code, calls",
    [
        (book.KERNEL_START_FAILURE, 1, 0, 2),  # the kernel died at start once: started again, succeeds
        (book.KERNEL_START_FAILURE, 5, 1, 3),  # it keeps dying: gives up after 3 attempts
        ("NameError: name 'x' is not defined", 1, 1, 1),  # a cell failed: never rerun
    ],
)
def test_papermill_is_started_again_only_when_the_kernel_died_at_start(tmp_path, message, failures, exit_code, calls):
    import sys

    script, counter = tmp_path / "fake_papermill.py", tmp_path / "calls"
    script.write_text(FAKE_PAPERMILL)
    code = book.run_papermill([str(counter), message, str(failures)], command=(sys.executable, str(script)))
    assert code == exit_code and len(counter.read_text()) == calls


def test_result_tables_get_the_books_stylesheet(repo):
    """Wide result tables scroll inside their cell instead of being cut at the page edge; printed
    lines wrap instead of hiding their end."""
    config = yaml.safe_load((repo / "_config.yml").read_text())["sphinx"]["config"]
    assert "scfm.css" in config["html_css_files"]
    css = (repo / "book" / "_static" / "scfm.css").read_text()
    assert "overflow-x: auto" in css and "div.cell_output table" in css
    assert "div.cell_output .output pre" in css and "white-space: pre-wrap" in css
