"""Profiles and notebook parameters.

A *profile* (``profiles/<name>.yaml``) is the one config that drives both the workflow (which
runs exist) and the book (which pages its table of contents lists). Each section of a profile
maps onto a dataclass of the library, so a misspelled key fails at load time with the list of
keys that exist, instead of being silently ignored.

Notebook parameters are checked by :func:`check_notebook_parameters`: papermill only *warns*
on a parameter the notebook does not declare, so every notebook validates its own.

Modules (every name is re-exported here: ``scfm_lib.config.load_profile`` as before):

- ``checks``      :class:`ConfigError`, :func:`build_dataclass` and the type checks it shares with
  the notebook parameters
- ``sections``    the profile's sections (:class:`DataSection`, :class:`EvaluateSection`,
  :class:`StatsSection`, :class:`StudySection`, :class:`WorkflowSection`) and :class:`TaskSpec`
- ``run``         :class:`Run`: one grid point (family, fraction, seed), its id (:attr:`Run.name`)
  and :meth:`Run.parse`
- ``profile``     :class:`Profile` (its grid: :meth:`Profile.runs`), :func:`load_profile`, ``PROFILES_DIR``
- ``parameters``  :func:`check_notebook_parameters`

Importing this package does not import torch: the library configs a profile builds (model,
train, atlas, datasets, soma) are imported inside the functions that need them.
"""

from scfm_lib.config.checks import ConfigError, _matches, _type_name, build_dataclass
from scfm_lib.config.parameters import _KERNEL_NAMES, check_notebook_parameters
from scfm_lib.config.profile import PROFILES_DIR, Profile, _not_none, load_profile
from scfm_lib.config.run import Run
from scfm_lib.config.sections import (
    DATA_SOURCES,
    TASK_WORDS,
    DataSection,
    EvaluateSection,
    StatsSection,
    StudySection,
    TaskSpec,
    WorkflowSection,
    _at_least,
    _task_spec,
)

__all__ = [
    "ConfigError",
    "build_dataclass",
    "DATA_SOURCES",
    "TASK_WORDS",
    "TaskSpec",
    "DataSection",
    "EvaluateSection",
    "StatsSection",
    "StudySection",
    "WorkflowSection",
    "PROFILES_DIR",
    "Profile",
    "Run",
    "load_profile",
    "check_notebook_parameters",
]
