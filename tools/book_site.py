"""Where a profile's run writes its book, and how a finished run becomes the committed book.

Running a profile never modifies tracked files. ``make book PROFILE=p`` runs the workflow with
``_site/<p>/`` as its working directory (``snakemake --directory``), so the executed notebooks
(``_site/<p>/book/<p>/``), the table of contents, the generated pages and the HTML
(``_site/<p>/_build/html/``) are that profile's own. This module prepares that folder:

- ``_site/<p>/results`` links to the repository's ``results/``, so checkpoints and metrics stay in
  ``results/<p>/`` where every page and command says they are;
- the book's configuration and static pages are copied in (the generated ones, the parameter tables
  and the performance page, are written there by the workflow);
- ``book/_static`` and the committed books the profile lists (``book_includes``) are linked, read only;
- ``tools`` is linked too: ``_config.yml`` loads the book's Sphinx extension from ``tools/``
  (tools/sphinx_table_csv.py), a path relative to the folder of ``_config.yml``.

The committed book (``book/<p>/``, and for :data:`COMMITTED_PROFILE` the root ``_toc.yml`` and the
generated pages) changes only through ``make publish PROFILE=p``, which copies a finished run in.

    python tools/book_site.py prepare --profile tiny
    python tools/book_site.py publish --profile quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from scfm_lib.layout import RESULTS_ROOT

REPO = Path(__file__).resolve().parent.parent
#: The profile whose run is the repository's own book: its table of contents is the root ``_toc.yml``.
COMMITTED_PROFILE = "quick"
#: Pages of ``book/`` the workflow generates (rules parameter_tables and performance_page).
GENERATED_PAGES = ("parameters.md", "performance.md")


def site_root(profile: str, repo: str | Path = REPO) -> Path:
    """The working directory of ``profile``'s run: ``_site/<profile>/`` (ignored by git)."""
    return Path(repo) / "_site" / profile


def _link(target: Path, link: Path) -> None:
    """``link`` -> ``target`` as a relative symlink, replacing an older link (never a real folder)."""
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise FileExistsError(f"{link} exists and is not a link; delete it (it is generated) and run again")
    link.symlink_to(os.path.relpath(target, link.parent))


def prepare(profile: str, repo: str | Path = REPO, includes: list[str] | None = None) -> Path:
    """Create or refresh ``_site/<profile>/`` (see the module docstring). Writes nothing outside it
    except an empty ``results/`` folder. ``includes``: the committed books to list, by default the
    profile's ``book_includes``. Returns the folder."""
    repo = Path(repo)
    if includes is None:
        from scfm_lib.config import load_profile

        includes = list(load_profile(profile, repo / "profiles").book_includes)
    site = site_root(profile, repo)
    (site / "book").mkdir(parents=True, exist_ok=True)
    (repo / RESULTS_ROOT).mkdir(exist_ok=True)
    _link(repo / RESULTS_ROOT, site / RESULTS_ROOT)
    shutil.copy2(repo / "_config.yml", site / "_config.yml")
    for page in sorted((repo / "book").glob("*.md")):
        if page.name not in GENERATED_PAGES:
            shutil.copy2(page, site / "book" / page.name)
    _link(repo / "book" / "_static", site / "book" / "_static")
    _link(repo / "tools", site / "tools")  # the local Sphinx extension _config.yml loads
    for name in includes:
        if name != profile and (repo / "book" / name / "intro.ipynb").exists():
            _link(repo / "book" / name, site / "book" / name)
    return site


def publish(profile: str, repo: str | Path = REPO) -> list[Path]:
    """Copy a finished run of ``profile`` into the committed book: ``book/<profile>/`` is replaced
    whole (a staged copy swapped in, so an interrupted publish leaves the old book), and for
    :data:`COMMITTED_PROFILE` the root ``_toc.yml`` and the generated pages too. Refuses a run whose
    book was not built. Returns the paths written."""
    repo = Path(repo)
    site = site_root(profile, repo)
    if not (site / "_build" / "html" / "index.html").exists() or not (site / "book" / profile).is_dir():
        raise FileNotFoundError(
            f"{site} holds no finished run of the profile {profile!r} (its book was never "
            f"built); run `make book PROFILE={profile}` first"
        )
    target = repo / "book" / profile
    staged, old = target.with_name(f".{profile}.publishing"), target.with_name(f".{profile}.old")
    for leftover in (staged, old):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(site / "book" / profile, staged)
    if target.exists():
        target.rename(old)
    staged.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    written = [target]
    if profile == COMMITTED_PROFILE:
        from scfm_lib.io import atomic_path

        for name in ("_toc.yml", *(f"book/{page}" for page in GENERATED_PAGES)):
            with atomic_path(repo / name) as tmp:
                shutil.copy2(site / name, tmp)
            written.append(repo / name)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python tools/book_site.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("prepare", "publish"))
    parser.add_argument("--profile", required=True)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        print(prepare(args.profile))
    else:
        try:
            for path in publish(args.profile):
                print(f"published {path.relative_to(REPO)}")
        except FileNotFoundError as err:
            sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
