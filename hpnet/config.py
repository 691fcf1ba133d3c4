"""Every setting of hpnet in one dataclass tree, with YAML files and ``key.sub=value`` overrides.

Order of precedence: defaults here < ``--config file.yaml`` < ``key=value`` arguments.
Every value is type-checked against its default's type; unknown keys, wrong types and
impossible values raise :class:`hpnet.cli.UserError` naming the key and what is allowed, which
the commands turn into a one-line message and exit code 2.

    cfg = load_config("configs/demo.yaml", ["train.epochs=3", "data.frames=8"])
    cfg.data.frames  # 8

The sections and their defaults live in :mod:`hpnet.config_schema` (re-exported here).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hpnet.cli import UserError, missing
from hpnet.config_limits import LIMITS
from hpnet.config_schema import (
    AugmentConfig,
    Config,
    DataConfig,
    EvalConfig,
    ModelConfig,
    PoseConfig,
    PretrainConfig,
    SyntheticConfig,
    TextConfig,
    TrainConfig,
)
from hpnet.config_types import (
    check_entry_keys,
    coerce,
    dump_yaml,
    fields_of,
    file_value,
    load_yaml,
    load_yaml_text,
    parse_text,
    resolved_types,
    set_joint_entry,
    text_value,
    unknown_key,
    yaml_problem,
)

__all__ = [
    "AugmentConfig", "Config", "DataConfig", "EvalConfig", "ModelConfig", "PoseConfig",
    "PretrainConfig", "SyntheticConfig", "TextConfig", "TrainConfig",
    "apply_overrides", "changed_keys", "check_pose_source", "config_from_dict", "config_to_dict",
    "dataset_configs", "flat_config", "get_value", "load_config", "overrides_key",
    "save_config", "validate",
]  # fmt: skip

logger = logging.getLogger(__name__)


def _set(cfg: Config, key: str, value: Any, *, from_text: bool) -> None:
    """Set dotted ``key`` on ``cfg`` to ``value`` (parsed from text when ``from_text``)."""
    parts = key.split(".")
    node: Any = cfg
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        if part not in fields_of(node):
            raise unknown_key(here, node)
        tp = resolved_types(node)[part]
        if dataclasses.is_dataclass(tp):
            if i == len(parts) - 1:
                typo = " (a ':' missing after a key?)" if isinstance(value, str) else ""
                raise UserError(
                    f"config key '{here}' is a section, not a value: got {value!r}{typo}; set "
                    "one of its keys instead"
                )
            node = getattr(node, part)
            continue
        if here == "data.joint" and i != len(parts) - 1:  # data.joint.<name>.<key>=value
            set_joint_entry(node.joint, parts[i + 1 :], value, from_text=from_text, section=node)
            return
        if i != len(parts) - 1:
            raise UserError(f"config key '{here}' is a value, not a section ('{key}')")
        if from_text and tp is not str and typing.get_origin(tp) is not list:
            value = parse_text(key, tp, value)
        elif from_text and tp is str:
            value = text_value(value)
        setattr(node, part, coerce(key, tp, value))


def _merge(
    cfg: Config,
    data: dict[str, Any],
    texts: Any = None,
    seen: set[str] | None = None,
    prefix: str = "",
) -> None:
    """Set a config file's mapping ``data`` on ``cfg`` (``texts``: the same as written,
    :func:`~hpnet.config_types.as_written`; ``seen``: the keys set so far, each once)."""
    seen = set() if seen is None else seen
    for name, value in data.items():
        key = f"{prefix}{name}"
        text = texts.get(str(name)) if isinstance(texts, dict) else None
        if value is None and _is_section(cfg, key):  # every key of it commented out
            continue
        if isinstance(value, dict):
            node: Any = cfg
            for part in key.split("."):
                if not dataclasses.is_dataclass(node) or part not in fields_of(node):
                    raise unknown_key(key, node)
                node = getattr(node, part)
            if dataclasses.is_dataclass(node):
                _merge(cfg, value, text, seen, key + ".")
                continue
        if key in seen:  # (`train: {epochs: 3}` and `train.epochs: 0` in one file)
            raise UserError(f"config key '{key}' is set twice in the file: keep one")
        seen.add(key)
        _set(cfg, key, file_value(cfg, key, value, text), from_text=False)


def _is_section(cfg: Config, key: str) -> bool:
    node: Any = cfg
    for part in key.split("."):
        if not dataclasses.is_dataclass(node) or part not in fields_of(node):
            return False
        node = getattr(node, part)
    return dataclasses.is_dataclass(node)


def validate(cfg: Config) -> Config:
    """Check every value against its limits; raise UserError naming the first bad key."""
    for key, (ok, allowed) in LIMITS.items():
        value = get_value(cfg, key)
        if not ok(value):
            if isinstance(value, int) and not isinstance(value, bool):  # an integer key
                allowed = allowed.replace("a number ", "an integer ")
            raise UserError(f"config key '{key}' got {value!r}; it must be {allowed}")
    m, t = cfg.model, cfg.train
    if m.feedback and not m.pose:
        m.feedback = False  # feedback needs pooled joints; model.pose=false switches it off
    t.out_dir = os.path.expanduser(t.out_dir)  # ~/runs/x as the shell would
    if t.resume not in ("", "auto"):
        t.resume = os.path.expanduser(t.resume)
    if cfg.data.dataset == "list" and not cfg.data.train_list and not cfg.data.test_list:
        raise UserError("data.dataset=list needs data.train_list and/or data.test_list")
    if cfg.data.classes_file and cfg.data.dataset != "list":
        raise UserError(
            f"data.classes_file is read only with data.dataset=list; data.dataset="
            f"{cfg.data.dataset} names its own classes (drop data.classes_file)"
        )
    if cfg.data.joint:
        dataset_configs(cfg)  # every entry, checked like a config of its own
    return cfg


def check_pose_source(cfg: Config) -> None:
    """Refuse joints that the dataset cannot give. Checked where clips are built with joints
    (not by :func:`validate`: ``python -m hpnet.data`` inspects any dataset whatever the pose
    settings of the config file it reuses)."""
    if cfg.pose.source == "groundtruth" and cfg.data.dataset != "synthetic":
        raise UserError(
            "pose.source=groundtruth only exists for data.dataset=synthetic; "
            "use pose.source=cache (run python -m hpnet.pose.cache first) or pose.source=none"
        )


# ---------------------------------------------------------------------------- joint training

JOINT_SHARED = ("joint", "frames", "size")  # data.* keys one model needs the same everywhere
ENTRY_KEYS = [k for k in fields_of(DataConfig()) if k not in JOINT_SHARED]  # a joint entry sets
_JOINT_NAME = re.compile(r"[A-Za-z0-9_-]+")


def dataset_configs(cfg: Config) -> list[tuple[str, Config]]:
    """``(name, config)`` per dataset a run trains on: one entry ``("", cfg)`` without
    ``data.joint``; with it, per entry a copy of ``cfg`` whose ``data`` has the entry's keys
    (``pose.cache_dir`` its ``pose_cache_dir``) and no ``joint``, validated.

    Raises UserError naming the entry for fewer than 2 entries, a missing, repeated or unusable
    name, an unknown or shared key (:data:`JOINT_SHARED`), or a bad value.
    """
    entries = cfg.data.joint
    if not entries:
        return [("", cfg)]
    if len(entries) < 2:
        raise UserError(
            "data.joint lists 1 dataset; joint training needs 2 or more "
            "(for one dataset drop data.joint and set data.dataset, data.root, ...)"
        )
    out: list[tuple[str, Config]] = []
    for i, entry in enumerate(entries):
        name = entry.get("name")
        where = f"data.joint entry {i + 1}"
        if not isinstance(name, str) or not _JOINT_NAME.fullmatch(name):
            raise UserError(
                f"{where} has name {name!r}; each entry needs a `name` of letters, digits, "
                "'_' or '-' (it names the dataset in eval.json and file names)"
            )
        if name in (n for n, _ in out):
            raise UserError(f"data.joint names '{name}' twice; give each entry its own name")
        out.append((name, _entry_config(cfg, name, entry)))
    return out


def _entry_config(cfg: Config, name: str, entry: dict[str, Any]) -> Config:
    keys = {k: v for k, v in entry.items() if k not in ("name", "pose_cache_dir")}
    shared = [k for k in keys if k in JOINT_SHARED]
    if shared:
        raise UserError(
            f"data.joint entry '{name}' sets data.{shared[0]}; one model trains on every "
            f"dataset, so set data.{shared[0]} once, outside data.joint"
        )
    check_entry_keys(name, keys, ENTRY_KEYS)
    one = copy.deepcopy(cfg)
    one.data.joint = []
    try:
        _merge(one, {"data": keys})
        if "pose_cache_dir" in entry:
            _set(one, "pose.cache_dir", entry["pose_cache_dir"], from_text=False)
        return validate(one)
    except UserError as err:
        raise joint_entry_error(name, err) from None


_KEY_IN_TEXT = re.compile(r"(?<![\w./-])(data\.(\w+)(?![\w/-])|pose\.cache_dir\b)")


def joint_entry_keys(name: str, text: str) -> str:
    """``text`` about data.joint entry ``name`` with the keys the entry sets named as its own
    (``data.root`` -> ``data.joint.<name>.root``, ``pose.cache_dir`` ->
    ``data.joint.<name>.pose_cache_dir``): the fix a message gives is then the one that works.
    The keys of :data:`JOINT_SHARED` stay as they are."""

    def own(match: re.Match[str]) -> str:
        key = match.group(2)
        if key is None:  # pose.cache_dir
            return f"data.joint.{name}.pose_cache_dir"
        return f"data.joint.{name}.{key}" if key in ENTRY_KEYS else match.group(0)

    return _KEY_IN_TEXT.sub(own, text)


def joint_entry_error(name: str, err: UserError) -> UserError:
    """``err`` of data.joint entry ``name``: prefixed with the entry, its keys named as the
    entry's (:func:`joint_entry_keys`)."""
    return UserError(f"data.joint entry '{name}': {joint_entry_keys(name, str(err))}")


def changed_keys(saved: dict[str, Any], cfg: Config, keys: Sequence[str]) -> list[tuple]:
    """``(key, saved value, cfg's value)`` for each dotted ``key`` whose value in ``saved`` (a
    :func:`config_to_dict` tree, e.g. a checkpoint's) is set and differs from ``cfg``'s."""
    changed = []
    for key in keys:
        section, name = key.split(".")
        then, now = saved.get(section, {}).get(name), get_value(cfg, key)
        if then is not None and then != now:
            changed.append((key, then, now))
    return changed


def get_value(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


# ---------------------------------------------------------------------------------- public API


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    file_keys: set[str] | None = None,
) -> Config:
    """Defaults, then the YAML file at ``path``, then ``key=value`` overrides; validated.
    ``file_keys``: filled with the dotted keys the file set."""
    cfg = Config()
    if path:
        path = Path(path).expanduser()
        if not path.exists() or path.is_dir():  # (a pipe, <(...), is a file to read)
            raise UserError(f"config file {missing(path)}: {path}")
        try:
            text = path.read_text(encoding="utf-8")
            data, texts = load_yaml(text), load_yaml_text(text)
        except yaml.YAMLError as err:
            raise UserError(f"config file {path} is not valid YAML: {yaml_problem(err)}") from None
        except UnicodeDecodeError:
            raise UserError(f"config file {path} is not UTF-8 text (a YAML file?)") from None
        except OSError as err:
            raise UserError(f"cannot read config file {path}: {err.strerror}") from None
        if data is None:
            logger.warning("config file %s sets nothing: every key has its default", path)
        elif not isinstance(data, dict):
            raise UserError(f"config file {path} must hold a mapping of sections, not {data!r}")
        _merge(cfg, data or {}, texts, file_keys)
    return apply_overrides(cfg, overrides)


def overrides_key(overrides: Sequence[str], key: str) -> bool:
    """Whether one of the ``key=value`` strings ``overrides`` sets ``key``."""
    return any(item.split("=", 1)[0].strip() == key for item in overrides)


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """Apply ``key.sub=value`` strings to ``cfg`` in place, type-checked; validate and return it.
    A key given twice takes its last value, with a warning."""
    given: dict[str, str] = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} must look like key.sub=value (e.g. data.frames=8)")
        key, value = (part.strip() for part in item.split("=", 1))
        if key in given and given[key] != value:
            first, last = (f"'{v}'" if not v or " " in v else v for v in (given[key], value))
            said = f"{key} is given twice ({first}, then {last}): {last} is used"
            logger.warning("%s", said)
        given[key] = value
        _set(cfg, key, value, from_text=True)
    _warn_replaced_by_entries(cfg, list(given))
    return validate(cfg)


def _warn_replaced_by_entries(cfg: Config, keys: Sequence[str]) -> None:
    """Warn of overridden ``data.*`` keys (and ``pose.cache_dir``) that every ``data.joint``
    entry sets for itself: the run reads the entries' (``data.split=2`` changed nothing)."""
    entries = [e for e in cfg.data.joint if isinstance(e, dict)]
    for key in keys if entries else ():
        own = _entry_key(key)
        if own and all(_sets(e, own.split(".")) for e in entries):
            logger.warning(
                "%s is set by each data.joint entry for itself, which the run reads: set "
                "data.joint.<name>.%s (e.g. data.joint.%s.%s=...)",
                key, own, entries[0].get("name", "<name>"), own,
            )  # fmt: skip


def _entry_key(key: str) -> str | None:
    """The ``data.joint`` entry key (dotted below the entry: ``augment.flip``) that stands for
    the top-level ``key``, or None."""
    if key == "pose.cache_dir":
        return "pose_cache_dir"
    section, _, rest = key.partition(".")
    if section == "data" and rest and rest.split(".")[0] not in JOINT_SHARED:
        return rest
    return None


def _sets(entry: Any, path: list[str]) -> bool:
    """Whether the mapping ``entry`` holds the nested key ``path`` (``["augment", "flip"]``)."""
    for part in path:
        if not isinstance(entry, dict) or part not in entry:
            return False
        entry = entry[part]
    return True


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain nested dicts (what checkpoints and config.yaml store)."""
    return dataclasses.asdict(cfg)


def flat_config(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The leaves of a :func:`config_to_dict` tree by dotted key (``data.augment.flip``);
    lists (``data.joint``, ``text.templates``) are leaves."""
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{key}."))
        else:
            flat[key] = value
    return flat


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from :func:`config_to_dict` output (e.g. a checkpoint's copy)."""
    cfg = Config()
    _merge(cfg, data)
    return validate(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with ``--config``), atomically."""
    from hpnet.atomic import write_text

    write_text(path, dump_yaml(config_to_dict(cfg)), what="config")
