"""The results layout of a profile: every path under ``results/<profile>/`` is built here, and only here.

One folder per profile, ``results/<profile>/``::

    data/<dataset>.h5ad                corpus, downstream, ood                 (the data job)
    data/vocab.json                    the gene vocabulary                     (the data job)
    data/tokens/<family>/<set>.npz     corpus_train, corpus_val, downstream, ood, task_<task>
    data/tasks/<task>.npz              a task's labels and split               (scfm_lib.study.tasks)
    checkpoints/<run>/                 model.safetensors, checkpoint.json, trainer_state.pt (pretrained
                                       runs only), vocab.json: one per family x fraction x seed
    checkpoints/negative_control_<run>/  the negative control's checkpoints    (scfm_lib.study.controls)
    embeddings/<run>.npy, pca.npy      test-cell embeddings, for the integration metrics
    metrics/<kind>/<name>.json         one file per job: records + provenance  (scfm_lib.results)
    summary.json                       gates, controls, D and the verdicts     (scfm_lib.study.summary)
    budgets.json                       the label x step budget grid            (profiles with a sweep)
    scib.json                          every scIB metric of every run and PCA  (scfm_lib.study.scib)
    executing/<notebook>.ipynb         a notebook while the workflow runs it (a failed one stays there)

:class:`ResultsLayout` builds each of these paths; :data:`PATTERNS` are the same paths as regular
expressions (made by the same methods), so :meth:`ResultsLayout.kind_of` tells which kind of file a
path is and :meth:`ResultsLayout.stray_files` lists the files of a folder the layout does not know.

This module imports nothing heavier than :mod:`re`, so the workflow (``workflow/Snakefile``) and the
tools load it without torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: The folder, relative to the repository (or the run's working directory), holding one folder per profile.
RESULTS_ROOT = "results"

#: A run id, ``<family>_f<fraction>_s<seed>`` (:attr:`scfm_lib.config.Run.name`), as a regular expression.
RUN_PATTERN = r"[a-z]+_f[0-9.]+_s[0-9]+"
#: A model family (``scgpt``, ``geneformer``), as a regular expression.
FAMILY_PATTERN = r"[a-z]+"

#: The datasets the data job writes, ``data/<dataset>.h5ad``.
DATASETS = ("corpus", "downstream", "ood")
#: The tokenized cell sets of every family, ``data/tokens/<family>/<set>.npz`` (``ood`` only where the
#: profile has an out-of-distribution set); a task's tokens are :meth:`ResultsLayout.task_tokens`.
TOKEN_SETS = ("corpus_train", "corpus_val", "downstream", "ood")

#: The files of a checkpoint folder (:mod:`scfm_lib.train.checkpoint` writes the first three).
WEIGHTS, META, TRAINER_STATE, VOCAB = "model.safetensors", "checkpoint.json", "trainer_state.pt", "vocab.json"
CHECKPOINT_FILES = (WEIGHTS, META, TRAINER_STATE, VOCAB)
#: The controls' job kinds (:mod:`scfm_lib.study.controls`): here, so that the summary names them without
#: importing the controls' training code (torch).
NEGATIVE_CONTROL, POSITIVE_CONTROL = "negative_control", "positive_control"
#: The controls that keep checkpoints of their own, ``checkpoints/<control>_<run>/``.
CHECKPOINT_CONTROLS = (NEGATIVE_CONTROL,)
#: Embeddings of the test cells besides the runs', ``embeddings/<name>.npy``.
BASELINE_EMBEDDINGS = ("pca",)
#: The kinds of job that write ``metrics/<kind>/<name>.json``.
METRIC_KINDS = (
    "data",
    "pretrain",
    "rates",
    "evaluate",
    "sweep",
    "baselines",
    "scib",
    NEGATIVE_CONTROL,
    POSITIVE_CONTROL,
)


def results_dir(profile: str, root: str | Path = ".") -> Path:
    """The results folder of a profile.

    Parameters
    ----------
    profile
        The profile's name (``profiles/<profile>.yaml``).
    root
        The folder holding ``results/``: the repository, or the run's working directory
        (the default, ``.``, gives the relative path the workflow uses).

    Returns
    -------
    Path
        ``<root>/results/<profile>``.
    """
    return Path(root) / RESULTS_ROOT / profile


@dataclass(frozen=True)
class ResultsLayout:
    """Every path under one profile's results folder.

    Parameters
    ----------
    results_dir
        The profile's results folder, ``results/<profile>`` (relative or absolute; kept as given).

    Examples
    --------
    >>> layout = ResultsLayout.of_profile("tiny")
    >>> str(layout.tokens("scgpt", "downstream"))
    'results/tiny/data/tokens/scgpt/downstream.npz'
    >>> layout.kind_of("metrics/evaluate/scgpt_f0.1_s0.json")
    'metrics'
    """

    results_dir: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "results_dir", Path(self.results_dir))

    @classmethod
    def of_profile(cls, profile: str, root: str | Path = ".") -> ResultsLayout:
        """The layout of ``<root>/results/<profile>`` (see :func:`results_dir`).

        Parameters
        ----------
        profile
            The profile's name.
        root
            The folder holding ``results/``.

        Returns
        -------
        ResultsLayout
        """
        return cls(results_dir(profile, root))

    @classmethod
    def of_data_dir(cls, data_dir: str | Path) -> ResultsLayout:
        """The layout whose :attr:`data_dir` is ``data_dir``, for code handed the data folder only.

        Parameters
        ----------
        data_dir
            A profile's ``results/<profile>/data`` folder.

        Returns
        -------
        ResultsLayout
        """
        return cls(Path(data_dir).parent)

    # ------------------------------------------------------------------ data (the data job)
    @property
    def data_dir(self) -> Path:
        """``data/``: datasets, vocabulary, tokens and task labels."""
        return self.results_dir / "data"

    def dataset(self, name: str) -> Path:
        """A dataset the data job writes.

        Parameters
        ----------
        name
            One of :data:`DATASETS`: ``corpus``, ``downstream`` or ``ood``.

        Returns
        -------
        Path
            ``data/<name>.h5ad``.
        """
        return self.data_dir / f"{name}.h5ad"

    @property
    def vocab(self) -> Path:
        """``data/vocab.json``: the gene vocabulary (with the geneformer family's gene medians)."""
        return self.data_dir / VOCAB

    def tokens(self, family: str, name: str) -> Path:
        """The tokenized cells of one set for one model family.

        Parameters
        ----------
        family
            The model family, e.g. ``scgpt``.
        name
            The cell set: one of :data:`TOKEN_SETS` (a task's set is :meth:`task_tokens`).

        Returns
        -------
        Path
            ``data/tokens/<family>/<name>.npz``.
        """
        return self.data_dir / "tokens" / family / f"{name}.npz"

    def task_tokens(self, family: str, task: str) -> Path:
        """The tokenized cells of a task of its own (``data.tasks``) for one model family.

        Parameters
        ----------
        family
            The model family.
        task
            The task's name in the profile.

        Returns
        -------
        Path
            ``data/tokens/<family>/task_<task>.npz``.
        """
        return self.tokens(family, f"task_{task}")

    def task_labels(self, task: str) -> Path:
        """A task's labels, classes and split (``data.tasks``).

        Parameters
        ----------
        task
            The task's name in the profile.

        Returns
        -------
        Path
            ``data/tasks/<task>.npz``.
        """
        return self.data_dir / "tasks" / f"{task}.npz"

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoints_dir(self) -> Path:
        """``checkpoints/``: one folder per pretraining run and per control checkpoint."""
        return self.results_dir / "checkpoints"

    def checkpoint(self, run: str, control: str | None = None) -> Path:
        """The checkpoint folder of a run (holding :data:`CHECKPOINT_FILES`).

        Parameters
        ----------
        run
            The run id, ``<family>_f<fraction>_s<seed>`` (:attr:`scfm_lib.config.Run.name`).
        control
            A control that trains checkpoints of its own (:data:`CHECKPOINT_CONTROLS`), or None for
            the study's pretraining run.

        Returns
        -------
        Path
            ``checkpoints/<run>`` or ``checkpoints/<control>_<run>``.
        """
        return self.checkpoints_dir / (f"{control}_{run}" if control else run)

    # ------------------------------------------------------------------ embeddings and metrics
    @property
    def embeddings_dir(self) -> Path:
        """``embeddings/``: the test cells' embeddings the integration metrics read."""
        return self.results_dir / "embeddings"

    def embedding(self, name: str) -> Path:
        """The test cells' embedding by a run's checkpoint or a baseline.

        Parameters
        ----------
        name
            A run id, or one of :data:`BASELINE_EMBEDDINGS` (``pca``).

        Returns
        -------
        Path
            ``embeddings/<name>.npy``.
        """
        return self.embeddings_dir / f"{name}.npy"

    @property
    def metrics_dir(self) -> Path:
        """``metrics/``: one folder per kind of job."""
        return self.results_dir / "metrics"

    def metrics(self, kind: str, name: str) -> Path:
        """The metrics file of one job (:func:`scfm_lib.results.write_metrics` writes it).

        Parameters
        ----------
        kind
            The kind of job, one of :data:`METRIC_KINDS` (e.g. ``evaluate``, ``scib``).
        name
            The job's name within its kind: a run id, a family, ``datasets`` or ``baselines``.

        Returns
        -------
        Path
            ``metrics/<kind>/<name>.json``.
        """
        return self.metrics_dir / kind / f"{name}.json"

    def metrics_files(self, kind: str | None = None) -> list[Path]:
        """The metrics files that exist, in path order.

        Parameters
        ----------
        kind
            Only this kind of job's files; None for every kind.

        Returns
        -------
        list of Path
            ``metrics/<kind>/*.json`` (or ``metrics/*/*.json``), sorted.
        """
        return sorted(self.metrics_dir.glob(f"{kind or '*'}/*.json"))

    # ------------------------------------------------------------------ study files
    @property
    def summary(self) -> Path:
        """``summary.json``: gates, controls, D and the verdicts (also committed as ``book/<profile>/summary.json``)."""
        return self.results_dir / "summary.json"

    @property
    def budgets(self) -> Path:
        """``budgets.json``: the label x step budget grid (the budgets chapter, profiles with a sweep)."""
        return self.results_dir / "budgets.json"

    @property
    def scib_table(self) -> Path:
        """``scib.json``: every scIB metric of every run and of the PCA reference (scfm_lib.study.scib)."""
        return self.results_dir / "scib.json"

    @property
    def executing_dir(self) -> Path:
        """``executing/``: notebooks while the workflow executes them; a failed one is kept there."""
        return self.results_dir / "executing"

    # ------------------------------------------------------------------ the listing
    def kind_of(self, path: str | Path) -> str | None:
        """Which kind of layout file ``path`` is.

        Parameters
        ----------
        path
            A file path relative to :attr:`results_dir`, or a path under it.

        Returns
        -------
        str or None
            The key of :data:`PATTERNS` the path matches (``"metrics"``, ``"tokens"``, ...), or None
            for a path the layout does not know.
        """
        path = Path(path)
        if path.is_absolute() or path.parts[: len(self.results_dir.parts)] == self.results_dir.parts:
            try:
                path = path.relative_to(self.results_dir)
            except ValueError:
                return None
        name = path.as_posix()
        return next((kind for kind, pattern in PATTERNS.items() if pattern.fullmatch(name)), None)

    def stray_files(self) -> list[Path]:
        """The files under :attr:`results_dir` that the layout does not know (none after a run).

        Returns
        -------
        list of Path
            Paths relative to :attr:`results_dir`, sorted; empty where every file is one of :data:`PATTERNS`.
        """
        files = (p.relative_to(self.results_dir) for p in self.results_dir.rglob("*") if p.is_file())
        return sorted(p for p in files if self.kind_of(p) is None)


def _one_of(names) -> str:
    return "|".join(re.escape(n) for n in names)


def _patterns() -> dict[str, re.Pattern]:
    """:data:`PATTERNS`: each kind of path as built by :class:`ResultsLayout` (relative to the
    results folder), with its variable parts as regular expressions."""
    fields = {
        "dataset": _one_of(DATASETS),
        "family": FAMILY_PATTERN,
        "set": _one_of(TOKEN_SETS),
        "task": r"[A-Za-z0-9_]+",
        "run": RUN_PATTERN,
        "control": _one_of(CHECKPOINT_CONTROLS),
        "file": _one_of(CHECKPOINT_FILES),
        "embedding": f"{RUN_PATTERN}|{_one_of(BASELINE_EMBEDDINGS)}",
        "kind": _one_of(METRIC_KINDS),
        "name": r"[A-Za-z0-9_.\-]+",
        "notebook": r"[A-Za-z0-9_.\-]+",
    }
    rel = ResultsLayout(Path())
    built = {
        "dataset": rel.dataset("<dataset>"),
        "vocab": rel.vocab,
        "tokens": rel.tokens("<family>", "<set>"),
        "task_tokens": rel.task_tokens("<family>", "<task>"),
        "task_labels": rel.task_labels("<task>"),
        "checkpoint": rel.checkpoint("<run>") / "<file>",
        "control_checkpoint": rel.checkpoint("<run>", control="<control>") / "<file>",
        "embedding": rel.embedding("<embedding>"),
        "metrics": rel.metrics("<kind>", "<name>"),
        "summary": rel.summary,
        "budgets": rel.budgets,
        "scib_table": rel.scib_table,
        "executing": rel.executing_dir / "<notebook>.ipynb",
    }

    def compile_(path: Path) -> re.Pattern:
        text = re.escape(path.as_posix())
        for field, regex in fields.items():
            text = text.replace(re.escape(f"<{field}>"), f"(?:{regex})")
        return re.compile(text)

    return {kind: compile_(path) for kind, path in built.items()}


#: Every kind of file a profile's run may write, as a regular expression over its path relative to
#: ``results/<profile>/`` (``"tokens"``: ``data/tokens/<family>/<set>.npz``, ...).
PATTERNS: dict[str, re.Pattern] = _patterns()
