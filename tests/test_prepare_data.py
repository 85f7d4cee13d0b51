"""The data job as a library function (scfm_lib.study.prepare_data), run without papermill."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from scfm_lib import data, io
from scfm_lib.config import load_profile
from scfm_lib.layout import ResultsLayout
from scfm_lib.study import prepare_data

REPO = Path(__file__).resolve().parent.parent


def small_profile(tmp_path: Path, **data_overrides):
    """The tiny profile shrunk further, with both families (so the geneformer medians are made)."""
    spec = yaml.safe_load((REPO / "profiles" / "tiny.yaml").read_text())
    spec["families"] = ["scgpt", "geneformer"]
    spec["data"].update(
        {
            "atlas": {"n_genes": 120, "seed": 0},
            "n_corpus": 300,
            "n_downstream": 240,
            "n_ood": 60,
            "n_val_pretrain": 30,
            "context_genes": 16,
            **data_overrides,
        }
    )
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(spec))
    return load_profile(path)


@pytest.fixture(scope="module")
def synthetic_job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synthetic")
    profile = small_profile(tmp)
    return profile, tmp / "results", prepare_data.prepare_synthetic(profile, tmp / "results")


def test_synthetic_job_writes_every_output_the_workflow_expects(synthetic_job):
    profile, results_dir, job = synthetic_job
    layout = ResultsLayout(results_dir)
    for family in profile.families:
        for name in ("corpus_train", "corpus_val", "downstream", "ood"):
            tokens = data.CellTokens.load(layout.tokens(family, name))
            assert len(tokens) == len(job.tokens[family, name]) > 0
    assert layout.dataset("downstream").is_file() and layout.vocab.is_file()
    written = io.read_json(results_dir / "metrics" / "data" / "datasets.json")
    assert written["records"] == job.record["records"]
    assert written["provenance"]["data_sha256"] == job.record["provenance"]["data_sha256"]
    assert len(job.tokens["scgpt", "corpus_train"]) + len(job.tokens["scgpt", "corpus_val"]) == 330


def test_synthetic_job_hashes_are_a_tidy_table_of_the_recorded_hashes(synthetic_job):
    _, _, job = synthetic_job
    assert list(job.hashes.columns) == ["dataset", "sha256"]
    assert (
        dict(zip(job.hashes["dataset"], job.hashes["sha256"], strict=True)) == job.record["provenance"]["data_sha256"]
    )
    assert set(job.hashes["dataset"]) == {"corpus", "downstream", "ood"}


def test_synthetic_job_is_deterministic_and_ranks_geneformer_by_medians(synthetic_job, tmp_path):
    profile, _, job = synthetic_job
    again = prepare_data.prepare_synthetic(profile, tmp_path / "again")
    assert again.record["provenance"]["data_sha256"] == job.record["provenance"]["data_sha256"]
    for key, tokens in job.tokens.items():
        np.testing.assert_array_equal(again.tokens[key].gene_ids, tokens.gene_ids)
    # Rank-value encoding changes which genes a cell's context holds.
    assert not np.array_equal(
        job.tokens["geneformer", "downstream"].gene_ids, job.tokens["scgpt", "downstream"].gene_ids
    )
    assert job.vocab.medians is not None


def test_downstream_split_keeps_donors_whole(synthetic_job):
    _, _, job = synthetic_job
    obs = job.datasets["downstream"].obs
    assert list(obs["split"].cat.categories) == ["train", "val", "test"]
    assert (obs.groupby("donor", observed=True)["split"].nunique() == 1).all()
    for name, idx in job.splits.items():
        assert (obs["split"].iloc[idx] == name).all()


def test_pretrain_validation_mask_holds_back_exactly_n_cells_reproducibly():
    mask = prepare_data.pretrain_validation_mask(50, 7, seed=3)
    assert mask.dtype == bool and mask.sum() == 7
    np.testing.assert_array_equal(mask, prepare_data.pretrain_validation_mask(50, 7, seed=3))
    assert not np.array_equal(mask, prepare_data.pretrain_validation_mask(50, 7, seed=4))


def test_tokenize_sets_hands_medians_only_to_the_geneformer_family(synthetic_job):
    _, _, job = synthetic_job
    seen = []

    def streamed(medians):
        seen.append(medians)
        return job.tokens["scgpt", "ood"]

    tokens = prepare_data.tokenize_sets(["scgpt", "geneformer"], job.vocab, 16, {"ood": streamed})
    assert list(tokens) == [("scgpt", "ood"), ("geneformer", "ood")]
    assert seen[0] is None and seen[1] is job.vocab.medians
