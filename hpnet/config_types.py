"""Type checking of config values: what :mod:`hpnet.config` uses to set one key.

Generic over the dataclass sections: a value is coerced to its field's type (``Literal``,
``list``, ``dict``, ``bool``, ``int``, ``float``, ``str``) or refused with a
:class:`~hpnet.cli.UserError` that names the key and what is allowed; ``data.joint`` entries
(free mappings, checked later as configs of their own) are set by :func:`set_joint_entry`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import typing
from typing import Any, Literal

import yaml

from hpnet.cli import UserError


def type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        item = type_name(typing.get_args(tp)[0])
        return f"a list of {item[2:]}s" if item == "a mapping" else f"a list of {item}"
    if typing.get_origin(tp) is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, str(tp)
    )


def coerce(key: str, tp: Any, value: Any) -> Any:
    """Return ``value`` as type ``tp`` or raise a UserError naming ``key`` and what is allowed."""
    origin = typing.get_origin(tp)
    ok = True
    if origin is Literal:
        options = typing.get_args(tp)
        if isinstance(value, bool):  # YAML 1.1 reads off / no / on / yes as booleans
            words = ("on", "yes", "true") if value else ("off", "no", "false")
            value = next((w for w in words if w in options), value)
        ok = value in options
    elif origin is list:
        item = typing.get_args(tp)[0]
        if isinstance(value, str) and typing.get_origin(item) is dict:  # YAML flow style
            value = parse_text(key, tp, value) or []
        elif isinstance(value, str):  # "a,b,c", or a YAML/JSON list "[a, 'b, c']"
            text = value.strip()
            try:
                if text.startswith("[") and text.endswith("]"):
                    value = yaml.safe_load(text)
                else:
                    value = [yaml.safe_load(v) if item is not str else v for v in text.split(",")]
            except yaml.YAMLError:
                raise UserError(
                    f"config key '{key}' got {value!r}; it must be {type_name(tp)}"
                ) from None
        if not isinstance(value, list | tuple):
            ok = False
        else:
            return [coerce(key, item, v) for v in value]
    elif origin is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        if value is None:
            value = ""
        ok = isinstance(value, str | int | float) and not isinstance(value, bool)
        value = str(value) if ok else value
    if not ok:
        raise UserError(f"config key '{key}' got {value!r}; it must be {type_name(tp)}")
    return value


def fields_of(section: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(section)}


def resolved_types(section: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(section))


def unknown_key(key: str, section: Any) -> UserError:
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    names = [prefix + n for n in fields_of(section)]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return UserError(f"unknown config key '{key}'{hint}; valid keys here: {', '.join(names)}")


def parse_text(key: str, tp: Any, value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        raise UserError(f"config key '{key}' got {value!r}; it must be {type_name(tp)}") from None


def set_joint_entry(
    entries: list[dict[str, Any]], parts: list[str], value: Any, *, from_text: bool
) -> None:
    """``data.joint.<name>.<key>=value``: set ``key`` (dotted) in the entry called ``name``;
    checked with the entry in :func:`validate`."""
    names = [str(e.get("name")) for e in entries if isinstance(e, dict)]
    if len(parts) < 2 or parts[0] not in names:
        raise UserError(
            f"config key 'data.joint.{'.'.join(parts)}' names no data.joint entry; use "
            f"data.joint.<name>.<key>=value with <name> one of: {', '.join(names) or '(none)'}"
        )
    node = entries[names.index(parts[0])]
    for part in parts[1:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"data.joint.{'.'.join(parts)}: '{part}' is a value, not a section")
    if from_text:
        with contextlib.suppress(yaml.YAMLError):
            value = yaml.safe_load(value)
    node[parts[-1]] = value
