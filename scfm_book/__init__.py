"""scfm_book: the build tooling of the study's book, outside the science package ``scfm_lib``.

The workflow (workflow/Snakefile) calls it as ``python -m scfm_book ...``; its rooms:

- ``toc``       the chapters and run pages of a profile and the ``_toc.yml`` written from it
- ``params``    the parameter tables of the notebook templates (``book/parameters.md``)
- ``notebooks`` a notebook job: papermill, started again when the kernel dies before any cell,
                and the executed notebook tidied into a page
- ``pages``     the runs page of a profile and the Performance page (from ``benchmarks/results/``)
- ``cli``       the command line (``python -m scfm_book toc --profile quick``)

It reads ``scfm_lib`` (profiles, provenance, atomic writes); ``scfm_lib`` never imports it.
"""

from scfm_book.cli import main
from scfm_book.notebooks import _VISIBILITY_TAGS, KERNEL_START_FAILURE, run_papermill, tidy_page
from scfm_book.pages import BENCHMARK_RESULTS, performance_page, runs_page, write_runs_page
from scfm_book.params import _PARAM_LINE, notebook_parameters, parameter_tables, write_parameter_tables
from scfm_book.toc import (
    CHAPTERS,
    CONTROL_TEMPLATES,
    GUIDE_PAGES,
    SWEEP_CHAPTERS,
    _run_sections,
    chapters,
    control_templates,
    included_profiles,
    run_templates,
    toc,
    write_toc,
)
