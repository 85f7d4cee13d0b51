"""Generated pages of the book: the table of contents, parameter tables and the run record.

The table of contents is written from the profile, so one config drives both the workflow's
runs and the book's pages (``python -m scfm_book toc --profile quick``).
"""

from __future__ import annotations

import argparse
import sys

from scfm_book.notebooks import run_papermill, tidy_page
from scfm_book.pages import BENCHMARK_RESULTS, performance_page, write_runs_page
from scfm_book.params import write_parameter_tables
from scfm_book.toc import write_toc
from scfm_lib.config import load_profile
from scfm_lib.io import atomic_write
from scfm_lib.layout import ResultsLayout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scfm_book", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("toc", "runs"):
        p = sub.add_parser(name)
        p.add_argument("--profile", default="quick")
        p.add_argument("--profiles-dir", default=None)
        p.add_argument("--root", default=".")
    p = sub.add_parser("tidy", help="collapse an executed notebook's code and parameters (tidy_page)")
    p.add_argument("notebook")
    p.add_argument("--chapter", action="store_true", help="a chapter: remove the parameter cells")
    sub.add_parser(
        "papermill", help="papermill ARGS..., started again if the kernel dies before any cell", add_help=False
    )
    p = sub.add_parser("perf")
    p.add_argument("--results", default=str(BENCHMARK_RESULTS))
    p.add_argument("--out", default="book/performance.md")
    p = sub.add_parser("params")
    p.add_argument("--nbs", default="nbs")
    p.add_argument("--out", default="book/parameters.md")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["papermill"]:  # everything after it is papermill's, --help included
        sys.exit(run_papermill(argv[1:]))
    args = parser.parse_args(argv)
    if args.command == "tidy":
        tidy_page(args.notebook, chapter=args.chapter)
        return
    if args.command == "perf":
        with atomic_write(args.out) as fh:
            fh.write(performance_page(args.results))
        print(args.out)
        return
    if args.command == "params":
        print(write_parameter_tables(args.nbs, args.out))
        return
    profile = load_profile(args.profile, args.profiles_dir)
    if args.command == "toc":
        print(write_toc(profile, args.root, args.profiles_dir))
    else:
        print(write_runs_page(profile, ResultsLayout.of_profile(profile.name, args.root).results_dir, args.root))
