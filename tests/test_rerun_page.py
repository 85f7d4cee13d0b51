"""The commands the *Rerun it* and *Workshop* pages give work as written: every Snakemake command
parses and plans its jobs (a dry run, `-n`), every papermill command names parameters its notebook
has, every make command names a target (the workshop's exercise 3 is run in test_workflow.py)."""

import re
import shlex
import subprocess
import sys

import papermill as pm
import pytest
from conftest import REPO

PAGES = (REPO / "book" / "rerun.md", REPO / "book" / "workshop.md")  # the pages that give commands
NOT_RUN_HERE = ("profile=census",)  # needs internet, GPUs and a SLURM plugin (the page says so)


def commands(tool, pages=PAGES):
    """Every command line of the pages' bash blocks that starts with ``tool`` (continuations joined,
    comments dropped)."""
    found = []
    text = "\n".join(page.read_text() for page in pages)
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == tool:
                found.append(words)
    return found


def test_the_page_has_commands_of_both_kinds():
    rerun, workshop = PAGES
    assert len(commands("snakemake", [rerun])) >= 3 and len(commands("papermill", [rerun])) >= 3
    assert len(commands("make", [rerun])) >= 3
    assert commands("papermill", [workshop]) and commands("make", [workshop])


def papermill_case(words):
    return pytest.param(words, id=" ".join(words[1:])[:60])


@pytest.mark.parametrize("words", [papermill_case(w) for w in commands("papermill")])
def test_papermill_commands_name_existing_parameters(words):
    notebook = REPO / words[1]
    assert notebook.is_file(), f"{words[1]} does not exist"
    declared = set(pm.inspect_notebook(str(notebook)))
    given = [words[i + 1] for i, w in enumerate(words) if w == "-p"]
    assert given and set(given) <= declared, f"{sorted(set(given) - declared)} are not parameters of {words[1]}"


@pytest.mark.integration
@pytest.mark.parametrize(
    "words",
    [
        pytest.param(w, id=" ".join(w[1:])[:60])
        for w in commands("snakemake")
        if not any(skip in w for skip in NOT_RUN_HERE)
    ],
)
def test_snakemake_commands_plan_their_jobs(words, tmp_path, venv_env):
    """Run as written from a scratch folder, with ``-n`` put right after ``snakemake`` (every word
    after ``--config`` is a config pair, so appending it would not do)."""
    words = [w.replace("workflow/Snakefile", str(REPO / "workflow" / "Snakefile")) for w in words]
    cmd = [sys.executable, "-m", "snakemake", "-n", *words[1:]]
    run = subprocess.run(cmd, cwd=tmp_path, env=venv_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]


@pytest.mark.parametrize("words", [pytest.param(w, id=" ".join(w[1:])[:60]) for w in commands("make")])
def test_make_commands_name_existing_targets(words):
    """Each `make` line of the page is a target of the Makefile with variables it reads (`make -n`
    prints the recipe without running it)."""
    run = subprocess.run(["make", "-n", *words[1:]], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    for word in words[1:]:
        if "=" in word:
            assert f"$({word.split('=')[0]})" in (REPO / "Makefile").read_text(), f"the Makefile ignores {word}"
