"""The dataset registry: every real dataset the study can use, with checksums, sources and licenses.

Like ``scanpy.datasets``, a dataset is loaded by name (``datasets.load("pbmc68k_reduced")``);
unlike it, nothing is trusted without its sha256. A file is looked for, in this order, in

1. the folders named by ``$SCFM_DATA_DIR`` and ``$SCFM_SHARED_DATA`` (as ``<dir>/<dataset>/<file>``
   or ``<dir>/<file>``): data you copied there yourself, used offline;
2. the installed package that ships it (scanpy, celltypist);
3. the pooch cache (``$SCFM_CACHE_DIR``, default the OS cache folder), downloading it from its
   public URL there if it is missing and the network is allowed (``$SCFM_OFFLINE=1`` forbids it).

A file found anywhere must match its registered sha256, else :class:`ScfmDataError` names the
file, both hashes and the fix; a file found nowhere gives an error that names the file, its URL
and the variable to set. ``python -m scfm_lib.datasets`` prints the registry.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import pandas as pd

from scfm_lib.data import ScfmDataError

DATA_DIR_VARS = ("SCFM_DATA_DIR", "SCFM_SHARED_DATA")


@dataclass(frozen=True)
class RegisteredFile:
    name: str          # file name, as published
    sha256: str        # checksum of the published file
    url: str           # where it is published (pinned to a release, so the checksum holds)


@dataclass(frozen=True)
class Dataset:
    """One registry entry. ``reader``/``reader_kwargs`` go to :func:`scfm_lib.readers.read`."""
    name: str
    title: str
    files: tuple[RegisteredFile, ...]
    reader: str                              # readers.READERS key, or "mapping" for a gene table
    holds: str                               # what the file really holds, in one sentence
    citation: str
    license: str
    cells: int = 0                           # as read, for the record and the tests
    genes: int = 0
    labels: tuple[str, ...] = ()             # standard obs columns the reader fills (cell_type, ...)
    has_counts: bool = True                  # False: refused wherever counts are required
    species: str = "human"
    reader_kwargs: dict = field(default_factory=dict)
    package: str = ""                        # installed package that ships the files ...
    package_dir: str = ""                    # ... in this folder of the package
    source_md: str = ""                      # shared-data folder name whose SOURCE.md describes it


REGISTRY: dict[str, Dataset] = {}


def register(entry: Dataset) -> Dataset:
    if entry.name in REGISTRY:
        raise ValueError(f"dataset {entry.name!r} is registered twice")
    REGISTRY[entry.name] = entry
    return entry


# ------------------------------------------------------------------------------ the registry
#: Files shipped with celltypist, published in its repository at the release the project pins.
CELLTYPIST_SAMPLES = "https://raw.githubusercontent.com/Teichlab/celltypist/v1.7.1/celltypist/data/samples/"
register(Dataset(
    name="pbmc68k_reduced",
    title="68k PBMCs (10x Genomics), 700-cell reduced subset shipped with scanpy",
    files=(RegisteredFile(
        "10x_pbmc68k_reduced.h5ad", "e71d41e737c941559b7c57c9243bdb3d2c889c2adfdf00e3422ac6b46783676f",
        "https://raw.githubusercontent.com/scverse/scanpy/1.11.5/src/scanpy/datasets/10x_pbmc68k_reduced.h5ad"),),
    reader="h5ad",
    reader_kwargs={"counts": None, "obs_map": {"cell_type": "bulk_labels"},
                   "no_counts_reason": "pbmc68k_reduced stores only scaled values in X and log-normalized "
                                       "values in raw.X, for 765 selected genes"},
    holds="700 PBMCs x 765 genes: scaled values (X) and log1p-normalized values (raw.X); no raw counts. "
          "Labels: bulk_labels (10 sorted-population labels), louvain clusters, cell-cycle phase.",
    citation="Zheng et al. (2017) Massively parallel digital transcriptional profiling of single cells. "
             "Nat Commun 8:14049; subset by the scanpy authors (Wolf et al. 2018, Genome Biol 19:15).",
    license="CC BY 4.0 (10x Genomics public dataset); BSD-3-Clause (scanpy)",
    cells=700, genes=765, labels=("cell_type",), has_counts=False,
    package="scanpy", package_dir="datasets",
))

register(Dataset(
    name="celltypist_sample",
    title="CellTypist's sample count table (immune cells, 559 cells)",
    files=(RegisteredFile(
        "sample_cell_by_gene.csv", "0d729bd7a9e4d8f5a8ccc167f222530f4ece8d334b939d21b796bd77daf967f2",
        CELLTYPIST_SAMPLES + "sample_cell_by_gene.csv"),),
    reader="count_table",
    holds="559 cells x 32,786 genes (symbols), raw UMI counts written as floats (some as 0.999999999999999, "
          "rounded on read); no labels, no donor or batch.",
    citation="Dominguez Conde et al. (2022) Cross-tissue immune cell analysis reveals tissue-specific "
             "features in humans. Science 376:eabl5197 (CellTypist).",
    license="MIT (celltypist package)",
    cells=559, genes=32786,
    package="celltypist", package_dir="data/samples",
))

register(Dataset(
    name="gencode_v44_id2name",
    title="GENCODE v44 human gene ID to gene symbol table (shipped with celltypist)",
    files=(RegisteredFile(
        "GENCODEv44_Gene_id2name.csv", "0a8d9b07cf63f9ef70e65f3c7afc9d2092a7d9890281172df770003827912f53",
        CELLTYPIST_SAMPLES + "GENCODEv44_Gene_id2name.csv"),),
    reader="mapping",
    holds="62,754 rows: Ensembl gene ID (unversioned), gene symbol; no header.",
    citation="Frankish et al. (2023) GENCODE: reference annotation for the human and mouse genomes. NAR 51:D942.",
    license="GENCODE data: open (EMBL-EBI terms of use); MIT (celltypist package)",
    package="celltypist", package_dir="data/samples",
))

register(Dataset(
    name="ensembl105_human2mouse",
    title="Ensembl 105 human to mouse ortholog symbols (shipped with celltypist)",
    files=(RegisteredFile(
        "Ensembl105_Human2Mouse_Genes.csv", "4a174c83cfa70aad7c470d8e453fda94d8fb5d70f8a2f0ae196d54c9e31369f1",
        CELLTYPIST_SAMPLES + "Ensembl105_Human2Mouse_Genes.csv"),),
    reader="mapping",
    holds="47,164 rows: human symbol, mouse ortholog symbol (empty when none); no header.",
    citation="Cunningham et al. (2022) Ensembl 2022. NAR 50:D988.",
    license="Ensembl data: no restrictions; MIT (celltypist package)",
    package="celltypist", package_dir="data/samples",
))


# ------------------------------------------------------------------------------ fetching
def get(name: str) -> Dataset:
    if name not in REGISTRY:
        raise ScfmDataError(f"unknown dataset {name!r}; registered: {sorted(REGISTRY)} "
                            "(python -m scfm_lib.datasets lists them)")
    return REGISTRY[name]


def cache_dir() -> Path:
    import pooch

    return Path(os.environ.get("SCFM_CACHE_DIR") or pooch.os_cache("scfm-masking"))


def _data_dirs(data_dir: str | Path | None) -> list[Path]:
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
        raise ScfmDataError(f"checksum mismatch for {path}: sha256 {digest}, registered {file.sha256}. The file "
                            f"is corrupt, truncated or another version: delete it and fetch it again from {file.url}")
    return path


def fetch(name: str, data_dir: str | Path | None = None, offline: bool | None = None) -> dict[str, Path]:
    """Local, checksum-verified paths of a dataset's files (see the module docstring for the order)."""
    import pooch

    entry = get(name)
    offline = os.environ.get("SCFM_OFFLINE", "") not in ("", "0") if offline is None else offline
    paths = {}
    for file in entry.files:
        folders = list(dict.fromkeys([name, entry.source_md or name]))    # unregistered_shared() covers source_md
        candidates = [d / f / file.name for d in _data_dirs(data_dir) for f in folders]
        candidates += [d / file.name for d in _data_dirs(data_dir)]
        candidates += [p for p in [_package_path(entry, file), cache_dir() / name / file.name] if p is not None]
        found = next((p for p in candidates if p.is_file()), None)
        if found is not None:
            paths[file.name] = _verified(found, file)
            continue
        where = ", ".join(str(p.parent) for p in candidates) or "(no folder configured)"
        hint = (f"Download {file.url} into a folder and set SCFM_DATA_DIR to it (the file may sit in "
                f"$SCFM_DATA_DIR/{name}/ or directly in $SCFM_DATA_DIR)")
        if offline:
            raise ScfmDataError(f"dataset {name!r}: file {file.name!r} not found (looked in {where}) and "
                                f"SCFM_OFFLINE forbids downloading. {hint}.")
        try:
            downloaded = pooch.retrieve(file.url, known_hash=f"sha256:{file.sha256}", fname=file.name,
                                        path=cache_dir() / name, progressbar=False)
        except ValueError as err:  # pooch's checksum mismatch
            raise ScfmDataError(f"dataset {name!r}: the download of {file.url} does not match the registered "
                                f"sha256 ({err}); the published file changed: report it") from err
        except Exception as err:  # noqa: BLE001 - any network failure means the same to the user
            raise ScfmDataError(f"dataset {name!r}: file {file.name!r} not found (looked in {where}) and "
                                f"downloading {file.url} failed ({type(err).__name__}: {err}). {hint}.") from err
        paths[file.name] = Path(downloaded)
    return paths


def load(name: str, data_dir: str | Path | None = None, offline: bool | None = None) -> ad.AnnData:
    """The dataset in the study's AnnData layout (:mod:`scfm_lib.readers`), checksums verified."""
    from scfm_lib import readers

    entry = get(name)
    if entry.reader == "mapping":
        raise ScfmDataError(f"{name!r} is a gene table, not a dataset: use load_mapping({name!r})")
    (path,) = fetch(name, data_dir, offline).values()
    adata = readers.read(path, entry.reader, dataset=name, **entry.reader_kwargs)
    adata.uns["scfm"] = {**adata.uns.get("scfm", {}), "sha256": entry.files[0].sha256, "citation": entry.citation}
    return adata


def load_mapping(name: str, data_dir: str | Path | None = None, offline: bool | None = None) -> dict[str, str]:
    """A registered gene table (Ensembl ID -> symbol, or ortholog symbols) as a dict."""
    from scfm_lib.genes import read_mapping

    if get(name).reader != "mapping":
        raise ScfmDataError(f"{name!r} is a dataset, not a gene table: use load({name!r})")
    (path,) = fetch(name, data_dir, offline).values()
    return read_mapping(path)


def table() -> pd.DataFrame:
    """The registry as a table: one row per dataset or gene table."""
    return pd.DataFrame([{"name": e.name, "title": e.title, "cells": e.cells or None, "genes": e.genes or None,
                          "labels": ", ".join(e.labels), "raw counts": e.has_counts if e.reader != "mapping" else None,
                          "holds": e.holds, "citation": e.citation, "license": e.license,
                          "source": e.package and f"package {e.package}" or "download",
                          "sha256": ", ".join(f.sha256[:12] for f in e.files)}
                         for e in REGISTRY.values()]).set_index("name").astype({"cells": "Int64", "genes": "Int64"})


def unregistered_shared(shared_dir: str | Path) -> list[str]:
    """Folders of a shared-data directory (each with a SOURCE.md) that no registry entry covers."""
    covered = {e.source_md or e.name for e in REGISTRY.values()}
    return sorted(p.name for p in Path(shared_dir).iterdir() if p.is_dir() and p.name not in covered)


if __name__ == "__main__":
    print(table()[["cells", "genes", "labels", "raw counts", "source"]].to_string())
