"""``--help`` of every command reads as plain text (the docstrings' reST markup removed)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from hpnet.cli import plain_text

COMMANDS = [
    "hpnet.train",
    "hpnet.pretrain.run",
    "hpnet.evaluate",
    "hpnet.predict",
    "hpnet.zeroshot",
    "hpnet.compare",
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


@pytest.mark.parametrize(
    "module", [*(c for c in COMMANDS[:-1] if c != "hpnet.compare"), "hpnet.export"]
)
def test_every_command_that_takes_a_config_lists_its_keys(module, capsys):
    """``--help-config`` on every command with ``--config`` (not only train and pretrain)."""
    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).main(["--help-config"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "data.frames=16  (an integer)" in out and "train.lr=" in out


def test_plain_text():
    assert plain_text("``a b`` and :class:`~hpnet.cli.UserError` or :func:`f`") == (
        "a b and UserError or f"
    )


def test_warnings_print_one_way_all_run_long():
    """A warning before and after a library's logging.info() (open_clip's) look the same."""
    code = (
        "import logging\n"
        "from hpnet.cli import run_cli\n"
        "def main(argv):\n"
        "    log = logging.getLogger('hpnet.x')\n"
        "    log.warning('first')\n"
        "    logging.info('library chatter')\n"
        "    log.warning('second')\n"
        "    return 0\n"
        "run_cli(main, [])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["WARNING: first", "WARNING: second"]


def test_every_console_script_is_a_command_entry_point():
    """pyproject's ``hpnet-*`` scripts name a ``cli`` of a command module (``python -m``'s)."""
    tomllib = pytest.importorskip("tomllib")  # (Python 3.11+)
    from pathlib import Path

    project = Path(__file__).resolve().parents[1] / "pyproject.toml"
    scripts = tomllib.loads(project.read_text(encoding="utf-8"))["project"]["scripts"]
    modules = {}
    for name, target in scripts.items():
        module, function = target.split(":")
        assert function == "cli" and callable(importlib.import_module(module).cli)
        modules[module] = name
    every = {c.replace(".__main__", "") for c in COMMANDS[:-1]} | {"hpnet.export"}
    listed = {m.replace(".__main__", "") for m in modules}
    assert every - listed == set()
