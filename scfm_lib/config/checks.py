"""The profile error and the type checks that profile sections and notebook parameters share.

:func:`build_dataclass` builds a profile section's dataclass so a misspelled key or a value of the
wrong type fails with the keys that exist or the type it needs; :func:`_matches` and
:func:`_type_name` compare a value with a type annotation and name that type for the message.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from typing import Any, TypeVar

_T = TypeVar("_T")


class ConfigError(ValueError):
    """A profile or a notebook parameter is unknown, mistyped or out of range."""


def build_dataclass(cls: type[_T], values: dict, where: str) -> _T:
    """``cls(**values)``, with errors that name the section, the keys that exist and the types needed.

    An unknown key names the section and the keys that exist, and a value of the wrong type
    (``max_steps: "ten"``) names the key and the type it needs.

    Parameters
    ----------
    cls : type
        A dataclass (a profile section or a library config).
    values : dict
        Field name -> value, as read from the profile.
    where : str
        The section's name in the profile, for the messages.

    Returns
    -------
    object
        The ``cls`` instance.

    Raises
    ------
    ConfigError
        For an unknown key, a value of the wrong type, or a value the dataclass's own checks refuse.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in profile section '{where}'; "
            f"known keys: {sorted(known)}. Fix the spelling or remove the key."
        )
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if not _matches(value, hints[name]):
            default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
            example = "" if default is dataclasses.MISSING else f" (default {default!r})"
            raise ConfigError(
                f"profile section '{where}': {name} must be {_type_name(hints[name])}, got {value!r} "
                f"({type(value).__name__}); write e.g. {name}: <a {_type_name(hints[name])}>{example}"
            )
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"profile section '{where}': {err}") from err


def _matches(value: Any, annotation: Any) -> bool:
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None) or annotation is None:
        return value is None
    if annotation is float:  # papermill passes 1 for 1.0
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if (origin or annotation) is tuple:  # YAML has lists only
        return isinstance(value, (tuple, list))
    return isinstance(value, origin or annotation)


def _type_name(annotation: Any) -> str:
    """``int``, ``float or None``: a type as a profile's author reads it."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))
