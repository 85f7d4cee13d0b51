"""The transformer: shapes, padding and order invariance, gradients, masking, config validation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scfm_lib.data import PAD_ID
from scfm_lib.families import FAMILY_MODULES, geneformer, scgpt
from scfm_lib.masks import random_value_mask
from scfm_lib.model import FAMILIES, CellClassifier, ScFM, ScFMConfig, linear_cross_entropy, masked_rows

torch.set_num_threads(1)
VOCAB, CONTEXT, D = 40, 16, 32


def small_config(**changes) -> ScFMConfig:
    return ScFMConfig(
        **{"vocab_size": VOCAB, "context_genes": CONTEXT, "d_model": D, "n_layers": 2, "n_heads": 2, **changes}
    )


def make_model(seed=0, **changes) -> ScFM:
    return ScFM(small_config(**changes), generator=torch.Generator().manual_seed(seed))


def batch(n_cells=4, length=CONTEXT, seed=0):
    """Random cells without repeated genes; cell 0 expresses only 5 genes (the rest is padding)."""
    g = torch.Generator().manual_seed(seed)
    gene_ids = torch.stack([torch.randperm(VOCAB - 3, generator=g)[:length] + 3 for _ in range(n_cells)])
    gene_ids[0, 5:] = PAD_ID
    values = torch.rand(n_cells, length, generator=g) * 4 + 0.5
    values[gene_ids == PAD_ID] = 0
    return gene_ids, values


ENCODINGS_POOLINGS = [(e, p) for e in ("continuous", "binned") for p in ("cls", "mean")]


@pytest.mark.parametrize("encoding, pooling", ENCODINGS_POOLINGS)
def test_output_shapes(encoding, pooling):
    model = make_model(value_encoding=encoding, pooling=pooling)
    gene_ids, values = batch()
    hidden = model(gene_ids, values)
    assert hidden.shape == (4, 1 + CONTEXT, D)
    assert model.cell_embedding(gene_ids, values).shape == (4, D)
    assert scgpt.predict_values(model, hidden).shape == (4, CONTEXT)
    assert scgpt.predict_values_from_cell(model, model.pool(hidden, gene_ids), gene_ids).shape == (4, CONTEXT)
    assert CellClassifier(model, 5)(gene_ids, values).shape == (4, 5)
    loss = model.masked_value_loss(gene_ids, values, 0.25, torch.Generator().manual_seed(0))
    assert loss.shape == () and torch.isfinite(loss)


@pytest.mark.parametrize("encoding, pooling", ENCODINGS_POOLINGS)
def test_appending_padding_does_not_change_the_cell_embedding(encoding, pooling):
    model = make_model(value_encoding=encoding, pooling=pooling).eval()
    gene_ids, values = batch()
    padded_ids = torch.cat([gene_ids, torch.full((4, 7), PAD_ID)], dim=1)
    padded_values = torch.cat([values, torch.zeros(4, 7)], dim=1)
    with torch.no_grad():
        short, long = model.cell_embedding(gene_ids, values), model.cell_embedding(padded_ids, padded_values)
        assert short.abs().max() > 0.01  # a non-trivial embedding (the penultimate layer: no final LayerNorm)
        torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-5)
        # the hidden states of the real genes do not change either
        torch.testing.assert_close(
            model(gene_ids, values), model(padded_ids, padded_values)[:, : 1 + CONTEXT], atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_gene_order_does_not_matter(pooling):
    model = make_model(pooling=pooling).eval()
    gene_ids, values = batch()
    perm = torch.randperm(CONTEXT, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(
            model.cell_embedding(gene_ids, values),
            model.cell_embedding(gene_ids[:, perm], values[:, perm]),
            atol=1e-5,
            rtol=1e-5,
        )


@pytest.mark.parametrize("encoding, pooling", ENCODINGS_POOLINGS)
def test_gradients_reach_every_parameter(encoding, pooling):
    model = make_model(value_encoding=encoding, pooling=pooling)
    gene_ids, values = batch()
    if encoding == "binned":  # values across the whole range, so most bins are used
        values = torch.linspace(0, 10, 4 * CONTEXT).reshape(4, CONTEXT)
        gene_ids = gene_ids.clone()
        gene_ids[0, 5:] = torch.arange(3, 3 + CONTEXT - 5)
    loss = model.masked_value_loss(gene_ids, values, 0.3, torch.Generator().manual_seed(0))
    seen = (gene_ids != PAD_ID) & ~random_value_mask(gene_ids, 0.3, torch.Generator().manual_seed(0))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name == "gene_embedding.weight":
            used = torch.zeros(VOCAB, dtype=torch.bool)
            used[gene_ids.unique()] = True
            used[PAD_ID] = False
            assert (p.grad[used].abs().sum(1) > 0).all(), "a gene in the batch gets no gradient"
            assert (p.grad[~used] == 0).all(), "padding or absent genes get a gradient"
        elif name == "value_encoder.weight":  # binned: exactly the bins of visible values get a gradient
            bins = (values[seen] / 10.0 * 50).round().long()
            used = torch.zeros(51, dtype=torch.bool)
            used[bins] = True
            assert used.sum() > 25
            assert (p.grad[used].abs().sum(1) > 0).all() and (p.grad[~used] == 0).all()
        else:
            assert p.grad.abs().sum() > 0, f"{name} receives no gradient"


def test_mask_hides_only_real_genes_at_the_requested_ratio():
    gene_ids, _ = batch(n_cells=50, seed=1)
    gene_ids[1, 1:] = PAD_ID  # one gene: it must be masked
    gene_ids[2, :] = PAD_ID  # no gene: nothing to mask
    mask = random_value_mask(gene_ids, 0.25, torch.Generator().manual_seed(0))
    assert not mask[gene_ids == PAD_ID].any()
    assert mask[0].sum() == 2 and mask[1].sum() == 1 and mask[2].sum() == 0  # ceil(0.25 * 5), >= 1, none
    assert (mask[3:].sum(1) == 4).all()  # ceil(0.25 * 16)
    # same generator seed, same mask; another seed, another mask
    assert torch.equal(mask, random_value_mask(gene_ids, 0.25, torch.Generator().manual_seed(0)))
    assert not torch.equal(mask, random_value_mask(gene_ids, 0.25, torch.Generator().manual_seed(1)))
    # every real position gets masked sometimes (uniform choice, not always the first genes)
    hits = sum(random_value_mask(gene_ids, 0.25, torch.Generator().manual_seed(s)).int() for s in range(40))
    assert (hits[3:] > 0).all()


def test_the_model_cannot_see_the_values_it_must_predict():
    model = make_model().eval()
    gene_ids, values = batch()
    mask = random_value_mask(gene_ids, 0.25, torch.Generator().manual_seed(3))
    changed = values.clone()
    changed[mask] += 3.0
    with torch.no_grad():
        torch.testing.assert_close(
            model(gene_ids, values, mask=mask), model(gene_ids, changed, mask=mask), atol=0, rtol=0
        )
        assert not torch.equal(model(gene_ids, values), model(gene_ids, changed))  # without the mask it would


@pytest.mark.parametrize("mvc_weight", [0.0, 1.0])
def test_loss_counts_masked_positions_only(mvc_weight):
    """Silence the value encoder so values reach the loss only as targets: then changing an
    unmasked value must leave the loss exactly as it was, and changing a masked one must not."""
    model = make_model(mvc_weight=mvc_weight).eval()
    with torch.no_grad():
        model.value_encoder[2].weight.zero_()
        model.value_encoder[2].bias.zero_()
    gene_ids, values = batch()
    mask = random_value_mask(gene_ids, 0.25, torch.Generator().manual_seed(5))  # the masks the loss will draw
    real_unmasked = (gene_ids != PAD_ID) & ~mask

    def loss(v):
        with torch.no_grad():
            return model.masked_value_loss(gene_ids, v, 0.25, torch.Generator().manual_seed(5))

    changed_unmasked, changed_masked = values.clone(), values.clone()
    changed_unmasked[real_unmasked] += 2.0
    changed_masked[mask] += 2.0
    assert torch.equal(loss(values), loss(changed_unmasked))
    assert loss(changed_masked) > loss(values) + 0.5

    # and the loss is the mean squared error over the masked positions (plus the MVC term)
    with torch.no_grad():
        hidden = model(gene_ids, values, mask=mask)
        expected = ((scgpt.predict_values(model, hidden) - values)[mask] ** 2).mean()
        if mvc_weight:
            from_cell = scgpt.predict_values_from_cell(model, hidden[:, 0], gene_ids)  # MVC reads the last layer's CLS
            expected = expected + mvc_weight * ((from_cell - values)[mask] ** 2).mean()
    torch.testing.assert_close(loss(values), expected)


def test_empty_cells_do_not_break_the_loss():
    model = make_model()
    gene_ids, values = batch()
    gene_ids[1], values[1] = PAD_ID, 0.0  # a cell without expressed genes
    loss = model.masked_value_loss(gene_ids, values, 0.25, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    empty = model.masked_value_loss(
        torch.zeros_like(gene_ids), torch.zeros_like(values), 0.25, torch.Generator().manual_seed(0)
    )
    assert empty.item() == 0.0
    empty.backward()  # still part of the graph


def test_bf16_autocast_is_close_to_fp32():
    model = make_model().eval()
    gene_ids, values = batch()
    with torch.no_grad():
        full = model.cell_embedding(gene_ids, values)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model.cell_embedding(gene_ids, values)
    assert half.dtype in (torch.bfloat16, torch.float32)
    torch.testing.assert_close(half.float(), full, atol=0.1, rtol=0.05)


def test_attention_runs_in_fp32_inside_cpu_bf16_autocast(monkeypatch):
    """The CPU attention kernel is slower in bf16 (benchmarks/train_throughput.py), so inside
    bf16 autocast on CPU the attention alone computes in fp32; everything else stays bf16."""
    import scfm_lib.layers as layers_module

    seen = []
    sdpa = layers_module.F.scaled_dot_product_attention

    def recording_sdpa(q, k, v, **kwargs):
        seen.append((q.dtype, torch.is_autocast_enabled("cpu")))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(layers_module.F, "scaled_dot_product_attention", recording_sdpa)
    model = make_model().train()
    gene_ids, values = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.masked_value_loss(gene_ids, values, 0.25, torch.Generator().manual_seed(0))
    loss.backward()
    assert seen and all(entry == (torch.float32, False) for entry in seen)
    assert model.blocks[0].attn.qkv.weight.grad is not None
    seen.clear()
    model(gene_ids, values)  # fp32 outside autocast: unchanged
    assert seen and all(dtype == torch.float32 for dtype, _ in seen)


def test_initialization_is_seeded_and_nanogpt_like():
    a, b, c = make_model(seed=0), make_model(seed=0), make_model(seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.gene_embedding.weight, c.gene_embedding.weight)
    assert torch.equal(a.gene_embedding.weight[PAD_ID], torch.zeros(D))
    assert abs(a.gene_embedding.weight[3:].std().item() - 0.02) < 0.002
    assert torch.equal(a.blocks[0].attn.qkv.bias, torch.zeros(3 * D))


def test_parameter_count():
    V, F_ = VOCAB, 4 * D
    block = 2 * D + (3 * D * D + 3 * D) + (D * D + D) + 2 * D + (D * F_ + F_) + (F_ * D + D)
    expected = V * D + (D + D) + (D * D + D) + 2 * D + 2 * block + 2 * D + (D * D + D) + (D + 1) + (D * D + D)
    model = make_model()
    assert model.n_parameters() == expected
    assert model.n_parameters(include_embeddings=False) == expected - V * D
    assert make_model(mvc_weight=0.0).n_parameters() == expected - (D * D + D)  # no gene-query layer


def test_gene_ids_outside_the_vocabulary_are_refused():
    model = make_model()
    gene_ids, values = batch()
    gene_ids[2, 3] = VOCAB
    with pytest.raises(ValueError, match="vocab"):
        model(gene_ids, values)
    with pytest.raises(ValueError, match="both be"):
        model(gene_ids, values[:, :5])


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"d_model": 15}, "divisible by n_heads"),
        ({"value_encoding": "log"}, "value_encoding"),
        ({"pooling": "max"}, "pooling"),
        ({"vocab_size": 2}, "vocab_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"n_bins": 1}, "n_bins"),
        ({"max_value": 0.0}, "max_value"),
        ({"n_layers": 0}, "n_layers"),
        ({"mvc_weight": -1.0}, "mvc_weight"),
    ],
)
def test_config_validation(changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        small_config(**changes)


def test_config_round_trip():
    cfg = small_config(d_ff=None, value_encoding="binned")
    assert cfg.d_ff == 4 * D and ScFMConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ScFMConfig keys"):
        ScFMConfig.from_dict({**cfg.to_dict(), "n_head": 2})


def test_classifier_needs_two_classes():
    with pytest.raises(ValueError, match="n_classes"):
        CellClassifier(make_model(), 1)


def test_every_family_has_a_module_with_the_same_functions():
    """ScFM looks its family's module up by name: one module per name of FAMILIES, each providing
    what ScFM calls (build, init_weights, embed_input, masked_error, pretraining_loss)."""
    assert sorted(FAMILY_MODULES) == sorted(FAMILIES)
    for module in FAMILY_MODULES.values():
        for name in ("build", "init_weights", "embed_input", "masked_error", "pretraining_loss"):
            assert callable(getattr(module, name)), f"{module.__name__} has no {name}"


def test_a_model_survives_deepcopy_and_pickle():
    """Finetuning deep-copies the encoder: the family is looked up, not stored as a module attribute."""
    import copy
    import pickle

    model = make_model(family="geneformer")
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert twin._family is geneformer
        for (name, p), (twin_name, q) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
            assert name == twin_name and torch.equal(p, q)


# ---------------------------------------------------------------------------- the geneformer family
def test_geneformer_logits_only_at_masked_positions():
    model = make_model(family="geneformer")
    gene_ids, values = batch()
    mask = random_value_mask(gene_ids, 0.25, torch.Generator().manual_seed(0))
    hidden = model(gene_ids, values, mask=mask)
    assert hidden.shape == (4, 1 + CONTEXT, D)
    n_masked = int(mask.sum())
    assert geneformer.gene_logits(model, hidden[:, 1:][mask]).shape == (n_masked, VOCAB)  # [M, V], not [B, L, V]
    errors = model.masked_error(hidden, gene_ids, values, mask)
    assert errors.shape == (n_masked,) and (errors > 0).all()
    # An untrained model is near-uniform over the vocabulary: cross-entropy close to log(V).
    assert abs(float(errors.detach().mean()) - torch.log(torch.tensor(float(VOCAB)))) < 0.5
    assert not hasattr(model, "value_encoder") and model.gene_query is None


def _linear_ce_inputs(dtype, M=37, V=301, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(M, D, generator=g).to(dtype).requires_grad_()
    weight = torch.randn(V, D, generator=g).to(dtype).requires_grad_()
    bias = torch.randn(V, generator=g).requires_grad_()
    return h, weight, bias, torch.randint(0, V, (M,), generator=g), torch.rand(M, generator=g)


@pytest.mark.parametrize("dtype, chunk_rows", [(torch.float32, 5), (torch.float32, 64), (torch.bfloat16, 8)])
def test_linear_cross_entropy_matches_the_plain_expression(dtype, chunk_rows):
    """Losses and the gradients of h, weight and bias equal F.cross_entropy on the full logits,
    under an upstream gradient that differs per row (so the row scaling in backward is tested)."""
    h, weight, bias, targets, upstream = _linear_ce_inputs(dtype)
    reference = F.cross_entropy((h @ weight.T).float() + bias, targets, reduction="none")
    expected_grads = torch.autograd.grad((reference * upstream).sum(), (h, weight, bias))
    losses = linear_cross_entropy(h, weight, bias, targets, chunk_rows=chunk_rows)
    grads = torch.autograd.grad((losses * upstream).sum(), (h, weight, bias))
    assert losses.dtype == torch.float32 and losses.shape == targets.shape
    # bf16: both round d loss / d logits to bf16 before their matmuls, at different points
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(losses, reference, rtol=1e-5, atol=1e-5)
    for got, expected in zip(grads, expected_grads):
        assert got.dtype == expected.dtype
        torch.testing.assert_close(got, expected, **tol)


def test_linear_cross_entropy_without_grad_and_on_bad_input():
    h, weight, bias, targets, _ = _linear_ce_inputs(torch.float32)
    with torch.no_grad():
        losses = linear_cross_entropy(h, weight, bias, targets)
    torch.testing.assert_close(
        losses, F.cross_entropy(h.detach() @ weight.detach().T + bias.detach(), targets, reduction="none")
    )
    with pytest.raises(ValueError, match="one dtype"):
        linear_cross_entropy(h, weight.bfloat16(), bias, targets)


def test_geneformer_loss_under_autocast_matches_the_plain_head():
    """masked_error (the fused loss) against cross_entropy of gene_logits, the head written plainly,
    in bf16 autocast as pretraining runs it: the same losses and gradients."""
    gene_ids, values = batch()
    mask = random_value_mask(gene_ids, 0.25, torch.Generator().manual_seed(0))
    results = []
    for fused in (True, False):
        model = make_model(family="geneformer")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = model(gene_ids, values, mask=mask)
            errors = (
                model.masked_error(hidden, gene_ids, values, mask)
                if fused
                else F.cross_entropy(
                    geneformer.gene_logits(model, hidden[:, 1:][mask]).float(), gene_ids[mask], reduction="none"
                )
            )
        errors.mean().backward()
        results.append((errors.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (fused_errors, fused_grads), (plain_errors, plain_grads) = results
    torch.testing.assert_close(fused_errors, plain_errors)
    for name, grad in plain_grads.items():  # bf16 rounding (2^-8) apart, measured 0.4% to 1.0%
        assert float((fused_grads[name] - grad).norm() / grad.norm()) < 0.02, name


def test_masked_rows_lists_each_cells_masked_positions_in_order():
    mask = torch.tensor([[False, True, False, True], [False, False, False, False], [True, False, False, False]])
    rows, present = masked_rows(mask)
    assert rows.shape == present.shape == (3, 2)
    assert rows[0].tolist() == [1, 3] and present.tolist() == [[True, True], [False, False], [True, False]]
    assert rows[2, 0] == 0
    assert torch.equal(torch.zeros(3, 4, dtype=torch.bool).scatter(1, rows, present), mask)


def test_geneformer_pretraining_loss_equals_the_loss_on_the_full_output():
    """pretraining_loss runs the last block at the masked positions only; loss and every gradient
    equal masked_error on the full forward pass (fp32), with a cell of padding only in the batch."""
    gene_ids, values = batch(n_cells=5)
    gene_ids[4], values[4] = PAD_ID, 0.0  # nothing to mask in cell 4
    mask = random_value_mask(gene_ids, 0.25, torch.Generator().manual_seed(0))
    results = []
    for fast in (True, False):
        model = make_model(family="geneformer").train()
        if fast:
            loss = model.pretraining_loss(gene_ids, values, mask)
        else:
            loss = model.masked_error(model(gene_ids, values, mask=mask), gene_ids, values, mask).mean()
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (fast_loss, fast_grads), (full_loss, full_grads) = results
    torch.testing.assert_close(fast_loss, full_loss)
    assert fast_grads.keys() == full_grads.keys()
    for name, grad in full_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_final_rows_give_the_full_output_at_those_positions():
    model = make_model(family="geneformer").eval()
    gene_ids, values = batch()
    rows = torch.tensor([[0, 3, 3], [16, 1, 0], [5, 6, 7], [2, 9, 12]])  # any positions, repeats allowed
    with torch.no_grad():
        full = model(gene_ids, values)  # [B, 1 + L, D]
        torch.testing.assert_close(
            model(gene_ids, values, final_rows=rows), full.gather(1, rows[..., None].expand(-1, -1, D))
        )


def test_geneformer_ignores_values_and_hides_masked_identities():
    model = make_model(family="geneformer").eval()
    gene_ids, values = batch()
    mask = random_value_mask(gene_ids, 0.25, torch.Generator().manual_seed(1))
    swapped = gene_ids.clone()
    swapped[mask] = 3 + (gene_ids[mask] - 3 + 1) % (VOCAB - 3)  # other genes at the masked positions
    with torch.no_grad():
        reference = model(gene_ids, values, mask=mask)
        torch.testing.assert_close(model(swapped, values, mask=mask), reference)  # identities hidden
        torch.testing.assert_close(model(gene_ids, values * 3.0, mask=mask), reference)  # values unused
        # Rank is information: reversing the genes of a cell changes its embedding.
        order = torch.arange(CONTEXT - 1, -1, -1)
        assert not torch.allclose(
            model.cell_embedding(gene_ids[1:], values[1:]), model.cell_embedding(gene_ids[1:, order], values[1:, order])
        )


def test_geneformer_learns_a_fixed_gene_program():
    """Cells whose genes follow a fixed order: masked genes become predictable from rank."""
    torch.manual_seed(0)
    model = make_model(family="geneformer")
    program = torch.arange(3, 3 + CONTEXT)  # the same ranked genes every cell
    gene_ids = program.repeat(32, 1)
    values = torch.ones_like(gene_ids, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        loss = model.masked_value_loss(gene_ids, values, 0.25, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[0] > 3.0 and losses[-1] < 0.5 * losses[0]


def test_normalizer_splits_a_batch_into_exact_shares():
    """Two halves normalized by the global count sum to the whole batch's loss: what makes the
    data-parallel gradient equal the single-process one."""
    for family in ("scgpt", "geneformer"):
        model = make_model(family=family).eval()
        gene_ids, values = batch(n_cells=6)
        mask = random_value_mask(gene_ids, 0.25, torch.Generator().manual_seed(2))
        whole = model.pretraining_loss(gene_ids, values, mask)
        n = float(mask.sum())
        halves = sum(model.pretraining_loss(gene_ids[r::2], values[r::2], mask[r::2], n) for r in range(2))
        torch.testing.assert_close(halves, whole)


@pytest.mark.parametrize("family", ["scgpt", "geneformer"])
def test_hidden_states_and_the_penultimate_mean_readout(family):
    """hidden_states lists the input embedding and every block's output (the last after ln_f, what
    forward returns); the default cell embedding is the mean over real genes of the penultimate one,
    computed without running the later blocks; embed_layers gives every layer's pooled state."""
    from scfm_lib import train
    from scfm_lib.data import CellTokens

    model = make_model(family=family, n_layers=3, pooling="mean").eval()
    gene_ids, values = batch()
    with torch.no_grad():
        states = model.hidden_states(gene_ids, values)
        assert len(states) == 4
        torch.testing.assert_close(states[-1], model(gene_ids, values))
        present = (gene_ids != PAD_ID).float().unsqueeze(-1)
        penultimate = (states[2][:, 1:] * present).sum(1) / present.sum(1)
        torch.testing.assert_close(model.cell_embedding(gene_ids, values), penultimate)
        torch.testing.assert_close(model.cell_embedding(gene_ids, values, layer=-1, pooling="cls"), states[-1][:, 0])
        assert len(model.hidden_states(gene_ids, values, upto=1)) == 2  # stops after one block
        tokens = CellTokens(gene_ids.numpy(), values.numpy())
        layers = train.embed_layers(model, tokens)
        assert layers.shape == (4, 4, model.config.d_model)
        for layer in range(4):
            np.testing.assert_allclose(layers[layer], train.embed(model, tokens, layer=layer), atol=1e-5)
        # bit for bit at the readout layer: the evaluate job takes its primary embedding from embed_layers
        np.testing.assert_array_equal(layers[model.layer_index(None)], train.embed(model, tokens))
    with pytest.raises(ValueError, match="readout_layer"):
        small_config(n_layers=2, readout_layer=3)
    # the finetuning head reads the last layer, so every block trains
    assert CellClassifier(model, 3).layer == 3


def test_moved_names_stay_importable_from_model():
    """The loss kernel (losses.py) and the classifier head (classifier.py) live apart; model re-exports them."""
    from scfm_lib import classifier, losses, model

    for name in ("_LinearCrossEntropy", "linear_cross_entropy", "masked_rows"):
        assert getattr(model, name) is getattr(losses, name)
    assert model.CellClassifier is classifier.CellClassifier is CellClassifier
