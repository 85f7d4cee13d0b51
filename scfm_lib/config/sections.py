"""The sections of a profile (``data``, ``evaluate``, ``stats``, ``study``, ``workflow``), one
dataclass each, and the narrow tasks a profile lists (:class:`TaskSpec`).

Each checks its values when built (``__post_init__``), so a bad value fails at load time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from scfm_lib.config.checks import ConfigError, build_dataclass

#: Data sources a profile can name, and the data-job notebook (nbs/<template>.ipynb) of each.
DATA_SOURCES = {"synthetic": "data", "registry": "data_real", "soma": "data_real"}
#: The narrow tasks of the primary endpoint, in words (the synthetic atlas's; data.task_words overrides).
TASK_WORDS = {
    "annotation": "cell-type annotation of held-out donors",
    "annotation_ood": "cell-type annotation of an unseen technology",
}


@dataclass
class TaskSpec:
    """A narrow task on a labelled dataset of its own (``data.tasks``).

    Its cells are never in the corpus; its classifiers are trained and tested on its own cells
    (scfm_lib.study.tasks). Each field's comment says what it sets.
    """

    dataset: str  # registry dataset (python -m scfm_lib.datasets lists them)
    words: str  # the task in words, for the verdicts and chapters
    label_key: str = "cell_type"  # the label predicted
    split_by: str = ""  # obs column: with test_groups, those groups are the test split;
    test_groups: list = field(default_factory=list)  # "" = cells at random, stratified by label (60/20/20)
    orthologs: str = ""  # registered ortholog table (human -> other species) for a non-human set
    min_class_cells: int = 10  # a class is kept only with at least this many training cells
    # Share of the dataset's detected genes that must be in the vocabulary (scfm_lib.data.tokenize);
    # lower it for another tissue, whose cells detect genes the corpus's tissue never expresses.
    min_vocab_overlap: float = 0.5

    def __post_init__(self) -> None:
        _at_least("data.tasks", self, min_class_cells=2)
        if not 0 < self.min_vocab_overlap <= 1:
            raise ConfigError(
                f"data.tasks on {self.dataset!r}: min_vocab_overlap must lie in (0, 1], got {self.min_vocab_overlap!r}"
            )
        if bool(self.split_by) != bool(self.test_groups):
            raise ConfigError(
                f"task on {self.dataset!r}: split_by ({self.split_by!r}) and test_groups "
                f"({self.test_groups!r}) go together: name the obs column and its test groups, or neither "
                "(cells at random, stratified by label)"
            )


def _task_spec(name: str, spec) -> TaskSpec:
    if not isinstance(spec, dict):
        raise ConfigError(f"data.tasks.{name} must be a mapping of TaskSpec fields, got {spec!r}")
    missing = sorted({"dataset", "words"} - set(spec))
    if missing:
        raise ConfigError(
            f"profile section 'data.tasks.{name}' needs {missing}: the registry dataset and the task in words"
        )
    return build_dataclass(TaskSpec, spec, f"data.tasks.{name}")


@dataclass
class DataSection:
    """Which data the study runs on and how the downstream dataset is split."""

    source: str = "synthetic"  # "synthetic": the built-in atlas; "registry": datasets of
    # scfm_lib.datasets; "soma": a TileDB-SOMA corpus (Census)
    atlas: dict = field(default_factory=dict)  # AtlasConfig overrides (synthetic)
    corpus: list = field(default_factory=list)  # registry datasets pooled into the pretraining corpus
    soma: dict = field(default_factory=dict)  # scfm_lib.soma.SomaSource fields (source "soma")
    downstream: str = ""  # registry dataset of the narrow tasks, never in the corpus
    # Cells of data.downstream reserved for the narrow tasks when data.corpus also lists that dataset:
    # labelled cells drawn at random, stratified by label; its other cells join the corpus, and a copy
    # of a reserved cell in another corpus dataset (same obs barcode_key) is dropped. 0 = not in the corpus.
    downstream_cells: int = 0
    ood: str = ""  # registry dataset for zero-shot reconstruction ("" = none)
    # ood label -> downstream label, where the two datasets name the same cell types differently; the
    # OOD annotation task scores the OOD cells whose (mapped) label is a downstream class.
    ood_label_map: dict = field(default_factory=dict)
    # The narrow tasks, in words (the verdicts and chapters name them): the downstream test split and
    # the out-of-distribution set.
    task_words: dict = field(default_factory=lambda: dict(TASK_WORDS))
    # A registered dataset whose var pairs old-release symbols (gene_symbol_original) with their Ensembl
    # IDs (ensembl_id), e.g. pbmc3k_10x_labeled (10x's hg19 gene table): symbol datasets are renamed to
    # the GENCODE v44 names of those IDs (scfm_lib.genes.release_symbol_map). "" = symbols kept as read.
    symbol_reference: str = ""
    vocab_min_cells: int = 3  # a corpus gene enters the vocabulary if detected in >= this many cells
    vocab_max_genes: int = 0  # cap on the vocabulary (most often detected genes; 0 = no cap)
    n_corpus: int = 20000  # cells in the full (100%) pretraining corpus (0 = every cell)
    n_downstream: int = 3000  # cells in the held-out annotation dataset (synthetic)
    n_ood: int = 1500  # cells of a technology never seen in pretraining (synthetic)
    n_val_pretrain: int = 500  # held-out corpus cells for the pretraining validation loss
    seed: int = 0  # seed of the atlas draws and of the splits
    split_by: str = "donor"  # downstream split: whole groups of this obs column per split;
    # "" = cells at random, stratified by label
    # With split_by: the groups whose cells are the test split (a condition shift, e.g. [stim]); the
    # other groups' cells are split into train and validation at random, stratified by label.
    test_groups: list = field(default_factory=list)
    label_key: str = "cell_type"  # the label the narrow task predicts
    batch_key: str = "batch"  # the batch the integration metrics correct for ("" = none)
    context_genes: int = 64  # top-N expressed genes per cell given to the model
    # Atlas tissues the pretraining corpus leaves out (synthetic): the downstream test cells of these
    # tissues are the zero-shot reconstruction test on a tissue no checkpoint has seen.
    heldout_tissues: list = field(default_factory=list)
    # Narrow tasks on datasets of their own, e.g. cross-technology or cross-species annotation:
    # name -> TaskSpec fields. Each is scored frozen and finetuned like the annotation task.
    tasks: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _at_least(
            "data",
            self,
            context_genes=1,
            n_corpus=0,
            n_downstream=1,
            n_ood=0,
            n_val_pretrain=1,
            downstream_cells=0,
            vocab_min_cells=1,
            vocab_max_genes=0,
            seed=0,
        )
        if self.source not in DATA_SOURCES:
            raise ConfigError(f"data.source {self.source!r} is unknown; use one of {sorted(DATA_SOURCES)}")
        if self.source != "synthetic":
            if not self.downstream:
                raise ConfigError(
                    f"data.source {self.source!r} needs data.downstream: the registry dataset "
                    "of the narrow tasks (python -m scfm_lib.datasets lists them)"
                )
            if self.source == "registry" and not self.corpus:
                raise ConfigError("data.source 'registry' needs data.corpus: a list of registry datasets")
            if self.source == "soma" and not self.soma.get("uri"):
                raise ConfigError("data.source 'soma' needs data.soma.uri: a SOMA experiment path or 'census'")
            if self.heldout_tissues:
                raise ConfigError(
                    f"data.heldout_tissues needs the synthetic atlas (data.source 'synthetic'), not "
                    f"{self.source!r}: a registry corpus is chosen by dataset; leave a tissue's "
                    "datasets out of data.corpus instead"
                )
            held_out = ({self.downstream, self.ood} if not self.downstream_cells else {self.ood}) & set(self.corpus)
            if held_out:
                raise ConfigError(
                    f"data.corpus contains {sorted(held_out)}, a downstream/ood dataset: evaluation "
                    "data must never be seen in pretraining; remove it from data.corpus (or, for the "
                    "downstream dataset, set data.downstream_cells to reserve its task cells)"
                )
        if self.downstream_cells and (self.source != "registry" or self.downstream not in self.corpus):
            raise ConfigError(
                f"data.downstream_cells = {self.downstream_cells} reserves task cells of a corpus dataset, "
                f"but data.downstream {self.downstream!r} is not in the registry corpus {self.corpus}; "
                "add it to data.corpus (source 'registry') or set downstream_cells: 0"
            )
        if self.test_groups and not self.split_by:
            raise ConfigError(
                f"data.test_groups {self.test_groups!r} needs data.split_by: the obs column whose "
                "groups they name (e.g. split_by: batch, test_groups: [stim])"
            )
        unknown = set(self.task_words) - set(TASK_WORDS)
        if unknown:
            raise ConfigError(
                f"data.task_words names unknown tasks {sorted(unknown)}; the tasks are {sorted(TASK_WORDS)}"
            )
        self.task_words = {**TASK_WORDS, **self.task_words}
        self.tasks = {
            name: spec if isinstance(spec, TaskSpec) else _task_spec(name, spec) for name, spec in self.tasks.items()
        }
        for name, spec in self.tasks.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in TASK_WORDS:
                raise ConfigError(
                    f"data.tasks name {name!r}: use lower-case letters, digits and _ (it names files and "
                    f"metrics), and not {sorted(TASK_WORDS)}"
                )
            if self.source != "registry":
                raise ConfigError(
                    f"data.tasks.{name} needs registry data (data.source 'registry'), not {self.source!r}"
                )
            if spec.dataset in set(self.corpus) | {self.downstream, self.ood}:
                raise ConfigError(
                    f"data.tasks.{name}: {spec.dataset!r} is already the corpus, downstream or ood dataset; "
                    "a task of its own needs a dataset the study uses nowhere else"
                )

    @property
    def has_ood(self) -> bool:
        """Whether the study has a dataset for zero-shot reconstruction outside the corpus."""
        return self.source == "synthetic" or bool(self.ood)

    @property
    def data_template(self) -> str:
        """The data-job notebook of this source (``nbs/<template>.ipynb``), from :data:`DATA_SOURCES`."""
        return DATA_SOURCES[self.source]


@dataclass
class EvaluateSection:
    """How every checkpoint is evaluated: frozen readouts, baselines, finetuning regimes, the budget sweep.

    Each field's comment says what it sets; a bad value raises :class:`ConfigError` when built.
    """

    knn_k: int = 15  # neighbours of the frozen kNN classifier
    leiden_resolution: float = 1.0  # resolution of zero-shot Leiden clustering
    n_top_genes: int = 1000  # highly variable genes of the baselines
    n_pcs: int = 50  # PCs of the PCA baselines
    # Finetuning regimes of every checkpoint (scfm_lib.train.FinetuneConfig.regime). The first is
    # the benchmark's mode "finetune"; each other one is reported as mode "finetune_<regime>".
    regimes: list = field(default_factory=lambda: ["full"])
    # Settings of one regime over the profile's finetune section, e.g. {head_only: {head_lr: 0.03}}:
    # a frozen encoder leaves the head alone to learn, which wants another rate than full finetuning.
    regime_settings: dict = field(default_factory=dict)
    # The budget sweep (nbs/sweep.ipynb, one job per checkpoint): finetune and probe on each share
    # of the training labels (stratified, nested, seeded) x each finetuning step budget. [] = no sweep.
    label_budgets: list = field(default_factory=list)
    step_budgets: list = field(default_factory=list)
    perturbation_cells: int = 100  # cells per cell type edited in the in-silico perturbation probe
    equivalence_bound: float = 0.02  # smallest slope (metric units per tenfold more cells) that matters

    def __post_init__(self) -> None:
        _at_least("evaluate", self, knn_k=1, n_top_genes=1, n_pcs=1)
        if not self.leiden_resolution > 0:
            raise ConfigError(
                f"evaluate.leiden_resolution must be > 0, got {self.leiden_resolution!r}; 1.0 is scanpy's default"
            )
        from scfm_lib.train import FINETUNE_REGIMES

        if (
            not self.regimes
            or any(r not in FINETUNE_REGIMES for r in self.regimes)
            or len(set(self.regimes)) != len(self.regimes)
        ):
            raise ConfigError(
                f"evaluate.regimes must list distinct finetuning regimes out of {list(FINETUNE_REGIMES)}, "
                f"got {self.regimes!r}"
            )
        if not isinstance(self.regime_settings, dict) or any(
            r not in self.regimes or not isinstance(v, dict) or "regime" in v for r, v in self.regime_settings.items()
        ):
            raise ConfigError(
                f"evaluate.regime_settings must map regimes listed in evaluate.regimes {self.regimes} to "
                f"finetune settings (e.g. {{head_only: {{head_lr: 0.03}}}}), got {self.regime_settings!r}"
            )
        bad = [b for b in self.label_budgets if not isinstance(b, (int, float)) or not 0 < float(b) <= 1]
        if bad:
            raise ConfigError(
                f"evaluate.label_budgets {bad} are outside (0, 1]; a budget is the share of the "
                "training labels kept, e.g. [0.01, 0.1, 1.0]"
            )
        bad = [b for b in self.step_budgets if not isinstance(b, int) or isinstance(b, bool) or b < 1]
        if bad:
            raise ConfigError(f"evaluate.step_budgets {bad} must be integers >= 1 (finetuning steps)")
        if bool(self.label_budgets) != bool(self.step_budgets):
            raise ConfigError(
                "evaluate.label_budgets and evaluate.step_budgets go together: give both to run "
                "the budget sweep, or neither"
            )
        self.label_budgets = sorted(float(b) for b in self.label_budgets)
        self.step_budgets = sorted(self.step_budgets)
        if self.perturbation_cells < 1:
            raise ConfigError(f"evaluate.perturbation_cells must be >= 1, got {self.perturbation_cells}")
        if not self.equivalence_bound > 0:
            raise ConfigError(f"evaluate.equivalence_bound must be > 0, got {self.equivalence_bound}")

    @property
    def has_sweep(self) -> bool:
        """Whether the profile runs the label x step budget sweep."""
        return bool(self.label_budgets)

    def regime_mode(self, regime: str) -> str:
        """The record mode of a finetuning regime: "finetune" for the first (main) one, else "finetune_<regime>".

        Parameters
        ----------
        regime : str
            One of ``regimes``.

        Returns
        -------
        str
            The mode.
        """
        return "finetune" if regime == self.regimes[0] else f"finetune_{regime}"


@dataclass
class StatsSection:
    """The statistics' settings: bootstrap resamples and confidence level."""

    n_boot: int = 2000  # bootstrap resamples for every confidence interval
    ci: float = 0.95  # confidence level

    def __post_init__(self) -> None:
        _at_least("stats", self, n_boot=1)
        if not 0 < self.ci < 1:
            raise ConfigError(f"stats.ci must be a confidence level in (0, 1), e.g. 0.95; got {self.ci!r}")


@dataclass
class StudySection:
    """The design of the masking test (the study issue): gates, finetuning seeds, rate choice, controls.

    Fixed before any result is seen; the masking chapter states each value."""

    # Gate 0: the largest corpus's held-out loss must reach (1 - gate_margin) x the context-free loss.
    gate_margin: float = 0.05
    finetune_seeds: list = field(default_factory=lambda: [0, 1])  # finetuning seeds per checkpoint, averaged
    # Finetuning rates tried per regime, each chosen by validation loss for every corpus fraction (on
    # that fraction's first seed); [] = the profile's finetune rate only.
    rate_candidates: list = field(default_factory=list)
    negative_control: bool = False  # pretrain on the corpus with each gene permuted across cells
    negative_seeds: int = 0  # seeds of the negative control (the first ones of each end fraction; 0 = all)
    positive_control: bool = False  # PCA on nested corpora whose rare subtypes only the largest holds (synthetic atlas)
    positive_n_pcs: int = 20  # PCs of the positive control's embedding
    positive_labels_per_class: int = 10  # labelled training cells per subtype in the positive control's task
    power: float = 0.8  # the power at which the book names the smallest detectable D

    def finetune_seeds_of(self, seed: int) -> list[int]:
        """The finetuning seeds of checkpoint seed ``seed``, the same at every fraction.

        The same at every fraction (so a seed's checkpoints are paired), different between checkpoint
        seeds.

        Parameters
        ----------
        seed : int
            The checkpoint's seed.

        Returns
        -------
        list of int
            ``1000 * seed + k`` for each ``k`` of ``finetune_seeds``.
        """
        return [1000 * seed + k for k in self.finetune_seeds]

    def __post_init__(self) -> None:
        if not 0 <= self.gate_margin < 1:
            raise ConfigError(f"study.gate_margin must lie in [0, 1), got {self.gate_margin!r}; e.g. 0.05")
        if (
            not self.finetune_seeds
            or len(set(self.finetune_seeds)) != len(self.finetune_seeds)
            or not all(isinstance(s, int) and s >= 0 for s in self.finetune_seeds)
        ):
            raise ConfigError(f"study.finetune_seeds must list distinct integers >= 0, got {self.finetune_seeds!r}")
        if not all(isinstance(r, (int, float)) and r > 0 for r in self.rate_candidates):
            raise ConfigError(f"study.rate_candidates must be positive learning rates, got {self.rate_candidates!r}")
        _at_least("study", self, positive_n_pcs=1, positive_labels_per_class=1, negative_seeds=0)
        if not 0 < self.power < 1:
            raise ConfigError(f"study.power must lie in (0, 1), got {self.power!r}; e.g. 0.8")


@dataclass
class WorkflowSection:
    """How the workflow runs: cores, threads per job, and the pretraining launcher."""

    cores: int = 2  # cores snakemake may use
    threads_per_job: int = 1  # torch threads per notebook job
    pretrain_launch: str = ""  # launcher of pretraining ("" = in the notebook's process); it is run as
    # `<launch> -m scfm_lib.runner ...`, e.g. "torchrun --standalone --nproc_per_node 4"

    def __post_init__(self) -> None:
        _at_least("workflow", self, cores=1, threads_per_job=1)


def _at_least(section: str, obj, **minimums) -> None:
    """Each named integer field of ``obj`` is >= its minimum, else a ConfigError naming it."""
    for name, low in minimums.items():
        value = getattr(obj, name)
        if value < low:
            raise ConfigError(
                f"{section}.{name} must be >= {low}, got {value!r}; set it to {low} or more "
                "(or remove the key to keep the default)"
            )
