"""The AnnData API: embed cells with a checkpoint into obsm."""

import numpy as np
import pytest
import torch

from scfm_lib import data, tl, train
from scfm_lib.atlas import AtlasConfig, SyntheticAtlas
from scfm_lib.data import ScfmDataError
from scfm_lib.model import ScFMConfig

torch.set_num_threads(1)


def test_embed_writes_obsm_and_refuses_foreign_genes(tmp_path):
    adata = SyntheticAtlas(AtlasConfig(n_genes=200, n_donors=8)).sample(60, seed=0)
    vocab = data.GeneVocab(list(adata.var_names))
    config = ScFMConfig(vocab_size=len(vocab), context_genes=16, d_model=16, n_layers=1, n_heads=2)
    train.init_checkpoint(config, seed=0, out_dir=tmp_path / "ck")
    vocab.save(tmp_path / "ck" / "vocab.json")
    tl.embed(adata, tmp_path / "ck")
    assert adata.obsm["X_scfm"].shape == (60, 16) and np.isfinite(adata.obsm["X_scfm"]).all()
    again = adata.copy()
    tl.embed(again, tmp_path / "ck", key_added="X_again")
    np.testing.assert_array_equal(again.obsm["X_again"], adata.obsm["X_scfm"])
    foreign = adata.copy()
    foreign.var_names = [f"ENSG{i:05d}" for i in range(foreign.n_vars)]
    with pytest.raises(ScfmDataError, match="vocabulary"):
        tl.embed(foreign, tmp_path / "ck")


def test_embed_with_a_geneformer_checkpoint_needs_its_medians(tmp_path):
    adata = SyntheticAtlas(AtlasConfig(n_genes=200, n_donors=8)).sample(40, seed=0)
    vocab = data.GeneVocab(list(adata.var_names))
    config = ScFMConfig(vocab_size=len(vocab), context_genes=16, d_model=16, n_layers=1, n_heads=2, family="geneformer")
    train.init_checkpoint(config, seed=0, out_dir=tmp_path / "ck")
    vocab.save(tmp_path / "ck" / "vocab.json")
    with pytest.raises(ScfmDataError, match="medians"):
        tl.embed(adata, tmp_path / "ck")
    data.GeneVocab(vocab.genes, data.gene_medians(adata, vocab)).save(tmp_path / "ck" / "vocab.json")
    tl.embed(adata, tmp_path / "ck")
    assert adata.obsm["X_scfm"].shape == (40, 16) and np.isfinite(adata.obsm["X_scfm"]).all()
