"""Tools on AnnData (scanpy-style ``tl``): results land in ``obsm``/``obs`` of the object passed."""

from __future__ import annotations

from pathlib import Path

from anndata import AnnData

from scfm_lib.cellmodel import CellModel


def embed(
    adata: AnnData,
    checkpoint_dir: str | Path | CellModel,
    *,
    key_added: str = "X_scfm",
    layer: str = "counts",
    batch_size: int = 256,
    min_overlap: float = 0.5,
) -> None:
    """Embed every cell with a pretrained checkpoint into ``adata.obsm[key_added]`` ([n_obs, d_model]).

    A shortcut for ``CellModel.load(checkpoint_dir).embed(adata, ...)`` (see
    :meth:`scfm_lib.cellmodel.CellModel.embed`); to embed several AnnData objects, load the
    :class:`~scfm_lib.cellmodel.CellModel` once and pass it instead of the folder.

    Parameters
    ----------
    adata
        Cells with raw integer counts in ``adata.layers[layer]``; genes outside the vocabulary are
        ignored, and fewer than ``min_overlap`` of the data's detected genes in it is an error.
    checkpoint_dir
        A checkpoint folder, ``results/<profile>/checkpoints/<family>_f<fraction>_s<seed>``
        (the weights, their config and the gene vocabulary), or a loaded ``CellModel``.
    key_added, layer, batch_size, min_overlap
        As :meth:`CellModel.embed <scfm_lib.cellmodel.CellModel.embed>`.

    Returns
    -------
    None
        ``adata.obsm[key_added]`` is set.

    Examples
    --------
    >>> sl.tl.embed(adata, "results/quick/checkpoints/geneformer_f1.0_s0")  # doctest: +SKIP
    """
    model = checkpoint_dir if isinstance(checkpoint_dir, CellModel) else CellModel.load(checkpoint_dir)
    model.embed(adata, key_added=key_added, layer=layer, batch_size=batch_size, min_overlap=min_overlap)
