"""The synthetic atlas: deterministic, chunked, realistic, with known programs and no overlap."""

import numpy as np
import pytest

from scfm_lib.atlas import AtlasConfig, SyntheticAtlas
from scfm_lib.atlas_datasets import make_study_datasets

SMALL = AtlasConfig(n_genes=400, n_donors=10, seed=3)


@pytest.fixture(scope="module")
def atlas():
    return SyntheticAtlas(SMALL)


def test_same_seed_same_counts_and_different_seed_differs(atlas):
    a = atlas.sample(300, seed=1)
    b = SyntheticAtlas(SMALL).sample(300, seed=1)
    c = atlas.sample(300, seed=2)
    assert (a.layers["counts"] != b.layers["counts"]).nnz == 0
    assert a.obs.equals(b.obs)
    assert (a.layers["counts"] != c.layers["counts"]).nnz > 0


def test_chunks_concatenate_to_sample(atlas):
    whole = atlas.sample(250, seed=4, chunk_size=100)
    chunks = list(atlas.iter_chunks(250, seed=4, chunk_size=100))
    assert [c.n_obs for c in chunks] == [100, 100, 50]
    stacked = np.vstack([c.layers["counts"].toarray() for c in chunks])
    assert np.array_equal(stacked, whole.layers["counts"].toarray())
    assert list(whole.obs_names) == [n for c in chunks for n in c.obs_names]


def test_counts_and_metadata(atlas):
    adata = atlas.sample(500, seed=0)
    counts = adata.layers["counts"]
    assert counts.dtype == np.int32 and counts.data.min() >= 0
    for column in ["tissue", "cell_type", "donor", "batch", "lineage", "cell_subtype", "technology"]:
        assert column in adata.obs and adata.obs[column].dtype == "category"
    assert adata.obs_names.is_unique
    # The hierarchy is consistent: each subtype belongs to one type, each type to one lineage.
    assert (adata.obs.groupby("cell_subtype", observed=True)["cell_type"].nunique() == 1).all()
    assert (adata.obs.groupby("cell_type", observed=True)["lineage"].nunique() == 1).all()


def test_realistic_sparsity_and_library_sizes():
    adata = SyntheticAtlas(AtlasConfig(n_genes=2000)).sample(1000, seed=0)
    counts = adata.layers["counts"]
    zeros = 1 - counts.nnz / np.prod(counts.shape)
    library = np.asarray(counts.sum(1)).ravel()
    assert 0.75 < zeros < 0.97
    assert 700 < np.median(library) < 5000
    by_tech = adata.obs.assign(library=library).groupby("technology", observed=True)["library"].median()
    assert by_tech.max() / by_tech.min() > 1.5  # technologies differ in depth


def test_program_members_are_higher_where_the_program_is_on(atlas):
    adata = atlas.sample(2000, seed=5)
    x = adata.layers["counts"].toarray()
    x = np.log1p(x / x.sum(1, keepdims=True) * 1e4)
    genes = {g: i for i, g in enumerate(adata.var_names)}
    for cell_type in adata.obs["cell_type"].cat.categories[:4]:
        members = [genes[g] for g in adata.uns["gene_programs"][f"type_{cell_type}"]]
        inside = adata.obs["cell_type"].to_numpy() == cell_type
        assert x[inside][:, members].mean() > x[~inside][:, members].mean() + 0.5
    assert set(adata.uns["program_drivers"]) == set(adata.uns["gene_programs"])
    for program, driver in adata.uns["program_drivers"].items():
        assert driver in adata.uns["gene_programs"][program]


def test_immune_lineage_is_shared_by_every_tissue(atlas):
    adata = atlas.sample(3000, seed=6)
    lineages = adata.obs.groupby("tissue", observed=True)["lineage"].unique()
    assert all("immune" in set(v) for v in lineages)
    assert any(len(set(v)) < adata.obs["lineage"].nunique() for v in lineages)  # others are tissue-specific


def test_study_datasets_do_not_overlap():
    data = make_study_datasets(AtlasConfig(n_genes=300, n_donors=20), n_corpus=400, n_downstream=300, n_ood=100, seed=0)
    corpus, down, ood = data["corpus"], data["downstream"], data["ood"]
    names = [set(a.obs_names) for a in (corpus, down, ood)]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    donors = [set(a.obs["donor"]) for a in (corpus, down, ood)]
    assert not (donors[0] & donors[1]) and not (donors[0] & donors[2]) and not (donors[1] & donors[2])
    assert set(ood.obs["technology"]).isdisjoint(set(corpus.obs["technology"]))
    assert down.obs["batch"].nunique() >= 2 and down.obs["cell_type"].nunique() >= 6


def test_a_heldout_tissue_stays_out_of_the_corpus_only():
    config = AtlasConfig(n_genes=300, n_donors=20)
    data = make_study_datasets(config, n_corpus=400, n_downstream=300, n_ood=100, seed=0, heldout_tissues=["skin"])
    assert "skin" not in set(data["corpus"].obs["tissue"])
    assert set(data["corpus"].obs["tissue"]) == set(config.tissues) - {"skin"}
    assert "skin" in set(data["downstream"].obs["tissue"]) and "skin" in set(data["ood"].obs["tissue"])
    # Holding nothing out is the default draw, cell for cell.
    default = make_study_datasets(config, n_corpus=400, n_downstream=300, n_ood=100, seed=0)
    explicit = make_study_datasets(config, n_corpus=400, n_downstream=300, n_ood=100, seed=0, heldout_tissues=[])
    assert (default["corpus"].layers["counts"] != explicit["corpus"].layers["counts"]).nnz == 0
    for bad in (["brain"], list(config.tissues)):
        with pytest.raises(ValueError, match="heldout_tissues"):
            make_study_datasets(config, n_corpus=40, n_downstream=30, n_ood=10, heldout_tissues=bad)


def test_bad_atlas_arguments_are_refused(atlas):
    with pytest.raises(ValueError, match="unknown tissue"):
        atlas.sample(10, tissues=["brain"])
    with pytest.raises(ValueError, match="median_library"):
        AtlasConfig(median_library=(1.0,))
    with pytest.raises(ValueError, match="n_cells"):
        atlas.sample(0)
