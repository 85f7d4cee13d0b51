"""How much of a run is notebook overhead? Kernel start and the imports cell against the whole job,
per executed notebook of a finished profile run (prints; writes nothing).

    python benchmarks/notebook_overhead.py --profile tiny     # after `make book PROFILE=tiny`
    python benchmarks/notebook_overhead.py --dir book/quick   # the committed study's notebooks

Every workflow job is a papermill notebook in a fresh kernel (workflow/Snakefile), so each one pays
the kernel's start and the imports of the scientific stack (torch, anndata, scanpy, matplotlib,
seaborn) before any work. Papermill records when the notebook and each cell started and how long
each cell ran; this script reads those records:

- kernel start: the notebook's start to its first cell's start;
- imports: the longest of the first four code cells (the parameters cells take milliseconds; the
  cell after them imports the stack and loads the profile);
- work: everything else.

The figures are those of the machine and the load the run had: two jobs run at a time on 2 cores,
so each job's imports compete with another job's work.
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import datetime
from pathlib import Path


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def notebook_overhead(path: Path) -> dict | None:
    """Seconds of one executed notebook: total, kernel start, imports; None when it was not run by papermill."""
    notebook = json.loads(path.read_text())
    record = notebook.get("metadata", {}).get("papermill", {})
    if not record.get("start_time") or record.get("duration") is None:
        return None
    cells = [
        cell["metadata"]["papermill"]
        for cell in notebook["cells"]
        if cell["cell_type"] == "code" and cell.get("metadata", {}).get("papermill", {}).get("start_time")
    ]
    if not cells:
        return None
    kernel = (_time(cells[0]["start_time"]) - _time(record["start_time"])).total_seconds()
    imports = max(cell.get("duration") or 0.0 for cell in cells[:4])
    return {"notebook": path.name, "total": record["duration"], "kernel": kernel, "imports": imports}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--profile", help="a finished run's site: _site/<profile>/book/<profile>/")
    where.add_argument("--dir", type=Path, help="any folder of executed notebooks (searched recursively)")
    args = parser.parse_args()
    folder = args.dir or Path("_site") / args.profile / "book" / args.profile
    if not folder.is_dir():
        raise SystemExit(
            f"{folder} does not exist: run the profile first (make book PROFILE={args.profile}) or pass --dir"
        )
    rows = [row for path in sorted(folder.rglob("*.ipynb")) if (row := notebook_overhead(path))]
    if not rows:
        raise SystemExit(f"no notebook under {folder} carries papermill's timing records")
    print(f"{'notebook':48s} {'total s':>8s} {'kernel s':>9s} {'imports s':>10s}")
    for row in rows:
        print(f"{row['notebook']:48s} {row['total']:8.1f} {row['kernel']:9.1f} {row['imports']:10.1f}")
    total = sum(row["total"] for row in rows)
    overhead = sum(row["kernel"] + row["imports"] for row in rows)
    print(
        f"{len(rows)} notebooks: median total {statistics.median(r['total'] for r in rows):.1f} s, "
        f"median kernel start {statistics.median(r['kernel'] for r in rows):.1f} s, "
        f"median imports {statistics.median(r['imports'] for r in rows):.1f} s; "
        f"kernel start + imports {overhead:.0f} of {total:.0f} job-seconds ({overhead / total:.0%})"
    )


if __name__ == "__main__":
    main()
