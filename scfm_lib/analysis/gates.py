"""The study's gates and its verdict: is there something to mask, and does finetuning hide it?

- **Gate 0 (pretraining learns)**, per family: at the end of pretraining (a) the held-out
  pretraining loss of the largest corpus beats the context-free predictor of the same loss by
  the profile's margin (``loss <= (1 - margin) * context_free``), and (b) the loss falls with
  corpus size: the seed-paired drop from the smallest to the largest corpus has a t-interval
  above 0.
- **Gate 1 (representation)**, per family and task: the largest corpus's frozen readout beats
  both the random-init control and the smallest corpus, each seed-paired, intervals above 0.
- **Verdict**, per family and task, from the gates, the controls and D (see
  :func:`scfm_lib.analysis.endpoints.masking_contrast`): "masking shown" (D's interval above 0),
  "absence of masking shown" (D equivalent to 0 within the metric's margin), "nothing to mask"
  (a gate failed), "inconclusive" (with the smallest D the design could have seen), or "no
  evidence either way" when a control failed (the pipeline could not see a built-in effect, or
  saw one where there is none).

The context-free predictors (:func:`context_free_loss`) score the same masked positions as the
models' validation loss (:func:`scfm_lib.train.reconstruction_loss`): each gene's mean value
over the training tokens (scgpt's masked-value MSE) and each gene's frequency among them
(geneformer's masked-gene cross-entropy).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from scfm_lib.analysis import endpoints
from scfm_lib.analysis.power import detectable_effect  # the function: verdict's `power` argument shadows the module
from scfm_lib.data import PAD_ID, CellTokens

VERDICTS = ("masking shown", "absence of masking shown", "nothing to mask", "inconclusive", "no evidence either way")


def context_free_loss(
    train: CellTokens, val: CellTokens, family: str, mask_ratio: float = 0.25, seed: int = 0, batch_size: int = 256
) -> float:
    """The pretraining loss of a predictor that ignores every other gene of the cell (>= 0).

    scgpt: each masked value predicted by the gene's mean value over ``train``'s tokens (the mean
    of all values for a gene never seen), scored by squared error. geneformer: each masked gene
    predicted by its frequency among ``train``'s tokens (add-one smoothed over the genes of the
    vocabulary; special tokens excluded), scored by cross-entropy in nats. The masks are the ones
    :func:`scfm_lib.train.reconstruction_loss` draws for ``val`` with the same ``seed``,
    ``mask_ratio`` and ``batch_size``, so the two losses score the same positions.

    Parameters
    ----------
    train : CellTokens
        The training cells the predictor is fitted on.
    val : CellTokens
        The validation cells scored.
    family : str
        ``"scgpt"`` or ``"geneformer"``.
    mask_ratio, seed, batch_size
        As :func:`scfm_lib.train.reconstruction_loss` (they decide the masks).

    Returns
    -------
    float
        Mean loss per masked position, >= 0 (MSE or nats); NaN when nothing is masked.

    Raises
    ------
    ValueError
        When ``family`` is not a model family.
    """
    # Imported here: the other gates (and the chapters that read them) need no torch (5 s to import).
    import torch

    from scfm_lib.masks import random_value_mask
    from scfm_lib.train import _tensors  # the batch trimming that decides the masks' shape

    gene_ids, values = train.take(slice(None))
    present = gene_ids != PAD_ID
    n_tokens = int(max(gene_ids.max(initial=0), val.take(slice(None))[0].max(initial=0))) + 1
    if family == "scgpt":
        sums = np.bincount(gene_ids[present], weights=values[present], minlength=n_tokens)
        counts = np.bincount(gene_ids[present], minlength=n_tokens)
        predictor = np.where(counts > 0, sums / np.maximum(counts, 1), values[present].mean())
    elif family == "geneformer":
        counts = np.bincount(gene_ids[present], minlength=n_tokens).astype(float) + 1.0
        counts[: PAD_ID + 3] = 0.0  # <pad>, <cls>, <mask>: never targets
        log_p = np.log(np.where(counts > 0, counts, 1.0) / counts.sum())
    else:
        raise ValueError(f"family must be 'scgpt' or 'geneformer', got {family!r}")
    generator = torch.Generator().manual_seed(seed)
    total, n = 0.0, 0
    for start in range(0, len(val), batch_size):
        ids, vals = _tensors(val, slice(start, start + batch_size))  # [b, l] each
        mask = random_value_mask(ids, mask_ratio, generator).numpy()
        target_ids, target_values = ids.numpy()[mask], vals.numpy()[mask]
        if family == "scgpt":
            total += float(((predictor[target_ids] - target_values) ** 2).sum())
        else:
            total -= float(log_p[target_ids].sum())
        n += int(mask.sum())
    return total / n if n else float("nan")


def _paired_drop(series: pd.DataFrame, low: float, high: float, sign: float, ci: float) -> dict:
    """Per seed ``sign * (value(high) - value(low))``, as a paired estimate (positive = better at high)."""
    by = series.groupby(["fraction", "seed"])["value"].mean().unstack("fraction")
    diff = (sign * (by[high] - by[low])).dropna()
    return endpoints.paired_estimate(diff.to_numpy(), ci).to_dict()


def pretraining_gate(val_loss: pd.DataFrame, context_free: float, margin: float, ci: float = 0.95) -> dict:
    """Gate 0 for one family: the pretraining loss beats the context-free predictor and falls with size.

    Parameters
    ----------
    val_loss : pandas.DataFrame
        One row per pretrained run: ``fraction`` (> 0), ``seed``, ``value`` (held-out loss at the
        end of pretraining; lower is better).
    context_free : float
        :func:`context_free_loss` on the same validation cells.
    margin : float
        Relative margin in [0, 1): the largest corpus must reach ``(1 - margin) * context_free``.
    ci : float
        Confidence level of the paired drop's t-interval, in (0, 1).

    Returns
    -------
    dict
        ``beats_context_free`` and ``falls_with_corpus_size`` (bools), ``passed`` (both), the mean
        loss per fraction, the context-free loss, the threshold and the paired drop (smallest minus
        largest corpus; > 0 = the loss falls).

    Raises
    ------
    ValueError
        When ``margin`` lies outside [0, 1).
    """
    if not 0 <= margin < 1:
        raise ValueError(f"margin must lie in [0, 1), got {margin}")
    runs = val_loss[val_loss["fraction"] > 0]
    low, high = float(runs["fraction"].min()), float(runs["fraction"].max())
    means = runs.groupby("fraction")["value"].mean()
    threshold = (1 - margin) * context_free
    drop = _paired_drop(runs, low, high, sign=-1.0, ci=ci)
    beats = bool(means.loc[high] <= threshold)
    falls = bool(drop["ci_low"] > 0)
    return {
        "passed": beats and falls,
        "beats_context_free": beats,
        "falls_with_corpus_size": falls,
        "loss_by_fraction": {float(f): float(v) for f, v in means.items()},
        "context_free_loss": float(context_free),
        "margin": float(margin),
        "threshold": float(threshold),
        "drop_smallest_to_largest": drop,
        "fractions": [low, high],
    }


def representation_gate(frozen: pd.DataFrame, ci: float = 0.95) -> dict:
    """Gate 1 for one family and task: the frozen readout at the largest corpus beats the controls.

    It is compared with the random-init control (fraction 0) and with the smallest pretrained
    corpus, seed-paired.

    Parameters
    ----------
    frozen : pandas.DataFrame
        Rows ``fraction``, ``seed``, ``value`` (higher is better) including fraction 0.
    ci : float
        Confidence level of the paired t-intervals, in (0, 1).

    Returns
    -------
    dict
        ``passed``, ``beats_random_init``, ``beats_smallest``, ``worse_than_random_init`` (the
        interval lies below 0: pretraining removed what random weights give) and both estimates
        (``largest_minus_random_init``, ``largest_minus_smallest``).

    Raises
    ------
    ValueError
        When ``frozen`` lacks the random-init control (fraction 0).
    """
    pretrained = frozen[frozen["fraction"] > 0]
    if not (frozen["fraction"] == 0).any():
        raise ValueError("gate 1 needs the random-init control (fraction 0.0) in the records")
    low, high = float(pretrained["fraction"].min()), float(pretrained["fraction"].max())
    vs_random = _paired_drop(frozen, 0.0, high, sign=1.0, ci=ci)
    vs_smallest = _paired_drop(frozen, low, high, sign=1.0, ci=ci)
    beats_random, beats_smallest = vs_random["ci_low"] > 0, vs_smallest["ci_low"] > 0
    return {
        "passed": bool(beats_random and beats_smallest),
        "beats_random_init": bool(beats_random),
        "beats_smallest": bool(beats_smallest),
        "worse_than_random_init": bool(vs_random["ci_high"] < 0),
        "largest_minus_random_init": vs_random,
        "largest_minus_smallest": vs_smallest,
    }


def verdict(
    gate0: dict,
    gate1: dict,
    contrast: dict,
    margin: float,
    positive_detected: bool,
    negative_equivalent: bool,
    power: float = 0.8,
) -> dict:
    """The verdict for one family and task, and the smallest D the design could have seen.

    Parameters
    ----------
    gate0 : dict
        :func:`pretraining_gate` of the family.
    gate1 : dict
        :func:`representation_gate` of the family and task.
    contrast : dict
        :func:`scfm_lib.analysis.endpoints.masking_contrast`.
    margin : float
        The metric's equivalence margin (:func:`scfm_lib.analysis.equivalence.equivalence_margin`).
    positive_detected : bool
        Whether the positive control's built-in effect was detected.
    negative_equivalent : bool
        Whether the negative control was shown equivalent to 0.
    power : float
        The power at which ``detectable_D`` is computed, in (0, 1).

    Returns
    -------
    dict
        ``{"verdict", "reason", "equivalence", "detectable_D"}``; ``verdict`` is one of
        :data:`VERDICTS`, ``detectable_D`` in metric units (NaN with fewer than 2 seeds).
    """
    D = contrast["D"]
    eq = {"margin": margin, "ci90_low": float("nan"), "ci90_high": float("nan"), "equivalent": False}
    if D["n"] >= 2 and np.isfinite(D["sd"]):
        # the 90% interval of D from its mean, sd and n (the same t-interval, at the TOST level)
        half = float(sps.t.ppf(0.95, D["n"] - 1) * D["sd"] / np.sqrt(D["n"]))
        eq = {
            "margin": float(margin),
            "ci90_low": D["mean"] - half,
            "ci90_high": D["mean"] + half,
            "equivalent": bool(-margin <= D["mean"] - half and D["mean"] + half <= margin),
        }
    detectable = detectable_effect(D["sd"], D["n"], power) if D["n"] >= 2 and D["sd"] > 0 else float("nan")
    if D["n"] < 2:
        result, reason = "inconclusive", f"{D['n']} seed: no interval (the profile needs >= 2 seeds per fraction)"
    elif not (positive_detected and negative_equivalent):
        failed = [
            name
            for name, ok in (
                ("positive control not detected", positive_detected),
                ("negative control not equivalent to 0", negative_equivalent),
            )
            if not ok
        ]
        result, reason = "no evidence either way", "; ".join(failed)
    elif not gate0["passed"]:
        result = "nothing to mask"
        reason = "pretraining does not learn at this scale: " + (
            "its loss does not beat the context-free predictor"
            if not gate0["beats_context_free"]
            else "its loss does not fall with corpus size"
        )
    elif not gate1["passed"]:
        result = "nothing to mask"
        reason = (
            "the frozen readout of the largest corpus is worse than the random-init control's"
            if gate1["worse_than_random_init"]
            else "the frozen readout of the largest corpus does not beat "
            + " and ".join(
                n
                for n, ok in (
                    ("the random-init control", gate1["beats_random_init"]),
                    ("the smallest corpus", gate1["beats_smallest"]),
                )
                if not ok
            )
        )
    elif D["ci_low"] > 0:
        result, reason = "masking shown", "D's interval lies above 0"
    elif eq["equivalent"]:
        result, reason = "absence of masking shown", f"D's 90% interval lies within +-{margin:.3f}"
    else:
        result, reason = "inconclusive", f"D's interval includes 0 and exceeds the margin +-{margin:.3f}"
    return {"verdict": result, "reason": reason, "equivalence": eq, "detectable_D": detectable}
