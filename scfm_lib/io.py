"""Atomic file writes and provenance records.

Every result file of the study is written through :func:`atomic_write` (temp file in the same
folder, fsync, ``os.replace``), so an interrupted run never leaves a half-written file where a
finished one is expected. A process killed mid-write (SIGKILL, power loss) cannot remove its
temp file; the next write of the same file does. Every metrics JSON carries :func:`provenance`
beside its numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from anndata import AnnData

#: Packages whose versions are recorded beside every result.
RECORDED_PACKAGES = (
    "scfm-masking",
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "anndata",
    "scanpy",
    "scikit-learn",
    "scib-metrics",
    "jax",
    "papermill",
    "snakemake",
)


def _temp_beside(path: Path) -> tuple[int, str]:
    """A temp file in ``path``'s folder (same filesystem, so the rename is atomic), with the
    permissions a plain ``open`` would give rather than mkstemp's owner-only 0600.

    Temp files of ``path`` that a killed writer left behind are removed first: one file has one
    writer at a time in this study (one Snakemake job, rank 0 of a distributed run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = re.compile(rf"^\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp$")  # mkstemp's names, below
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if stale.match(leftover.name):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, tmp


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temp file beside ``path``; on clean exit it replaces ``path`` in one rename.

    On an exception the temp file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (its folder is created if missing).
    mode : str
        The ``open`` mode, ``"w"`` (text) or ``"wb"`` (bytes).

    Yields
    ------
    file object
        The open temp file.
    """
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for writers that want a file name (h5ad, safetensors).

    On clean exit the temp file replaces ``path`` in one rename; on an exception it is removed.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (its folder is created if missing).

    Yields
    ------
    pathlib.Path
        The temp file's path (the file exists, empty).
    """
    path = Path(path)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # e.g. a profile's TaskSpec
        return _to_jsonable(dataclasses.asdict(obj))
    return obj


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` as indented JSON, atomically. NaN is written as ``null``.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file.
    payload : dict
        The content; numpy scalars and arrays, paths and dataclasses are converted.

    Returns
    -------
    None
    """
    text = json.dumps(_to_jsonable(payload), indent=2, sort_keys=False, allow_nan=True)
    text = text.replace("NaN", "null")
    with atomic_write(path) as fh:
        fh.write(text + "\n")


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON file.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file.

    Returns
    -------
    dict
        Its content.
    """
    with open(path) as fh:
        return json.load(fh)


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes, read in chunks.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    chunk_size : int
        Bytes read at a time.

    Returns
    -------
    str
        The hex digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions(names: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str | None]:
    """The installed version of each package, None where it is not installed.

    Parameters
    ----------
    names : tuple of str
        Distribution names (default :data:`RECORDED_PACKAGES`).

    Returns
    -------
    dict of str to (str or None)
        Name -> version.
    """
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


#: What decides a result: the library (with scfm_book, the tooling the workflow runs notebooks through),
#: the notebooks, the workflow, the profiles and the pins. The executed notebooks the workflow writes
#: into book/ are tracked too, so a tree-wide check would call every run after the first one "dirty";
#: these paths are checked instead.
CODE_PATHS = (
    "scfm_lib",
    "scfm_book",
    "nbs",
    "workflow",
    "profiles",
    "benchmarks",
    "pyproject.toml",
    "requirements.lock",
)


def _git_on_code(args: list[str], cwd) -> bytes:
    """``git <args> -- <CODE_PATHS>``: the command restricted to the code."""
    pathspecs = [f":(top){p}" for p in CODE_PATHS]
    return subprocess.run(["git", *args, "--", *pathspecs], cwd=cwd, capture_output=True, check=True, timeout=30).stdout


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The current commit, with ``-dirty`` appended when the code has uncommitted changes.

    The code is :data:`CODE_PATHS`.

    Parameters
    ----------
    cwd : str or os.PathLike, optional
        A folder of the repository (default: this package's).

    Returns
    -------
    str or None
        The commit's sha, perhaps with ``-dirty``; None outside a git checkout.
    """
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = _git_on_code(["status", "--porcelain", "--untracked-files=no"], cwd).strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def git_diff_sha256(cwd: str | os.PathLike | None = None) -> str | None:
    """The sha256 of ``git diff HEAD`` over the code (:data:`CODE_PATHS`) when it has uncommitted changes.

    With the commit it pins the code a result came from.

    Parameters
    ----------
    cwd
        As :func:`git_commit`.

    Returns
    -------
    str or None
        The hex digest; None on a clean tree or outside a git checkout.
    """
    cwd = cwd or Path(__file__).resolve().parent
    try:
        diff = _git_on_code(["diff", "HEAD"], cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return hashlib.sha256(diff).hexdigest() if diff else None


def provenance(parameters: dict, data_hashes: dict[str, str] | None = None) -> dict:
    """The record stored beside every result: parameters, data hashes, versions, commit, host.

    Parameters
    ----------
    parameters : dict
        The parameters the result was computed with.
    data_hashes : dict of str to str, optional
        Name -> sha256 of the data it read.

    Returns
    -------
    dict
        ``parameters``, ``data_sha256``, ``versions``, ``git_commit``, ``git_diff_sha256`` (None on
        a clean tree), ``python``, ``machine`` and ``created_utc``.
    """
    return {
        "parameters": _to_jsonable(parameters),
        "data_sha256": data_hashes or {},
        "versions": package_versions(),
        "git_commit": git_commit(),
        "git_diff_sha256": git_diff_sha256(),  # None on a clean tree
        "python": platform.python_version(),
        "machine": platform.machine(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def anndata_sha256(adata: AnnData, layer: str = "counts") -> str:
    """A content hash of an AnnData: counts, cell and gene names and ``obs``.

    Hashing the h5ad file would not do: HDF5 stores write times, so the same data written twice
    gives different bytes. This hash is the same whenever the content is.

    Parameters
    ----------
    adata : anndata.AnnData
        The data.
    layer : str
        The layer hashed (``X`` when it is absent).

    Returns
    -------
    str
        The SHA-256 hex digest.
    """
    import scipy.sparse as sp

    h = hashlib.sha256()
    counts = adata.layers[layer] if layer in adata.layers else adata.X
    counts = sp.csr_matrix(counts)
    counts.sort_indices()
    for arr in (counts.indptr, counts.indices, counts.data):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update("\x00".join(map(str, adata.obs_names)).encode())
    h.update("\x00".join(map(str, adata.var_names)).encode())
    h.update(adata.obs.to_csv().encode())
    return h.hexdigest()
