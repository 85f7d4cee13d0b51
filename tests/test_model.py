"""The transformer: shapes, padding, gradients, masking, config validation."""
import numpy as np
import pytest
import torch

from scfm_lib.data import PAD_ID
from scfm_lib.model import CellClassifier, ScFM, ScFMConfig, random_value_mask

torch.set_num_threads(1)


def small_config(**changes):
    return ScFMConfig(**{"vocab_size": 40, "context_genes": 8, "d_model": 16, "n_layers": 2, "n_heads": 2,
                         **changes})


def batch(n_cells=3, length=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    gene_ids = torch.randint(3, 40, (n_cells, length), generator=g)
    gene_ids[0, 5:] = PAD_ID  # the first cell expresses only 5 genes
    values = torch.rand(n_cells, length, generator=g) * 4
    values[gene_ids == PAD_ID] = 0
    return gene_ids, values


@pytest.mark.parametrize("encoding", ["continuous", "binned"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_shapes(encoding, pooling):
    torch.manual_seed(0)
    model = ScFM(small_config(value_encoding=encoding, pooling=pooling))
    gene_ids, values = batch()
    assert model(gene_ids, values).shape == (3, 9, 16)
    assert model.cell_embedding(gene_ids, values).shape == (3, 16)
    assert model.predict_values(model(gene_ids, values)).shape == (3, 8)
    assert CellClassifier(model, 5)(gene_ids, values).shape == (3, 5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_padding_does_not_change_the_embedding(pooling):
    torch.manual_seed(0)
    model = ScFM(small_config(pooling=pooling, context_genes=12)).eval()
    gene_ids, values = batch()
    padded_ids = torch.cat([gene_ids, torch.full((3, 4), PAD_ID)], dim=1)
    padded_values = torch.cat([values, torch.zeros(3, 4)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model.cell_embedding(gene_ids, values),
                                   model.cell_embedding(padded_ids, padded_values), atol=1e-5, rtol=1e-5)


def test_gene_order_does_not_matter():
    torch.manual_seed(0)
    model = ScFM(small_config()).eval()
    gene_ids, values = batch()
    perm = torch.tensor([3, 1, 0, 2, 4, 7, 6, 5])
    with torch.no_grad():
        torch.testing.assert_close(model.cell_embedding(gene_ids[1:], values[1:]),
                                   model.cell_embedding(gene_ids[1:, perm], values[1:, perm]), atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = ScFM(small_config())
    gene_ids, values = batch()
    loss = model.masked_value_loss(gene_ids, values, 0.3, torch.Generator().manual_seed(0))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name != "cls_embedding" and "gene_embedding" not in name:
            assert p.grad.abs().sum() > 0, f"{name} receives no gradient"


def test_mask_hides_only_real_genes_and_at_least_one():
    gene_ids, _ = batch(n_cells=50, seed=1)
    gene_ids[1, 1:] = PAD_ID
    mask = random_value_mask(gene_ids, 0.25, torch.Generator().manual_seed(0))
    assert not mask[gene_ids == PAD_ID].any()
    assert (mask.sum(1) >= 1).all()
    assert mask[0].sum() == 2 and mask[2].sum() == 2  # ceil(0.25 * 5), ceil(0.25 * 8)


def test_loss_depends_only_on_masked_values_and_hides_them():
    torch.manual_seed(0)
    model = ScFM(small_config()).eval()
    gene_ids, values = batch()
    mask = random_value_mask(gene_ids, 0.25, torch.Generator().manual_seed(3))
    changed = values.clone()
    changed[mask] += 10.0  # change only the hidden values
    with torch.no_grad():
        hidden_a = model(gene_ids, values, value_mask=mask)
        hidden_b = model(gene_ids, changed, value_mask=mask)
    torch.testing.assert_close(hidden_a, hidden_b)  # the model cannot see what it must predict
    loss_a = model.masked_value_loss(gene_ids, values, 0.25, torch.Generator().manual_seed(3))
    loss_b = model.masked_value_loss(gene_ids, changed, 0.25, torch.Generator().manual_seed(3))
    assert loss_b > loss_a


@pytest.mark.parametrize("changes, fragment", [
    ({"d_model": 15}, "divisible"), ({"value_encoding": "log"}, "value_encoding"),
    ({"pooling": "max"}, "pooling"), ({"vocab_size": 2}, "vocab_size"),
])
def test_config_validation(changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        small_config(**changes)


def test_config_round_trip():
    cfg = small_config(d_ff=None)
    assert cfg.d_ff == 64 and ScFMConfig.from_dict(cfg.to_dict()) == cfg
    assert np.isfinite(ScFM(cfg).n_parameters())
