"""Notebook parameters: :func:`check_notebook_parameters`.

Papermill only *warns* on a parameter the notebook does not declare, so every notebook validates
its own.
"""

from __future__ import annotations

import types

from scfm_lib.config.checks import ConfigError, _matches

#: Names IPython defines in every kernel; anything else not declared is an unknown parameter.
_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def check_notebook_parameters(namespace: dict, ranges: dict[str, tuple] | None = None) -> dict:
    """Validate a notebook's parameters after papermill has injected its values.

    Call it in the cell right after the ``parameters`` cell, with ``globals()``. The parameters
    cell must be the notebook's first code cell and declare each parameter with a type
    annotation (``seed: int = 0  # comment``), and this check must run before the notebook
    defines any other variable.

    Parameters
    ----------
    namespace : dict
        The notebook's ``globals()``.
    ranges : dict of str to tuple, optional
        Parameter -> ``(low, high)``, bounds inclusive (``{"fraction": (0.0, 1.0)}``); None values
        pass.

    Returns
    -------
    dict
        The parameters: name -> value.

    Raises
    ------
    ConfigError
        For a name papermill injected that the notebook does not declare (a typo such as
        ``-p sed 1``), a value of the wrong type, or a value outside ``ranges``.
    """
    annotations = namespace.get("__annotations__", {})
    if isinstance(annotations, dict):
        annotations = {
            k: (eval(v, namespace) if isinstance(v, str) else v)  # noqa: S307
            for k, v in annotations.items()
        }
    declared = set(annotations)
    # Parameters are plain values: imported modules and functions are not candidates.
    given = {
        k
        for k, v in namespace.items()
        if not k.startswith("_") and k not in _KERNEL_NAMES and not isinstance(v, types.ModuleType) and not callable(v)
    }
    unknown = sorted(given - declared)
    if unknown:
        raise ConfigError(
            f"unknown notebook parameter(s) {unknown}; this notebook takes "
            f"{sorted(declared)}. Check the spelling of the -p options."
        )
    params = {}
    for name, annotation in annotations.items():
        value = namespace[name]
        if not _matches(value, annotation):
            raise ConfigError(
                f"parameter {name!r} must be {annotation}, got {value!r} "
                f"({type(value).__name__}); pass e.g. -p {name} <value of that type>"
            )
        params[name] = value
    for name, (low, high) in (ranges or {}).items():
        value = params[name]
        if value is not None and not low <= value <= high:
            raise ConfigError(
                f"parameter {name!r} = {value!r} is outside [{low}, {high}]; pass a value in "
                f"that range, e.g. -p {name} {low}"
            )
    return params
