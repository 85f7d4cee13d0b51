"""Probes: program retrieval against sklearn and constructed embeddings, exact token edits,
in-silico perturbation on a model whose answer is known by construction."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from scfm_lib import probes
from scfm_lib.data import PAD_ID, CellTokens, GeneVocab
from scfm_lib.model import ScFM, ScFMConfig
from scfm_lib.probes import programs
from scfm_lib.train import embed

torch.set_num_threads(1)


# ------------------------------------------------------------------------------ program retrieval
def block_programs(n_programs, size, n_other=0):
    """Programs P0.. of ``size`` consecutive genes, then ``n_other`` genes in no program."""
    names = [f"g{i}" for i in range(n_programs * size + n_other)]
    programs = {f"P{p}": names[p * size : (p + 1) * size] for p in range(n_programs)}
    return names, programs


def test_perfect_embedding_gives_map_one():
    names, programs = block_programs(4, 5, n_other=6)
    rng = np.random.default_rng(0)
    emb = np.zeros((len(names), 16))
    for p in range(4):  # members share a one-hot direction, plus small noise
        emb[p * 5 : (p + 1) * 5, p] = 1.0
    emb[:20] += rng.normal(0, 0.01, (20, 16))
    emb[20:, 4:] = rng.normal(0, 1, (6, 12))  # genes in no program: other directions
    out = probes.program_retrieval(emb, names, programs)
    assert out["map"] == pytest.approx(1.0)
    assert out["n_queries"] == 20 and out["n_programs"] == 4 and out["n_candidates"] == 25
    assert out["chance"] == pytest.approx(4 / 25)  # every query: 4 mates among 25 other genes
    assert out["map_over_chance"] == pytest.approx(1.0 - out["chance_ap"])
    # Shuffling which gene sits in which row destroys the structure.
    shuffled = probes.program_retrieval(emb[rng.permutation(len(names))], names, programs)
    assert shuffled["map"] < 0.7


def test_random_embeddings_score_near_chance():
    names, programs = block_programs(30, 10, n_other=300)  # 300 queries, 9 mates among 599 genes
    emb = np.random.default_rng(1).normal(size=(len(names), 32))
    out = probes.program_retrieval(emb, names, programs)
    assert out["chance"] == pytest.approx(9 / 599)
    assert out["chance_ap"] > out["chance"]
    assert abs(out["map"] - out["chance_ap"]) < 0.01
    assert abs(out["map_over_chance"]) < 0.02


def test_chance_ap_is_the_expected_ap_of_random_rankings():
    rng = np.random.default_rng(2)
    for n_pos, n, k in ((1, 30, None), (4, 30, None), (4, 30, 5), (10, 12, 3)):
        relevant = np.zeros((20000, n), dtype=bool)
        relevant[:, :n_pos] = True
        scores = rng.random((20000, n))  # a random ranking per row
        simulated = programs._average_precision(scores, relevant, k).mean()
        exact = programs._random_ap(np.array([n_pos]), n, k)[0]
        assert simulated == pytest.approx(exact, abs=0.01), (n_pos, n, k)


def test_average_precision_matches_sklearn():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(40, 25))
    scores[:, 5:10] = np.round(scores[:, 5:10])  # ties, which sklearn scores per block
    scores[:, 10:12] = scores[:, 12:14]
    relevant = rng.random((40, 25)) < 0.3
    relevant[:, 0] = True
    ours = programs._average_precision(scores, relevant)
    reference = [average_precision_score(r, s) for r, s in zip(relevant, scores)]
    np.testing.assert_allclose(ours, reference, atol=1e-12)


def test_program_retrieval_matches_sklearn_per_query():
    names, programs = block_programs(3, 4, n_other=5)
    programs["P_overlap"] = ["g0", "g4", "g8"]  # g0 is in two programs: union of mates
    programs["P_absent"] = ["g1", "not_a_gene"]  # 1 member present: no program
    emb = np.random.default_rng(4).normal(size=(len(names), 6))
    out = probes.program_retrieval(emb, names, programs)
    sims = emb @ emb.T / np.outer(np.linalg.norm(emb, axis=1), np.linalg.norm(emb, axis=1))
    groups = [set(v) for k, v in programs.items() if k != "P_absent"]
    aps, shares = [], []
    for q, name in enumerate(names):
        mates = set().union(*[g for g in groups if name in g]) - {name}
        if not mates:
            continue
        others = [i for i in range(len(names)) if i != q]
        labels = [names[i] in mates for i in others]
        aps.append(average_precision_score(labels, sims[q, others]))
        shares.append(len(mates) / len(others))
    assert out["n_queries"] == len(aps) == 12 and out["n_programs"] == 4
    assert out["map"] == pytest.approx(np.mean(aps))
    assert out["chance"] == pytest.approx(np.mean(shares))
    assert out["map_over_chance"] == pytest.approx(np.mean(aps) - out["chance_ap"])


def test_program_retrieval_at_k():
    names, programs = block_programs(2, 3, n_other=3)
    emb = np.eye(9)
    emb[1] = emb[0]  # g0, g1 identical: each other's top hit; the other genes orthogonal to all
    out = probes.program_retrieval(emb, names, programs, k=1)
    # g0, g1: the top hit is a mate, AP@1 = 1. g2..g5: all 8 candidates tie (2 mates): the block's
    # mates count pro rata, 2/8 of a hit at position 1, with the block's precision 2/8.
    assert out["map"] == pytest.approx((1 + 1 + 4 * (2 / 8) * (2 / 8)) / 6)
    assert out["n_queries"] == 6
    # Tie handling does not depend on the order of the genes.
    order = np.random.default_rng(0).permutation(9)
    permuted = probes.program_retrieval(emb[order], [names[i] for i in order], programs, k=1)
    assert permuted["map"] == pytest.approx(out["map"])
    # k at or beyond the number of candidates is the full AP.
    full = probes.program_retrieval(emb, names, programs)
    assert probes.program_retrieval(emb, names, programs, k=100)["map"] == pytest.approx(full["map"])


def test_program_retrieval_errors():
    names, programs = block_programs(2, 3)
    with pytest.raises(ValueError, match="one row per name"):
        probes.program_retrieval(np.zeros((5, 2)), names, programs)
    with pytest.raises(ValueError, match="no program"):
        probes.program_retrieval(np.zeros((6, 2)), [f"x{i}" for i in range(6)], programs)


# ------------------------------------------------------------------------------ token edits
def toks(ids, vals):
    return CellTokens(np.array(ids, dtype=np.int64), np.array(vals, dtype=np.float32))


def assert_tokens(actual, ids, vals):
    np.testing.assert_array_equal(actual.gene_ids, np.array(ids, dtype=np.int64))
    np.testing.assert_array_equal(actual.values, np.array(vals, dtype=np.float32))
    assert actual.gene_ids.dtype == np.int64 and actual.values.dtype == np.float32


# Rows: gene 7 in the middle; gene 7 first and context full; gene 7 absent and padded; empty cell.
CELLS = toks(
    [[5, 7, 9, 0], [7, 4, 6, 8], [3, 4, 0, 0], [0, 0, 0, 0]],
    [[3.0, 2.0, 1.0, 0], [4.0, 3.0, 2.0, 1.0], [2.5, 0.5, 0, 0], [0, 0, 0, 0]],
)


def test_delete_gene_exact():
    out = probes.delete_gene(CELLS, 7)
    assert_tokens(
        out,
        [[5, 9, 0, 0], [4, 6, 8, 0], [3, 4, 0, 0], [0, 0, 0, 0]],
        [[3.0, 1.0, 0, 0], [3.0, 2.0, 1.0, 0], [2.5, 0.5, 0, 0], [0, 0, 0, 0]],
    )
    np.testing.assert_array_equal(CELLS.gene_ids[0], [5, 7, 9, 0])  # pure: the input is untouched
    assert_tokens(probes.delete_gene(CELLS, 11), CELLS.gene_ids, CELLS.values)  # absent everywhere
    np.testing.assert_array_equal(probes.holds_gene(CELLS, 7), [True, True, False, False])
    with pytest.raises(ValueError, match="special token"):
        probes.delete_gene(CELLS, PAD_ID)


def test_overexpress_gene_geneformer_exact():
    out = probes.overexpress_gene(CELLS, 7, "geneformer")
    assert_tokens(
        out,
        [
            [7, 5, 9, 0],  # moved to rank 0, the gene above it moved down
            [7, 4, 6, 8],  # already top: unchanged
            [7, 3, 4, 0],  # inserted at rank 0 into the padding
            [7, 0, 0, 0],
        ],  # empty cell: the gene alone, value 0
        [[3.0, 3.0, 1.0, 0], [4.0, 3.0, 2.0, 1.0], [2.5, 2.5, 0.5, 0], [0, 0, 0, 0]],
    )
    full = probes.overexpress_gene(toks([[5, 6, 8, 9]], [[4.0, 3.0, 2.0, 1.0]]), 7, "geneformer")
    assert_tokens(full, [[7, 5, 6, 8]], [[4.0, 4.0, 3.0, 2.0]])  # full and absent: the last rank drops


def test_overexpress_gene_scgpt_exact():
    out = probes.overexpress_gene(CELLS, 7, "scgpt")
    assert_tokens(
        out,
        [
            [5, 7, 9, 0],  # present: value raised in place to the cell's max
            [7, 4, 6, 8],
            [7, 3, 4, 0],  # absent: inserted first with the max value
            [7, 0, 0, 0],
        ],
        [[3.0, 3.0, 1.0, 0], [4.0, 3.0, 2.0, 1.0], [2.5, 2.5, 0.5, 0], [0, 0, 0, 0]],
    )
    full = probes.overexpress_gene(toks([[5, 6, 8, 9]], [[4.0, 3.0, 2.0, 1.0]]), 7, "scgpt")
    assert_tokens(full, [[7, 5, 6, 8]], [[4.0, 4.0, 3.0, 2.0]])  # full and absent: the lowest gene drops
    with pytest.raises(ValueError, match="family"):
        probes.overexpress_gene(CELLS, 7, "bert")


# ------------------------------------------------------------------------------ perturbation
D, N_GENES, CONTEXT = 8, 12, 6
VOCAB = GeneVocab([f"G{i}" for i in range(N_GENES)])
DRIVER = "G0"


def transparent_model(family):
    """An ScFM whose cell embedding is the mean of LayerNorm(gene embedding) over the cell's
    genes: the readout is the last layer (after ln_f), the residual branches, value/rank embeddings are zeroed.
    The driver's embedding is the direction e_0; other genes point elsewhere (e_1.. e_7, never e_0)."""
    model = ScFM(
        ScFMConfig(
            vocab_size=len(VOCAB),
            family=family,
            context_genes=CONTEXT,
            d_model=D,
            n_layers=1,
            n_heads=1,
            pooling="mean",
            readout_layer=-1,
        ),
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        for block in model.blocks:
            for linear in (block.attn.proj, block.mlp[2]):
                linear.weight.zero_(), linear.bias.zero_()
        if family == "scgpt":
            model.value_encoder[2].weight.zero_(), model.value_encoder[2].bias.zero_()
        else:
            model.rank_embedding.weight.zero_()
        weight = torch.zeros(len(VOCAB), D)
        for i, gene_id in enumerate(VOCAB.encode(VOCAB.genes)):
            weight[gene_id, 0 if i == 0 else 1 + (i - 1) % (D - 1)] = 1.0
        model.gene_embedding.weight.copy_(weight)
    return model.eval()


def reference_embedding(model, tokens):
    """What the transparent model computes, by hand: mean over genes of LayerNorm(embedding)."""
    w = model.gene_embedding.weight.detach().numpy().astype(np.float64)
    out = []
    for ids in tokens.gene_ids:
        x = w[ids[ids != PAD_ID]]
        x = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
        out.append(x.mean(0))
    return np.array(out)


def cells(with_driver, n=5, seed=0):
    """Cells of 3..5 non-driver genes (values descending), the driver first if ``with_driver``."""
    rng = np.random.default_rng(seed)
    ids = np.full((n, CONTEXT), PAD_ID, dtype=np.int64)
    vals = np.zeros((n, CONTEXT), dtype=np.float32)
    for c in range(n):
        genes = list(rng.choice(VOCAB.encode(VOCAB.genes[1:]), rng.integers(3, 6), replace=False))
        genes = VOCAB.encode([DRIVER]).tolist() + genes if with_driver else genes
        ids[c, : len(genes)] = genes
        vals[c, : len(genes)] = np.sort(rng.uniform(0.5, 3.0, len(genes)))[::-1]
    return CellTokens(ids, vals)


@pytest.mark.parametrize("family", ["scgpt", "geneformer"])
def test_perturbation_shift_signs_and_values(family):
    model = transparent_model(family)
    type_a, type_b = cells(True, seed=1), cells(False, seed=2)
    target = embed(model, type_a).mean(0)  # "type A": the cells holding the driver
    np.testing.assert_allclose(embed(model, type_a), reference_embedding(model, type_a), atol=1e-4)

    up = probes.perturbation_shift(model, type_b, VOCAB, DRIVER, "overexpress", target)
    down = probes.perturbation_shift(model, type_a, VOCAB, DRIVER, "delete", target)
    assert up.shape == down.shape == (5,) and up.dtype == np.float64
    assert (up > 0.05).all() and (down < -0.05).all()
    # The exact shift, from the hand computation on the edited tokens.
    cos = lambda x: x @ target / (np.linalg.norm(x, axis=1) * np.linalg.norm(target))  # noqa: E731
    edited = probes.overexpress_gene(type_b, int(VOCAB.encode([DRIVER])[0]), family)
    expected = cos(reference_embedding(model, edited)) - cos(reference_embedding(model, type_b))
    np.testing.assert_allclose(up, expected, atol=1e-4)

    # Deleting a gene the cells lack, or overexpressing one they already top, changes nothing.
    np.testing.assert_array_equal(probes.perturbation_shift(model, type_b, VOCAB, DRIVER, "delete", target), 0.0)
    assert probes.perturbation_score(model, type_a, VOCAB, DRIVER, "delete", target) == pytest.approx(down.mean())
    assert probes.perturbation_score(model, type_b, VOCAB, DRIVER, "overexpress", target) > 0


@pytest.mark.parametrize("family", ["scgpt", "geneformer"])
def test_perturbation_shift_deterministic_on_a_random_model(family):
    model = ScFM(
        ScFMConfig(
            vocab_size=len(VOCAB), family=family, context_genes=CONTEXT, d_model=16, n_layers=2, n_heads=2, dropout=0.1
        ),
        generator=torch.Generator().manual_seed(3),
    )
    model.train()  # dropout on: the probe must switch it off
    tokens = cells(False, n=7, seed=4)
    target = np.random.default_rng(5).normal(size=16)
    first = probes.perturbation_shift(model, tokens, VOCAB, "G3", "overexpress", target, batch_size=3)
    second = probes.perturbation_shift(model, tokens, VOCAB, int(VOCAB.encode(["G3"])[0]), "overexpress", target)
    assert first.shape == (7,) and np.isfinite(first).all() and np.abs(first).max() > 0
    np.testing.assert_allclose(first, second, atol=1e-6)
    assert model.training  # the caller's mode is restored


def test_perturbation_shift_errors():
    model = transparent_model("scgpt")
    tokens = cells(True)
    with pytest.raises(ValueError, match="mode"):
        probes.perturbation_shift(model, tokens, VOCAB, DRIVER, "knockdown", np.ones(D))
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        probes.perturbation_shift(model, tokens, VOCAB, "NOPE", "delete", np.ones(D))
    with pytest.raises(ValueError, match="target_embedding"):
        probes.perturbation_shift(model, tokens, VOCAB, DRIVER, "delete", np.ones(D + 1))


# ------------------------------------------------------------------------------ gene embeddings
def test_gene_embeddings_are_the_embedding_rows():
    model = ScFM(
        ScFMConfig(vocab_size=len(VOCAB), d_model=D, n_layers=1, n_heads=1), generator=torch.Generator().manual_seed(0)
    )
    names, matrix = probes.gene_embeddings(model, VOCAB)
    assert names == VOCAB.genes and matrix.dtype == np.float32 and matrix.shape == (N_GENES, D)
    np.testing.assert_array_equal(matrix, model.gene_embedding.weight.detach().numpy()[3:])
    names, matrix = probes.gene_embeddings(model, VOCAB, ["G5", "G1"])
    assert names == ["G5", "G1"]
    np.testing.assert_array_equal(matrix, model.gene_embedding.weight.detach().numpy()[[8, 4]])
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        probes.gene_embeddings(model, VOCAB, ["G1", "NOPE"])


# ------------------------------------------------------------------------------ the probe of a checkpoint
@pytest.mark.parametrize("family", ["scgpt", "geneformer"])
def test_perturbation_probe_rows_match_the_scores(family):
    model = transparent_model(family)
    type_a, type_b = cells(True, n=6, seed=1), cells(False, n=6, seed=2)
    tokens = CellTokens(
        np.concatenate([type_a.gene_ids, type_b.gene_ids]), np.concatenate([type_a.values, type_b.values])
    )
    labels = np.array(["A"] * 6 + ["B"] * 6)
    drivers = {"A": DRIVER, "B": "G5", "C": DRIVER, "D": "NOT_IN_VOCAB"}  # C has no cells, D no gene
    table = probes.perturbation_probe(model, tokens, labels, VOCAB, drivers, n_cells=4, seed=0)
    assert list(table["cell_type"]) == ["A", "B"]
    row = table.set_index("cell_type").loc["A"]
    assert row["n_overexpressed"] == 4 and row["n_deleted"] == 4  # every A cell holds the driver
    # Overexpressing A's driver in B cells moves them toward A; deleting it moves A cells away.
    assert row["overexpress_toward"] > 0.05 and row["delete_away"] > 0.05
    target = embed(model, type_a).mean(0)
    assert row["overexpress_toward"] == pytest.approx(
        probes.perturbation_score(
            model, tokens.subset(np.flatnonzero(labels == "B")), VOCAB, DRIVER, "overexpress", target
        ),
        abs=0.05,
    )  # 4 of the 6 B cells: close to the mean over all 6
    again = probes.perturbation_probe(model, tokens, labels, VOCAB, drivers, n_cells=4, seed=0)
    pd_testing = pytest.importorskip("pandas").testing
    pd_testing.assert_frame_equal(table, again)  # seeded: the same draw


def test_perturbation_probe_without_holders_gives_nan_delete():
    model = transparent_model("scgpt")
    tokens = cells(False, n=8, seed=3)  # nobody holds the driver
    labels = np.array(["A"] * 4 + ["B"] * 4)
    table = probes.perturbation_probe(model, tokens, labels, VOCAB, {"A": DRIVER}, n_cells=10)
    assert table.loc[0, "n_deleted"] == 0 and np.isnan(table.loc[0, "delete_away"])
    assert table.loc[0, "n_overexpressed"] == 4
    with pytest.raises(ValueError, match="labels for"):
        probes.perturbation_probe(model, tokens, labels[:3], VOCAB, {"A": DRIVER})
