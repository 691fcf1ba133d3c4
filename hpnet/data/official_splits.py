"""HMDB51's and UCF101's official split files -> :class:`~hpnet.data.records.RecordSplits`.

HMDB51 (:func:`hmdb51_records`): ``<root>/<class>/<video>.avi`` and the official split files
``<split_dir>/<class>_test_split{1,2,3}.txt`` (default ``<root>/testTrainMulti_7030_splits``),
lines ``<video>.avi <tag>`` with tag 1 = train, 2 = test, 0 = unused. Label = index in the
sorted list of the 51 class names. Every listed video is checked, the unused ones too: a
missing one means the copy of the dataset is incomplete.

UCF101 (:func:`ucf101_records`): ``<root>/<Class>/v_X.avi``, ``classInd.txt`` (1-based
``idx name``), ``trainlist0N.txt`` (``Class/v_X.avi idx``), ``testlist0N.txt``
(``Class/v_X.avi``, label from the folder; a label column, as some copies have, must agree
with it) in ``<split_dir>`` (default ``<root>/ucfTrainTestlist``, or ``<root>/../ucfTrainTestlist``
as the official archives unpack; HMDB51's the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hpnet.cli import UserError, counted, missing
from hpnet.data.records import (
    RecordSplits,
    VideoRecord,
    drop_missing,
    read_lines,
    subfolder_names,
)

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


def default_split_dir(root: Path, name: str) -> Path:
    """The split folder by default: ``root/name``, or ``root/../name`` when only that one is
    there (UCF101's official archives unpack to ``UCF-101/`` and ``ucfTrainTestlist/`` side by
    side). A root that is not there is said first (not as a missing split folder inside it), and
    so is a root one level above the dataset's folder (its split folder is in a subfolder)."""
    if not root.is_dir():
        raise UserError(f"data.root {root} is not a folder: set data.root to the dataset's folder")
    inside, beside = root / name, root.parent / name
    if not inside.is_dir() and not beside.is_dir():
        inner = next((c for c in _subfolders(root) if (c / name).is_dir()), None)
        if inner is not None and any(c.name != name for c in _subfolders(inner)):
            raise UserError(  # (the dataset's folder: its class folders beside the lists)
                f"data.root {root} holds no {name}/ but {inner} does: the dataset is one level "
                f"down, set data.root={inner}"
            )
        if inner is not None:  # a folder of the lists alone, under the class folders' root
            raise UserError(f"the split files are in {inner / name}: set data.split_dir to it")
    return beside if not inside.is_dir() and beside.is_dir() else inside


def _subfolders(root: Path) -> list[Path]:
    """The folders directly in ``root`` but hidden ones, by name."""
    return [root / name for name in subfolder_names(root)]


def _beside_note(root: Path, split_dir: Path, given: object) -> str:
    """Where the split files came from when :func:`default_split_dir` found them beside
    ``root`` (``given``: data.split_dir, then set): a sibling's lists of another copy of the
    dataset would otherwise go unnoticed."""
    if not given and split_dir.parent != root:
        return f" (the split files are {split_dir}/, beside data.root: set data.split_dir)"
    return ""


def _root_hint(root: Path, folders: Sequence[str], what: str) -> tuple[str, str]:
    """What to check when listed videos are missing under ``root`` (the class ``folders`` the
    lists name; ``what``: what data.root must hold), and the part of it that stands whatever
    data.allow_missing: the folder one level down holding the class folders (data.root set to
    the archive's parent folder), or folders whose names differ only in case."""
    children = [c.name for c in _subfolders(root)]
    wanted = list(dict.fromkeys(folders))
    absent = [f for f in wanted if not (root / f).is_dir()]
    if absent and len(absent) == len(wanted):
        inner = next((root / c for c in children if (root / c / absent[0]).is_dir()), None)
        if inner is not None:
            fix = f"The class folders are one level down: set data.root={inner}."
            return fix, fix
    by_case = {c.lower(): c for c in children}
    differ = [(f, by_case[f.lower()]) for f in absent if f.lower() in by_case]
    if differ:
        shown = ", ".join(f"{f}/ (on disk {c}/)" for f, c in differ[:3])
        fix = (
            f"{counted(len(differ), 'class folder')} of the split files "
            f"{'differs' if len(differ) == 1 else 'differ'} from the folders under data.root in "
            f"case only: {shown}; rename the folders to the listed names."
        )
        return fix, fix
    if not absent:
        return (
            "data.root holds every class folder but not these videos in them: is its copy "
            "of the dataset complete (or another version than the split files')?",
            "",
        )
    if len(absent) < len(wanted):
        return (
            f"{len(absent)} of the {len(wanted)} class folders are not under data.root "
            f"(e.g. {absent[0]}/): it must hold {what}.",
            "",
        )
    return f"Check data.root: it must hold {what}.", ""


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
            f"HMDB51 split folder {missing(split_dir, folder=True)}: {split_dir} (set "
            "data.split_dir to the folder of <class>_test_split{1,2,3}.txt files from the "
            "official test_train_splits.rar)"
        )
    entries: dict[str, list[tuple[str, int]]] = {}
    for name in HMDB51_CLASSES:
        path = split_dir / f"{name}_test_split{split}.txt"
        rows = []
        for line_no, text in read_lines(path, "HMDB51 split file", "set data.split_dir"):
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
    given = split_dir
    split_dir = Path(given).expanduser() if given else default_split_dir(root, HMDB51_SPLIT_DIR)
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
    hint, splits.root_hint = _root_hint(
        root,
        classes,
        f"the 51 class folders (e.g. {root / classes[0]}/*.avi; the official hmdb51_org.rar "
        "holds one .rar per class: extract each one's videos into <root>/<class>/, as "
        "README.md's HMDB51 section does)",
    )
    return drop_missing(
        splits,
        everything,
        dataset=f"HMDB51 split {split}",
        root=root,
        allow_missing=allow_missing,
        hint=hint + _beside_note(root, split_dir, given),
        lists=f"the split files in {split_dir}/",
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
    for line_no, text in read_lines(index_file, "UCF101 class index", fix):
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise UserError(
                f"{index_file}:{line_no}: expected '{len(classes) + 1} <ClassName>', got "
                f"{text!r} (the classes are numbered 1, 2, 3, ... in order: for a subset, "
                "renumber them, and the labels of trainlist0N.txt to match)"
            )
        classes.append(parts[1])
    label_of = {name.lower(): i for i, name in enumerate(classes)}

    def parse(path: Path, with_label: bool) -> list[tuple[str, int]]:
        rows = []
        for line_no, text in read_lines(path, "UCF101 split file", fix):
            parts = text.rsplit(None, 1)
            if not with_label and (len(parts) == 1 or not parts[1].isdigit()):
                parts = [text]  # a test line without the label column (the official form)
            rel = parts[0].replace("\\", "/")
            label = label_of.get(rel.split("/", 1)[0].lower()) if "/" in rel else None
            if label is None or (with_label and len(parts) != 2):
                raise UserError(
                    f"{path}:{line_no}: expected '<Class>/<video>.avi"
                    f"{' <label>' if with_label else ''}' with a class of {index_file}, "
                    f"got {text!r}"
                )
            if len(parts) == 2 and parts[1] != str(label + 1):
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
    given = split_dir
    split_dir = Path(given).expanduser() if given else default_split_dir(root, UCF101_SPLIT_DIR)
    classes, train, test = read_ucf101_splits(split_dir, split)
    splits = RecordSplits(
        [VideoRecord(root / rel, label, rel) for rel, label in train],
        [VideoRecord(root / rel, label, rel) for rel, label in test],
        classes,
    )
    listed = [rel.split("/", 1)[0] for rel, _ in train + test]
    what = f"the 101 class folders (e.g. {root / classes[0]}/*.avi)"
    hint, splits.root_hint = _root_hint(root, listed, what)
    return drop_missing(
        splits,
        splits.train + splits.test,
        dataset=f"UCF101 split {split}",
        root=root,
        allow_missing=allow_missing,
        hint=hint + _beside_note(root, split_dir, given),
        lists=f"the split files in {split_dir}/",
    )
