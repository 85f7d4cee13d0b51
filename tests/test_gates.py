"""The gates and the verdict: each rule on constructed records, and the context-free predictor by hand."""

import numpy as np
import pandas as pd
import pytest
import torch

from scfm_lib import train
from scfm_lib.analysis import endpoints, gates
from scfm_lib.data import PAD_ID, CellTokens
from scfm_lib.masks import random_value_mask


def rows(values: dict[float, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"fraction": f, "seed": s, "n_cells": int(f * 1000), "value": v}
            for f, vs in values.items()
            for s, v in enumerate(vs)
        ]
    )


def test_pretraining_gate_needs_both_a_margin_over_context_free_and_a_fall_with_size():
    falling = rows({0.01: [0.60, 0.61, 0.62, 0.60], 1.0: [0.50, 0.51, 0.50, 0.52]})
    assert gates.pretraining_gate(falling, context_free=0.62, margin=0.05)["passed"]
    near_context_free = gates.pretraining_gate(falling, context_free=0.52, margin=0.05)
    assert not near_context_free["beats_context_free"] and not near_context_free["passed"]
    assert near_context_free["threshold"] == pytest.approx(0.494)
    flat = rows({0.01: [0.50, 0.52, 0.49, 0.51], 1.0: [0.51, 0.50, 0.50, 0.52]})
    out = gates.pretraining_gate(flat, context_free=0.62, margin=0.05)
    assert out["beats_context_free"] and not out["falls_with_corpus_size"] and not out["passed"]


def test_representation_gate_is_seed_paired_and_names_worse_than_random():
    better = rows({0.0: [0.60, 0.62, 0.58], 0.01: [0.61, 0.63, 0.60], 1.0: [0.70, 0.71, 0.69]})
    g = gates.representation_gate(better)
    assert g["passed"] and g["largest_minus_random_init"]["mean"] == pytest.approx(0.10)
    worse = rows({0.0: [0.60, 0.62, 0.58], 0.01: [0.45, 0.47, 0.44], 1.0: [0.40, 0.41, 0.39]})
    g = gates.representation_gate(worse)
    assert not g["passed"] and g["worse_than_random_init"] and not g["beats_smallest"]
    # paired: a large shared seed effect does not hide a consistent gain
    shifted = rows({0.0: [0.2, 0.5, 0.8], 0.01: [0.21, 0.51, 0.81], 1.0: [0.25, 0.55, 0.85]})
    assert gates.representation_gate(shifted)["passed"]
    with pytest.raises(ValueError, match="random-init"):
        gates.representation_gate(rows({0.01: [0.1, 0.2], 1.0: [0.2, 0.3]}))


def _contrast(d: list[float]) -> dict:
    frozen = rows({0.01: [0.5] * len(d), 1.0: [0.5 + x for x in d]})
    finetuned = rows({0.01: [0.9] * len(d), 1.0: [0.9] * len(d)})
    return endpoints.masking_contrast(frozen, finetuned)


PASS0 = {"passed": True, "beats_context_free": True}
PASS1 = {"passed": True, "worse_than_random_init": False, "beats_random_init": True, "beats_smallest": True}


@pytest.mark.parametrize(
    "d, expected",
    [
        ([0.05, 0.06, 0.04, 0.05, 0.07, 0.05, 0.06, 0.04], "masking shown"),
        ([0.001, -0.002, 0.0, 0.002, -0.001, 0.001, 0.0, -0.001], "absence of masking shown"),
        ([0.08, -0.09, 0.07, -0.06, 0.09, -0.08, 0.05, -0.07], "inconclusive"),
    ],
)
def test_verdict_from_D(d, expected):
    out = gates.verdict(PASS0, PASS1, _contrast(d), margin=0.02, positive_detected=True, negative_equivalent=True)
    assert out["verdict"] == expected
    assert out["detectable_D"] > 0


def test_verdict_says_nothing_to_mask_when_a_gate_fails_and_no_evidence_when_a_control_fails():
    d = _contrast([0.05] * 4 + [0.06] * 4)
    failed0 = {"passed": False, "beats_context_free": False}
    assert gates.verdict(failed0, PASS1, d, 0.02, True, True)["verdict"] == "nothing to mask"
    worse = {**PASS1, "passed": False, "worse_than_random_init": True}
    out = gates.verdict(PASS0, worse, d, 0.02, True, True)
    assert out["verdict"] == "nothing to mask" and "random-init" in out["reason"]
    assert gates.verdict(PASS0, PASS1, d, 0.02, False, True)["verdict"] == "no evidence either way"
    assert gates.verdict(PASS0, PASS1, d, 0.02, True, False)["verdict"] == "no evidence either way"


def test_context_free_loss_by_hand_and_on_the_validation_masks():
    gene_ids = np.array([[3, 4, 5, PAD_ID], [3, 5, PAD_ID, PAD_ID]], dtype=np.int64)
    values = np.array([[1.0, 2.0, 3.0, 0.0], [3.0, 5.0, 0.0, 0.0]], dtype=np.float32)
    tokens = CellTokens(gene_ids, values)
    # scgpt: gene means 3 -> 2.0, 4 -> 2.0, 5 -> 4.0; score on the same masks reconstruction_loss draws
    mask = random_value_mask(torch.from_numpy(gene_ids[:, :3]), 0.5, torch.Generator().manual_seed(0)).numpy()
    means = {3: 2.0, 4: 2.0, 5: 4.0}
    ids, vals = gene_ids[:, :3][mask], values[:, :3][mask]
    expected = np.mean([(means[int(i)] - v) ** 2 for i, v in zip(ids, vals)])
    assert gates.context_free_loss(tokens, tokens, "scgpt", mask_ratio=0.5) == pytest.approx(expected)
    # geneformer: add-one frequencies over the vocabulary seen (ids 3..5): 3 -> 3/8, 4 -> 2/8, 5 -> 3/8
    p = {3: 3 / 8, 4: 2 / 8, 5: 3 / 8}
    expected = -np.mean([np.log(p[int(i)]) for i in ids])
    assert gates.context_free_loss(tokens, tokens, "geneformer", mask_ratio=0.5) == pytest.approx(expected)


def test_context_free_loss_is_what_an_untrained_predictor_of_gene_means_scores():
    """A model cannot be fairly compared with a baseline scored on other positions: the masks match."""
    rng = np.random.default_rng(0)
    gene_ids = np.sort(rng.choice(np.arange(3, 40), size=(50, 12)), axis=1).astype(np.int64)
    values = rng.gamma(2.0, 1.0, size=(50, 12)).astype(np.float32)
    tokens = CellTokens(gene_ids, values)
    generator = torch.Generator().manual_seed(train.VAL_MASK_SEED)
    mask = random_value_mask(torch.from_numpy(gene_ids), 0.25, generator).numpy()
    assert mask.sum() == sum(int(np.ceil(0.25 * 12)) for _ in range(50))
    loss = gates.context_free_loss(tokens, tokens, "scgpt")
    assert 0 < loss < values.var() * 1.5
