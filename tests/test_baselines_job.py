"""The baselines job as a library function (scfm_lib.study.baselines), run without papermill."""

import numpy as np
from test_prepare_data import small_profile

from scfm_lib import io
from scfm_lib.study import baselines, prepare_data


def test_baselines_job_scores_every_baseline_and_saves_the_test_pca(tmp_path):
    profile = small_profile(tmp_path)
    results_dir = tmp_path / "results"
    data_job = prepare_data.prepare_synthetic(profile, results_dir)
    record = baselines.baselines(profile, results_dir, seed=0)

    assert record == io.read_json(results_dir / "metrics" / "baselines" / "baselines.json")
    modes = {r["mode"] for r in record["records"]}
    assert modes == {"hvg_logreg", "pca_knn", "pca_leiden"}
    assert {r["metric"] for r in record["records"] if r["mode"] == "pca_leiden"} == {"ari", "nmi"}
    assert all(np.isfinite(r["value"]) for r in record["records"])
    pca = np.load(results_dir / "embeddings" / "pca.npy")
    assert pca.shape == (len(data_job.splits["test"]), profile.evaluate.n_pcs)
    assert record["provenance"]["data_sha256"] == data_job.record["provenance"]["data_sha256"]
    assert record["run"] == {"seed": 0}
    # Same seed, same numbers.
    assert baselines.baselines(profile, results_dir, seed=0)["records"] == record["records"]
