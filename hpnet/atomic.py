"""Atomic file writes: a reader, or a rerun after a crash, sees the old file or the new one.

Every file hpnet writes that another run reads back (checkpoints, pose-cache entries and
reports, text embeddings, the rendered synthetic dataset) goes through :func:`write_atomic`.
A write that fails (a full disk, a quota, a file-size limit, a permission, a read-only file
system) leaves the previous file byte for byte, removes its temp file and raises one
:class:`WriteError` whose message names the file, the OS reason and the fix::

    could not write checkpoint run/last.pt: No space left on device [ENOSPC]; the previous
    last.pt is intact; free disk space or choose another folder with train.out_dir=DIR

(one line). :func:`write_error` builds that message for code that writes in its own way.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from hpnet.cli import UserError

# Errors of the place, not of the file: every further write there fails the same way.
STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS}
)


class WriteError(UserError):
    """A file could not be written; the message says which, why and what to do.

    Attributes: ``path`` (the file meant), ``errno`` (the OS error number, or None) and
    ``reason`` (the OS's words, e.g. ``No space left on device [ENOSPC]``).
    """

    def __init__(self, message: str, path: Path, errno_: int | None, reason: str) -> None:
        super().__init__(message)
        self.path, self.errno, self.reason = path, errno_, reason

    @property
    def is_storage_error(self) -> bool:
        """True for a full disk, a quota, a size limit or a permission: not this file's fault."""
        return self.errno in STORAGE_ERRNOS


def temp_name(path: Path) -> Path:
    """The temp file that :func:`write_atomic` uses for ``path``: ``<path>.<pid>.tmp`` (the
    name shortened by :func:`temp_stem` where it would be too long)."""
    return path.with_name(f"{temp_stem(path)}.{os.getpid()}.tmp")


NAME_MAX = 255  # bytes in a file name (Linux, macOS)


def temp_stem(path: Path) -> str:
    """``path``'s name as its temp files begin: the name, or for a name too long to take
    ``.<pid>.tmp`` (a video named with 120 accented letters: its cache file's name fits, its
    temp file's did not) a shorter start of it and a digest of the whole."""
    name = path.name
    if len(name.encode()) + 24 <= NAME_MAX:  # (room for "." + a pid of up to 19 digits + ".tmp")
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    start = name.encode()[: NAME_MAX - 24 - 13].decode(errors="ignore")
    return f"{start}~{digest}"


def remove_stale_temp_files(path: Path, *, keep_live_writers: bool = False) -> int:
    """Delete leftovers ``<path>.<pid>.tmp`` of killed runs; returns how many were removed.

    ``keep_live_writers``: keep the temp file of another process alive on this machine (another
    run writing the same file; a caller holding the folder's lock knows there is none), unless
    it was last written over :data:`STALE_TEMP_S` ago (a dead run's pid reused by an unrelated
    process, as containers do quickly). One that cannot be removed (a read-only folder) stays:
    it is harmless, and writing the file there then fails with a clear error.
    """
    removed = 0
    if path.parent.is_dir():
        stem = temp_stem(path)
        for leftover in path.parent.glob(f"{_glob_escape(stem)}.*.tmp"):
            pid = leftover.name.removeprefix(stem + ".").removesuffix(".tmp")
            if keep_live_writers and _being_written(leftover, pid):
                continue
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
                removed += 1
    return removed


def temp_file_names(folder: Path) -> set[str]:
    """The names of the ``*.tmp`` files directly in ``folder`` (none when it is missing): one
    listing to test many targets against, instead of a glob per target."""
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries if e.name.endswith(".tmp")}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def remove_dead_writers_temp_files(folder: Path) -> int:
    """Delete every ``<name>.<pid>.tmp`` directly in ``folder`` whose writer is gone (all a
    run folder's files at once, whatever they are named); returns how many were removed."""
    removed = 0
    if folder.is_dir():
        for leftover in folder.glob("*.*.tmp"):
            pid = leftover.name.removesuffix(".tmp").rpartition(".")[2]
            if not pid.isdigit() or _being_written(leftover, pid):
                continue
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
                removed += 1
    return removed


STALE_TEMP_S = 3600.0  # a temp file untouched this long has no writer, whatever its pid says


def _being_written(leftover: Path, pid: str) -> bool:
    """Whether another live process may still be writing temp file ``leftover``."""
    if pid == str(os.getpid()) or not _writer_alive(pid):
        return False
    try:
        return time.time() - leftover.stat().st_mtime < STALE_TEMP_S
    except OSError:  # gone meanwhile
        return False


def _writer_alive(pid: str) -> bool:
    """Whether process ``pid`` (a temp file's name part) lives on this machine."""
    if not pid.isdigit() or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, OverflowError):  # gone (or no pid at all)
        return False
    except PermissionError:  # there, owned by another user
        return True
    return True


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def write_error(
    path: str | Path, err: OSError, *, what: str = "file", folder_option: str | None = None
) -> WriteError:
    """The one-line :class:`WriteError` for a failed write of ``path`` (the wording lives here).

    Args:
        err: the OS error the write raised.
        what: what the file is, for the message (``checkpoint``, ``pose cache file``).
        folder_option: how the user picks another folder (``train.out_dir=DIR``), if there is one.
    """
    path = Path(path)
    code = err.errno
    reason = str(err.strerror or err)
    if code in errno.errorcode:
        reason += f" [{errno.errorcode[code]}]"
    state = f"the previous {path.name} is intact" if _is_file(path) else "nothing was written"
    fixes = []
    if code in (errno.ENOSPC, errno.EDQUOT):
        fixes.append("free disk space" if code == errno.ENOSPC else "free space in your quota")
    elif code == errno.EFBIG:
        fixes.append("raise the file-size limit (ulimit -f)")
    elif code in (errno.EACCES, errno.EPERM):
        fixes.append(f"make {_existing_folder(path.parent)} writable")
    elif code == errno.ENAMETOOLONG:
        fixes.append("shorten the file name")
    elif code == errno.EROFS:
        reason += f" ({_existing_folder(path.parent)} is on a read-only file system)"
    fixes.append(
        f"choose another folder with {folder_option}" if folder_option else "write elsewhere"
    )
    message = f"could not write {what} {path}: {reason}; {state}; {' or '.join(fixes)}"
    return WriteError(message, path, code, reason)


def write_atomic(
    path: str | Path,
    write: Callable[[BinaryIO], object],
    *,
    what: str = "file",
    folder_option: str | None = None,
) -> None:
    """Call ``write(file)`` on a temp file next to ``path``, fsync, then rename onto ``path``.

    On any error (a full disk, a kill) the temp file is removed and ``path`` is untouched. A
    failed write raises :class:`WriteError` (see :func:`write_errors_reported`).
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        with write_errors_reported(path, what=what, folder_option=folder_option):
            path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as f:
                _write_or_interrupt(write, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # never hide the real error behind a cleanup error
            tmp.unlink(missing_ok=True)


def write_text(
    path: str | Path, text: str, *, what: str = "file", folder_option: str | None = None
) -> None:
    """``text`` (UTF-8) to ``path`` with :func:`write_atomic`."""
    data = text.encode()
    write_atomic(path, lambda f: f.write(data), what=what, folder_option=folder_option)


def write_json(
    path: str | Path,
    data: object,
    *,
    indent: int = 2,
    what: str = "file",
    folder_option: str | None = None,
) -> None:
    """``data`` as indented JSON and a newline to ``path`` with :func:`write_atomic`."""
    text = json.dumps(data, indent=indent) + "\n"
    write_text(path, text, what=what, folder_option=folder_option)


def _write_or_interrupt(write: Callable[[BinaryIO], object], f: BinaryIO) -> None:
    """``write(f)``; an error that an interrupt (Ctrl-C, SIGTERM) caused is that interrupt:
    ``torch.save`` stopped mid-record closes its zip writer, which raises a RuntimeError
    ("unexpected pos") over the KeyboardInterrupt, a traceback instead of the command's stop."""
    try:
        write(f)
    except Exception as err:
        cause: BaseException | None = err
        seen: set[int] = set()  # (a context chain made into a loop by hand: no endless walk)
        while cause is not None and not isinstance(cause, KeyboardInterrupt):
            seen.add(id(cause))
            cause = cause.__context__ if id(cause.__context__) not in seen else None
        if cause is None:
            raise
        raise cause from None


def torch_save(obj: object, f: BinaryIO) -> None:
    """``torch.serialization.save(obj, f)``: Ultralytics, once imported, sets ``torch.save`` to
    a wrapper that retries a failed save 3 times (3.5 s of sleeps) into the same half-written
    file, and that took a Ctrl-C mid-save (a RuntimeError over it) for a failure to retry."""
    import torch

    torch.serialization.save(obj, f)


def copy_atomic(
    source: str | Path, path: str | Path, *, what: str = "file", folder_option: str | None = None
) -> None:
    """Make ``path`` a byte copy of ``source``, written by :func:`write_atomic`: nothing is
    serialised again. A copy, not a hard link: a user editing one file, or a tar of the folder
    extracted file by file, must not touch or need the other."""

    def copy(f: BinaryIO) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, f, 1 << 20)

    write_atomic(path, copy, what=what, folder_option=folder_option)


def make_folder(
    folder: str | Path, *, what: str = "folder", folder_option: str | None = None
) -> Path:
    """``folder`` created with its parents when missing; a file in the way, or an OS error (no
    permission, a read-only place), is a one-line :class:`UserError` naming ``folder_option``
    (how the user picks another folder). Call it before long work that writes there."""
    folder = Path(folder)
    other = f": choose another {folder_option}" if folder_option else ""
    for part in (folder, *folder.parents):
        if part.exists() and not part.is_dir():
            raise UserError(f"cannot make {what} {folder}: {part} is a file, not a folder{other}")
    with write_errors_reported(folder, what=what, folder_option=folder_option):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def make_file_folder(
    path: str | Path, *, what: str = "file", folder_option: str | None = None
) -> Path:
    """``path``, an output file, with its folder made by :func:`make_folder`; a folder already
    at ``path`` is a one-line :class:`UserError` (writing there would fail after the work)."""
    path = Path(path)
    if path.is_dir():
        other = f": choose another {folder_option}" if folder_option else ""
        raise UserError(f"cannot write {what} {path}: it is a folder{other}")
    make_folder(path.parent, what=f"folder of the {what}", folder_option=folder_option)
    return path


@contextlib.contextmanager
def write_errors_reported(
    path: str | Path, *, what: str = "file", folder_option: str | None = None
) -> Iterator[None]:
    """Turn an OS error in the block, a write of ``path``, into the one-line
    :class:`WriteError` of :func:`write_error` (``what``, ``folder_option``).

    Also an OS error that a serializer wraps in its own exception (``torch.save`` raises
    ``RuntimeError`` from a failed write); other exceptions pass unchanged.
    """
    try:
        yield
    except WriteError:
        raise
    except Exception as exc:
        cause = _os_error_in(exc)
        if cause is None:
            raise
        raise write_error(path, cause, what=what, folder_option=folder_option) from exc


def _os_error_in(exc: BaseException) -> OSError | None:
    """``exc`` itself or the first OS error it was raised from (its cause/context chain)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno is not None:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False when even asking fails (a name too long, no search right)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _existing_folder(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists (the one whose permissions matter)."""
    while not _exists(folder) and folder.parent != folder:
        folder = folder.parent
    return folder


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False
