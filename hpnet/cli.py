"""What every command shares: the user-error type and the one-line exit on it.

A ``UserError`` is a problem the user can fix (a bad argument, a missing file, an impossible
setting). Commands wrap their ``main`` with :func:`run_cli`, which prints the message on one
line to stderr and exits with code 2, with no traceback. Everything else is a bug and keeps its
traceback. Their argument parsers are :class:`CommandParser`, so that a bad flag is such an
error too (one line, exit 2) rather than argparse's usage block.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import select
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn


class UserError(Exception):
    """An error caused by the user's input; the message says what is wrong and how to fix it."""


class HpnetWarning(UserWarning):
    """A warning of hpnet's own (``warnings.warn(..., HpnetWarning)``): a command shows it as
    ``WARNING: message``, like its log lines (:func:`configure_logging`)."""


class HpnetRuntimeWarning(HpnetWarning, RuntimeWarning):
    """An :class:`HpnetWarning` about the machine (e.g. a decoder falling back): a
    ``RuntimeWarning`` too, for filters written for one."""


EXIT_USAGE = 2


class CommandParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are :class:`UserError` s (see :func:`run_cli`)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")

    def format_help(self) -> str:
        """The help text, without the reST markup of the docstrings it is built from."""
        return plain_text(super().format_help())


def missing(path: str | Path, *, folder: bool = False) -> str:
    """Why ``path`` cannot be read as a file (as a folder when ``folder``), for a message
    ``f"config file {missing(path)}: {path}"``: ``not found``, or that it is the other kind."""
    if not Path(path).exists():
        return "not found"
    return "is a file, not a folder" if folder else "is a folder, not a file"


def plain_text(text: str) -> str:
    """``text`` with reST roles (``:class:`~a.B```) and literals (````x````) as plain words."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return text.replace("``", "")


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None):
    """Run a command's ``main(argv)`` and turn a :class:`UserError` into exit code 2, a video
    that stops a ``data.on_error=raise`` run into exit code 1 (both one line on stderr)."""
    from hpnet.data.decode_errors import VideoDecodeError

    shown_before = warnings.showwarning  # (put back when the command ends: run in a session)
    configure_logging()
    _stop_on_sigterm()
    try:
        code = main(argv)
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not at exit with a traceback
    except BrokenPipeError:
        if not _stdout_gone():  # another pipe broke (a worker's): an error of its own
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (nothing more to say)
        sys.exit(128 + signal.SIGPIPE)
    except UserError as err:
        print(f"{_rank_tag()}hpnet: error: {one_line(str(err))}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except VideoDecodeError as err:
        print(
            f"{_rank_tag()}hpnet: error: {one_line(str(err))} (data.on_error=raise stops at "
            "the first such video; data.on_error=skip leaves them out, python -m hpnet.data "
            "--check-decode all lists them)",
            file=sys.stderr,
        )
        sys.exit(1)
    except Terminated:
        print(f"{_rank_tag()}hpnet: terminated (SIGTERM)", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        print(f"{_rank_tag()}hpnet: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        warnings.showwarning = shown_before
    sys.exit(code or 0)


def _stdout_gone() -> bool:
    """Whether standard output is a pipe whose reader has gone (``| head`` has read enough)."""
    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):  # no file behind it (captured), or closed
        return False
    if not hasattr(select, "poll"):
        return False
    poll = select.poll()
    poll.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poll.poll(0))


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler) in a command: unwinds like Ctrl-C, so that files
    being written are left intact (temp files removed) and the command says why it stopped."""


def _stop_on_sigterm() -> None:
    """Raise :class:`Terminated` on SIGTERM in this process (a forked child, e.g. a data loader
    worker, keeps the default: it just ends). Only from the main thread, and only where no other
    handler was set."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    command = os.getpid()

    def stop(signum: int, frame: Any) -> None:
        if os.getpid() != command:  # a child forked after this was set
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if hasattr(signal, "SIGCHLD"):  # (see below)
            signal.signal(signal.SIGCHLD, _children_end)
        raise Terminated

    signal.signal(signal.SIGTERM, stop)


def _children_end(signum: int, frame: Any) -> None:
    """SIGCHLD once the command is terminated: its data loader workers got the same SIGTERM (a
    whole process group's: Slurm, systemd, ``kill -- -PGID``) and end of it, which torch's own
    handler reports by raising "DataLoader worker ... is killed by signal: Terminated" in the
    middle of the unwinding (a traceback after the command's one line)."""


def _rank_tag() -> str:
    """``[rank N] `` for the processes but the first of a torchrun job: every process says its
    own warnings and errors (a bad video is one process's), and the others' lines were
    indistinguishable duplicates of the first's."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return ""
    return f"[rank {rank}] " if rank > 0 and world > 1 else ""


def _drawn(bar: Any) -> bool:
    """Whether a tqdm bar is on the screen: one given ``delay`` shows once that has passed
    (tqdm's own test; its ``close`` clears only a bar drawn)."""
    delay = getattr(bar, "delay", 0) or 0
    return delay <= 0 or bar.last_print_t >= bar.start_t + delay


def configure_logging() -> None:
    """Warnings on stderr as ``WARNING: message``, all run long. Without a handler the first
    ones would print bare and, once a library calls ``logging.info()`` (open_clip does), the rest
    as ``WARNING:hpnet.module:message``; the libraries' info chatter stays hidden. Python
    warnings (``warnings.warn``) become such lines too (:func:`_log_warning`)."""
    logging.basicConfig(
        level=logging.WARNING, format=f"{_rank_tag()}%(levelname)s: %(message)s",
        handlers=[_BarSafeHandler()],
    )  # fmt: skip
    warnings.showwarning = _log_warning


class _BarSafeHandler(logging.StreamHandler):
    """stderr lines that, while a progress bar is drawn, go through ``tqdm.write``: the line
    lands above the bar (it was glued to the bar's end: ``lr=2.50e-04]WARNING: skipping ...``)
    and the bar is drawn again below it. Only in the process that drew the bars (a loader
    worker forked with copies of them writes plainly)."""

    def __init__(self) -> None:
        super().__init__()
        self._pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        bars = list(getattr(tqdm, "_instances", ()))
        if os.getpid() != self._pid or not bars or not all(map(_drawn, bars)):
            super().emit(record)  # (tqdm.write would draw a bar still in its delay, for good)
            return
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # (as StreamHandler.emit: a logging error never stops the command)
            self.handleError(record)


@contextlib.contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Silence logger ``name``'s warnings (and its children's) for the block: for a check
    whose warnings the real work says again, or a report that lists what it would warn of."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Show a Python warning as a log line: an :class:`HpnetWarning` as ``WARNING: message``;
    a library's with its category and place, ``WARNING: message (UserWarning, torch/x.py:12)``,
    instead of Python's two lines with the path and the source line that raised it."""
    text = one_line(str(message))
    if not issubclass(category, HpnetWarning):
        place = filename.split("site-packages/")[-1]
        text += f" ({category.__name__}, {place}:{lineno})"
    logging.getLogger("py.warnings").warning("%s", text)


def progress_enabled(wanted: bool) -> bool:
    """Whether a progress bar the caller ``wanted`` is drawn: not when ``TQDM_DISABLE`` is set
    to anything (tqdm's own reading of it, which it applies only to bars that leave
    ``disable=`` out; every hpnet bar passes it)."""
    return wanted and not os.environ.get("TQDM_DISABLE")


def long_work_bar(total: int, desc: str, unit: str, delay: float = 0.0) -> Any:
    """A progress bar on stderr for one video's windows or frames, gone when done (the results
    follow it); shown from the start (``delay=0``: a long video is never silent) or only once
    the work has taken ``delay`` seconds (work that is usually short)."""
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, mininterval=1.0,
        delay=delay, disable=not progress_enabled(True),
    )  # fmt: skip


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # colours and styles (torch uses bold)


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, in the plural unless one: ``"1 video"``, ``"3 videos"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def one_line(message: str) -> str:
    """``message`` as one plain line: lines joined by spaces, ANSI escape codes dropped.

    When a DataLoader worker raised it, the message itself: torch re-raises the same type in
    the main process with "Caught UserError in DataLoader worker process 0." and the worker's
    traceback, whose last line is ``hpnet.cli.UserError: <message>``."""
    if message.startswith("Caught ") and "\nOriginal Traceback" in message:
        last = [line for line in message.splitlines() if line.strip()][-1]
        name, sep, text = last.partition(": ")
        message = text if sep and " " not in name else last
    lines = ANSI_ESCAPE.sub("", message).splitlines()
    return " ".join(line.strip() for line in lines if line.strip())


def error_reason(err: BaseException) -> str:
    """``Type: first line of its message`` (plain text), or ``Type`` when it has none: a short
    reason for a library's exception inside a :class:`UserError` message."""
    lines = [line.strip() for line in ANSI_ESCAPE.sub("", str(err)).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
