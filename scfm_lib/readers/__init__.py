"""Readers: every file format the study's datasets come in, into one AnnData layout.

Each reader returns an AnnData in which

- ``layers["counts"]`` holds integer counts as a CSR matrix (float32 storage, integer values),
  and ``X`` is the same matrix (scanpy verbs then work on counts until normalized);
- ``obs`` carries the standard columns ``cell_type``, ``batch``, ``donor``, ``tissue`` where the
  source knows them (``obs_map`` renames source columns onto them) and always ``dataset``;
- ``uns["scfm"]`` records where the values came from (reader, file, value kind).

and then passes :func:`scfm_lib.data.validate_counts` (or :func:`~scfm_lib.data.validate`). A file without raw
counts (only normalized or log values) is read by :func:`read_h5ad` with ``counts=None``: its values land in
``layers["log1p_norm"]`` and ``uns["scfm"]["no_counts_reason"]`` says why, so that every step that
needs counts refuses it with that reason instead of silently using the wrong numbers.

The layout is :mod:`.standard`'s; the readers, one per file format, are :mod:`.formats`'s. Every public
name is importable from here (``from scfm_lib import readers; readers.read_h5ad``).
"""

from scfm_lib.readers.formats import (
    READERS,
    read,
    read_10x,
    read_anndata,
    read_count_table,
    read_h5ad,
    read_hdf5_counts,
)
from scfm_lib.readers.standard import STANDARD_OBS, concat, round_near_integers, standardize

__all__ = [
    "READERS",
    "STANDARD_OBS",
    "concat",
    "read",
    "read_10x",
    "read_anndata",
    "read_count_table",
    "read_h5ad",
    "read_hdf5_counts",
    "round_near_integers",
    "standardize",
]
