"""Type checking of config values: what :mod:`hpnet.config` uses to set one key.

Generic over the dataclass sections: a value is coerced to its field's type (``Literal``,
``list``, ``dict``, ``bool``, ``int``, ``float``, ``str``) or refused with a
:class:`~hpnet.cli.UserError` that names the key and what is allowed; ``data.joint`` entries
(free mappings, checked later as configs of their own) are set by :func:`set_joint_entry`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import difflib
import math
import re
import typing
from collections.abc import Hashable
from typing import Any, Literal

import yaml

from hpnet.cli import UserError
from hpnet.config_schema import KEY_ALIASES

_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class ConfigLoader(yaml.SafeLoader):
    """YAML for configs: PyYAML's safe loader with numbers read as people write them (YAML
    1.2's core schema): ``010`` is ten, not octal eight; ``1:30`` is text, not base-60
    ninety; ``1e-4`` is a number without a dot. A key given twice in one mapping is an error
    (the first would be dropped without a word); merge keys (``<<: *defaults``) work, their
    keys giving way to the mapping's own, as YAML has them."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # (merged by SafeLoader's own construct_mapping)
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"a key must be a name, not a {type(key).__name__}",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice (first on line {seen[key] + 1})",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    return int(text, 16) if text.lstrip("+-").lower().startswith("0x") else int(text, 10)


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?([0-9][0-9_]*|0[xX][0-9a-fA-F_]+)$"), list("-+0123456789")
)
ConfigLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$"
        r"|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)
ConfigLoader.add_constructor(_INT_TAG, _construct_int)


def load_yaml(text: str) -> Any:
    """``text`` read with :class:`ConfigLoader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader


def yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's error as one line: what is wrong and where (line, column of the file)."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if not problem or mark is None:
        return " ".join(str(err).split())
    where = f" (line {mark.line + 1}, column {mark.column + 1})"
    tabs = "; indent with spaces, not tabs" if "'\\t'" in problem else ""
    return f"{problem}{where}{tabs}"


class _TextLoader(ConfigLoader):
    """:class:`ConfigLoader` with every unquoted scalar kept as the text written."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag == _MERGE_TAG]
    for first, resolvers in ConfigLoader.yaml_implicit_resolvers.items()
}


def load_yaml_text(text: str) -> Any:
    """``text`` as :func:`load_yaml` reads it, but every scalar the text written (``010``,
    ``1.50``, ``off``, ``2024-01-01``): what a key that takes text was given."""
    return yaml.load(text, Loader=_TextLoader)  # a SafeLoader


def as_written(tp: Any, value: Any, text: Any) -> Any:
    """A config file's ``value`` for a key of type ``tp``, or the ``text`` it was written as
    (:func:`load_yaml_text`) where the key takes text and YAML read a number, a boolean or a
    date: ``out_dir: 010`` is the folder ``010``, not ``10``."""

    def written(v: Any, t: Any) -> Any:
        return t if v is not None and not isinstance(v, str) and isinstance(t, str) else v

    if tp is str:
        return written(value, text)
    if typing.get_args(tp) == (str,) and isinstance(value, list) and isinstance(text, list):
        return [written(v, t) for v, t in zip(value, text, strict=False)]
    return value


class ConfigDumper(yaml.SafeDumper):
    """YAML that :class:`ConfigLoader` reads back as written: a string it would take for a
    number (``1e3``, ``010``) is quoted."""


ConfigDumper.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in ConfigLoader.yaml_implicit_resolvers.items()
}


def dump_yaml(data: Any) -> str:
    """``data`` as YAML text that :func:`load_yaml` reads back equal (keys in their order)."""
    return yaml.dump(data, Dumper=ConfigDumper, sort_keys=False)


def type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:  # "a list of integers", "... of 'a' or 'b'"
        item = type_name(typing.get_args(tp)[0])
        if item.startswith("one of "):
            return f"a list of values, each {item}"
        plural = item.split(" ", 1)[1] + "s" if item.startswith(("a ", "an ")) else item
        return f"a list of {plural}"
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
        if value is None or (isinstance(value, str) and value.strip() in ("", *YAML_NULLS)):
            value = []  # `key=`, `key=null` or YAML's `key:`: the empty list, not [''] or an error
        elif isinstance(value, str) and typing.get_origin(item) is dict:  # YAML flow style
            value = parse_text(key, tp, value) or []
        elif isinstance(value, str):  # "a,b,c", or a YAML/JSON list "[a, 'b, c']"
            text = value.strip()
            try:
                if text.startswith("[") and text.endswith("]"):
                    value = load_yaml(text)
                else:
                    parts = [v.strip() for v in text.split(",")]
                    value = [load_yaml(v) if item is not str else unquote(v) for v in parts]
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
        if isinstance(value, str):  # (a value set from Python as text)
            with contextlib.suppress(ValueError):
                value = float(value)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):  # inf / nan: no setting means them
            raise UserError(f"config key '{key}' got {value!r}; it must be a finite number")
        value = float(value) if ok else value
    elif tp is str:
        if value is None:
            value = ""
        ok = isinstance(value, str | int | float) and not isinstance(value, bool)
        value = str(value) if ok else value
    if not ok:
        hint = _near_option(value, typing.get_args(tp)) if origin is Literal else ""
        raise UserError(
            f"config key '{key}' got {value!r}{hint}; it must be {type_name(tp)}"
            f"{_yaml_word_hint(value, tp)}"
        )
    return value


def _yaml_word_hint(value: Any, tp: Any) -> str:
    """Why a config file's word became a non-text value (YAML reads ``no`` / ``off`` as false,
    ``2024-01-01`` as a date), for a key that wanted something else: quote it."""
    if isinstance(value, bool) and tp is not bool:
        return " (YAML reads an unquoted yes/no/on/off as true/false: quote the word)"
    if isinstance(value, datetime.date):
        return " (YAML reads a date as a date: quote it, e.g. '2024-01-01')"
    return ""


def _near_option(value: Any, options: tuple[Any, ...]) -> str:
    """`` (did you mean 'lrcn'?)`` for a choice spelt nearly as one of ``options`` (another
    case, a '_' or '-' less or more, a letter off), else ''."""
    names = [o for o in options if isinstance(o, str)]
    folded = {n.lower().replace("_", "").replace("-", ""): n for n in names}
    text = str(value)
    same = folded.get(text.lower().replace("_", "").replace("-", ""))
    near = [same] if same else difflib.get_close_matches(text, names, n=1, cutoff=0.75)
    return f" (did you mean '{near[0]}'?)" if near else ""


def fields_of(section: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(section)}


def resolved_types(section: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(section))


def unknown_key(key: str, section: Any) -> UserError:
    """The error for ``key``, unknown in ``section``, with the likeliest meant keys: an alias
    (:data:`~hpnet.config_schema.KEY_ALIASES`), or a near spelling in this section and the same
    name in any other (``train.randaug_n``: ``data.augment.randaug_n``; a bare ``frames=8``:
    ``data.frames``)."""
    from hpnet.config_schema import Config

    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    names = [prefix + n for n in fields_of(section)]
    name = key.rsplit(".", 1)[-1]
    alias = KEY_ALIASES.get(name, "")
    if alias and (not prefix or alias.startswith(prefix)):
        close = [alias]
    else:  # (train.batch: train.batch_size; train.model: text.model; train.num_workers: the
        # alias of another section, data.workers, when nothing is near)
        near = difflib.get_close_matches(key, names, n=1, cutoff=0.8 if alias else 0.6)
        elsewhere = [k for k in _dotted_keys(Config()) if k.rsplit(".", 1)[-1] == name]
        close = list(dict.fromkeys([*near, *elsewhere])) or ([alias] if alias else [])
    hint = " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)" if close else ""
    return UserError(f"unknown config key '{key}'{hint}; valid keys here: {', '.join(names)}")


def _dotted_keys(section: Any, prefix: str = "") -> list[str]:
    """Every value key under ``section``, dotted (``data.augment.erase_prob``)."""
    keys = []
    for name in fields_of(section):
        value = getattr(section, name)
        if dataclasses.is_dataclass(value):
            keys += _dotted_keys(value, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


# what YAML reads as null (a string key: ''), less '~': on a command line that is the home folder
YAML_NULLS = ("null", "Null", "NULL")


def text_value(text: str) -> str:
    """A string key's command-line text as its value: ``''`` for a YAML null (as ``key: null``
    in a file), else :func:`unquote`."""
    return "" if text.strip() in YAML_NULLS else unquote(text)


def unquote(text: str) -> str:
    """A string key's command-line text without the quotes around all of it (``'a b'``,
    ``"x"``: as YAML reads them); other text as it is (``/data/run #2`` stays whole)."""
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
        with contextlib.suppress(yaml.YAMLError):
            value = load_yaml(stripped)
            if isinstance(value, str):
                return value
    return text


def parse_text(key: str, tp: Any, value: str) -> Any:
    try:
        return load_yaml(value)
    except yaml.YAMLError:
        raise UserError(f"config key '{key}' got {value!r}; it must be {type_name(tp)}") from None


def key_type(section: Any, parts: list[str]) -> Any:
    """The type of dotted key ``parts`` under ``section`` (a config or one of its sections; of
    a ``data.joint`` entry with the data section, ``pose_cache_dir`` a string); None when
    unknown."""
    if parts == ["pose_cache_dir"]:
        return str
    node, tp = section, None
    for part in parts:
        if not dataclasses.is_dataclass(node) or part not in fields_of(node):
            return None
        tp = resolved_types(node)[part]
        node = getattr(node, part)
    return tp


def check_entry_keys(name: str, keys: dict[str, Any], allowed: list[str]) -> None:
    """Refuse a key of data.joint entry ``name`` that is not one of the data keys an entry sets
    (``allowed``), named as the user wrote it (``data.joint.<name>.<key>``)."""
    for key in keys:
        if str(key).split(".")[0] not in allowed:  # (a dotted key: augment.randaug_n)
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean 'data.joint.{name}.{near[0]}'?)" if near else ""
            raise UserError(
                f"unknown config key 'data.joint.{name}.{key}'{hint}; an entry sets name, "
                f"pose_cache_dir and {', '.join(allowed)}"
            )


def entry_as_written(entry: Any, texts: Any, section: Any) -> Any:
    """A config file's ``data.joint`` entry (or a mapping in one: ``augment:``) with each key
    that takes text as written (:func:`as_written`; ``section``: the data section or its
    part the mapping sets)."""
    if not isinstance(entry, dict) or not isinstance(texts, dict) or section is None:
        return entry
    out = {}
    for key, value in entry.items():
        parts, text = str(key).split("."), texts.get(str(key))
        if isinstance(value, dict):
            node = section
            for part in parts:
                node = getattr(node, part, None) if dataclasses.is_dataclass(node) else None
            out[key] = entry_as_written(value, text, node)
        else:
            tp = str if key == "name" else key_type(section, parts)  # (pose_cache_dir: str)
            out[key] = as_written(tp, value, text)
    return out


def file_value(cfg: Any, key: str, value: Any, text: Any) -> Any:
    """A file's ``value`` for ``key`` with the text written where the key takes text
    (``text``: the same as written), ``data.joint`` entries' keys too."""
    parts = key.split(".")
    if key == "data.joint" and isinstance(value, list) and isinstance(text, list):
        return [entry_as_written(e, t, cfg.data) for e, t in zip(value, text, strict=False)]
    if parts[:2] == ["data", "joint"] and len(parts) > 3:  # data.joint.<name>.<key>: ...
        entry = {".".join(parts[3:]): value}
        return entry_as_written(entry, {".".join(parts[3:]): text}, cfg.data).popitem()[1]
    return as_written(key_type(cfg, parts), value, text)


def set_joint_entry(
    entries: list[dict[str, Any]],
    parts: list[str],
    value: Any,
    *,
    from_text: bool,
    section: Any = None,
) -> None:
    """``data.joint.<name>.<key>=value``: set ``key`` (dotted) in the entry called ``name``;
    checked with the entry in :func:`validate`. Text is read as YAML unless the key is a
    string one of ``section`` (the data section): ``root=/data/run #2`` stays whole, as
    ``data.root=`` does."""
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
    if from_text and key_type(section, parts[1:]) is not str:
        with contextlib.suppress(yaml.YAMLError):
            value = load_yaml(value)
    elif from_text:
        value = text_value(value)
    node[parts[-1]] = value
