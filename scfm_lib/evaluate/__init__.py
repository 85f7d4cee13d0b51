"""Evaluations on embeddings and baselines without pretraining (arrays in, labels or scores out).

- frozen readouts (:mod:`.readouts`): :func:`linear_probe`, :func:`knn_classify` on cell embeddings,
  :func:`classification_scores`; the annotation tasks' cells, :func:`labelled_ood_cells` and
  :func:`tissue_groups`; the input's context-free ceiling, :func:`context_ceiling`;
- zero-shot structure (:mod:`.clustering`): :func:`cluster_scores` (Leiden vs true labels);
- integration (:mod:`.integration`): :func:`scib_scores` (scib-metrics);
- baselines from raw counts (:mod:`.baselines`): :func:`hvg_logreg` and :func:`pca_embedding`.

Every public function is importable from here (``from scfm_lib import evaluate; evaluate.linear_probe``).
"""

from scfm_lib.evaluate.baselines import hvg_logreg, pca_embedding
from scfm_lib.evaluate.clustering import cluster_scores, enable_umap_compilation_cache, leiden_clusters
from scfm_lib.evaluate.integration import enable_jax_compilation_cache, exact_neighbors, scib_scores
from scfm_lib.evaluate.readouts import (
    classification_scores,
    context_ceiling,
    knn_classify,
    labelled_ood_cells,
    linear_probe,
    tissue_groups,
    token_bag,
)

__all__ = [
    "classification_scores",
    "cluster_scores",
    "context_ceiling",
    "enable_jax_compilation_cache",
    "enable_umap_compilation_cache",
    "exact_neighbors",
    "hvg_logreg",
    "knn_classify",
    "labelled_ood_cells",
    "leiden_clusters",
    "linear_probe",
    "pca_embedding",
    "scib_scores",
    "tissue_groups",
    "token_bag",
]
