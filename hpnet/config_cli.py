"""The config on a command line: ``--config FILE`` and ``key=value`` overrides (given to
:func:`hpnet.config.load_config`), and ``--help-config`` (every key, its default, type and the
comment it has in :mod:`hpnet.config_schema`)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import textwrap
from typing import Any

from hpnet.config_schema import Config
from hpnet.config_types import resolved_types, type_name


def describe() -> str:
    """Every key with its default and its comment in :mod:`hpnet.config_schema`, one per line
    (``--help-config``)."""
    lines: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        notes = field_comments(type(node))
        for name, tp in resolved_types(node).items():
            value = getattr(node, name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{name}.")
            else:
                note = f"  {notes[name]}" if name in notes else ""
                lines.append(f"{prefix}{name}={value!r}  ({type_name(tp)}){note}")

    walk(Config(), "")
    return "\n".join(lines)


def field_comments(section: type) -> dict[str, str]:
    """``{field: comment}`` of a config dataclass from its source: the comment lines right
    above a field, then the one after it on its line, joined."""
    import inspect
    import io
    import tokenize

    comments: dict[int, str] = {}  # line -> comment text
    code_lines: set[int] = set()
    try:
        source = textwrap.dedent(inspect.getsource(section))
    except (OSError, TypeError):  # installed without its sources: the keys without comments
        return {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.add(token.start[0])
    out: dict[str, str] = {}
    for number, line in enumerate(source.splitlines(), 1):
        found = re.match(r"\s+(\w+)\s*:", line)
        if not found or found.group(1) not in section.__dataclass_fields__:
            continue
        above, k = [], number - 1
        while k in comments and k not in code_lines:  # a block of comment-only lines
            above.insert(0, comments[k])
            k -= 1
        after = [comments[number]] if number in comments else []
        if above or after:
            out[found.group(1)] = " ".join(above + after)
    return out


class OneConfig(argparse.Action):
    """``--config`` given once: a second one would drop the first without a word."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"--config is given twice ({getattr(namespace, self.dest)}, {values})")
        setattr(namespace, self.dest, values)


class HelpConfig(argparse.Action):
    """``--help-config``: print every config key (:func:`describe`) and exit, as ``--help``."""

    def __init__(self, option_strings: Any, dest: Any, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        print(describe())
        parser.exit()


def add_help_config(parser: Any) -> None:
    """Add ``--help-config`` (every config key, its default, type and comment) to a parser."""
    parser.add_argument(
        "--help-config", action=HelpConfig, help="list every config key, its default and type"
    )


def add_config_arguments(parser: Any) -> None:
    """Add ``--config FILE``, ``--help-config`` and trailing ``key=value`` overrides to an
    argparse parser."""
    parser.add_argument(
        "--config", action=OneConfig, help="YAML config file (defaults: hpnet/config_schema.py)"
    )
    add_help_config(parser)
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override a config key, e.g. data.frames=8",
    )
