"""The commands the *Rerun it* page gives work as written: every Snakemake command parses and
plans its jobs (a dry run, `-n`), every papermill command names parameters its notebook has."""
import re
import shlex
import subprocess
import sys

import papermill as pm
import pytest

from conftest import REPO

PAGE = REPO / "book" / "rerun.md"
NOT_RUN_HERE = ("profile=census",)   # needs internet, GPUs and a SLURM plugin (the page says so)


def commands(tool):
    """Every command line of the page's bash blocks that starts with ``tool`` (continuations joined,
    comments dropped)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == tool:
                found.append(words)
    return found


def test_the_page_has_commands_of_both_kinds():
    assert len(commands("snakemake")) >= 3 and len(commands("papermill")) >= 3


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
@pytest.mark.parametrize("words", [pytest.param(w, id=" ".join(w[1:])[:60]) for w in commands("snakemake")
                                   if not any(skip in w for skip in NOT_RUN_HERE)])
def test_snakemake_commands_plan_their_jobs(words, tmp_path, venv_env):
    """Run as written from a scratch folder, with ``-n`` put right after ``snakemake`` (every word
    after ``--config`` is a config pair, so appending it would not do)."""
    words = [w.replace("workflow/Snakefile", str(REPO / "workflow" / "Snakefile")) for w in words]
    cmd = [sys.executable, "-m", "snakemake", "-n", *words[1:]]
    run = subprocess.run(cmd, cwd=tmp_path, env=venv_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
