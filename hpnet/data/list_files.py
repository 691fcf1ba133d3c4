"""List files: a dataset given as ``path label`` lines (``data.dataset=list``).

``data.train_list`` / ``data.test_list`` hold one video a line, its path (relative to
``data.root`` or absolute; spaces allowed: the label is after the last whitespace) and its
integer label; ``data.classes_file`` names the classes, one a line, label i being the i-th name
(blank and ``#`` comment lines not counted). Without it the classes are ``class_0`` ...
``class_<largest label>``. A line starting with ``#`` is a comment when ``#`` is followed by a
space or the line is no ``<path> <label>``: ``#2_Gum_chew_0.avi 3`` is a video (HMDB51's
names start with ``#``), missing or not. What such files often hold by mistake is
refused with the fix: a third column (mmaction2's rawframe lists: ``path frames label``), a
UTF-16 file, UCF101's ``classInd.txt`` (``1 ApplyEyeMakeup``) as the classes file.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from hpnet.cli import UserError
from hpnet.data.records import (
    FolderListing,
    RecordSplits,
    VideoRecord,
    drop_missing,
    read_lines,
)

logger = logging.getLogger(__name__)
_LIST_FIX = "set data.train_list / data.test_list"


def list_records(
    train_list: str | Path | None,
    test_list: str | Path | None,
    root: str | Path,
    classes_file: str | Path | None = None,
    allow_missing: bool = False,
) -> RecordSplits:
    """Records from list files of ``path label`` lines (either list may be empty/None), with
    the classes of ``classes_file`` or ``class_0 ... class_<max label>`` (see the module doc)."""
    root = Path(root).expanduser()
    train = _parse_list(Path(train_list).expanduser(), root) if train_list else []
    test = _parse_list(Path(test_list).expanduser(), root) if test_list else []
    labels = {r.label for r in train + test}
    top = max(labels, default=-1)
    one_based = bool(labels) and 0 not in labels and labels == set(range(1, top + 1))
    hint = " (the labels look 1-based: 1 to {0}; hpnet's are 0-based: subtract 1)"
    if classes_file:
        classes = read_classes_file(classes_file)
        if top >= len(classes):
            raise UserError(
                f"a list file uses label {top} but {classes_file} names only {len(classes)} "
                "classes (label i is the file's i-th name, counted from 0, blank and comment "
                "lines not counted)" + (hint.format(top) if one_based else "")
            )
    else:
        classes = [f"class_{n}" for n in range(top + 1)]
        if one_based and top > 1:
            logger.warning(
                "the list files' labels run from 1 to %d: label 0 (class_0) has no video, "
                "and the model gets a class of its own for it%s", top, hint.format(top),
            )  # fmt: skip
    splits = RecordSplits(train, test, classes)
    fix = "Check data.root (list paths are relative to it) and the list files."
    return drop_missing(
        splits, train + test, dataset="list", root=root, allow_missing=allow_missing, hint=fix,
        lists="the list files (data.train_list, data.test_list)",
    )  # fmt: skip


def read_classes_file(path: str | Path) -> list[str]:
    """Class names, one per line (label = 0-based position among the non-blank, non-comment
    lines); UCF101's ``classInd.txt`` (``<index> <name>`` lines) is refused with the fix."""
    lines = read_lines(Path(path).expanduser(), "classes file", "set data.classes_file")
    names = [text for _, text in lines if not text.startswith("#")]
    indexed = [re.fullmatch(r"(\d+)\s+(\S.*)", n) for n in names]
    if (
        names
        and all(indexed)
        and [int(m[1]) for m in indexed if m]
        in (  # (0.. or 1..)
            list(range(len(names))),
            list(range(1, len(names) + 1)),
        )
    ):
        raise UserError(
            f"classes file {path} has '<index> <name>' lines ({names[0]!r}: UCF101's "
            "classInd.txt): write one class name a line, in label order (the names alone)"
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"classes file {path} names {duplicates[0]!r} twice; names must be unique")
    return names


def _parse_list(path: Path, root: Path) -> list[VideoRecord]:
    """The records of one list file (see the module doc)."""
    records, listing = [], FolderListing()
    for line_no, text in read_lines(path, "list file", _LIST_FIX):
        parts = text.rsplit(None, 1)
        label_ok = len(parts) == 2 and parts[1].isdecimal() and parts[1].isascii()
        if text.startswith("#") and (not label_ok or text[1:2].isspace()):
            continue  # a comment ("# ..." or no '<path> <label>'); "#2_Gum_chew_0.avi 3" is not
        if not label_ok:
            raise UserError(
                f"{path}:{line_no}: expected '<video path> <label>' with an integer label >= 0, "
                f"got {text!r}"
            )
        full = _full(parts[0], root)
        full = listing.find(full) or full
        columns = text.split()
        frames = len(columns) == 3 and columns[1].isdecimal()  # (path frames label)
        if frames and not listing.find(full) and listing.find(_full(columns[0], root)):
            raise UserError(
                f"{path}:{line_no}: {text!r} has 3 columns: a list line is '<video path> "
                "<label>' (mmaction2's rawframe lists add a frame count between them: drop it)"
            )
        records.append(VideoRecord(full, int(parts[1]), _rel(full, root)))
    return records


def _full(text: str, root: Path) -> Path:
    video = Path(text).expanduser()
    return video if video.is_absolute() else root / video


def _rel(full: Path, root: Path) -> str:
    """The path relative to ``root`` as the pose cache keys it: absolute paths with "." and
    ".." folded (symlinks kept, as the cache's folder walk sees them), so "<root>/golf/a.mp4"
    and "golf/a.mp4" are one video; outside the root, the absolute path mirrored."""
    here, base = Path(os.path.abspath(full)), Path(os.path.abspath(root))
    if here.is_relative_to(base):
        return here.relative_to(base).as_posix()
    return Path(*here.parts[1:]).as_posix()
