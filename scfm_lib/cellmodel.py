"""A pretrained checkpoint as one object that works on any AnnData (scvi-tools style).

:class:`CellModel` loads a checkpoint folder once (the weights and their config, the gene
vocabulary ``vocab.json`` and, for the geneformer family, the corpus gene medians it ranks genes
by) and then embeds (``obsm``), scores (the masked pretraining loss), finetunes a classifier on and
predicts labels (``obs``) for the cells of any AnnData with raw counts in ``layers["counts"]``.

Every method tokenizes the AnnData exactly as the checkpoint's training data was tokenized
(:func:`scfm_lib.data.tokenize` with the checkpoint's vocabulary, context length and medians) and
calls the function of :mod:`scfm_lib.train` that the study itself uses, so its numbers are the
study's numbers. :func:`scfm_lib.tl.embed` is a thin wrapper over :meth:`CellModel.embed`.
The checks of its inputs (the checkpoint folder, its vocabulary, the finetuning split) are in
:mod:`scfm_lib.cellmodel_checks`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from scfm_lib import data, train
from scfm_lib.cellmodel_checks import (  # noqa: F401 (PATH_PATTERN: re-exported)
    PATH_PATTERN,
    VOCAB_FILE,
    _check_folder,
    _finetune_split,
    _load_vocab,
)
from scfm_lib.classifier import CellClassifier
from scfm_lib.io import read_json
from scfm_lib.model import ScFM


class CellModel:
    """A pretrained scFM checkpoint, loaded once, applied to any AnnData of raw counts.

    Parameters
    ----------
    checkpoint_dir
        A checkpoint folder as the pretraining job writes it,
        ``results/<profile>/checkpoints/<family>_f<fraction>_s<seed>`` (e.g.
        ``results/quick/checkpoints/geneformer_f1.0_s0``), holding ``model.safetensors``,
        ``checkpoint.json`` and ``vocab.json``.

    Attributes
    ----------
    model : ScFM
        The pretrained encoder, in eval mode. :meth:`finetune` trains a copy and leaves it unchanged.
    vocab : GeneVocab
        The gene vocabulary the checkpoint was trained with (with the gene medians for geneformer).
    family : str
        ``"scgpt"`` or ``"geneformer"``.
    context_genes : int
        Gene positions per cell (the top expressed genes a cell is tokenized to).
    checkpoint_dir : Path
        The folder the checkpoint was loaded from.
    pretrain_mask_ratio : float
        The share of genes masked in pretraining (0.25 when the checkpoint records none, as the
        random-init control); the default of :meth:`reconstruction_loss`.
    classifier, classes, label_key, finetune_log : CellClassifier, list of str, str, dict, or None
        After :meth:`finetune` (None before): the trained head, its class names in code order, the
        ``obs`` column it learnt and the log of :func:`scfm_lib.train.finetune_classifier`.

    Raises
    ------
    FileNotFoundError
        The folder, or one of its three files, is missing.
    ValueError
        ``vocab.json`` cannot be read or does not belong to these weights.
    ScfmDataError
        (:class:`scfm_lib.data.ScfmDataError`) A geneformer checkpoint's vocabulary has no gene
        medians, which it needs to rank genes.

    Examples
    --------
    >>> model = sl.CellModel.load("results/quick/checkpoints/geneformer_f1.0_s0")  # doctest: +SKIP
    >>> model.embed(adata)  # doctest: +SKIP
    """

    def __init__(self, checkpoint_dir: str | Path) -> None:
        checkpoint_dir = Path(checkpoint_dir)
        _check_folder(checkpoint_dir)
        self.model: ScFM = train.load_checkpoint(checkpoint_dir)
        self.vocab: data.GeneVocab = _load_vocab(checkpoint_dir, self.model)
        self.family: str = self.model.config.family
        self.context_genes: int = self.model.config.context_genes
        self.checkpoint_dir: Path = checkpoint_dir
        if self.family == "geneformer" and self.vocab.medians is None:
            raise data.ScfmDataError(
                f"{checkpoint_dir / VOCAB_FILE} has no gene medians, which the geneformer "
                "family needs to rank genes; save the vocabulary the data job wrote "
                f"(results/<profile>/data/{VOCAB_FILE}, with its medians) into the folder"
            )
        pretrain_config = read_json(checkpoint_dir / train.META).get("pretrain_config") or {}  # None: the 0% control
        self.pretrain_mask_ratio: float = float(pretrain_config.get("mask_ratio", 0.25))
        self.classifier: CellClassifier | None = None
        self.classes: list[str] | None = None
        self.label_key: str | None = None
        self.finetune_log: dict | None = None

    @classmethod
    def load(cls, checkpoint_dir: str | Path) -> CellModel:
        """Load a checkpoint folder; the same as ``CellModel(checkpoint_dir)``.

        Parameters
        ----------
        checkpoint_dir
            ``results/<profile>/checkpoints/<family>_f<fraction>_s<seed>`` (see :class:`CellModel`).

        Returns
        -------
        CellModel
            The loaded model.

        Examples
        --------
        >>> model = CellModel.load("results/quick/checkpoints/geneformer_f1.0_s0")  # doctest: +SKIP
        """
        return cls(checkpoint_dir)

    def __repr__(self) -> str:
        cfg = self.model.config
        head = (
            "not finetuned"
            if self.classifier is None
            else f"finetuned on obs[{self.label_key!r}]: {len(self.classes)} classes {self.classes[:5]}"
            + ("..." if len(self.classes) > 5 else "")
        )
        return (
            f"CellModel(family={self.family!r}, d_model={cfg.d_model}, n_layers={cfg.n_layers}, "
            f"n_heads={cfg.n_heads}, context_genes={self.context_genes}, vocabulary={len(self.vocab.genes)} genes, "
            f"{head}, checkpoint='{self.checkpoint_dir}')"
        )

    # ------------------------------------------------------------------ tokens
    @property
    def medians(self) -> np.ndarray | None:
        """The gene medians tokenization ranks by (geneformer), None for scgpt (genes ranked by count)."""
        return self.vocab.medians if self.family == "geneformer" else None

    def tokenize(self, adata: AnnData, *, layer: str = "counts", min_overlap: float = 0.5) -> data.CellTokens:
        """The model input for every cell of ``adata``, tokenized as the checkpoint's training data.

        Parameters
        ----------
        adata
            Cells with raw integer counts in ``adata.layers[layer]``; genes (``var_names``) outside
            the vocabulary are ignored.
        layer
            The layer holding the raw counts, or ``"log1p_norm"`` for a dataset shipped with
            log-normalized values only (as the data job tokenizes it: :func:`scfm_lib.data.tokenize`).
        min_overlap
            The smallest share of the data's detected genes that must be in the vocabulary.

        Returns
        -------
        CellTokens
            ``gene_ids`` and ``values``, [n_obs, context_genes] each.

        Raises
        ------
        scfm_lib.data.ScfmDataError
            The layer is missing or does not hold raw integer counts (log1p-normalized values for
            ``"log1p_norm"``), or too few genes are in the vocabulary; the message says how to fix it.
        """
        return data.tokenize(  # it validates the layer: counts, or log1p-normalized values
            adata, self.vocab, self.context_genes, layer=layer, min_overlap=min_overlap, medians=self.medians
        )

    # ------------------------------------------------------------------ frozen use
    def embed(
        self,
        adata: AnnData,
        *,
        key_added: str = "X_scfm",
        layer: str = "counts",
        batch_size: int = 256,
        min_overlap: float = 0.5,
    ) -> None:
        """Write each cell's embedding into ``adata.obsm[key_added]`` ([n_obs, d_model], float32).

        The embedding is the pretrained encoder's frozen readout (the config's ``readout_layer``
        and ``pooling``: by default the mean over expressed genes of the penultimate layer), as
        :func:`scfm_lib.train.embed` computes it; a finetuned classifier does not change it.

        Parameters
        ----------
        adata
            Cells with raw integer counts in ``adata.layers[layer]``.
        key_added
            The ``obsm`` key written.
        layer, min_overlap
            The raw-count layer (or ``"log1p_norm"``) and the share of detected genes that must be in
            the vocabulary (:meth:`tokenize`).
        batch_size
            Cells per forward pass.

        Returns
        -------
        None
            ``adata.obsm[key_added]`` is set.

        Examples
        --------
        >>> model.embed(adata)  # doctest: +SKIP
        >>> sc.pp.neighbors(adata, use_rep="X_scfm")  # doctest: +SKIP
        """
        tokens = self.tokenize(adata, layer=layer, min_overlap=min_overlap)
        adata.obsm[key_added] = train.embed(self.model, tokens, batch_size=batch_size)

    def reconstruction_loss(
        self,
        adata: AnnData,
        *,
        layer: str = "counts",
        mask_ratio: float | None = None,
        seed: int = train.VAL_MASK_SEED,
        batch_size: int = 256,
        min_overlap: float = 0.5,
    ) -> float:
        """The family's masked pretraining loss on these cells (>= 0, lower is better).

        The masked-value mean squared error of the expression head (scgpt) or the cross-entropy
        of masked gene identities (geneformer), averaged over masked positions, as
        :func:`scfm_lib.train.reconstruction_loss` computes it. The masks come from ``seed``, so
        two checkpoints of a family are scored on the same masks.

        Parameters
        ----------
        adata
            Cells with raw integer counts in ``adata.layers[layer]``.
        layer, min_overlap
            The raw-count layer (or ``"log1p_norm"``) and the share of detected genes that must be in
            the vocabulary (:meth:`tokenize`).
        mask_ratio
            Share of each cell's genes masked; None: the ratio the checkpoint was pretrained with
            (:attr:`pretrain_mask_ratio`).
        seed
            Seed of the masks (default 0, the study's validation masks).
        batch_size
            Cells per forward pass.

        Returns
        -------
        float
            The mean loss over masked positions.

        Examples
        --------
        >>> model.reconstruction_loss(adata)  # doctest: +SKIP
        >>> model.reconstruction_loss(adata, mask_ratio=0.5, seed=1)  # other masks  # doctest: +SKIP
        """
        tokens = self.tokenize(adata, layer=layer, min_overlap=min_overlap)
        ratio = self.pretrain_mask_ratio if mask_ratio is None else mask_ratio
        return train.reconstruction_loss(self.model, tokens, mask_ratio=ratio, seed=seed, batch_size=batch_size)

    # ------------------------------------------------------------------ annotation
    def finetune(
        self,
        adata: AnnData,
        label_key: str,
        *,
        split_key: str | None = None,
        val_fraction: float = 0.2,
        config: train.FinetuneConfig | None = None,
        layer: str = "counts",
        min_overlap: float = 0.5,
        progress: bool = False,
        **config_changes: object,
    ) -> dict:
        """Train a classifier of ``adata.obs[label_key]`` on the cell embedding (see :meth:`predict`).

        :func:`scfm_lib.train.finetune_classifier` trains a linear head and, as ``config.regime``
        says (default ``"full"``), the encoder, on a copy of it: :attr:`model` and :meth:`embed`
        stay the pretrained ones. Training stops early on the loss of the validation cells and
        keeps the best evaluation. Calling it again replaces the classifier.

        Parameters
        ----------
        adata
            Cells with raw integer counts in ``adata.layers[layer]`` and their labels in ``obs``.
        label_key
            The ``obs`` column of cell labels (at least two classes, no missing labels).
        split_key
            An ``obs`` column with ``"train"`` and ``"val"`` cells (any other value, e.g.
            ``"test"``, is left out). None (default): ``val_fraction`` of the cells of every
            class, drawn at random with ``config.seed``, are the validation cells
            (:func:`scfm_lib.data.split_cells` stratified by ``label_key``), the rest train.
        val_fraction
            The validation share when ``split_key`` is None.
        config
            The finetuning settings (steps, rates, regime, seed, ...); None: ``FinetuneConfig()``, with
            bf16 autocast only where the CPU supports it natively.
        layer, min_overlap
            The raw-count layer (or ``"log1p_norm"``) and the share of detected genes that must be in
            the vocabulary (:meth:`tokenize`).
        progress
            Show a progress bar.
        **config_changes
            Fields of :class:`scfm_lib.train.FinetuneConfig` to change, e.g. ``max_steps=100``,
            ``regime="head_only"``, ``seed=1``.

        Returns
        -------
        dict
            The finetuning log (``best_step``, ``best_val_loss``, ``history``, ...) with
            ``n_train`` and ``n_val``; also kept as :attr:`finetune_log`.

        Raises
        ------
        scfm_lib.data.ScfmDataError
            A missing or unusable label or split column, no training or validation cells, or
            data that :meth:`tokenize` refuses.

        Examples
        --------
        >>> model.finetune(adata, "cell_type", max_steps=200)  # doctest: +SKIP
        >>> model.predict(adata)  # doctest: +SKIP
        """
        # Without a config, bf16 where the CPU runs it natively (train.check_bf16 refuses emulated bf16).
        cfg = dataclasses.replace(config or train.FinetuneConfig(bf16=train.native_bf16()), **config_changes)
        data.check_labels(adata, label_key)
        train_idx, val_idx = _finetune_split(adata, label_key, split_key, val_fraction, cfg.seed)
        labels = adata.obs[label_key].astype(str).to_numpy()
        classes, (y_train, y_val) = data.encode_labels(labels[train_idx], labels[val_idx])
        tokens = self.tokenize(adata, layer=layer, min_overlap=min_overlap)
        classifier, log = train.finetune_classifier(
            self.model,
            tokens.subset(train_idx),
            y_train,
            tokens.subset(val_idx),
            y_val,
            len(classes),
            cfg,
            progress=progress,
        )
        self.classifier, self.classes, self.label_key = classifier, classes, label_key
        self.finetune_log = {**log, "n_train": len(train_idx), "n_val": len(val_idx)}
        return self.finetune_log

    def predict(
        self,
        adata: AnnData,
        *,
        key_added: str = "scfm_prediction",
        layer: str = "counts",
        batch_size: int = 256,
        min_overlap: float = 0.5,
    ) -> None:
        """Write the finetuned classifier's label of each cell into ``adata.obs[key_added]``.

        Parameters
        ----------
        adata
            Cells with raw integer counts in ``adata.layers[layer]``.
        key_added
            The ``obs`` column written: a categorical with the training classes as categories.
        layer, min_overlap
            The raw-count layer (or ``"log1p_norm"``) and the share of detected genes that must be in
            the vocabulary (:meth:`tokenize`).
        batch_size
            Cells per forward pass.

        Returns
        -------
        None
            ``adata.obs[key_added]`` is set.

        Raises
        ------
        RuntimeError
            :meth:`finetune` has not been called.

        Examples
        --------
        >>> model.finetune(adata_ref, "cell_type")  # doctest: +SKIP
        >>> model.predict(adata_query)  # doctest: +SKIP
        >>> adata_query.obs["scfm_prediction"].value_counts()  # doctest: +SKIP
        """
        if self.classifier is None:
            raise RuntimeError(
                "this CellModel has no classifier yet: call model.finetune(adata, label_key) on "
                "labelled cells before model.predict(...)"
            )
        tokens = self.tokenize(adata, layer=layer, min_overlap=min_overlap)
        codes = train.predict(self.classifier, tokens, batch_size=batch_size)
        adata.obs[key_added] = pd.Categorical.from_codes(codes, categories=self.classes)
