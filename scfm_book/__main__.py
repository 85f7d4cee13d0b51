"""``python -m scfm_book toc|runs|params|perf|tidy|papermill ...`` (see :mod:`scfm_book.cli`)."""

from scfm_book.cli import main

main()
