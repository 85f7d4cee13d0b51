"""The identity of one grid point of the study: :class:`Run` (family, corpus fraction, seed).

The one way to name a run (:attr:`Run.name`, ``<family>_f<fraction>_s<seed>``: its checkpoint
folder's and metrics files' name) and to read a name back (:meth:`Run.parse`). A run is parsed once
(from a Snakemake wildcard or a job notebook's ``run`` parameter) and passed whole to the job
functions (:mod:`scfm_lib.study.pretrain`, :mod:`scfm_lib.study.evaluate`,
:mod:`scfm_lib.study.sweep`), so the fraction is never written to a string and read back.
:meth:`scfm_lib.config.Profile.runs` lists a profile's grid of runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scfm_lib.model_config import FAMILIES

if TYPE_CHECKING:  # profile.py imports this module: the annotation only
    from scfm_lib.config.profile import Profile

#: ``<family>_f<fraction>_s<seed>``, e.g. ``scgpt_f0.1_s0``: what :attr:`Run.name` writes.
_NAME = re.compile(r"(?P<family>[a-z]+)_f(?P<fraction>[0-9]+(?:\.[0-9]+)?(?:e-[0-9]+)?)_s(?P<seed>[0-9]+)")


@dataclass(frozen=True)
class Run:
    """One pretraining run of the grid: a model family, a corpus fraction and a seed."""

    family: str  # the model family: one of scfm_lib.model.FAMILIES
    fraction: float  # the share of the pretraining corpus, in [0, 1]; 0 is the random-init control
    seed: int  # the seed of the corpus subset, the initialization, the data order and the evaluation

    def __post_init__(self) -> None:
        """Check the fields and store the fraction as a float (``1`` and ``1.0`` are one run).

        Raises
        ------
        ValueError
            For an unknown family, a fraction outside [0, 1] or a negative seed.
        """
        if self.family not in FAMILIES:
            raise ValueError(f"family {self.family!r} is not a model family; use one of {list(FAMILIES)}")
        fraction = float(self.fraction)
        if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
            raise ValueError(f"fraction {self.fraction!r} is outside [0, 1]")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"seed {self.seed!r} is not a non-negative integer")
        object.__setattr__(self, "fraction", fraction)
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def name(self) -> str:
        """The run id, ``<family>_f<fraction>_s<seed>`` (its checkpoint folder's and metrics files' name).

        The fraction is written as a float (``f1.0``, ``f0.1``), the seed as an integer: e.g.
        ``scgpt_f0.1_s0``, ``geneformer_f1.0_s0``.
        """
        return f"{self.family}_f{self.fraction}_s{self.seed}"

    def __str__(self) -> str:
        """The run id (:attr:`name`).

        Returns
        -------
        str
            E.g. ``scgpt_f0.1_s0``.
        """
        return self.name

    @classmethod
    def parse(cls, name: str) -> Run:
        """The run a run id names: the inverse of :attr:`name`.

        Parameters
        ----------
        name : str
            A run id, e.g. ``scgpt_f0.1_s0``.

        Returns
        -------
        Run
            The run, with ``Run.parse(run.name) == run``.

        Raises
        ------
        ValueError
            When ``name`` is not ``<family>_f<fraction>_s<seed>`` with a known family, the fraction
            written as a float (``f1.0``, not ``f1``) in [0, 1] and an integer seed.
        """
        match = _NAME.fullmatch(name)
        if match is None:
            raise ValueError(
                f"{name!r} is not a run id: expected <family>_f<fraction>_s<seed> with the fraction "
                f"written as a float, e.g. 'scgpt_f0.1_s0' or 'geneformer_f1.0_s2'"
            )
        run = cls(match["family"], float(match["fraction"]), int(match["seed"]))
        if run.name != name:  # e.g. 'f0.10' or 's01': another spelling of a run, not its id
            raise ValueError(f"{name!r} is not a run id as written; the run's id is {run.name!r}")
        return run

    def parameters(self, profile: Profile, results_dir: str | Path, **options: Any) -> dict:
        """The parameters a job records for this run when called from Python (not from its notebook).

        The same names as the job notebook's parameters: ``profile``, ``results_dir``, ``run`` (the
        run id) and the job's options.

        Parameters
        ----------
        profile : Profile
            The study's profile.
        results_dir : str or pathlib.Path
            The profile's results folder.
        **options
            The job's options, e.g. ``max_steps=None``.

        Returns
        -------
        dict
            ``{"profile": <name>, "results_dir": <str>, "run": <run id>, **options}``.
        """
        return {"profile": profile.name, "results_dir": str(results_dir), "run": self.name, **options}
