"""The controls' constructions: what the negative control keeps and destroys, and why the positive
control must gain from corpus size."""

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

from scfm_lib import evaluate, metrics
from scfm_lib.study import controls


def test_permute_genes_keeps_each_gene_marginal_and_destroys_coexpression():
    rng = np.random.default_rng(0)
    driver = rng.poisson(3.0, size=2000)
    counts = np.column_stack([driver, driver, rng.poisson(1.0, 2000), np.zeros(2000, int)])  # genes 0 and 1 identical
    permuted = controls.permute_genes(sp.csr_matrix(counts), seed=1).toarray()
    for g in range(counts.shape[1]):
        np.testing.assert_array_equal(np.sort(permuted[:, g]), np.sort(counts[:, g]))  # the marginal is kept
    assert np.corrcoef(counts[:, 0], counts[:, 1])[0, 1] == 1.0
    assert abs(np.corrcoef(permuted[:, 0], permuted[:, 1])[0, 1]) < 0.1  # co-expression is gone
    np.testing.assert_array_equal(controls.permute_genes(sp.csr_matrix(counts), seed=1).toarray(), permuted)
    assert not np.array_equal(controls.permute_genes(sp.csr_matrix(counts), seed=2).toarray(), permuted)


def test_rare_cells_enter_the_nested_prefixes_only_after_every_common_cell():
    is_rare = np.zeros(100, bool)
    is_rare[::4] = True  # 25 rare cells
    order = controls.rare_last_order(is_rare, seed=0)
    assert sorted(order) == list(range(100))
    prefixes = controls.nested_prefixes(order, [0.01, 0.5, 0.75, 1.0], 100)
    assert not is_rare[prefixes[0.5]].any() and not is_rare[prefixes[0.75]].any()
    assert is_rare[prefixes[1.0]].sum() == 25
    assert set(prefixes[0.01]) <= set(prefixes[0.5]) <= set(prefixes[1.0])  # nested
    few = controls.few_labels(np.array(list("aabbbbcc") * 3), per_class=2, seed=0)
    assert len(few) == 6


def test_pca_that_never_saw_a_subtype_separates_it_worse():
    """The positive control's premise on a toy corpus: a direction present only in the rare cells."""
    rng = np.random.default_rng(0)
    n, g = 600, 60
    base = rng.normal(size=(n, g)) * 0.3
    kind = rng.integers(0, 3, size=n)  # three common types
    base[np.arange(n), kind] += 3.0
    rare = rng.random(n) < 0.3
    base[rare, 10:20] += 1.5  # the rare subtype's program
    order = controls.rare_last_order(rare, seed=0)
    prefixes = controls.nested_prefixes(order, [0.1, 1.0], n)
    test = rng.permutation(n)[:200]
    labelled = controls.few_labels(rare[:400].astype(int), per_class=5, seed=0)
    scores = {}
    for f, cells in prefixes.items():
        pca = PCA(n_components=3, random_state=0).fit(base[cells])
        y = evaluate.linear_probe(pca.transform(base[labelled]), rare[labelled], pca.transform(base[test]))
        scores[f] = metrics.macro_f1(rare[test], y)
    assert scores[1.0] > scores[0.1] + 0.2
