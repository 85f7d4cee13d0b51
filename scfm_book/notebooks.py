"""A notebook job of the workflow: papermill, started again when the kernel dies before any cell
(``python -m scfm_book papermill ...``), then the executed notebook tidied into a page
(``python -m scfm_book tidy ...``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat

from scfm_lib.io import atomic_write

#: What papermill prints when the kernel exits before its first reply. Kernels started at the same
#: moment can race for the same ports (jupyter_client picks free ports, then the kernel binds them:
#: jupyter/jupyter_client#154), which is how two parallel workflow jobs once failed in CI.
KERNEL_START_FAILURE = "Kernel died before replying to kernel_info"


def run_papermill(args: list[str], attempts: int = 3, command: tuple[str, ...] | None = None) -> int:
    """Run ``papermill *args``, streaming its output; if the kernel died before running any cell
    (:data:`KERNEL_START_FAILURE`), start again, up to ``attempts`` times. Any other failure is
    returned at once: a notebook that fails in a cell is never rerun. Returns the exit code."""
    command = command or (sys.executable, "-m", "papermill")  # this interpreter's papermill
    for attempt in range(1, attempts + 1):
        process = subprocess.Popen([*command, *args], stderr=subprocess.PIPE, text=True)
        kernel_never_started = False
        for line in process.stderr:
            sys.stderr.write(line)
            kernel_never_started |= KERNEL_START_FAILURE in line
        if process.wait() == 0 or not kernel_never_started:
            return process.returncode
        if attempt < attempts:
            print(
                f"[scfm_book] the kernel died before it ran a cell (attempt {attempt} of {attempts}; "
                "parallel kernel starts can collide on ports); starting the notebook again",
                file=sys.stderr,
            )
    return process.returncode


#: Tags that already decide how a code cell shows on its page.
_VISIBILITY_TAGS = {"remove-cell", "remove-input", "hide-cell", "hide-input", "remove-output", "hide-output"}


def tidy_page(path: str | Path, chapter: bool = False) -> None:
    """Make an executed notebook read as a page: its outputs first, its code one click away.

    Every code cell whose tags do not already say how it shows collapses its source (``hide-input``),
    so no page opens on a wall of code. The parameters cell and papermill's injected-parameters cell
    collapse whole (``hide-cell``) on a run page, where the values are provenance; a ``chapter``
    drops them (``remove-cell``): it reads as a paper section, its only parameters are the profile
    and its folders, and the runs page lists every run's values."""
    parameters_tag = "remove-cell" if chapter else "hide-cell"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags):
            tags[:] = [t for t in tags if t not in _VISIBILITY_TAGS] + [parameters_tag]
        elif not _VISIBILITY_TAGS & set(tags):
            tags.append("hide-input")
    with atomic_write(path) as fh:
        nbformat.write(nb, fh)
