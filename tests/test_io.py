"""Atomic writes, provenance and content hashes."""

import json
import os

import numpy as np
import pytest
import scipy.sparse as sp

from scfm_lib import io, results


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "out.json"
    io.write_json(path, {"a": 1})
    io.write_json(path, {"a": 2, "nan": float("nan")})
    assert json.loads(path.read_text()) == {"a": 2, "nan": None}
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain open() would leave it, not 0600
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_crash_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("finished result")
    with pytest.raises(RuntimeError):
        with io.atomic_write(path) as fh:
            fh.write("half of a new res")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "finished result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left behind


def test_crash_in_atomic_path_leaves_nothing(tmp_path):
    path = tmp_path / "model.bin"
    with pytest.raises(RuntimeError):
        with io.atomic_path(path) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_provenance_records_what_a_reader_needs():
    prov = io.provenance({"seed": np.int64(3)}, {"corpus": "abc"})
    assert prov["parameters"] == {"seed": 3}
    assert prov["data_sha256"] == {"corpus": "abc"}
    assert prov["versions"]["torch"] and prov["versions"]["numpy"]
    assert "git_commit" in prov and prov["created_utc"]


def test_a_dirty_tree_is_pinned_by_the_hash_of_its_diff(tmp_path):
    """Changed code makes a result "-dirty" and its diff's hash pins the change; the executed
    notebooks the workflow writes into book/ do not."""
    import hashlib
    import subprocess

    def git(*args):
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, capture_output=True, check=True
        ).stdout

    git("init", "-q")
    (tmp_path / "scfm_lib").mkdir()
    (tmp_path / "book").mkdir()
    (tmp_path / "scfm_lib" / "code.py").write_text("x = 1\n")
    (tmp_path / "book" / "chapter.ipynb").write_text("{}\n")
    git("add", ".")
    git("commit", "-qm", "c")
    assert io.git_diff_sha256(tmp_path) is None and not io.git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "book" / "chapter.ipynb").write_text('{"executed": true}\n')  # a workflow output
    assert io.git_diff_sha256(tmp_path) is None and not io.git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "scfm_lib" / "code.py").write_text("x = 2\n")
    first = io.git_diff_sha256(tmp_path / "scfm_lib")  # from any folder
    assert io.git_commit(tmp_path).endswith("-dirty")
    assert first == hashlib.sha256(git("diff", "HEAD", "--", "scfm_lib")).hexdigest()
    (tmp_path / "scfm_lib" / "code.py").write_text("x = 3\n")
    assert io.git_diff_sha256(tmp_path) not in (None, first)  # another change, another hash


def test_anndata_hash_tracks_content_not_bytes():
    import anndata as ad
    import pandas as pd

    counts = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0]], dtype=np.int32))
    obs = pd.DataFrame({"cell_type": ["a", "b"]}, index=["c1", "c2"])
    a = ad.AnnData(counts.astype(np.float32), obs=obs, var=pd.DataFrame(index=["g1", "g2", "g3"]))
    a.layers["counts"] = counts
    b = a.copy()
    assert io.anndata_sha256(a) == io.anndata_sha256(b)
    b.layers["counts"][0, 0] = 5
    assert io.anndata_sha256(a) != io.anndata_sha256(b)
    c = a.copy()
    c.obs["cell_type"] = ["a", "a"]
    assert io.anndata_sha256(a) != io.anndata_sha256(c)


def test_metrics_round_trip_and_refuse_nan(tmp_path):
    path = results.metrics_path(tmp_path, "evaluate", "f0.1_s0")
    results.write_metrics(
        path,
        kind="evaluate",
        name="f0.1_s0",
        run={"fraction": 0.1, "seed": 0, "n_pretrain_cells": 10},
        records=[{"mode": "knn", "metric": "accuracy", "value": 0.5}],
        parameters={"seed": 0},
    )
    table = results.load_records(tmp_path)
    assert table.loc[0, ["mode", "metric", "value", "fraction", "seed", "n_cells"]].tolist() == [
        "knn",
        "accuracy",
        0.5,
        0.1,
        0,
        10,
    ]
    with pytest.raises(ValueError, match="not finite"):
        results.write_metrics(
            path,
            kind="evaluate",
            name="x",
            run={},
            records=[{"mode": "knn", "metric": "accuracy", "value": float("nan")}],
            parameters={},
        )
    assert results.load_records(tmp_path)["value"].tolist() == [0.5]  # the refused write changed nothing
    with pytest.raises(FileNotFoundError, match="run the workflow"):
        results.load_records(tmp_path / "empty")
