"""Zero-shot reconstruction scores of a checkpoint: the family's pretraining loss on cells it never saw.

Part of the evaluate job (:mod:`scfm_lib.study.evaluate`): held-out test cells, the out-of-distribution
set where the profile has one, and the test cells of the tissues the corpus left out
(``data.heldout_tissues``) against those of the seen tissues, on the same donors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scfm_lib import data, train
from scfm_lib.config import Profile
from scfm_lib.model import ScFM


def reconstruction_losses(
    profile: Profile,
    model: ScFM,
    tokens: data.CellTokens,
    obs: pd.DataFrame,
    test: np.ndarray,
    ood_tokens: data.CellTokens | None,
) -> dict[str, float]:
    """The masked pretraining loss of ``model`` on held-out cells (the profile's mask ratio, mask seed 0).

    Parameters
    ----------
    profile : Profile
        The study's profile (its mask ratio and ``data.heldout_tissues``).
    model : ScFM
        The checkpoint.
    tokens : CellTokens
        The downstream cells' tokens.
    obs : pandas.DataFrame
        The downstream cells' annotations (``tissue`` where the profile holds tissues out).
    test : numpy.ndarray
        The test cells' rows.
    ood_tokens : CellTokens or None
        The out-of-distribution cells' tokens, where the profile has them.

    Returns
    -------
    dict of str to float
        ``masked_loss_heldout``; ``masked_loss_ood`` with an OOD set; with held-out tissues
        ``masked_loss_unseen_tissue``, ``masked_loss_seen_tissues`` and ``unseen_tissue_gap`` (> 0:
        the model reconstructs a tissue it never saw worse than those it saw).

    Raises
    ------
    ValueError
        When the test cells hold only, or no, cells of ``data.heldout_tissues``.
    """
    mask_ratio = profile.pretrain_config().mask_ratio
    losses = {
        "masked_loss_heldout": train.reconstruction_loss(model, tokens.subset(test), mask_ratio=mask_ratio, seed=0)
    }
    if ood_tokens is not None:
        losses["masked_loss_ood"] = train.reconstruction_loss(model, ood_tokens, mask_ratio=mask_ratio, seed=0)
    if profile.data.heldout_tissues:  # the same test donors, split by tissue seen or not
        unseen = np.isin(obs["tissue"].values[test], profile.data.heldout_tissues)
        if unseen.all() or not unseen.any():
            raise ValueError(
                f"the test cells hold {'only' if unseen.all() else 'no'} cells of data.heldout_tissues "
                f"{profile.data.heldout_tissues}; the unseen-tissue comparison needs both kinds: "
                "draw more downstream cells"
            )
        for metric, cells in (("masked_loss_unseen_tissue", unseen), ("masked_loss_seen_tissues", ~unseen)):
            losses[metric] = train.reconstruction_loss(model, tokens.subset(test[cells]), mask_ratio=mask_ratio, seed=0)
        losses["unseen_tissue_gap"] = losses["masked_loss_unseen_tissue"] - losses["masked_loss_seen_tissues"]
        print(
            f"reconstruction on the unseen tissue ({int(unseen.sum())} test cells): "
            f"{losses['masked_loss_unseen_tissue']:.4f}; on the seen tissues ({int((~unseen).sum())}): "
            f"{losses['masked_loss_seen_tissues']:.4f}"
        )
    return losses
