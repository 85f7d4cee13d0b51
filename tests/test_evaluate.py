"""Frozen, zero-shot and baseline evaluations on data with a known answer."""

import numpy as np
import pytest

from scfm_lib import evaluate
from scfm_lib.atlas import AtlasConfig, SyntheticAtlas
from scfm_lib.data import encode_labels, split_cells


def blobs(n_per=60, n_classes=4, dim=8, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per)
    return centers[y] + rng.normal(0, spread, (len(y), dim)), y


def test_probes_separate_blobs_and_sit_at_chance_on_random_labels():
    Z, y = blobs()
    Z_test, y_test = blobs(seed=0)[0] + 0.01, y
    for predict in (lambda: evaluate.linear_probe(Z, y, Z_test), lambda: evaluate.knn_classify(Z, y, Z_test, k=5)):
        assert evaluate.classification_scores(y_test, predict())["accuracy"] > 0.95
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(400, 8))
    labels = rng.integers(0, 4, 400)
    chance = evaluate.classification_scores(labels[200:], evaluate.linear_probe(noise[:200], labels[:200], noise[200:]))
    assert chance["accuracy"] < 0.4


def test_leiden_finds_planted_clusters_deterministically():
    Z, y = blobs(n_per=80, spread=0.2)
    scores = evaluate.cluster_scores(Z, y, resolution=0.5, seed=0)
    assert scores["ari"] > 0.9 and scores["nmi"] > 0.9
    assert scores == evaluate.cluster_scores(Z, y, resolution=0.5, seed=0)


def test_exact_neighbors_against_a_hand_computation():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    result = evaluate.exact_neighbors(X, 6)
    d = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    expected = np.argsort(d, axis=1, kind="stable")[:, :6]
    assert result.indices.shape == (40, 6) and (result.indices[:, 0] == np.arange(40)).all()  # itself first
    assert np.array_equal(result.indices, expected)
    np.testing.assert_allclose(result.distances, np.take_along_axis(d, expected, 1), atol=1e-5)


def test_scib_scores_with_scib_metrics(monkeypatch):
    """One test only: scib-metrics compiles JAX once per process (about a minute). Every neighbour
    search, the embeddings' and kBET's, is exact: pynndescent must not run."""
    import gc

    import scib_metrics.nearest_neighbors._pynndescent as scib_pynndescent

    class NoNNDescent:
        def __init__(self, *args, **kwargs):
            raise AssertionError("scib_scores asked pynndescent for neighbours")

    monkeypatch.setattr(scib_pynndescent, "NNDescent", NoNNDescent)
    kbet_searches = []
    from scfm_lib.evaluate import integration

    exact_for_kbet = integration._exact_neighbors_as_pynndescent
    monkeypatch.setattr(
        integration,
        "_exact_neighbors_as_pynndescent",
        lambda X, n_neighbors, **kw: kbet_searches.append(len(X)) or exact_for_kbet(X, n_neighbors),
    )
    import scipy.sparse.linalg

    eigsh_generators = []  # the random generator each of kBET's eigensolver calls started from
    eigsh = scipy.sparse.linalg.eigsh
    monkeypatch.setattr(
        scipy.sparse.linalg, "eigsh", lambda *a, **kw: eigsh_generators.append(kw.get("rng")) or eigsh(*a, **kw)
    )
    Z, y = blobs(n_per=75, n_classes=4, dim=10)
    batch = np.tile([0, 1, 2], len(y) // 3)
    rng = np.random.default_rng(0)
    shifted = Z + batch[:, None] * 2.0  # an embedding with a strong batch effect
    table = evaluate.scib_scores(
        {"clean": Z, "batchy": shifted}, y, batch, pre_integrated=shifted + rng.normal(0, 0.1, Z.shape)
    )
    assert list(table.index) == ["clean", "batchy"]
    for column in ["Bio conservation", "Batch correction", "Total"]:
        assert table[column].between(0, 1).all()
    assert table.loc["clean", "Batch correction"] > table.loc["batchy", "Batch correction"]
    assert kbet_searches  # kBET's diffusion-map neighbours went through the exact search
    assert eigsh_generators and all(rng is not None for rng in eigsh_generators)  # never OS entropy
    with pytest.raises(ValueError, match=">= 2 batches"):
        evaluate.scib_scores({"clean": Z}, y, np.zeros(len(y)))
    bio_only = evaluate.scib_scores({"clean": Z}, y, None, pre_integrated=Z)  # a dataset of one batch
    assert "Bio conservation" in bio_only.columns and "Batch correction" not in bio_only.columns
    assert 0 <= bio_only.loc["clean", "Bio conservation"] <= 1
    assert gc.get_freeze_count() == 0  # the heap frozen during the benchmark is released


def test_seeded_eigsh_gives_the_same_eigenvectors_every_call(monkeypatch):
    import scipy.sparse
    import scipy.sparse.linalg

    from scfm_lib.evaluate.integration import seeded_eigsh

    calls = []  # the keyword arguments ARPACK's eigsh received under seeded_eigsh
    eigsh = scipy.sparse.linalg.eigsh
    monkeypatch.setattr(scipy.sparse.linalg, "eigsh", lambda *a, **kw: calls.append(dict(kw)) or eigsh(*a, **kw))
    recorded = scipy.sparse.linalg.eigsh
    rng = np.random.default_rng(0)
    A = scipy.sparse.random(300, 300, density=0.05, random_state=rng)
    A = (A + A.T).tocsr()
    with seeded_eigsh():
        first = scipy.sparse.linalg.eigsh(A, k=6)
        second = scipy.sparse.linalg.eigsh(A, k=6)  # each call starts afresh from the seed
        scipy.sparse.linalg.eigsh(A, k=6, v0=np.ones(300))  # a caller's own starting vector is kept
    assert np.array_equal(first[1], second[1]) and np.array_equal(first[0], second[0])
    assert all(isinstance(kw["rng"], np.random.Generator) for kw in calls[:2])
    assert calls[0]["rng"] is not calls[1]["rng"]
    assert calls[2].get("rng") is None and np.array_equal(calls[2]["v0"], np.ones(300))
    assert scipy.sparse.linalg.eigsh is recorded  # restored after the block


@pytest.fixture(scope="module")
def atlas_data():
    adata = SyntheticAtlas(AtlasConfig(n_genes=300, n_donors=12)).sample(900, seed=0)
    parts = split_cells(adata, by=None, seed=0)
    train, test = adata[parts["train"]].copy(), adata[parts["test"]].copy()
    classes, (y_train, y_test) = encode_labels(train.obs["cell_type"], test.obs["cell_type"])
    return train, test, y_train, y_test, classes


def test_baselines_beat_chance_on_the_atlas(atlas_data):
    train, test, y_train, y_test, classes = atlas_data
    y_pred = evaluate.hvg_logreg(train, y_train, test, n_top_genes=150)
    assert evaluate.classification_scores(y_test, y_pred)["accuracy"] > 3 / len(classes)
    pca_train, pca_test = evaluate.pca_embedding(train, test, n_comps=20, n_top_genes=150)
    assert pca_train.shape == (train.n_obs, 20) and pca_test.shape == (test.n_obs, 20)
    y_knn = evaluate.knn_classify(pca_train, y_train, pca_test, k=10)
    assert evaluate.classification_scores(y_test, y_knn)["accuracy"] > 3 / len(classes)


def test_pca_baseline_is_fitted_on_training_cells_only(atlas_data):
    train, test, *_ = atlas_data
    _, test_a = evaluate.pca_embedding(train, test, n_comps=10, n_top_genes=150)
    _, test_b = evaluate.pca_embedding(train, test[:50], n_comps=10, n_top_genes=150)
    np.testing.assert_allclose(test_a[:50], test_b, rtol=1e-4, atol=1e-4)  # other test cells change nothing


def test_jax_compilation_cache_is_kept_on_disk(tmp_path):
    """scIB's JAX programs are compiled once per machine: the cache folder comes from the argument,
    else $SCFM_JAX_CACHE, and a program compiled in one process is found there by the next."""
    import os
    import subprocess
    import sys

    script = (
        "import sys, jax, jax.numpy as jnp\n"
        "from scfm_lib import evaluate\n"
        "folder = evaluate.enable_jax_compilation_cache()\n"
        "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)\n"
        "print(folder)\n"
        "jax.jit(lambda x: jnp.sin(x) @ x.T + 1)(jnp.ones((8, 8))).block_until_ready()\n"
        "print(evaluate.enable_jax_compilation_cache(sys.argv[1]))\n"
    )
    env = {**os.environ, "SCFM_JAX_CACHE": str(tmp_path / "jax"), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "explicit")], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [str(tmp_path / "jax"), str(tmp_path / "explicit")]
    assert any((tmp_path / "jax").iterdir()), "the compiled program was not written to the cache"


def test_umap_kernels_compile_once_per_machine():
    """scanpy's neighbours graph (umap-learn's numba kernels) is compiled once and then read from numba's
    on-disk cache: a second process finds every kernel it runs there, compiles none, and gets the same graph."""
    import subprocess
    import sys

    script = (
        "import numpy as np, anndata as ad, scanpy as sc, umap.umap_ as uu\n"
        "from scfm_lib import evaluate\n"
        "assert evaluate.enable_umap_compilation_cache() > 0 and evaluate.enable_umap_compilation_cache() == 0\n"
        "a = ad.AnnData(np.random.default_rng(0).normal(size=(120, 8)).astype('float32'))\n"
        "sc.pp.neighbors(a, use_rep='X', n_neighbors=10, random_state=0)\n"
        "k = uu.compute_membership_strengths.stats\n"
        "print(len(k.cache_hits), len(k.cache_misses), repr(float(a.obsp['connectivities'].sum())))\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
        for _ in range(2)
    ]
    hits, misses, total = runs[1]
    assert int(hits) >= 1 and int(misses) == 0, f"the second process compiled again: {runs}"
    assert runs[0][2] == total  # the cached kernel gives the same graph
