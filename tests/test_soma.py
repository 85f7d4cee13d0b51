"""The SOMA source streams exactly the cells, counts and tokens of the AnnData it was written from."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

tiledbsoma = pytest.importorskip("tiledbsoma")
import tiledbsoma.io  # noqa: E402, F811 (the io submodule of the module importorskip returned)

from scfm_lib import soma  # noqa: E402
from scfm_lib.data import GeneVocab, ScfmDataError, tokenize  # noqa: E402

N_CELLS, N_GENES = 300, 120


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(uri, adata): a synthetic AnnData and the SOMA experiment written from it."""
    rng = np.random.default_rng(0)
    # Gene-specific rates so cells have distinct top genes; ~half the entries zero.
    counts = rng.poisson(rng.gamma(0.5, 2.0, N_GENES), (N_CELLS, N_GENES)).astype(np.float32)
    X = sp.csr_matrix(counts)
    obs = pd.DataFrame(
        {
            "tissue": pd.Categorical(rng.choice(["blood", "lung", "liver"], N_CELLS)),
            "assay": pd.Categorical(rng.choice(["10x 3' v3", "Smart-seq2"], N_CELLS)),
            "cell_type": pd.Categorical(rng.choice(["T cell", "B cell", "NK cell"], N_CELLS)),
        },
        index=[f"cell{i}" for i in range(N_CELLS)],
    )
    var = pd.DataFrame(
        {"feature_name": [f"GENE{i}" for i in range(N_GENES)]}, index=[f"ENSG{i:011d}" for i in range(N_GENES)]
    )
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.layers["counts"] = X.copy()
    uri = str(tmp_path_factory.mktemp("soma") / "exp")
    tiledbsoma.io.from_anndata(uri, adata, measurement_name="RNA", X_layer_name="raw")
    # The ingested AnnData's row i is soma_joinid i; compare against symbols as var_names.
    adata.var_names = adata.var["feature_name"].astype(str).to_numpy()
    return uri, adata


def test_streams_same_cells_in_given_order(written):
    uri, adata = written
    src = soma.SomaSource(uri, chunk_cells=64)
    full = soma.select_cells(src, [0.3, 1.0], seed=1)
    rng = np.random.default_rng(2)
    for ids in (full[1.0], full[0.3], rng.permutation(full[0.3])):  # shuffled: order is kept
        chunks = list(soma.iter_anndata(src, ids, obs_columns=("tissue", "cell_type")))
        assert len(chunks) == -(-len(ids) // 64)
        assert all(c.n_obs <= 64 for c in chunks)  # memory bound per chunk
        got = ad.concat(chunks)
        np.testing.assert_array_equal(got.obs["soma_joinid"].to_numpy(), ids)
        assert list(got.var_names) == list(adata.var_names)
        assert sp.issparse(chunks[0].layers["counts"]) and chunks[0].layers["counts"].format == "csr"
        np.testing.assert_array_equal(got.layers["counts"].toarray(), adata.layers["counts"][ids].toarray())
        for col in ("tissue", "cell_type"):
            np.testing.assert_array_equal(
                got.obs[col].astype(str).to_numpy(), adata.obs[col].astype(str).to_numpy()[ids]
            )


def test_gene_subset(written):
    uri, adata = written
    genes = ["GENE5", "GENE0", "GENE77"]
    (chunk,) = soma.iter_anndata(soma.SomaSource(uri), np.arange(10), genes=genes)
    assert sorted(chunk.var_names) == sorted(genes)
    np.testing.assert_array_equal(
        chunk.layers["counts"].toarray(), adata[:10, list(chunk.var_names)].layers["counts"].toarray()
    )


def test_tokenize_soma_equals_tokenize(written):
    uri, adata = written
    src = soma.SomaSource(uri, chunk_cells=64)
    ids = soma.select_cells(src, [0.5], seed=3)[0.5]
    vocab = GeneVocab([f"GENE{i}" for i in range(N_GENES) if i % 3] + ["NOT_IN_DATA"])  # two thirds of the genes
    got = soma.tokenize_soma(src, ids, vocab, context_genes=16, min_overlap=0.5)
    want = tokenize(adata[ids].copy(), vocab, context_genes=16)
    assert got.gene_ids.shape == (len(ids), 16)
    np.testing.assert_array_equal(got.gene_ids, want.gene_ids)
    np.testing.assert_array_equal(got.values, want.values)


def test_select_cells_seeded_nested_filtered(written):
    uri, adata = written
    src = soma.SomaSource(uri, obs_filter=soma.soma_filter(tissue="blood"))
    a = soma.select_cells(src, [0.1, 0.5, 1.0], seed=0)
    assert all(np.array_equal(a[f], b) for f, b in soma.select_cells(src, [0.1, 0.5, 1.0], seed=0).items())
    assert not np.array_equal(a[0.5], soma.select_cells(src, [0.5], seed=1)[0.5])
    blood = np.flatnonzero(adata.obs["tissue"] == "blood")
    np.testing.assert_array_equal(a[1.0], blood)
    assert set(a[0.1]) <= set(a[0.5]) <= set(a[1.0])
    assert len(a[0.5]) == round(0.5 * len(blood))
    # soma_filter quotes an apostrophe, turns a list into `in`, skips None; SOMA parses the result.
    f = soma.soma_filter(assay="10x 3' v3", cell_type=["T cell", "NK cell"], disease=None)
    assert f == """assay == "10x 3' v3" and cell_type in ['T cell', 'NK cell']"""
    want = np.flatnonzero((adata.obs["assay"] == "10x 3' v3") & adata.obs["cell_type"].isin(["T cell", "NK cell"]))
    np.testing.assert_array_equal(soma.select_cells(soma.SomaSource(uri, obs_filter=f), [1.0], 0)[1.0], want)
    assert soma.soma_filter(is_primary_data=True) == "is_primary_data == True"


def test_errors_name_the_problem(written, tmp_path, monkeypatch):
    uri, _ = written
    with pytest.raises(ScfmDataError, match="not a SOMA experiment.*from_anndata"):
        soma.select_cells(soma.SomaSource(str(tmp_path / "missing")), [1.0], 0)
    with pytest.raises(ScfmDataError, match="tissue == 'brain'.*matches no cells"):
        soma.select_cells(soma.SomaSource(uri, obs_filter="tissue == 'brain'"), [1.0], 0)
    with pytest.raises(ScfmDataError, match="cannot be applied.*obs columns"):
        soma.select_cells(soma.SomaSource(uri, obs_filter="donor == 'x'"), [1.0], 0)
    with pytest.raises(ScfmDataError, match=r"X layer 'normalized' not found.*\['counts', 'raw'\]"):
        list(soma.iter_anndata(soma.SomaSource(uri, layer="normalized"), [0]))
    with pytest.raises(ScfmDataError, match=r"measurement 'ATAC' not found.*\['RNA'\]"):
        soma.select_cells(soma.SomaSource(uri, measurement="ATAC"), [1.0], 0)
    with pytest.raises(ScfmDataError, match="obs column"):
        list(soma.iter_anndata(soma.SomaSource(uri), [0], obs_columns=("donor",)))
    with pytest.raises(ScfmDataError, match="take joinids from select_cells"):
        list(soma.iter_anndata(soma.SomaSource(uri), [0, 10_000]))

    # The Census offline: simulated, the test never touches the network.
    import cellxgene_census

    def offline(**kwargs):
        raise ConnectionError("Max retries exceeded")

    monkeypatch.setattr(cellxgene_census, "open_soma", offline)
    with pytest.raises(ScfmDataError, match="needs internet.*local SOMA experiment"):
        soma.select_cells(soma.SomaSource("census"), [1.0], 0)


def test_detected_cells_matches_in_memory_count(written):
    uri, adata = written
    got = soma.detected_cells(soma.SomaSource(uri, chunk_cells=64), np.arange(adata.n_obs))
    want = pd.Series(np.asarray((adata.X > 0).sum(0)).ravel(), index=adata.var_names)
    assert got.loc[want.index].tolist() == want.tolist()
