"""``--help`` of every command reads as plain text (the docstrings' reST markup removed)."""

from __future__ import annotations

import importlib

import pytest

from hpnet.cli import plain_text

COMMANDS = [
    "hpnet.train",
    "hpnet.evaluate",
    "hpnet.predict",
    "hpnet.zeroshot",
    "hpnet.data.__main__",
    "hpnet.pose.cache",
    "hpnet.data.synthetic",
]


@pytest.mark.parametrize("module", COMMANDS)
def test_help_has_no_rest_markup(module, capsys):
    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m hpnet") and len(out.splitlines()) > 3
    assert "`" not in out


def test_plain_text():
    assert plain_text("``a b`` and :class:`~hpnet.cli.UserError` or :func:`f`") == (
        "a b and UserError or f"
    )
