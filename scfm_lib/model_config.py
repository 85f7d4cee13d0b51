"""The configuration of the scFM transformer (:mod:`scfm_lib.model`): its hyperparameters, each
checked when the config is built, and the names of the families, value encodings and poolings.

A plain dataclass (no torch); ``scfm_lib.model`` re-exports every name, and the rest of the
package imports them from there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

FAMILIES = ("scgpt", "geneformer")
VALUE_ENCODINGS = ("continuous", "binned")
POOLINGS = ("cls", "mean")


@dataclass
class ScFMConfig:
    """The hyperparameters of one scFM transformer, checked when built (fields: see the comments beside them).

    Raises
    ------
    ValueError
        When a field is out of its range (``vocab_size < 4``, ``d_model`` not divisible by
        ``n_heads``, an unknown ``family``/``value_encoding``/``pooling``, ``dropout`` outside
        [0, 1), ``readout_layer`` not an index of the ``n_layers + 1`` hidden states, ...); the
        message names the field and the allowed values.
    """

    vocab_size: int  # genes + special tokens (len(GeneVocab))
    family: str = "scgpt"  # "scgpt": genes + values, masked values; "geneformer": ranked genes, masked genes
    context_genes: int = 64  # L: top expressed genes per cell (the tokenization uses it)
    d_model: int = 128  # D: width of every token's hidden state
    n_layers: int = 4  # transformer blocks
    n_heads: int = 4  # attention heads; d_model must be divisible by it
    d_ff: int | None = None  # MLP width; None = 4 * d_model
    dropout: float = 0.0  # in [0, 1): on attention weights and residual branches, in training only
    value_encoding: str = "continuous"  # "continuous": MLP on the value; "binned": embedding of its bin
    n_bins: int = 51  # bins centred on an even grid over [0, max_value] when binned
    max_value: float = 10.0  # log1p(CP10k) values are clipped to [0, max_value]
    pooling: str = "mean"  # frozen cell embedding: masked "mean" over expressed genes, or the "cls" token
    # Layer the frozen cell embedding reads, as an index into hidden_states (0 = the input embeddings,
    # n_layers = the last block after ln_f): -2 is the penultimate layer, the readout of Geneformer's
    # own tools and of published zero-shot evaluations (fixed before any result was seen).
    readout_layer: int = -2
    mvc_weight: float = 1.0  # weight of the predict-from-CLS loss (scgpt's MVC term); 0 = off

    def __post_init__(self) -> None:
        if self.vocab_size < 4:
            raise ValueError(
                f"vocab_size must be >= 4 (3 special tokens + genes), got {self.vocab_size}; pass len(GeneVocab)"
            )
        for name in ("context_genes", "d_model", "n_heads", "n_layers", "n_bins"):
            minimum = 2 if name == "n_bins" else 1
            if getattr(self, name) < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}); "
                "change one of them (e.g. d_model 128 with n_heads 4)"
            )
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.value_encoding not in VALUE_ENCODINGS:
            raise ValueError(f"value_encoding must be one of {VALUE_ENCODINGS}, got {self.value_encoding!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.max_value > 0:
            raise ValueError(f"max_value must be > 0, got {self.max_value}")
        if not -(self.n_layers + 1) <= self.readout_layer <= self.n_layers:
            raise ValueError(
                f"readout_layer must index the {self.n_layers + 1} hidden states (0 = input embeddings, "
                f"{self.n_layers} or -1 = last layer, -2 = penultimate), got {self.readout_layer}"
            )
        if self.mvc_weight < 0:
            raise ValueError(f"mvc_weight must be >= 0, got {self.mvc_weight}")
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        if self.d_ff < 1:
            raise ValueError(f"d_ff must be >= 1 or None (= 4 * d_model), got {self.d_ff}")

    def to_dict(self) -> dict:
        """The config as a plain dict (field -> value), as checkpoints and run records store it.

        Returns
        -------
        dict
            Every field, ``d_ff`` resolved (never None after construction).
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ScFMConfig:
        """Rebuild a config from :meth:`to_dict`'s output (or any subset of the fields).

        Parameters
        ----------
        values : dict
            Field name -> value; fields left out take their defaults (``vocab_size`` has none).

        Returns
        -------
        ScFMConfig
            The checked config.

        Raises
        ------
        ValueError
            When ``values`` names a key that is not a field (a typo, or a checkpoint from another
            version), or a value is out of range.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ScFMConfig keys {unknown}; known keys are {sorted(known)}")
        return cls(**values)
