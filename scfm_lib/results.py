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
    """Write one job's metrics with its provenance, atomically; returns the payload.

    Parameters
    ----------
    path
        The metrics file, usually :func:`metrics_path` (``metrics/<kind>/<name>.json``).
    kind
        The kind of job (``evaluate``, ``pretrain``, ``scib``, ...).
    name
        The job's name within its kind (a run id, a family, ``datasets``).
    run
        What was run: ``family``, ``fraction``, ``seed``, ``n_pretrain_cells``, ... (the columns
        :func:`load_records` gives every record of the job).
    records
        The job's metric records, each with at least ``mode``, ``metric`` and ``value`` (a finite
        number, or None for a value that does not apply).
    parameters
        The parameters the job ran with (stored in the provenance).
    data_hashes
        Name -> sha256 of the data it read (stored in the provenance); None for none.
    extra
        Anything else the job reports (stored as ``extra``; ``{}`` for None).

    Returns
    -------
    dict
        The payload written: ``kind``, ``name``, ``run``, ``records``, ``extra`` and ``provenance``
        (:func:`scfm_lib.io.provenance`).

    Raises
    ------
    ValueError
        When a record lacks ``mode``, ``metric`` or ``value``, or its value is not finite (NaN or
        infinite: a failed evaluation, not a result). Nothing is written then.
    """
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
    """The metrics files of one kind of job, as dicts, in name order.

    Parameters
    ----------
    results_dir
        The profile's results folder, ``results/<profile>``.
    kind
        The kind of job (``evaluate``, ``pretrain``, ...).

    Returns
    -------
    list of dict
        The payloads :func:`write_metrics` wrote, sorted by file name; empty when the kind has none.
    """
    return [read_json(p) for p in ResultsLayout(results_dir).metrics_files(kind)]


def load_records(
    results_dir: str | Path, kinds: tuple[str, ...] | None = None, family: str | None = None
) -> pd.DataFrame:
    """All metric records of a profile as one tidy table.

    With ``family``, the runs of that model family only (jobs without a family, such as the
    baselines, are kept).

    Parameters
    ----------
    results_dir
        The profile's results folder, ``results/<profile>``.
    kinds
        Only these kinds of job (``("evaluate",)``, ...); None (or empty) for every kind.
    family
        Only this model family's runs (plus the jobs without a family); None for every family.

    Returns
    -------
    pandas.DataFrame
        One row per record. Columns: kind, name, family, mode, metric, value, fraction, seed,
        n_cells (pretraining cells; 0 for the random-init control, NaN for baselines that involve
        no pretraining) and any extra keys of the records. ``value`` is in the metric's own range
        (macro-F1 and accuracy in [0, 1], losses >= 0) or missing (NaN) where a record stored None.

    Raises
    ------
    FileNotFoundError
        When no record matches (no metrics yet: the workflow has not run, or not these kinds).
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
    """One row per job with its provenance: the record of what was run, for the appendix.

    Parameters
    ----------
    results_dir
        The profile's results folder, ``results/<profile>``.

    Returns
    -------
    pandas.DataFrame
        One row per metrics file, in path order. Columns: kind, name, git_commit,
        git_diff_sha256 (None on a clean tree), created_utc, data_sha256 (``name:hash`` pairs, the
        hashes cut to 12 characters), torch, versions (python and packages) and parameters; no
        rows (and no columns) when the profile has no metrics yet.
    """
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
