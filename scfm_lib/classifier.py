"""The annotation head: an ScFM encoder with a linear classifier on its cell embedding.

Finetuning (:func:`scfm_lib.train.finetune_classifier`) builds it; ``scfm_lib.model`` re-exports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

if TYPE_CHECKING:  # model.py imports this module; the encoder type is for annotations only
    from scfm_lib.model import ScFM


class CellClassifier(nn.Module):
    """An ScFM encoder with a linear head on its standardized cell embedding of ``layer``.

    The default ``layer`` is the last layer, as scGPT and Geneformer finetune: every block then
    trains; the embedding is pooled as the encoder's config says.

    The head sees ``(embedding - feature_mean) / feature_std``: fixed buffers (not trained) that
    :func:`scfm_lib.train.finetune_classifier` sets from the training cells' embeddings under the
    encoder it starts from, as the linear probe's StandardScaler does. So regime "head_only" fits
    the probe's model. Until they are set they are 0 and 1 (the raw embedding).

    Parameters
    ----------
    encoder : ScFM
        The encoder (used as given, not copied).
    n_classes : int
        Classes, >= 2: the head's outputs.
    generator : torch.Generator, optional
        Seeds the head's initialization.
    layer : int
        The encoder layer read (negative counts from the end; -1 = the last).

    Raises
    ------
    ValueError
        When ``n_classes < 2``.
    """

    def __init__(self, encoder: ScFM, n_classes: int, generator: torch.Generator | None = None, layer: int = -1):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.encoder = encoder
        self.layer = encoder.layer_index(layer)
        self.head = nn.Linear(encoder.config.d_model, n_classes)
        self.register_buffer("feature_mean", torch.zeros(encoder.config.d_model))  # [D]
        self.register_buffer("feature_std", torch.ones(encoder.config.d_model))  # [D]
        with torch.no_grad():
            nn.init.normal_(self.head.weight, 0.0, 0.02, generator=generator)
            nn.init.zeros_(self.head.bias)

    def forward(self, gene_ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Class logits of each cell.

        Parameters
        ----------
        gene_ids : torch.Tensor
            int64, shape ``(B, L)``.
        values : torch.Tensor
            float, shape ``(B, L)``.

        Returns
        -------
        torch.Tensor
            Logits, shape ``(B, n_classes)``.
        """
        z = self.encoder.cell_embedding(gene_ids, values, layer=self.layer)  # [B, D]
        return self.head((z - self.feature_mean) / self.feature_std)  # [B, C]
