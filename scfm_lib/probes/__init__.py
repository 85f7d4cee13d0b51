"""Probes of what a model learnt about genes: gene-embedding geometry and in-silico perturbation.

Two questions, each asked against the synthetic atlas's known biology (``adata.uns``):

1. Do genes of the same program lie together in the input gene-token embedding?
   :func:`gene_embeddings` reads the table, :func:`program_retrieval` scores it: each program
   gene queries all other genes by cosine similarity and the average precision of finding its
   program mates is averaged (mean average precision, MAP), next to its chance level
   (:mod:`.programs`).

2. Does the model know what a gene *does* to a cell? :func:`perturbation_shift` edits the tokens
   (:func:`delete_gene`, :func:`overexpress_gene`), re-embeds the cells and measures how far each
   moves toward a target cell state (Geneformer's in-silico perturbation, scored by cosine;
   :mod:`.perturbation`).

Ground truth on the synthetic atlas. Cell type A is defined by its programs
(``type_<A>``, ``lineage_<...>``, ``subtype_...``); each program has a driver, its most
strongly loaded member (``adata.uns["program_drivers"]``). With ``target`` = A's mean cell
embedding (``train.embed(model, tokens_A).mean(0)``), a model that learnt the program gives

- ``perturbation_score(model, tokens_B, vocab, driver, "overexpress", target) > 0``: putting
  A's driver at the top of type-B cells moves them toward A;
- ``perturbation_score(model, tokens_A, vocab, driver, "delete", target) < 0``: removing it
  from A's own cells moves them away from A.

A model that did not learn the program (random init) gives shifts of either sign near 0: the
random-init checkpoint (``train.init_checkpoint``) is the control every score is read against.
Deletion only changes cells that hold the gene, so score deletion on cells whose tokens
contain it (:func:`holds_gene`); the others contribute an exact 0.

Every public name is importable from here (``from scfm_lib import probes; probes.program_retrieval``).
"""

from scfm_lib.probes.perturbation import (
    MODES,
    delete_gene,
    holds_gene,
    overexpress_gene,
    perturbation_probe,
    perturbation_score,
    perturbation_shift,
)
from scfm_lib.probes.programs import gene_embeddings, program_retrieval

__all__ = [
    "MODES",
    "delete_gene",
    "gene_embeddings",
    "holds_gene",
    "overexpress_gene",
    "perturbation_probe",
    "perturbation_score",
    "perturbation_shift",
    "program_retrieval",
]
