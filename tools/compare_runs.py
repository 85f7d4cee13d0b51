"""Compare two runs of a profile: the same metrics, data and weights, or the differences.

A refactoring must not change results (same seed, same numbers on CPU). Run the profile at the
commit before and at the commit after, each in its own clone, then:

    python tools/compare_runs.py ../before/results/tiny results/tiny

It compares every metrics file under ``metrics/`` (its ``records`` and its data hashes), every
checkpoint's weights hash and ``summary.json`` without the fields that name the run itself (commit,
time, seconds, paths). It prints what it compared and every difference; the exit status is 1 if any.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scfm_lib.layout import META, ResultsLayout

#: Names inside a ``results/<profile>/`` folder (scfm_lib.layout).
_NAMES = ResultsLayout(Path())

#: Fields that say when, where, how fast and from which commit a run was made, not what it found.
RUN_FIELDS = {
    "provenance",
    "seconds",
    "created_utc",
    "git_commit",
    "git_diff_sha256",
    "commit",
    "machine",
    "generated_utc",
    "python",
    "versions",
    "wall_seconds",
    "cells_per_second",
}


def _strip(obj):
    """``obj`` without :data:`RUN_FIELDS`, at any depth."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in RUN_FIELDS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _comparable(path: Path) -> object:
    doc = json.loads(path.read_text())
    if path.parent.parent.name == _NAMES.metrics_dir.name:  # metrics/<kind>/<name>.json: what it found, on which data
        return {
            "records": doc.get("records"),
            "data_sha256": doc.get("provenance", {}).get("data_sha256"),
            "extra": _strip(doc.get("extra", {})),
        }
    if path.name == META:
        return {k: doc.get(k) for k in ("step", "weights_sha256", "train_sha256", "best_val_loss", "history")}
    return _strip(doc)


def compare(before: Path, after: Path) -> tuple[int, list[str]]:
    """(files compared, differences) between two ``results/<profile>/`` folders."""
    names = sorted(
        {p.relative_to(before) for p in before.rglob("*.json")} | {p.relative_to(after) for p in after.rglob("*.json")}
    )
    compared = (_NAMES.metrics_dir.name, _NAMES.checkpoints_dir.name)
    names = [n for n in names if n.parts[0] in compared or n.name == _NAMES.summary.name]
    differences = []
    for name in names:
        a, b = before / name, after / name
        if not (a.exists() and b.exists()):
            differences.append(f"{name}: only in {'before' if a.exists() else 'after'}")
        elif _comparable(a) != _comparable(b):
            differences.append(f"{name}: differs")
    return len(names), differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path, help="results/<profile>/ of the run before the change")
    parser.add_argument("after", type=Path, help="results/<profile>/ of the run after it")
    args = parser.parse_args(argv)
    for folder in (args.before, args.after):
        if not ResultsLayout(folder).metrics_dir.is_dir():
            parser.error(f"{folder} has no metrics/ folder: pass a run's results/<profile>/ folder")
    n, differences = compare(args.before, args.after)
    print(f"compared {n} files (metrics records and data hashes, checkpoint weights, summary)")
    for line in differences:
        print("  " + line)
    print("identical" if not differences else f"{len(differences)} differ")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
