"""Which videos a dataset has: parsers of the official split files, folders and list files.

A *record* is one video: its path, its label and its path relative to the dataset root (the
pose cache mirrors that relative path). The builders below only read text files and list
folders; they never open a video, so they are fast even for HMDB51- or UCF101-size datasets.

Every builder returns a :class:`RecordSplits`, which unpacks as ``train, test, classes`` and
also carries the videos it could not find (``missing``). Videos listed by split or list files
but absent on disk are an error (:class:`hpnet.cli.UserError`) naming how many are missing,
the first few and the fix, unless ``allow_missing=True``: then they are dropped with one
logged warning giving the count.

Layouts:

- HMDB51 (:func:`hmdb51_records`): ``<root>/<class>/<video>.avi`` and the official split files
  ``<split_dir>/<class>_test_split{1,2,3}.txt`` (default ``<root>/testTrainMulti_7030_splits``),
  lines ``<video>.avi <tag>`` with tag 1 = train, 2 = test, 0 = unused. Label = index in the
  sorted list of the 51 class names. Every listed video is checked, the unused ones too: a
  missing one means the copy of the dataset is incomplete.
- UCF101 (:func:`ucf101_records`): ``<root>/<Class>/v_X.avi``, ``classInd.txt`` (1-based
  ``idx name``), ``trainlist0N.txt`` (``Class/v_X.avi idx``), ``testlist0N.txt``
  (``Class/v_X.avi``, label from the folder) in ``<split_dir>`` (default
  ``<root>/ucfTrainTestlist``).
- Folder (:func:`folder_records`): ``<root>/<class>/<video>``, see its docstring for the split.
- List files (:func:`list_records`): ``path label`` lines.

Names are taken literally: no shell, no glob patterns, no regular expressions on file names
(HMDB51 names contain ``( ) ! + , # [ ] & ;``).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hpnet.cli import UserError
from hpnet.data.holdout import stratified_holdout

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v")
HMDB51_SPLIT_DIR = "testTrainMulti_7030_splits"
UCF101_SPLIT_DIR = "ucfTrainTestlist"
HMDB51_CLASSES = (
    "brush_hair", "cartwheel", "catch", "chew", "clap", "climb", "climb_stairs", "dive",
    "draw_sword", "dribble", "drink", "eat", "fall_floor", "fencing", "flic_flac", "golf",
    "handstand", "hit", "hug", "jump", "kick", "kick_ball", "kiss", "laugh", "pick", "pour",
    "pullup", "punch", "push", "pushup", "ride_bike", "ride_horse", "run", "shake_hands",
    "shoot_ball", "shoot_bow", "shoot_gun", "sit", "situp", "smile", "smoke", "somersault",
    "stand", "swing_baseball", "sword", "sword_exercise", "talk", "throw", "turn", "walk", "wave",
)  # fmt: skip
HMDB51_TAGS = {0: "unused", 1: "train", 2: "test"}
_SHOW = 5  # how many missing paths an error message names


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset: where it is, its class index, its path relative to the root."""

    path: Path
    label: int
    rel: str


@dataclass
class RecordSplits:
    """The videos of one dataset split; unpacks as ``train, test, classes = splits``."""

    train: list[VideoRecord]
    test: list[VideoRecord]
    classes: list[str]
    missing: list[VideoRecord] = field(default_factory=list)  # listed, not on disk (dropped)
    listed: int = 0  # videos the split/list files name (HMDB51: unused ones too)

    def __iter__(self) -> Iterator:
        return iter((self.train, self.test, self.classes))


# ------------------------------------------------------------------------------ text files


def _read_lines(path: Path, what: str, fix: str) -> list[tuple[int, str]]:
    """``(line number, stripped text)`` of the non-blank lines of ``path`` (CRLF and BOM ok)."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="surrogateescape")
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path} ({fix})") from None
    except OSError as err:
        raise UserError(f"cannot read {what} {path}: {err.strerror} ({fix})") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_classes_file(path: str | Path) -> list[str]:
    """Class names, one per line (label = 0-based line number among non-blank lines)."""
    lines = _read_lines(Path(path).expanduser(), "classes file", "set data.classes_file")
    names = [text for _, text in lines if not text.startswith("#")]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"classes file {path} names {duplicates[0]!r} twice; names must be unique")
    return names


# ----------------------------------------------------------------------------- missing files


def _present(records: Sequence[VideoRecord]) -> list[bool]:
    """Whether each record's file exists; one directory listing per folder, not one stat each."""
    listings: dict[Path, set[str]] = {}
    flags = []
    for record in records:
        folder = record.path.parent
        if folder not in listings:
            try:
                listings[folder] = set(os.listdir(folder))
            except OSError:
                listings[folder] = set()
        flags.append(record.path.name in listings[folder])
    return flags


def _drop_missing(
    splits: RecordSplits,
    everything: Sequence[VideoRecord],
    *,
    dataset: str,
    root: Path,
    allow_missing: bool,
    hint: str,
) -> RecordSplits:
    """Check that every listed video exists; raise, or drop the missing ones with one warning."""
    missing = [r for r, ok in zip(everything, _present(everything), strict=True) if not ok]
    splits.listed = len(everything)
    if not missing:
        return splits
    gone = {r.path for r in missing}
    used = len(splits.train) + len(splits.test)
    splits.train = [r for r in splits.train if r.path not in gone]
    splits.test = [r for r in splits.test if r.path not in gone]
    splits.missing = missing
    dropped = used - len(splits.train) - len(splits.test)
    summary = (
        f"{dataset}: {len(missing)} of the {len(everything)} videos listed are missing under "
        f"{root} ({dropped} of them in the train/test sets)"
    )
    first = ", ".join(r.rel for r in missing[:_SHOW])
    more = f" and {len(missing) - _SHOW} more" if len(missing) > _SHOW else ""
    if not allow_missing and not splits.train and not splits.test:
        raise UserError(f"{summary}: none of the train/test videos is there. {hint}")
    if not allow_missing:
        raise UserError(
            f"{summary}: {first}{more}. {hint} Or set data.allow_missing=true to train on the "
            f"{len(splits.train)} train / {len(splits.test)} test videos that are there "
            "(python -m hpnet.data --config ... lists what is missing)."
        )
    logger.warning(
        "%s; data.allow_missing=true: using the %d train / %d test videos that are there",
        summary,
        len(splits.train),
        len(splits.test),
    )
    return splits


# ------------------------------------------------------------------------------------ HMDB51


def read_hmdb51_splits(split_dir: str | Path, split: int) -> dict[str, list[tuple[str, int]]]:
    """``{class name: [(video file name, tag), ...]}`` from the official split files.

    Reads ``<split_dir>/<class>_test_split<split>.txt`` for the 51 classes, in class order;
    tag 1 = train, 2 = test, 0 = unused. Lines are ``<video>.avi <tag>`` (a trailing space is
    normal); the name is everything before the last whitespace.
    """
    split_dir = Path(split_dir).expanduser()
    if split not in (1, 2, 3):
        raise UserError(f"HMDB51 split must be 1, 2 or 3, got {split} (set data.split)")
    if not split_dir.is_dir():
        raise UserError(
            f"HMDB51 split folder not found: {split_dir} (set data.split_dir to the folder of "
            "<class>_test_split{1,2,3}.txt files from the official test_train_splits.rar)"
        )
    entries: dict[str, list[tuple[str, int]]] = {}
    for name in HMDB51_CLASSES:
        path = split_dir / f"{name}_test_split{split}.txt"
        rows = []
        for line_no, text in _read_lines(path, "HMDB51 split file", "set data.split_dir"):
            parts = text.rsplit(None, 1)
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise UserError(
                    f"{path}:{line_no}: expected '<video>.avi <tag>' with tag 0, 1 or 2, "
                    f"got {text!r}"
                )
            rows.append((parts[0], int(parts[1])))
        entries[name] = rows
    return entries


def hmdb51_records(
    root: str | Path,
    split: int,
    split_dir: str | Path | None = None,
    allow_missing: bool = False,
) -> RecordSplits:
    """HMDB51 ``train, test, classes`` of official split ``split`` (3,570 / 1,530 videos)."""
    root = Path(root).expanduser()
    split_dir = Path(split_dir).expanduser() if split_dir else root / HMDB51_SPLIT_DIR
    entries = read_hmdb51_splits(split_dir, split)
    classes = list(HMDB51_CLASSES)
    splits = RecordSplits([], [], classes)
    everything = []
    for label, name in enumerate(classes):
        for video, tag in entries[name]:
            record = VideoRecord(root / name / video, label, f"{name}/{video}")
            everything.append(record)
            if tag == 1:
                splits.train.append(record)
            elif tag == 2:
                splits.test.append(record)
    hint = (
        f"Check data.root: it must hold the 51 class folders (e.g. {root / classes[0]}/*.avi; "
        "the official hmdb51_org.rar holds one .rar per class: extract each into <root>)."
    )
    return _drop_missing(
        splits,
        everything,
        dataset=f"HMDB51 split {split}",
        root=root,
        allow_missing=allow_missing,
        hint=hint,
    )


# ------------------------------------------------------------------------------------ UCF101


def read_ucf101_splits(
    split_dir: str | Path, split: int
) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]:
    """``classes, train, test`` from ``classInd.txt`` and ``train/testlist0<split>.txt``.

    ``train`` and ``test`` are ``(relative path, 0-based label)``; a test label comes from the
    video's folder, a train label from the file and must agree with the folder.
    """
    split_dir = Path(split_dir).expanduser()
    if split not in (1, 2, 3):
        raise UserError(f"UCF101 split must be 1, 2 or 3, got {split} (set data.split)")
    fix = "set data.split_dir to the folder of the official ucfTrainTestlist files"
    index_file = split_dir / "classInd.txt"
    classes = []
    for line_no, text in _read_lines(index_file, "UCF101 class index", fix):
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise UserError(
                f"{index_file}:{line_no}: expected '{len(classes) + 1} <ClassName>', got {text!r}"
            )
        classes.append(parts[1])
    label_of = {name.lower(): i for i, name in enumerate(classes)}

    def parse(path: Path, with_label: bool) -> list[tuple[str, int]]:
        rows = []
        for line_no, text in _read_lines(path, "UCF101 split file", fix):
            parts = text.rsplit(None, 1) if with_label else [text]
            rel = parts[0].replace("\\", "/")
            label = label_of.get(rel.split("/", 1)[0].lower()) if "/" in rel else None
            if label is None or (with_label and len(parts) != 2):
                raise UserError(
                    f"{path}:{line_no}: expected '<Class>/<video>.avi"
                    f"{' <label>' if with_label else ''}' with a class of {index_file}, "
                    f"got {text!r}"
                )
            if with_label and parts[1] != str(label + 1):
                raise UserError(
                    f"{path}:{line_no}: label {parts[1]} disagrees with the folder "
                    f"{rel.split('/')[0]} (class {label + 1} in {index_file})"
                )
            rows.append((rel, label))
        return rows

    train = parse(split_dir / f"trainlist0{split}.txt", with_label=True)
    test = parse(split_dir / f"testlist0{split}.txt", with_label=False)
    return classes, train, test


def ucf101_records(
    root: str | Path,
    split: int,
    split_dir: str | Path | None = None,
    allow_missing: bool = False,
) -> RecordSplits:
    """UCF101 ``train, test, classes`` of official split ``split`` (9,537 / 3,783 for split 1)."""
    root = Path(root).expanduser()
    split_dir = Path(split_dir).expanduser() if split_dir else root / UCF101_SPLIT_DIR
    classes, train, test = read_ucf101_splits(split_dir, split)
    splits = RecordSplits(
        [VideoRecord(root / rel, label, rel) for rel, label in train],
        [VideoRecord(root / rel, label, rel) for rel, label in test],
        classes,
    )
    hint = f"Check data.root: it must hold the 101 class folders (e.g. {root / classes[0]}/*.avi)."
    return _drop_missing(
        splits,
        splits.train + splits.test,
        dataset=f"UCF101 split {split}",
        root=root,
        allow_missing=allow_missing,
        hint=hint,
    )


# ------------------------------------------------------------------------------------ folder


def _subfolders(folder: Path) -> list[str]:
    return sorted(
        e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith((".", "_"))
    )


def videos_under(folder: Path) -> list[Path]:
    """Video files under ``folder`` (recursively), sorted; hidden files are skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS):
                found.append(Path(dirpath) / name)
    return sorted(found)


def folder_records(root: str | Path, *, test_fraction: float = 0.3, seed: int = 0) -> RecordSplits:
    """Videos in ``<root>/<class>/...``; classes = sorted class folder names.

    The split: if both ``<root>/train`` and ``<root>/test`` exist, they are the splits
    (``<root>/train/<class>/...``, ``<root>/test/<class>/...``; classes = the union of their
    class folders). Otherwise a deterministic stratified hold-out
    (:func:`~hpnet.data.holdout.stratified_holdout` of the relative paths with ``seed``): in
    each class ``round(n * test_fraction)`` videos are the test set, at least one on each side
    when the class has two or more and ``test_fraction > 0`` (a class of one video trains).
    Video files have the extensions in :data:`VIDEO_EXTENSIONS` and may sit in subfolders of
    a class folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"dataset folder not found: {root} (set data.root)")
    layout = [("train", root / "train"), ("test", root / "test")]
    if all(folder.is_dir() for _, folder in layout):
        classes = sorted(set(_subfolders(root / "train")) | set(_subfolders(root / "test")))
        splits = RecordSplits([], [], classes)
        for split_name, folder in layout:
            out = splits.train if split_name == "train" else splits.test
            for label, name in enumerate(classes):
                for path in videos_under(folder / name):
                    out.append(VideoRecord(path, label, path.relative_to(root).as_posix()))
    else:
        classes = _subfolders(root)
        items = [
            (rel, label)
            for label, name in enumerate(classes)
            for rel in sorted(p.relative_to(root).as_posix() for p in videos_under(root / name))
        ]
        records = [VideoRecord(root / rel, label, rel) for rel, label in items]
        kept, held = stratified_holdout(items, test_fraction, seed)
        splits = RecordSplits([records[i] for i in kept], [records[i] for i in held], classes)
    if not splits.train and not splits.test:
        raise UserError(
            f"no videos found in {root}: expected <root>/<class>/<video> (or <root>/train/<class>/"
            f"... and <root>/test/<class>/...) with extensions {' '.join(VIDEO_EXTENSIONS)} "
            "(check data.root)"
        )
    empty = sorted(set(classes) - {classes[r.label] for r in splits.train + splits.test})
    if empty:
        logger.warning("%s: class folders without videos: %s", root, ", ".join(empty))
    splits.listed = len(splits.train) + len(splits.test)
    return splits


# --------------------------------------------------------------------------------- list file


def _parse_list(path: Path, root: Path) -> list[VideoRecord]:
    """Records of a ``path label`` file (split on the last whitespace; ``#`` starts a comment)."""
    records = []
    for line_no, text in _read_lines(path, "list file", "set data.train_list / data.test_list"):
        if text.startswith("#"):
            continue
        parts = text.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise UserError(
                f"{path}:{line_no}: expected '<video path> <label>' with an integer label >= 0, "
                f"got {text!r}"
            )
        video = Path(parts[0]).expanduser()
        full = video if video.is_absolute() else root / video
        # Compared as absolute paths with "." and ".." folded (symlinks kept, as the pose
        # cache's folder walk sees them): "<root>/golf/a.mp4" and "golf/a.mp4" are one video.
        here, base = Path(os.path.abspath(full)), Path(os.path.abspath(root))
        if here.is_relative_to(base):
            rel = here.relative_to(base).as_posix()
        else:  # outside the root: mirror the absolute path (the pose cache keys on it)
            rel = Path(*here.parts[1:]).as_posix()
        records.append(VideoRecord(full, int(parts[1]), rel))
    return records


def list_records(
    train_list: str | Path | None,
    test_list: str | Path | None,
    root: str | Path,
    classes_file: str | Path | None = None,
    allow_missing: bool = False,
) -> RecordSplits:
    """Records from list files of ``path label`` lines (either list may be empty/None).

    Paths are relative to ``root`` or absolute and may contain spaces (the label is after the
    last whitespace); blank lines and lines starting with ``#`` are skipped. Classes come from
    ``classes_file`` (one name per line) or are ``class_0 ... class_<max label>``.
    """
    root = Path(root).expanduser()
    train = _parse_list(Path(train_list).expanduser(), root) if train_list else []
    test = _parse_list(Path(test_list).expanduser(), root) if test_list else []
    top = max((r.label for r in train + test), default=-1)
    if classes_file:
        classes = read_classes_file(classes_file)
        if top >= len(classes):
            raise UserError(
                f"a list file uses label {top} but {classes_file} names only {len(classes)} "
                "classes (labels are 0-based line numbers of data.classes_file)"
            )
    else:
        classes = [f"class_{n}" for n in range(top + 1)]
    splits = RecordSplits(train, test, classes)
    hint = "Check data.root (list paths are relative to it) and the list files."
    return _drop_missing(
        splits, train + test, dataset="list", root=root, allow_missing=allow_missing, hint=hint
    )


def per_class_counts(records: Sequence[VideoRecord], classes: Sequence[str]) -> dict[str, int]:
    """``{class name: number of records}`` in class order (classes without videos give 0)."""
    counts: dict[int, int] = defaultdict(int)
    for record in records:
        counts[record.label] += 1
    return {name: counts[i] for i, name in enumerate(classes)}
