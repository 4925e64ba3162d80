"""Method-owned settings: each training method declares its parameters as a small dataclass.

A method class carries ``Settings`` (a dataclass; every field has a default and a ``help``
in its metadata). A run's config holds the chosen method's values as ``method_args``
(``{"beta": 6.0}``); :func:`build_settings` checks the keys against the dataclass, converts
strings from the command line to the field's type and calls the dataclass's own ``check()``
for constraints between values. Errors name the method, the setting and the valid choices.

    @dataclass
    class Settings:
        beta: float = setting(6.0, "TRADES β (weight of the KL term)")
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any

from robustlayers.errors import ConfigError


def setting(default: Any, help: str, *, choices: tuple | None = None) -> Any:
    """A settings field with its help text (shown by ``robustlayers train --help``) and, for
    strings, its valid choices."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclasses.dataclass
class NoSettings:
    """A method without settings of its own."""


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _base_type(kind) -> tuple[type, bool]:
    """(the concrete type, whether None is allowed) of an annotation such as ``float | None``."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return kind, False


def coerce(name: str, value: Any, kind) -> Any:
    """``value`` as the field's type: numbers from strings ("0.01", "8/255"), booleans from
    "true"/"false"; None only where the field allows it. ConfigError naming ``name``."""
    base, optional = _base_type(kind)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{name} must be a {base.__name__}, got None")
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
            return value.strip().lower() in ("true", "yes")
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if base in (int, float):
        if isinstance(value, str):
            value = _number(name, value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if base is int:
            if float(value) != int(value):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            return int(value)
        return float(value)
    if base is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value.strip()
    return value


def _number(name: str, text: str) -> float:
    from robustlayers.attacks import parse_eps

    try:
        if "/" in text:
            return parse_eps(text)
        return float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number (such as 0.01 or 2/255), "
                          f"got {text!r}") from None


def build_settings(cls, values: dict | None, *, method: str, owner: str = "method"):
    """An instance of the settings dataclass ``cls`` from ``values`` (missing keys take the
    defaults), every value converted and checked; errors name ``owner`` ``method`` (a
    training method, or a study's options)."""
    values = dict(values or {})
    if not isinstance(values, dict):
        raise ConfigError(f"method_args must be a mapping of {method}'s settings, "
                          f"got {values!r}")
    kinds = _field_types(cls)
    unknown = [k for k in values if k not in kinds]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(kinds), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        valid = ", ".join(kinds) or "none: it has no settings of its own"
        raise ConfigError(f"{owner} {method!r} has no setting {key!r}{hint}; its settings: "
                          f"{valid}")
    converted = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            continue
        value = coerce(f"{method} setting {field.name}", values[field.name], kinds[field.name])
        choices = field.metadata.get("choices")
        if choices and value is not None:
            value = str(value).strip().lower()
            if value not in choices:
                close = difflib.get_close_matches(value, list(choices), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"invalid {method} setting {field.name} {values[field.name]!r}"
                                  f"{hint}; valid choices: {', '.join(choices)}")
        converted[field.name] = value
    settings = cls(**converted)
    check = getattr(settings, "check", None)
    if check is not None:
        check()
    return settings


def settings_dict(settings) -> dict:
    """The settings as a plain dict (recorded in config.json and result.json)."""
    return dataclasses.asdict(settings)


def settings_help(cls) -> dict[str, str]:
    """``{name: help}`` of a settings dataclass."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
