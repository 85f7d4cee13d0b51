"""Metrics files of a profile and the tidy table every chapter reads.

Where each file of ``results/<profile>/`` lives (data, checkpoints, embeddings, metrics, summary) is
:mod:`scfm_lib.layout`'s to say; this module writes and reads the metrics files,
``metrics/<kind>/<name>.json``, one per job: records + provenance.

Every metrics file has the same shape::

    {"kind": "evaluate", "name": "scgpt_f0.1_s0",
     "run": {"fraction": 0.1, "seed": 0, "n_pretrain_cells": 1950},
     "records": [{"mode": "finetune", "metric": "macro_f1", "value": 0.81}, ...],
     "extra": {...}, "provenance": {...}}

so :func:`load_records` can stack all of them into one tidy DataFrame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scfm_lib.io import provenance, read_json, write_json
from scfm_lib.layout import ResultsLayout


def metrics_path(results_dir: str | Path, kind: str, name: str) -> Path:
    """The metrics file of one job (:meth:`scfm_lib.layout.ResultsLayout.metrics`).

    Parameters
    ----------
    results_dir
        The profile's results folder, ``results/<profile>``.
    kind
        The kind of job (``evaluate``, ``scib``, ...).
    name
        The job's name within its kind (a run id, a family, ``datasets``).

    Returns
    -------
    Path
        ``<results_dir>/metrics/<kind>/<name>.json``.
    """
    return ResultsLayout(results_dir).metrics(kind, name)


def write_metrics(
    path: str | Path,
    *,
    kind: str,
    name: str,
    run: dict,
    records: list[dict],
    parameters: dict,
    data_hashes: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Write one job's metrics with its provenance, atomically; returns the payload."""
    for rec in records:
        missing = {"mode", "metric", "value"} - set(rec)
        if missing:
            raise ValueError(f"metric record {rec} lacks {sorted(missing)}")
        if rec["value"] is not None and not np.isfinite(rec["value"]):
            raise ValueError(
                f"metric record {rec} is not finite: a NaN result means a failed "
                "evaluation; fix the cause instead of recording it"
            )
    payload = {
        "kind": kind,
        "name": name,
        "run": run,
        "records": records,
        "extra": extra or {},
        "provenance": provenance(parameters, data_hashes),
    }
    write_json(path, payload)
    return payload


def load_payloads(results_dir: str | Path, kind: str) -> list[dict]:
    """The metrics files of one kind of job, as dicts, in name order."""
    return [read_json(p) for p in ResultsLayout(results_dir).metrics_files(kind)]


def load_records(
    results_dir: str | Path, kinds: tuple[str, ...] | None = None, family: str | None = None
) -> pd.DataFrame:
    """All metric records of a profile as one tidy table; with ``family``, the runs of that model
    family only (jobs without a family, such as the baselines, are kept).

    Columns: kind, name, family, mode, metric, value, fraction, seed, n_cells (pretraining cells;
    0 for the random-init control, NaN for baselines that involve no pretraining) and any extra
    keys of the records.
    """
    rows = []
    for path in ResultsLayout(results_dir).metrics_files():
        payload = read_json(path)
        if kinds and payload["kind"] not in kinds:
            continue
        run = payload.get("run", {})
        if family is not None and run.get("family", family) != family:
            continue
        for rec in payload["records"]:
            rows.append(
                {
                    "kind": payload["kind"],
                    "name": payload["name"],
                    "family": run.get("family"),
                    "fraction": run.get("fraction", np.nan),
                    "seed": run.get("seed", np.nan),
                    "n_cells": run.get("n_pretrain_cells", np.nan),
                    **rec,
                }
            )
    if not rows:
        raise FileNotFoundError(
            f"no metrics under {ResultsLayout(results_dir).metrics_dir}: run the workflow "
            "first (make book, or snakemake --config profile=<name>)"
        )
    return pd.DataFrame(rows)


def load_runs(results_dir: str | Path) -> pd.DataFrame:
    """One row per job with its provenance: the record of what was run, for the appendix."""
    rows = []
    for path in ResultsLayout(results_dir).metrics_files():
        payload = read_json(path)
        prov = payload["provenance"]
        rows.append(
            {
                "kind": payload["kind"],
                "name": payload["name"],
                "git_commit": prov.get("git_commit"),
                "git_diff_sha256": prov.get("git_diff_sha256"),
                "created_utc": prov.get("created_utc"),
                "data_sha256": ", ".join(f"{k}:{v[:12]}" for k, v in prov.get("data_sha256", {}).items()),
                "torch": prov.get("versions", {}).get("torch"),
                "versions": {"python": prov.get("python"), **prov.get("versions", {})},
                "parameters": prov.get("parameters", {}),
            }
        )
    return pd.DataFrame(rows)
