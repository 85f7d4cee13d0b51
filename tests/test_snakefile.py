"""The workflow's job commands, read from a Snakemake dry run (no job runs)."""

import re
import subprocess
import sys

from conftest import REPO


def test_every_notebook_job_caps_numba_at_its_threads(tmp_path, venv_env):
    # Snakemake caps OpenMP/OpenBLAS/MKL threads per job but not numba's: without the cap two
    # evaluation jobs on 2 cores each start 2 numba threads and take twice as long.
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "workflow" / "Snakefile"),
        "--cores",
        "2",
        "-n",
        "-p",
        "--config",
        "profile=tiny",
    ]
    run = subprocess.run(cmd, cwd=tmp_path, env=venv_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    jobs = []
    for block in (run.stdout + run.stderr).split("\nrule ")[1:]:  # one job per block
        if "scfm_book papermill" in block or "python -m scfm_lib.study.scib" in block:
            threads = re.search(r"threads: (\d+)", block)  # printed only when above 1
            jobs.append((block.split(":")[0], threads.group(1) if threads else "1", block))
    assert len(jobs) > 10, (run.stdout + run.stderr)[-3000:]
    assert any(threads == "2" for _, threads, _ in jobs)  # the scIB job
    for rule, threads, block in jobs:
        assert f"export NUMBA_NUM_THREADS={threads} &&" in block, f"rule {rule}: {block[-400:]}"
        if "scfm_book papermill" not in block:
            continue  # a study step, no notebook
        # chapters read as paper sections: no parameter toggles; run pages keep them one click away
        is_chapter = rule.endswith("_chapter") or rule in ("intro", "data")
        assert ("scfm_book tidy" in block) and ((" --chapter " in block) == is_chapter), f"rule {rule}"


def test_pages_collapse_code_and_chapters_drop_their_parameter_cells(tmp_path):
    import nbformat

    from scfm_book import tidy_page

    def notebook():
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell("profile = 'quick'", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("profile = 'real'", metadata={"tags": ["injected-parameters"]}),
            nbformat.v4.new_code_cell("import numpy"),
            nbformat.v4.new_code_cell("fig", metadata={"tags": ["remove-input"]}),
            nbformat.v4.new_markdown_cell("text"),
        ]
        path = tmp_path / f"nb{len(list(tmp_path.iterdir()))}.ipynb"
        nbformat.write(nb, path)
        return path

    run_page, chapter = notebook(), notebook()
    tidy_page(run_page)
    tidy_page(chapter, chapter=True)
    tags = {
        name: [c.metadata.get("tags", []) for c in nbformat.read(path, as_version=4).cells]
        for name, path in (("run", run_page), ("chapter", chapter))
    }
    assert tags["run"] == [
        ["parameters", "hide-cell"],
        ["injected-parameters", "hide-cell"],
        ["hide-input"],
        ["remove-input"],
        [],
    ]
    assert tags["chapter"] == [
        ["parameters", "remove-cell"],
        ["injected-parameters", "remove-cell"],
        ["hide-input"],
        ["remove-input"],
        [],
    ]
    tidy_page(chapter, chapter=True)  # tidying twice changes nothing
    assert [c.metadata.get("tags", []) for c in nbformat.read(chapter, as_version=4).cells] == tags["chapter"]
