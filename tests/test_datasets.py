"""The dataset registry: loading by name, offline resolution, checksums and clear errors."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from scfm_lib import datasets
from scfm_lib.data import ScfmDataError, validate_counts

# scanpy's pbmc68k_reduced.h5ad is an old-format file
pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore::anndata.OldFormatWarning")]

PBMC = "pbmc68k_reduced"
PBMC_FILE = "10x_pbmc68k_reduced.h5ad"


@pytest.fixture(autouse=True)
def isolated(request, monkeypatch, tmp_path):
    """No user data folders, and a cache inside tmp_path, so only the package copies are found
    (except $SCFM_SHARED_DATA for the test that reads the real shared data)."""
    for var in datasets.DATA_DIR_VARS + ("SCFM_OFFLINE",):
        if not (var == "SCFM_SHARED_DATA" and "shared_data" in request.fixturenames):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SCFM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def temporary_entry():
    """Register throwaway entries; they are removed from REGISTRY afterwards."""
    names = []

    def register(name, url, file="x.csv", sha256="0" * 64, **kwargs):
        names.append(name)
        return datasets.register(datasets.Dataset(
            name=name, title="test entry", files=(datasets.RegisteredFile(file, sha256, url),),
            reader="count_table", holds="nothing", citation="none", license="none", **kwargs))

    yield register
    for name in names:
        datasets.REGISTRY.pop(name, None)


@pytest.fixture(scope="module")
def celltypist_sample():
    return datasets.load("celltypist_sample")


def test_load_pbmc68k_reduced():
    adata = datasets.load(PBMC)
    assert adata.shape == (700, 765)
    assert list(adata.obs["cell_type"].astype(str)) == list(adata.obs["bulk_labels"].astype(str))
    assert adata.obs["cell_type"].nunique() == 10
    assert set(adata.obs["dataset"]) == {PBMC}
    assert "counts" not in adata.layers and "log1p_norm" in adata.layers
    assert adata.uns["scfm"]["sha256"] == datasets.get(PBMC).files[0].sha256
    with pytest.raises(ScfmDataError, match="no raw counts"):
        validate_counts(adata)


def test_load_celltypist_sample(celltypist_sample):
    adata = celltypist_sample
    entry = datasets.get("celltypist_sample")
    assert adata.shape == (559, 32786) == (entry.cells, entry.genes)
    counts = adata.layers["counts"]
    assert sp.issparse(counts) and counts.format == "csr"
    np.testing.assert_array_equal(counts.data, np.round(counts.data))
    assert counts.data.min() >= 1                                      # the 0.999999999999999 values became 1
    validate_counts(adata)
    assert adata.var_names.is_unique


def test_load_mapping_both_gene_tables():
    id2name = datasets.load_mapping("gencode_v44_id2name")
    assert len(id2name) == 62754
    assert id2name["ENSG00000141510"] == "TP53"
    assert id2name["ENSG00000111640"] == "GAPDH"
    assert all(k.startswith("ENSG") and "." not in k for k in id2name)
    human2mouse = datasets.load_mapping("ensembl105_human2mouse")
    assert human2mouse["TP53"] == "Trp53"
    assert human2mouse["MT-ND1"] == "mt-Nd1"
    assert all(v for v in human2mouse.values())                        # rows without an ortholog are dropped
    with pytest.raises(ScfmDataError, match="is a gene table, not a dataset: use load_mapping"):
        datasets.load("gencode_v44_id2name")
    with pytest.raises(ScfmDataError, match="is a dataset, not a gene table: use load"):
        datasets.load_mapping(PBMC)


def test_offline_resolution_from_installed_packages(monkeypatch):
    monkeypatch.setenv("SCFM_OFFLINE", "1")
    import celltypist
    import scanpy

    (pbmc,) = datasets.fetch(PBMC).values()
    assert pbmc.is_relative_to(Path(scanpy.__file__).parent)
    for name in ("celltypist_sample", "gencode_v44_id2name", "ensembl105_human2mouse"):
        (path,) = datasets.fetch(name).values()
        assert path.is_relative_to(Path(celltypist.__file__).parent), name
    assert datasets.load(PBMC).shape == (700, 765)


@pytest.mark.parametrize("layout", ["<dir>/<dataset>/<file>", "<dir>/<file>"])
def test_copy_in_data_dir_is_used_first(monkeypatch, tmp_path, layout):
    (packaged,) = datasets.fetch(PBMC).values()
    folder = tmp_path / "data" / PBMC if "<dataset>" in layout else tmp_path / "data"
    folder.mkdir(parents=True)
    shutil.copy(packaged, folder / PBMC_FILE)
    monkeypatch.setenv("SCFM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SCFM_OFFLINE", "1")
    assert datasets.fetch(PBMC) == {PBMC_FILE: folder / PBMC_FILE}
    assert datasets.load(PBMC).shape == (700, 765)


def test_data_dir_argument_and_shared_source_md_folder(tmp_path, temporary_entry):
    body = b"cell,A\nc1,1\n"
    sha = hashlib.sha256(body).hexdigest()
    temporary_entry("scfm_test_shared", "http://127.0.0.1:9/x.csv", sha256=sha, source_md="SharedFolder")
    (tmp_path / "shared" / "SharedFolder").mkdir(parents=True)
    (tmp_path / "shared" / "SharedFolder" / "x.csv").write_bytes(body)
    # the folder unregistered_shared() counts as covered is also where fetch looks
    assert datasets.unregistered_shared(tmp_path / "shared") == []
    assert datasets.fetch("scfm_test_shared", data_dir=tmp_path / "shared", offline=True) == {
        "x.csv": tmp_path / "shared" / "SharedFolder" / "x.csv"}
    assert datasets.load("scfm_test_shared", data_dir=tmp_path / "shared", offline=True).shape == (1, 1)


def test_checksum_mismatch_names_both_hashes(monkeypatch, tmp_path):
    (tmp_path / PBMC).mkdir()
    corrupt = b"not the published file"
    (tmp_path / PBMC / PBMC_FILE).write_bytes(corrupt)
    monkeypatch.setenv("SCFM_DATA_DIR", str(tmp_path))
    registered = datasets.get(PBMC).files[0].sha256
    with pytest.raises(ScfmDataError) as err:
        datasets.load(PBMC)
    message = str(err.value)
    assert "checksum mismatch" in message and PBMC_FILE in message
    assert hashlib.sha256(corrupt).hexdigest() in message and registered in message


def test_missing_file_offline_names_file_url_and_variable(monkeypatch, temporary_entry):
    url = "https://example.org/releases/v1/x.csv"
    temporary_entry("scfm_test_missing", url)
    monkeypatch.setenv("SCFM_OFFLINE", "1")
    with pytest.raises(ScfmDataError) as err:
        datasets.load("scfm_test_missing")
    message = str(err.value)
    assert "'x.csv' not found" in message and "SCFM_OFFLINE" in message
    assert url in message and "SCFM_DATA_DIR" in message


def test_download_failure_names_file_url_and_variable(tmp_path, temporary_entry):
    url = "http://127.0.0.1:9/x.csv"
    temporary_entry("scfm_test_download", url)
    with pytest.raises(ScfmDataError) as err:
        datasets.fetch("scfm_test_download", offline=False)
    message = str(err.value)
    assert "'x.csv' not found" in message and f"downloading {url} failed" in message
    assert "SCFM_DATA_DIR" in message and str(tmp_path / "cache") in message


def test_temporary_entries_are_removed():
    """Runs after the tests above registered entries: the fixture removed them."""
    assert not [n for n in datasets.REGISTRY if n.startswith("scfm_test_")]


def test_unknown_dataset_lists_registered():
    with pytest.raises(ScfmDataError, match="unknown dataset 'nope'") as err:
        datasets.load("nope")
    for name in datasets.REGISTRY:
        assert repr(name) in str(err.value)


def test_registry_table_and_unregistered_folders(tmp_path):
    table = datasets.table()
    assert set(table.index) == set(datasets.REGISTRY)
    assert not table.loc[PBMC, "raw counts"] and table.loc["celltypist_sample", "raw counts"]
    assert table.loc["gencode_v44_id2name", "raw counts"] is None
    (tmp_path / PBMC).mkdir()
    (tmp_path / "someone_elses_atlas").mkdir()
    (tmp_path / "README.md").write_text("a file, not a dataset folder")
    assert datasets.unregistered_shared(tmp_path) == ["someone_elses_atlas"]


# ------------------------------------------------------------------------------ real shared data
def test_shared_data_is_registered_and_loads(shared_data):
    """Every shared folder has a registry entry; every registered dataset found there loads."""
    assert datasets.unregistered_shared(shared_data) == []
    loaded = 0
    for entry in datasets.REGISTRY.values():
        folders = {entry.name, entry.source_md or entry.name}
        present = [f for f in entry.files
                   if (shared_data / f.name).is_file() or any((shared_data / d / f.name).is_file() for d in folders)]
        if not present:
            continue
        if entry.reader == "mapping":
            assert datasets.load_mapping(entry.name, data_dir=shared_data, offline=True)
            continue
        adata = datasets.load(entry.name, data_dir=shared_data, offline=True)
        loaded += 1
        if entry.cells:
            assert adata.shape == (entry.cells, entry.genes), entry.name
        for column in entry.labels:
            assert column in adata.obs.columns, (entry.name, column)
        if entry.has_counts:
            validate_counts(adata, required_obs=entry.labels)
        else:
            with pytest.raises(ScfmDataError, match="no raw counts"):
                validate_counts(adata)
    assert loaded or not any(p.is_dir() for p in shared_data.iterdir())
