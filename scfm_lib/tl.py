"""Tools on AnnData (scanpy-style ``tl``): results land in ``obsm``/``obs`` of the object passed."""

from __future__ import annotations

from pathlib import Path

from anndata import AnnData

from scfm_lib import data, train


def embed(adata: AnnData, checkpoint_dir: str | Path, *, key_added: str = "X_scfm", layer: str = "counts",
          batch_size: int = 256, min_overlap: float = 0.5) -> None:
    """Embed every cell with a pretrained checkpoint into ``adata.obsm[key_added]`` ([n_obs, d_model]).

    The checkpoint folder holds the weights, their config and the gene vocabulary it was trained
    with. Raw integer counts are read from ``adata.layers[layer]``; genes outside the vocabulary
    are ignored, and fewer than ``min_overlap`` of the data's genes in the vocabulary is an error.
    """
    checkpoint_dir = Path(checkpoint_dir)
    model = train.load_checkpoint(checkpoint_dir)
    vocab = data.GeneVocab.load(checkpoint_dir / "vocab.json")
    data.validate_counts(adata, layer=layer)
    medians = None
    if model.config.family == "geneformer":  # rank-value encoding: the corpus medians it was trained with
        if vocab.medians is None:
            raise data.ScfmDataError(f"{checkpoint_dir / 'vocab.json'} has no gene medians, which the geneformer "
                                     "family needs to rank genes; save the vocabulary the data job wrote")
        medians = vocab.medians
    tokens = data.tokenize(adata, vocab, model.config.context_genes, layer=layer, min_overlap=min_overlap,
                           medians=medians)
    adata.obsm[key_added] = train.embed(model, tokens, batch_size=batch_size)
