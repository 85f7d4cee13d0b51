"""The scIB integration metrics of every checkpoint of a profile: one workflow job, before the chapters.

Scores the test-cell embedding of each run and the PCA of log-normalized expression (the
unintegrated reference) in one call (JAX compiles once per process), writes one
``metrics/scib/<run>.json`` per run (what :mod:`scfm_lib.study.secondary` and the chapters read) and the
whole table, PCA included, to ``scib.json`` (the frozen and zero-shot chapter shows it)::

    python -m scfm_lib.study.scib --profile tiny --results-dir results/tiny
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scfm_lib import io, results
from scfm_lib.config import Profile, load_profile
from scfm_lib.layout import ResultsLayout

#: scIB table column -> metric name of the records (the aggregates the study reads).
AGGREGATES = {"Bio conservation": "bio_conservation", "Batch correction": "batch_correction", "Total": "scib_total"}

#: The unintegrated reference's row in the table.
REFERENCE = "pca"


def score_runs(profile: Profile, results_dir: str | Path) -> pd.DataFrame:
    """Every scIB metric for the test-cell embedding of each run and of the PCA reference.

    Parameters
    ----------
    profile
        The profile whose runs are scored.
    results_dir
        Its results folder, ``results/<profile>``.

    Returns
    -------
    pandas.DataFrame
        One row per run id and one ``pca`` row, one column per scIB metric (no batch-correction
        columns for a dataset of one batch, ``data.batch_key`` empty).
    """
    from scfm_lib import evaluate  # JAX and scib-metrics: only this job needs them

    layout = ResultsLayout(results_dir)
    obs = ad.read_h5ad(layout.dataset("downstream"), backed="r").obs
    test_obs = obs[obs["split"] == "test"]
    embeddings = {name: np.load(layout.embedding(name)) for name in profile.run_ids()}
    pca = np.load(layout.embedding(REFERENCE))
    batches = test_obs[profile.data.batch_key].values if profile.data.batch_key else None
    return evaluate.scib_scores(
        {**embeddings, REFERENCE: pca}, test_obs[profile.data.label_key].values, batches, pre_integrated=pca
    )


def aggregate_records(table: pd.DataFrame, name: str) -> list[dict]:
    """The aggregate scores of one row of the scIB table as metric records.

    Parameters
    ----------
    table
        :func:`score_runs`' table.
    name
        A row of it: a run id or ``pca``.

    Returns
    -------
    list of dict
        ``{"mode": "scib", "metric": ..., "value": ...}`` for each aggregate column the table has.
    """
    return [
        {"mode": "scib", "metric": metric, "value": float(table.loc[name, column])}
        for column, metric in AGGREGATES.items()
        if column in table.columns
    ]


def write_scib(profile: Profile, results_dir: str | Path, parameters: dict) -> pd.DataFrame:
    """Score every run (:func:`score_runs`) and write its metrics file and the whole table.

    Parameters
    ----------
    profile
        The profile whose runs are scored.
    results_dir
        Its results folder, ``results/<profile>``.
    parameters
        The job's parameters, stored in each metrics file's provenance (the run id is added).

    Returns
    -------
    pandas.DataFrame
        The table written to ``scib.json``.
    """
    started = time.perf_counter()
    layout = ResultsLayout(results_dir)
    table = score_runs(profile, results_dir)
    evaluated = {p["name"]: p for p in results.load_payloads(results_dir, "evaluate")}
    for name in profile.run_ids():
        source = evaluated[name]
        results.write_metrics(
            layout.metrics("scib", name),
            kind="scib",
            name=name,
            run=source["run"],
            records=aggregate_records(table, name),
            parameters={**parameters, "run": name},
            data_hashes=source["provenance"]["data_sha256"],
            extra={"all_metrics": table.loc[name].to_dict(), "seconds": time.perf_counter() - started},
        )
    data_record = io.read_json(layout.metrics("data", "datasets"))
    io.write_json(
        layout.scib_table,
        {
            "index": table.index.name,  # what a row is ("Embedding")
            "table": table.to_dict("index"),
            "provenance": io.provenance(parameters, data_record["provenance"]["data_sha256"]),
        },
    )
    return table


def load_table(results_dir: str | Path) -> pd.DataFrame:
    """The scIB table that :func:`write_scib` wrote.

    Parameters
    ----------
    results_dir
        The profile's results folder, ``results/<profile>``.

    Returns
    -------
    pandas.DataFrame
        One row per run id and ``pca``, one column per scIB metric, in the order written.
    """
    written = io.read_json(ResultsLayout(results_dir).scib_table)
    return pd.DataFrame.from_dict(written["table"], orient="index").astype(float).rename_axis(written["index"])


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m scfm_lib.study.scib --profile P --results-dir R``.

    Parameters
    ----------
    argv
        The arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        prog="python -m scfm_lib.study.scib", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", required=True)
    parser.add_argument("--profiles-dir", default="profiles")
    parser.add_argument("--results-dir", required=True)
    args = parser.parse_args(argv)
    parameters = {"profile": args.profile, "profiles_dir": args.profiles_dir, "results_dir": args.results_dir}
    table = write_scib(load_profile(args.profile, args.profiles_dir), args.results_dir, parameters)
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()
