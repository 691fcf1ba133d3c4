"""One run per run folder: an advisory lock on ``<out_dir>/.lock`` while a run writes there.

Two runs in one folder would overwrite each other's ``last.pt`` and interleave ``metrics.jsonl``
(say a run resumed while the one it resumes is still alive, as torchrun's workers are after
only the launcher was killed). The lock is ``flock``, so the kernel drops it when its process
dies, even by SIGKILL: a crashed run never leaves a stale lock behind (its forked DataLoader
workers do not inherit it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from hpnet.atomic import make_folder, write_errors_reported
from hpnet.checkpoint import OUT_DIR_OPTION
from hpnet.cli import UserError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no lock, as before
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
_HELD: set[int] = set()  # descriptors of the locks this process holds


def _drop_inherited_locks() -> None:
    """In a forked child (a DataLoader worker): point the lock descriptors at /dev/null.

    A flock belongs to the open file, which a fork shares: a worker outliving a SIGKILLed
    trainer (workers notice within seconds) would otherwise keep the folder locked. The
    descriptor numbers stay valid, so the inherited file objects close harmlessly."""
    if not _HELD:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    for fd in _HELD:
        os.dup2(null, fd)
    os.close(null)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


@contextlib.contextmanager
def run_folder_lock(
    folder: str | Path,
    *,
    name: str = LOCK_NAME,
    what: str = "another run",
    folder_option: str = OUT_DIR_OPTION,
) -> Iterator[None]:
    """Hold ``<folder>/<name>`` for the block; a :class:`UserError` if another process holds it
    (``what`` says who that is, ``folder_option`` how to choose another folder)."""
    path = Path(folder) / name
    if fcntl is None:
        yield
        return
    make_folder(path.parent, what="run folder", folder_option=folder_option)
    with write_errors_reported(path, what="run lock", folder_option=folder_option):
        f = open(path, "a+b", buffering=0)  # noqa: SIM115 (closed below, after the block)
    with f:
        if not _take(f):
            raise _busy(folder, _holder(f), what, folder_option)
        with contextlib.suppress(OSError):  # the pid only informs a refused run (a full disk)
            f.truncate(0)
            f.write(f"{os.getpid()}\n".encode())  # unbuffered: nothing left to fail at close
        _HELD.add(f.fileno())
        try:
            yield
        finally:
            _HELD.discard(f.fileno())
            fcntl.flock(f, fcntl.LOCK_UN)


def check_not_held(
    folder: str | Path, *, what: str = "another run", folder_option: str = OUT_DIR_OPTION
) -> None:
    """Refuse as :func:`run_folder_lock` would when another process holds ``folder``'s lock,
    without taking it: for checks that run before the lock is taken (a resume refused for
    another reason, the process count, said that rather than the run writing there)."""
    path = Path(folder) / LOCK_NAME
    if fcntl is None or not path.is_file():
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError:
        return  # (unreadable: the lock itself says so when it is taken)
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(folder, _holder(f), what, folder_option) from None
        fcntl.flock(f, fcntl.LOCK_UN)


def _take(f: object, tries: int = 5, wait_s: float = 0.05) -> bool:
    """Take ``f``'s lock (exclusive) without waiting on a run that holds it; a few short
    retries first, so that another command's probe (:func:`check_not_held`, holding it shared
    for an instant) is no run."""
    import time

    for attempt in range(tries):
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt < tries - 1:
                time.sleep(wait_s)
    return False


def _holder(f: object) -> str:
    """The pid a lock holder wrote into the lock file (``unknown`` if none)."""
    f.seek(0)  # type: ignore[attr-defined]
    return f.read().decode(errors="replace").strip() or "unknown"  # type: ignore[attr-defined]


def _busy(folder: str | Path, holder: str, what: str, folder_option: str) -> UserError:
    return UserError(
        f"{what} is writing to {folder} (pid {holder}): let it finish or stop it, "
        f"or choose another {folder_option.split('=')[0].split()[0]}"
    )
