"""The two model families, one module each: what differs between scgpt and geneformer.

:class:`scfm_lib.model.ScFM` holds everything the families share (gene embedding, CLS, blocks,
``ln_f``, pooling, the cell embedding) and looks its family's module up here once, by
``config.family``. Each module provides the same functions of the model:

- ``build(model, cfg)``: add the family's layers (after the shared ones, in a fixed order);
- ``init_weights(model, generator)``: initialize what the generic init leaves out;
- ``embed_input(model, gene_ids, values, mask)``: the ``[B, L, D]`` input of the gene positions;
- ``masked_error(model, hidden, gene_ids, values, mask)``: the per-position pretraining error;
- ``pretraining_loss(model, gene_ids, values, mask, normalizer, hide)``: the loss, once a position is scored;

and its heads: :mod:`~scfm_lib.families.scgpt` (values from each gene's state and from the cell
embedding), :mod:`~scfm_lib.families.geneformer` (gene identities, tied decoder).
"""

from types import ModuleType

from scfm_lib.families import geneformer, scgpt

#: Family name (:data:`scfm_lib.model_config.FAMILIES`) -> its module.
FAMILY_MODULES: dict[str, ModuleType] = {"scgpt": scgpt, "geneformer": geneformer}

__all__ = ["FAMILY_MODULES", "geneformer", "scgpt"]
