"""The data layer: every bad input is refused with a message naming the fix; tokens, subsets, splits."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scfm_lib import data
from scfm_lib.data import CellTokens, GeneVocab, ScfmDataError


def make_adata(counts, genes=None, obs=None):
    counts = np.asarray(counts)
    genes = genes or [f"G{i}" for i in range(counts.shape[1])]
    obs = obs if obs is not None else pd.DataFrame({"cell_type": ["a"] * counts.shape[0]})
    obs.index = [f"c{i}" for i in range(counts.shape[0])]
    adata = ad.AnnData(sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=pd.DataFrame(index=genes))
    adata.layers["counts"] = sp.csr_matrix(counts)
    return adata


GOOD = np.array([[3, 0, 1, 0], [0, 2, 0, 5], [1, 1, 1, 1]])


def test_valid_counts_pass():
    data.validate_counts(make_adata(GOOD), required_obs=["cell_type"])
    dense = make_adata(GOOD)
    dense.layers["counts"] = GOOD.astype(np.float64)  # integer-valued floats are counts too
    data.validate_counts(dense)


@pytest.mark.parametrize(
    "mutate, fragment, fix",
    [
        (lambda a: a.layers.pop("counts"), "layer 'counts' not found", 'adata.layers["counts"] = adata.X.copy()'),
        (
            lambda a: a.layers.__setitem__("counts", sp.csr_matrix(np.log1p(GOOD.astype(float)))),
            "non-integer",
            "raw integer counts",
        ),
        (lambda a: a.layers.__setitem__("counts", sp.csr_matrix(GOOD * -1.0)), "negative", "raw UMI"),
        (lambda a: a.layers.__setitem__("counts", np.where(GOOD > 2, np.nan, GOOD)), "NaN", "drop or re-count"),
        (lambda a: a.layers.__setitem__("counts", np.where(GOOD > 2, np.inf, GOOD)), "infinite", "drop"),
    ],
)
def test_bad_counts_are_refused(mutate, fragment, fix):
    adata = make_adata(GOOD)
    mutate(adata)
    with pytest.raises(ScfmDataError) as err:
        data.validate_counts(adata)
    assert fragment in str(err.value) and fix in str(err.value)


def test_missing_obs_column_names_the_columns_present():
    with pytest.raises(ScfmDataError) as err:
        data.validate_counts(make_adata(GOOD), required_obs=["cell_type", "batch"])
    assert "['batch']" in str(err.value) and "cell_type" in str(err.value)


def test_duplicated_genes_and_empty_data():
    with pytest.raises(ScfmDataError, match="var_names_make_unique"):
        data.validate_counts(make_adata(GOOD, genes=["A", "B", "A", "C"]))
    with pytest.raises(ScfmDataError, match="empty"):
        data.validate_counts(make_adata(GOOD)[:0])


def test_vocab_encode_overlap_and_round_trip(tmp_path):
    vocab = GeneVocab(["A", "B", "C"])
    assert len(vocab) == 6
    assert vocab.encode(["B", "Z", "A"]).tolist() == [4, -1, 3]
    assert vocab.overlap(["A", "Z"]) == 0.5
    vocab.save(tmp_path / "v.json")
    assert GeneVocab.load(tmp_path / "v.json").genes == ["A", "B", "C"]


def test_low_overlap_names_the_mismatch():
    adata = make_adata(GOOD, genes=["ENSG01", "ENSG02", "ENSG03", "A"])
    with pytest.raises(ScfmDataError) as err:
        data.tokenize(adata, GeneVocab(["A", "B", "C"]), context_genes=2)
    assert "25.0%" in str(err.value) and "Ensembl" in str(err.value)


def _reference_tokens(counts, genes, vocab, context):
    """Slow, obvious implementation of tokenize for comparison."""
    ids = np.zeros((len(counts), context), dtype=np.int64)
    vals = np.zeros((len(counts), context), dtype=np.float32)
    for c, row in enumerate(counts):
        total = row.sum()
        order = sorted(
            [g for g in range(len(genes)) if row[g] > 0 and vocab.encode([genes[g]])[0] >= 0],
            key=lambda g: (-row[g], g),
        )[:context]
        for k, g in enumerate(order):
            ids[c, k] = vocab.encode([genes[g]])[0]
            vals[c, k] = np.log1p(row[g] / total * 1e4)
    return ids, vals


def test_tokenize_matches_reference():
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.7, size=(50, 30)) * rng.integers(1, 4, size=(50, 30))
    genes = [f"G{i}" for i in range(30)]
    vocab = GeneVocab(genes[:25] + ["X"])  # 5 genes unknown to the vocabulary
    tokens = data.tokenize(make_adata(counts, genes), vocab, context_genes=8, chunk_size=16)
    ref_ids, ref_vals = _reference_tokens(counts, genes, vocab, 8)
    assert np.array_equal(tokens.gene_ids, ref_ids)
    np.testing.assert_allclose(tokens.values, ref_vals, rtol=1e-5)


def test_cell_tokens_round_trip(tmp_path):
    tokens = CellTokens(np.arange(6).reshape(2, 3), np.ones((2, 3), dtype=np.float32))
    tokens.save(tmp_path / "t.npz")
    loaded = CellTokens.load(tmp_path / "t.npz")
    assert np.array_equal(loaded.gene_ids, tokens.gene_ids) and len(loaded.subset([1])) == 1
    with pytest.raises(ScfmDataError):
        CellTokens(np.zeros((2, 3)), np.zeros((2, 4)))


def test_nested_subsets_are_nested_and_seeded():
    fractions = [1.0, 0.3, 0.1, 0.03, 0.01, 0.0]
    subsets = data.nested_subsets(1000, fractions, seed=7)
    sizes = [len(subsets[f]) for f in fractions]
    assert sizes == [1000, 300, 100, 30, 10, 0]
    for big, small in zip(fractions, fractions[1:]):
        assert set(subsets[small]) <= set(subsets[big])
    again = data.nested_subsets(1000, [0.1], seed=7)[0.1]
    assert np.array_equal(again, subsets[0.1])  # one fraction alone gives the same cells
    assert not np.array_equal(data.nested_subsets(1000, [0.1], seed=8)[0.1], subsets[0.1])
    assert len(data.nested_subsets(50, [0.001], seed=0)[0.001]) == 1
    with pytest.raises(ScfmDataError, match="outside"):
        data.nested_subsets(10, [1.5], seed=0)


def test_split_by_donor_keeps_donors_whole():
    obs = pd.DataFrame({"donor": np.repeat([f"d{i}" for i in range(10)], 20)})
    parts = data.split_cells(obs, by="donor", seed=1)
    everything = np.concatenate(list(parts.values()))
    assert sorted(everything) == list(range(200))
    donors = {k: set(obs["donor"].iloc[v]) for k, v in parts.items()}
    assert not (donors["train"] & donors["val"]) and not (donors["train"] & donors["test"])
    assert not (donors["val"] & donors["test"])
    assert data.split_cells(obs, by="donor", seed=1)["test"].tolist() == parts["test"].tolist()
    with pytest.raises(ScfmDataError, match="by=None"):
        data.split_cells(obs.iloc[:40], by="donor")
    random_parts = data.split_cells(obs, seed=0)
    assert [len(random_parts[k]) for k in ("train", "val", "test")] == [120, 40, 40]


def test_label_errors():
    classes, (train, test) = data.encode_labels(["b", "a", "b"], ["a", "a"])
    assert classes == ["a", "b"] and train.tolist() == [1, 0, 1] and test.tolist() == [0, 0]
    with pytest.raises(ScfmDataError, match="single class"):
        data.encode_labels(["a", "a"])
    with pytest.raises(ScfmDataError, match=r"\['c'\]"):
        data.encode_labels(["a", "b"], ["c"])


def test_stratified_split_keeps_every_class_in_every_split():
    obs = pd.DataFrame({"cell_type": ["a"] * 50 + ["b"] * 10 + ["c"] * 5})
    splits = data.split_cells(obs, fractions=(0.6, 0.2, 0.2), seed=3, stratify="cell_type")
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(len(obs)))
    for idx in splits.values():
        assert set(obs["cell_type"].iloc[idx]) == {"a", "b", "c"}
    assert len(splits["train"]) == 30 + 6 + 3
    assert data.split_cells(obs, seed=3, stratify="cell_type")["test"].tolist() == splits["test"].tolist()
    with pytest.raises(ScfmDataError, match="cannot stratify"):
        data.split_cells(obs, stratify="label")


def test_log_normalized_dataset_tokenizes_like_its_counts():
    """A dataset shipped as log1p(CP10k) without counts gives the tokens its counts would give."""
    counts = make_adata(GOOD)
    lognorm = data.log_normalize(counts)
    shipped = ad.AnnData(
        lognorm.X.copy(), obs=counts.obs.copy(), var=counts.var.copy(), layers={"log1p_norm": sp.csr_matrix(lognorm.X)}
    )
    assert data.validate(shipped, required_obs=["cell_type"]) == "log1p_norm"
    assert data.validate(counts) == "counts"
    vocab = GeneVocab(list(counts.var_names))
    want = data.tokenize(counts, vocab, context_genes=3)
    got = data.tokenize(shipped, vocab, context_genes=3, layer="log1p_norm")
    assert np.array_equal(got.gene_ids, want.gene_ids)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-5)
    np.testing.assert_allclose(data.log_normalize(shipped).X.toarray(), lognorm.X.toarray())
    with pytest.raises(ScfmDataError, match="required obs|not found"):
        data.validate(shipped, required_obs=["donor"])
    shipped.layers["log1p_norm"].data[0] = -1.0  # scaled data is not log-normalized
    with pytest.raises(ScfmDataError, match="log1p-normalized"):
        data.validate(shipped)


def test_overlap_counts_only_detected_genes():
    adata = make_adata(np.array([[3, 0, 0, 0], [1, 0, 0, 0]]), genes=["A", "X1", "X2", "X3"])
    assert data.check_vocab_overlap(adata, GeneVocab(["A"]), layer="counts") == 1.0
    with pytest.raises(ScfmDataError, match="25.0%"):
        data.check_vocab_overlap(adata, GeneVocab(["A"]))


def test_rank_value_encoding_divides_by_corpus_medians(tmp_path):
    """Geneformer's ranking: expression / the gene's median nonzero CP10k over the corpus."""
    counts = np.array([[10, 1, 0, 4], [20, 2, 1, 0], [30, 1, 1, 8]])
    adata = make_adata(counts)
    vocab = GeneVocab(list(adata.var_names))
    medians = data.gene_medians(adata, vocab)
    cp10k = counts / counts.sum(1, keepdims=True) * 1e4
    for g in range(4):
        nonzero = cp10k[:, g][counts[:, g] > 0]
        assert medians[3 + g] == pytest.approx(np.median(nonzero))
    assert (medians[:3] == 1.0).all()
    tokens = data.tokenize(adata, vocab, context_genes=4, medians=medians)
    for c in range(3):  # reference: sort the expressed genes by cp10k / median, descending
        key = cp10k[c] / medians[3:]
        expected = [3 + g for g in sorted(np.flatnonzero(counts[c]), key=lambda g: -key[g])]
        assert tokens.gene_ids[c, : len(expected)].tolist() == expected
        assert (tokens.gene_ids[c, len(expected) :] == data.PAD_ID).all()
    # Values stay log1p(CP10k) of the chosen genes, and the medians travel with the vocabulary.
    np.testing.assert_allclose(tokens.values[0, 0], np.log1p(cp10k[0, tokens.gene_ids[0, 0] - 3]), rtol=1e-5)
    GeneVocab(vocab.genes, medians).save(tmp_path / "v.json")
    np.testing.assert_array_equal(GeneVocab.load(tmp_path / "v.json").medians, medians)
    with pytest.raises(ScfmDataError, match="medians"):
        GeneVocab(vocab.genes, medians[:-1])


def test_memory_mapped_tokens_and_lazy_subsets(tmp_path):
    rng = np.random.default_rng(0)
    tokens = CellTokens(rng.integers(0, 50, (40, 6)).astype(np.int64), rng.random((40, 6)).astype(np.float32))
    tokens.save(tmp_path / "t.npz")
    mapped = CellTokens.load(tmp_path / "t.npz", mmap=True)
    assert isinstance(mapped.gene_ids, np.memmap) and len(mapped) == 40 and mapped.context == 6
    np.testing.assert_array_equal(mapped.gene_ids, tokens.gene_ids)
    np.testing.assert_array_equal(mapped.values, tokens.values)
    idx = np.array([3, 7, 8, 30])
    view = mapped.subset(idx)  # stays on disk: a view of rows
    assert view.rows is not None and len(view) == 4
    inner = view.subset(np.array([1, 3]))  # a view of a view
    np.testing.assert_array_equal(inner.take(slice(None))[0], tokens.gene_ids[[7, 30]])
    np.testing.assert_array_equal(np.concatenate([g for g, _ in view.chunks(size=3)]), tokens.gene_ids[idx])
    view.save(tmp_path / "v.npz")  # saving materializes the chosen cells
    np.testing.assert_array_equal(CellTokens.load(tmp_path / "v.npz").values, tokens.values[idx])
    from scfm_lib.train import tokens_sha256

    assert tokens_sha256(view) == tokens_sha256(tokens.subset(idx))  # the content, whatever the storage
