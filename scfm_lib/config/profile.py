"""The :class:`Profile`, its grid of runs (:meth:`Profile.runs`), and :func:`load_profile`.

A profile (``profiles/<name>.yaml``) is read into a :class:`Profile` whose sections are the
dataclasses of :mod:`scfm_lib.config.sections`; the library configs it names (model, pretrain,
finetune, atlas, datasets) are built once at load time, importing those modules lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from scfm_lib.config.checks import ConfigError, build_dataclass
from scfm_lib.config.run import Run
from scfm_lib.config.sections import DataSection, EvaluateSection, StatsSection, StudySection, WorkflowSection

if TYPE_CHECKING:  # the library configs, imported lazily where they are built
    from scfm_lib.atlas import AtlasConfig
    from scfm_lib.model import ScFMConfig
    from scfm_lib.train import FinetuneConfig, PretrainConfig

#: Where the repository's profiles live, relative to the repository root.
PROFILES_DIR = Path(__file__).resolve().parent.parent.parent / "profiles"


@dataclass
class Profile:
    """A study's profile (``profiles/<name>.yaml``): the grid of runs, the data, the library configs.

    Each field's comment says what it sets; the sections are the dataclasses of
    :mod:`scfm_lib.config.sections`. A bad value raises :class:`ConfigError` when built
    (:func:`load_profile` builds every library config as well).
    """

    name: str
    title: str = ""
    description: str = ""
    limits: str = ""  # what this profile's scale cannot say (markdown), shown in the intro beside the verdicts
    fractions: list = field(default_factory=lambda: [1.0, 0.3, 0.1, 0.03, 0.01, 0.0])
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    # Fewer seeds at some fractions, e.g. {0.1: [0, 1, 2]}: the primary endpoint needs many seeds at the
    # smallest and largest corpus (and the control); the fractions between them serve the lack-of-fit test.
    seeds_by_fraction: dict = field(default_factory=dict)
    families: list = field(default_factory=lambda: ["scgpt"])  # model families (scfm_lib.model.FAMILIES)
    data: DataSection = field(default_factory=DataSection)
    model: dict = field(default_factory=dict)  # ScFMConfig fields (vocab_size is set from data)
    pretrain: dict = field(default_factory=dict)  # PretrainConfig fields
    finetune: dict = field(default_factory=dict)  # FinetuneConfig fields
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    stats: StatsSection = field(default_factory=StatsSection)
    study: StudySection = field(default_factory=StudySection)
    workflow: WorkflowSection = field(default_factory=WorkflowSection)
    book_includes: list = field(default_factory=list)  # other profiles whose executed chapters the book also lists

    def __post_init__(self) -> None:
        if not self.fractions:
            raise ConfigError(f"profile {self.name!r}: 'fractions' is empty; list at least one, e.g. [1.0, 0.0]")
        for f in self.fractions:
            if not isinstance(f, (int, float)) or not 0.0 <= float(f) <= 1.0:
                raise ConfigError(
                    f"profile {self.name!r}: fraction {f!r} is outside [0, 1]; "
                    "fractions are shares of the full corpus, e.g. 0.1 for 10%"
                )
        if len(set(map(float, self.fractions))) != len(self.fractions):
            raise ConfigError(f"profile {self.name!r}: 'fractions' has duplicates: {self.fractions}")
        self.fractions = [float(f) for f in self.fractions]
        from scfm_lib.model import FAMILIES

        if (
            not self.families
            or any(f not in FAMILIES for f in self.families)
            or len(set(self.families)) != len(self.families)
        ):
            raise ConfigError(
                f"profile {self.name!r}: 'families' must list distinct model families out of "
                f"{list(FAMILIES)}, got {self.families!r}"
            )
        if "regime" in self.finetune:
            raise ConfigError(
                f"profile {self.name!r}: finetune.regime is set by evaluate.regimes (its first entry is "
                "the main 'finetune' mode); move the regime there"
            )
        if not self.seeds or not all(isinstance(s, int) and s >= 0 for s in self.seeds):
            raise ConfigError(
                f"profile {self.name!r}: 'seeds' must be a non-empty list of integers >= 0, got {self.seeds!r}"
            )
        by = {}
        for f, seeds in (self.seeds_by_fraction or {}).items():
            if float(f) not in self.fractions or not seeds or not set(seeds) <= set(self.seeds):
                raise ConfigError(
                    f"profile {self.name!r}: seeds_by_fraction maps fractions of 'fractions' "
                    f"{self.fractions} to non-empty subsets of 'seeds' {self.seeds}; got {f!r}: {seeds!r}"
                )
            by[float(f)] = [s for s in self.seeds if s in seeds]
        self.seeds_by_fraction = by

    # The typed configs of the library, built here so a bad key fails when the profile loads.
    def model_config(self, vocab_size: int, family: str | None = None) -> ScFMConfig:
        """The model's config: the profile's ``model`` section with the vocabulary size and the family.

        Parameters
        ----------
        vocab_size : int
            Tokens of the vocabulary (special tokens included).
        family : str, optional
            The model family; default the profile's first.

        Returns
        -------
        ScFMConfig
            The model config, ``context_genes`` from ``data.context_genes``.

        Raises
        ------
        ConfigError
            For an unknown or mistyped key of the ``model`` section.
        """
        from scfm_lib.model import ScFMConfig

        return build_dataclass(
            ScFMConfig,
            {
                "context_genes": self.data.context_genes,
                **self.model,
                "vocab_size": vocab_size,
                "family": family or self.families[0],
            },
            "model",
        )

    def pretrain_config(self, **overrides: Any) -> PretrainConfig:
        """The pretraining config: the ``pretrain`` section under ``overrides`` (None values ignored).

        Parameters
        ----------
        **overrides
            :class:`~scfm_lib.train.PretrainConfig` fields (e.g. ``seed``, ``max_steps``).

        Returns
        -------
        PretrainConfig
            The config.

        Raises
        ------
        ConfigError
            For an unknown or mistyped key, or a value PretrainConfig refuses.
        """
        from scfm_lib.train import PretrainConfig

        return build_dataclass(PretrainConfig, {**self.pretrain, **_not_none(overrides)}, "pretrain")

    def finetune_config(self, **overrides: Any) -> FinetuneConfig:
        """The finetuning config for ``overrides["regime"]``, built from three layers of settings.

        The finetune section, under ``evaluate.regime_settings`` of ``overrides["regime"]`` (if
        given), under ``overrides``.

        Parameters
        ----------
        **overrides
            :class:`~scfm_lib.train.FinetuneConfig` fields (None values ignored).

        Returns
        -------
        FinetuneConfig
            The config.

        Raises
        ------
        ConfigError
            For an unknown or mistyped key, or a value FinetuneConfig refuses.
        """
        from scfm_lib.train import FinetuneConfig

        regime = overrides.get("regime")
        settings = self.evaluate.regime_settings.get(regime, {})
        where = f"finetune + evaluate.regime_settings.{regime}" if settings else "finetune"
        return build_dataclass(FinetuneConfig, {**self.finetune, **settings, **_not_none(overrides)}, where)

    def atlas_config(self) -> AtlasConfig:
        """The synthetic atlas's config: ``data.atlas`` over :class:`~scfm_lib.atlas.AtlasConfig`'s defaults.

        Returns
        -------
        AtlasConfig
            The config.

        Raises
        ------
        ConfigError
            For an unknown or mistyped key, or a value AtlasConfig refuses.
        """
        from scfm_lib.atlas import AtlasConfig

        return build_dataclass(AtlasConfig, self.data.atlas, "data.atlas")

    def check_heldout_tissues(self) -> None:
        """``data.heldout_tissues`` names atlas tissues and leaves at least one in the corpus.

        Returns
        -------
        None

        Raises
        ------
        ConfigError
            When it does not.
        """
        from scfm_lib.atlas_datasets import corpus_tissues_without

        try:
            corpus_tissues_without(self.atlas_config(), self.data.heldout_tissues)
        except ValueError as err:
            raise ConfigError(f"profile {self.name!r}: {err}") from err

    def check_datasets(self) -> None:
        """Every dataset the profile names is registered (a typo fails at load time).

        Returns
        -------
        None

        Raises
        ------
        ConfigError
            For an unregistered dataset, or a bad ``data.soma`` section.
        """
        if self.data.source == "synthetic":
            return
        from scfm_lib import datasets

        for name in [
            *self.data.corpus,
            self.data.downstream,
            *([self.data.ood] if self.data.ood else []),
            *([self.data.symbol_reference] if self.data.symbol_reference else []),
        ]:
            if name not in datasets.REGISTRY:
                raise ConfigError(
                    f"profile {self.name!r}: dataset {name!r} is not registered; registered: "
                    f"{sorted(datasets.REGISTRY)} (python -m scfm_lib.datasets)"
                )
        if self.data.source == "soma":
            from scfm_lib.soma import SomaSource

            build_dataclass(SomaSource, self.data.soma, "data.soma")

    def seeds_at(self, fraction: float) -> list[int]:
        """The seeds run at ``fraction``: ``seeds``, or the subset ``seeds_by_fraction`` gives.

        Parameters
        ----------
        fraction : float
            A corpus fraction of the profile.

        Returns
        -------
        list of int
            The seeds.
        """
        return self.seeds_by_fraction.get(float(fraction), self.seeds)

    def runs(self) -> list[Run]:
        """Every pretraining run of the grid.

        Returns
        -------
        list of Run
            The runs, by family, then fraction, then seed.
        """
        return [Run(m, f, s) for m in self.families for f in self.fractions for s in self.seeds_at(f)]

    def run_ids(self) -> list[str]:
        """Every run of the grid, as ``<family>_f<fraction>_s<seed>``.

        Returns
        -------
        list of str
            The run ids (:attr:`Run.name <scfm_lib.config.run.Run.name>`), in the order of :meth:`runs`.
        """
        return [run.name for run in self.runs()]


def _not_none(mapping: dict) -> dict:
    return {k: v for k, v in mapping.items() if v is not None}


def load_profile(name_or_path: str | Path, profiles_dir: str | Path | None = None) -> Profile:
    """Load ``profiles/<name>.yaml`` (or a path to a YAML file) into a validated :class:`Profile`.

    Every library config the profile names is built once, so a misspelled key fails here, not an
    hour into the run.

    Parameters
    ----------
    name_or_path : str or pathlib.Path
        A profile's name, or the path of a ``.yaml``/``.yml`` file.
    profiles_dir : str or pathlib.Path, optional
        Where named profiles live; default :data:`PROFILES_DIR`.

    Returns
    -------
    Profile
        The validated profile.

    Raises
    ------
    ConfigError
        When the file does not exist, is not a mapping with a ``name``, or any section or library
        config is invalid.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(profiles_dir or PROFILES_DIR) / f"{name_or_path}.yaml"
    if not path.exists():
        available = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.exists() else []
        raise ConfigError(f"profile file {path} does not exist; available profiles: {available}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(f"{path}: a profile is a YAML mapping with at least a 'name' key")
    sections = {
        "data": DataSection,
        "evaluate": EvaluateSection,
        "stats": StatsSection,
        "study": StudySection,
        "workflow": WorkflowSection,
    }
    values = dict(raw)
    for key, cls in sections.items():
        if key in values:
            if not isinstance(values[key] or {}, dict):
                raise ConfigError(
                    f"{path}: section '{key}' must be a mapping of keys to values, got {values[key]!r}; "
                    f"write e.g. '{key}: {{...}}' or remove it"
                )
            values[key] = build_dataclass(cls, values[key] or {}, key)
    profile = build_dataclass(Profile, values, "<top level>")
    # Build the library configs once so a misspelled key fails here, not an hour into the run.
    profile.pretrain_config()
    profile.finetune_config()
    for regime in profile.evaluate.regime_settings:
        profile.finetune_config(regime=regime)
    profile.atlas_config()
    profile.check_datasets()
    profile.check_heldout_tissues()
    profile.model_config(vocab_size=16)
    return profile
