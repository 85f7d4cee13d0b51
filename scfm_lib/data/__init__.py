"""The data layer: validation, gene vocabulary, tokens, nested corpus reductions and splits.

Raw integer counts live in ``adata.layers["counts"]`` (scanpy/scvi-tools convention). Every
check raises :class:`ScfmDataError` with a message that names the problem and the fix.

Modules (every name is re-exported here: ``scfm_lib.data.tokenize`` as before):

- ``validation``  :class:`ScfmDataError`, :func:`validate_counts`, :func:`validate`,
  :func:`check_labels`, :func:`log_normalize`
- ``vocab``       special token ids (``PAD_ID``, ``CLS_ID``, ``MASK_ID``, ``SPECIAL_TOKENS``),
  :class:`GeneVocab`, :func:`check_vocab_overlap`, :func:`strip_ensembl_version`,
  :func:`vocab_from_detection`, :func:`build_vocab`, :func:`overlap_table`
- ``tokens``      :class:`CellTokens` (in memory or memory-mapped), :func:`gene_medians`, :func:`tokenize`
- ``splits``      :func:`nested_subsets`, :func:`label_budget_subsets`, :func:`split_cells`,
  :func:`encode_labels`
"""

from scfm_lib.data.splits import encode_labels, label_budget_subsets, nested_subsets, split_cells
from scfm_lib.data.tokens import CellTokens, _npz_memmap, gene_medians, tokenize
from scfm_lib.data.validation import (
    ScfmDataError,
    _check_names_and_cells,
    _check_not_empty,
    _check_obs,
    _matrix,
    _validate_log1p_norm,
    _values,
    check_labels,
    log_normalize,
    validate,
    validate_counts,
)
from scfm_lib.data.vocab import (
    CLS_ID,
    MASK_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    GeneVocab,
    _case_matched,
    build_vocab,
    check_vocab_overlap,
    overlap_table,
    strip_ensembl_version,
    vocab_from_detection,
)

__all__ = [
    "CLS_ID",
    "MASK_ID",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "ScfmDataError",
    "check_labels",
    "log_normalize",
    "validate",
    "validate_counts",
    "GeneVocab",
    "check_vocab_overlap",
    "strip_ensembl_version",
    "vocab_from_detection",
    "build_vocab",
    "overlap_table",
    "CellTokens",
    "gene_medians",
    "tokenize",
    "encode_labels",
    "label_budget_subsets",
    "nested_subsets",
    "split_cells",
]
