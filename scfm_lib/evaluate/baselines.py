"""Baselines without pretraining, from raw counts: a logistic regression on highly variable genes and PCA."""

from __future__ import annotations

import anndata as ad
import numpy as np
from sklearn.decomposition import PCA

from scfm_lib.data import log_normalize
from scfm_lib.evaluate.readouts import linear_probe


def _hvg_view(adata_fit: ad.AnnData, n_top_genes: int) -> list[str]:
    import scanpy as sc

    view = log_normalize(adata_fit)
    sc.pp.highly_variable_genes(view, n_top_genes=min(n_top_genes, view.n_vars), flavor="seurat")
    return list(view.var_names[view.var["highly_variable"]])


def _log_expression(adata: ad.AnnData, genes: list[str]) -> np.ndarray:
    x = log_normalize(adata)[:, genes].X
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


def hvg_logreg(
    adata_train: ad.AnnData, y_train: np.ndarray, adata_test: ad.AnnData, n_top_genes: int = 1000, seed: int = 0
) -> np.ndarray:
    """Baseline: logistic regression on log-normalized highly variable genes (chosen on train).

    Parameters
    ----------
    adata_train : anndata.AnnData
        Training cells with raw counts.
    y_train : numpy.ndarray
        Their labels, shape ``(n_train,)``.
    adata_test : anndata.AnnData
        Test cells with raw counts, the same genes.
    n_top_genes : int
        Highly variable genes kept.
    seed : int
        The regression's random state.

    Returns
    -------
    numpy.ndarray
        Predicted labels of the test cells, shape ``(n_test,)``.
    """
    genes = _hvg_view(adata_train, n_top_genes)
    return linear_probe(_log_expression(adata_train, genes), y_train, _log_expression(adata_test, genes), seed=seed)


def pca_embedding(
    adata_fit: ad.AnnData, *adata_apply: ad.AnnData, n_comps: int = 50, n_top_genes: int = 1000
) -> list[np.ndarray]:
    """Baseline embedding: PCA of log-normalized HVGs, fitted on ``adata_fit`` only.

    It is applied to ``adata_fit`` and to each of ``adata_apply`` (so no evaluation cell informs the
    fit).

    Parameters
    ----------
    adata_fit : anndata.AnnData
        Cells with raw counts the HVGs and the PCA are fitted on.
    *adata_apply : anndata.AnnData
        Further cells (the same genes) projected on the fitted components.
    n_comps : int
        Components (at most the fitted matrix's smaller side).
    n_top_genes : int
        Highly variable genes kept.

    Returns
    -------
    list of numpy.ndarray
        float32, shape ``(n_cells_i, n_comps)``: ``adata_fit``'s embedding, then each of
        ``adata_apply``'s.
    """
    genes = _hvg_view(adata_fit, n_top_genes)
    fit = _log_expression(adata_fit, genes)
    pca = PCA(n_components=min(n_comps, *fit.shape), random_state=0).fit(fit)
    return [pca.transform(fit).astype(np.float32)] + [
        pca.transform(_log_expression(a, genes)).astype(np.float32) for a in adata_apply
    ]
