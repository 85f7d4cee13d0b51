"""The workflow's ``baselines`` job: what the narrow task scores without any foundation model.

- ``hvg_logreg``: logistic regression on log-normalized highly variable genes (chosen on the
  training cells only);
- ``pca_knn``: kNN on a PCA fitted on the training cells;
- ``pca_leiden``: Leiden clusters of that PCA on the test cells (zero-shot structure).

The test cells' PCA is saved as the unintegrated reference of the integration metrics.
``nbs/baselines.ipynb`` calls :func:`baselines`.
"""

from __future__ import annotations

import time
from pathlib import Path

import anndata as ad
import numpy as np

from scfm_lib import data, evaluate, io, results
from scfm_lib.config import Profile


def baselines(profile: Profile, results_dir: str | Path, seed: int = 0, parameters: dict | None = None) -> dict:
    """Score the baselines on the data job's downstream split and write their record.

    Reads ``results_dir/data/downstream.h5ad`` and the data job's record; writes
    ``embeddings/pca.npy`` (the test cells' PCA) and ``metrics/baselines/baselines.json``.

    Parameters
    ----------
    profile : Profile
        The profile (its ``data.label_key`` and ``evaluate`` section).
    results_dir : str or pathlib.Path
        The run's results folder, after the data job.
    seed : int
        Seed of the logistic regression and of Leiden.
    parameters : dict, optional
        The notebook's parameters, kept in the record's provenance (default: profile, results_dir, seed).

    Returns
    -------
    dict
        The payload written: ``records`` hold ``mode`` (hvg_logreg, pca_knn, pca_leiden), ``metric`` and ``value``.
    """
    started = time.perf_counter()
    if parameters is None:
        parameters = {"profile": profile.name, "results_dir": str(results_dir), "seed": seed}
    E = profile.evaluate
    downstream = ad.read_h5ad(Path(results_dir) / "data" / "downstream.h5ad")
    parts = {s: downstream[downstream.obs["split"] == s].copy() for s in ("train", "val", "test")}
    label = profile.data.label_key
    _, (y_train, y_test) = data.encode_labels(parts["train"].obs[label].values, parts["test"].obs[label].values)

    y_hvg = evaluate.hvg_logreg(parts["train"], y_train, parts["test"], n_top_genes=E.n_top_genes, seed=seed)
    pca_train, pca_test = evaluate.pca_embedding(
        parts["train"], parts["test"], n_comps=E.n_pcs, n_top_genes=E.n_top_genes
    )
    y_pca_knn = evaluate.knn_classify(pca_train, y_train, pca_test, k=E.knn_k)
    clusters = evaluate.cluster_scores(pca_test, y_test, resolution=E.leiden_resolution, seed=seed)
    records = [
        {"mode": mode, "metric": metric, "value": float(value)}
        for mode, y_pred in {"hvg_logreg": y_hvg, "pca_knn": y_pca_knn}.items()
        for metric, value in evaluate.classification_scores(y_test, y_pred).items()
    ]
    records += [{"mode": "pca_leiden", "metric": m, "value": float(clusters[m])} for m in ("ari", "nmi")]

    with io.atomic_path(Path(results_dir) / "embeddings" / "pca.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, pca_test)
    data_record = io.read_json(results.metrics_path(results_dir, "data", "datasets"))
    return results.write_metrics(
        results.metrics_path(results_dir, "baselines", "baselines"),
        kind="baselines",
        name="baselines",
        run={"seed": seed},
        records=records,
        parameters={**parameters, "evaluate": E.__dict__},
        data_hashes=data_record["provenance"]["data_sha256"],
        extra={"seconds": time.perf_counter() - started},
    )
