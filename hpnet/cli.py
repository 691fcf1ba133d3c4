"""What every command shares: the user-error type and the one-line exit on it.

A ``UserError`` is a problem the user can fix (a bad argument, a missing file, an impossible
setting). Commands wrap their ``main`` with :func:`run_cli`, which prints the message on one
line to stderr and exits with code 2, with no traceback. Everything else is a bug and keeps its
traceback. Their argument parsers are :class:`CommandParser`, so that a bad flag is such an
error too (one line, exit 2) rather than argparse's usage block.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn


class UserError(Exception):
    """An error caused by the user's input; the message says what is wrong and how to fix it."""


EXIT_USAGE = 2


class CommandParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are :class:`UserError` s (see :func:`run_cli`)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")

    def format_help(self) -> str:
        """The help text, without the reST markup of the docstrings it is built from."""
        return plain_text(super().format_help())


def plain_text(text: str) -> str:
    """``text`` with reST roles (``:class:`~a.B```) and literals (````x````) as plain words."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return text.replace("``", "")


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None):
    """Run a command's ``main(argv)`` and turn a :class:`UserError` into exit code 2."""
    configure_logging()
    try:
        code = main(argv)
    except UserError as err:
        print(f"hpnet: error: {one_line(str(err))}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print("hpnet: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def configure_logging() -> None:
    """Warnings on stderr as ``WARNING: message``, all run long. Without a handler the first
    ones would print bare and, once a library calls ``logging.info()`` (open_clip does), the rest
    as ``WARNING:hpnet.module:message``; the libraries' info chatter stays hidden."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


def one_line(message: str) -> str:
    """The message itself when a DataLoader worker raised it: torch re-raises the same type in
    the main process with "Caught UserError in DataLoader worker process 0." and the worker's
    traceback, whose last line is ``hpnet.cli.UserError: <message>``."""
    if not (message.startswith("Caught ") and "\nOriginal Traceback" in message):
        return message
    last = [line for line in message.splitlines() if line.strip()][-1]
    name, sep, text = last.partition(": ")
    return text if sep and " " not in name else last
