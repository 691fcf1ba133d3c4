"""Folder datasets: ``<root>/<class>/<video>`` (or ``<root>/train/<class>/...`` and
``<root>/test/<class>/...``), the classes the folders that hold videos (:func:`folder_records`).
Listing only: no video is opened."""

from __future__ import annotations

import logging
import os
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from hpnet.cli import UserError, counted, missing
from hpnet.data.holdout import stratified_holdout
from hpnet.data.records import (
    VIDEO_EXTENSIONS,
    RecordSplits,
    VideoRecord,
    some_names,
    subfolder_names,
    videos_under,
)

logger = logging.getLogger(__name__)
K = TypeVar("K")

# Folder names that mean a split, not a class (two of them at the top of a folder dataset).
SPLIT_FOLDER_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing"}


def _subfolders(folder: Path) -> list[str]:
    """The sorted names of ``folder``'s folders that may be classes or splits: not hidden, not
    starting with ``_`` (said when such a folder holds videos: a dataset leaves them out)."""
    names = subfolder_names(folder)
    unread = [name for name in names if name[0] == "_" and videos_under(folder / name)]
    if unread:
        logger.warning(
            "%s: folders whose names start with _ are not read (no class): %s",
            folder, ", ".join(unread),
        )  # fmt: skip
    return [name for name in names if name[0] != "_"]


def class_folders(names: Sequence[str]) -> dict[str, list[str]]:
    """``{class name: its folder names}`` of folder ``names``: a class is one class whichever
    Unicode form its folders' names have (macOS writes "café" as "cafe" + a combining accent),
    its name the NFC form."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(unicodedata.normalize("NFC", name), []).append(name)
    return groups


def _videos_in(parent: Path, names: Sequence[str]) -> list[Path]:
    """:func:`videos_under` each of ``parent``'s folders ``names``, together, sorted."""
    return sorted(path for name in names for path in videos_under(parent / name))


def _read_once(root: Path, found: dict[K, list[Path]]) -> dict[K, list[Path]]:
    """``found`` with each video file once: one reached twice through links (a linked folder
    and a link to a file in it, or a test/ link to a train/ video) was two samples, one of
    which could land in the test split. The first in ``found``'s order is kept (train/ before
    test/); the others are said, and left out."""
    seen: dict[str, Path] = {}
    again: list[str] = []
    out: dict[K, list[Path]] = {}
    for key, paths in found.items():
        out[key] = []
        for path in paths:
            real = os.path.realpath(path)
            if real in seen:
                again.append(f"{path.relative_to(root)} (= {seen[real].relative_to(root)})")
                continue
            seen[real] = path
            out[key].append(path)
    if again:
        logger.warning(
            "%s: %s the same file as another one (through links), left out: %s", root,
            "1 video is" if len(again) == 1 else f"{len(again)} videos are", some_names(again, 3),
        )  # fmt: skip
    return out


def _with_videos(root: Path, names: list[str], videos: Callable[[str], list]) -> list[str]:
    """The folder ``names`` that hold videos (``videos(name)`` not empty): the classes. The
    others are said once and left out: an empty class folder, or another tool's folder (the
    ground-truth ``pose_cache/`` of ``python -m hpnet.data.synthetic``), is no class to learn."""
    classes = [name for name in names if videos(name)]
    if len(classes) < len(names):
        others = sorted(set(names) - set(classes))
        logger.warning("%s: folders without videos are no classes: %s", root, ", ".join(others))
    return classes


def folder_records(root: str | Path, *, test_fraction: float = 0.3, seed: int = 0) -> RecordSplits:
    """Videos in ``<root>/<class>/...``; classes = the sorted names of the folders that hold
    videos (others are left out, with a warning).

    The split: if both ``<root>/train`` and ``<root>/test`` exist (in any case: ``Train/``,
    ``TEST/``), they are the splits (``<root>/train/<class>/...``, ``<root>/test/<class>/...``;
    classes = the union of their class folders). Otherwise a deterministic stratified hold-out
    (:func:`~hpnet.data.holdout.stratified_holdout` of the relative paths with ``seed``): in
    each class ``round(n * test_fraction)`` videos are the test set, at least one on each side
    when the class has two or more and ``test_fraction > 0`` (a class of one video trains).
    Video files have the extensions in :data:`VIDEO_EXTENSIONS` and may sit in subfolders of
    a class folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"dataset folder {missing(root, folder=True)}: {root} (set data.root)")
    subfolders = _subfolders(root)
    split_named = {n.lower(): n for n in subfolders if n.lower() in SPLIT_FOLDER_NAMES}
    if {"train", "test"} <= set(split_named):
        splits = _split_folder_records(root, split_named)
    else:
        splits = _held_out_records(root, subfolders, set(split_named.values()), test_fraction, seed)
    if not splits.train and not splits.test:
        places = [root, *(root / n for n in split_named.values())]  # (videos outside classes)
        loose = [p for folder in places for p in _videos_directly_in(folder)]
        found = (  # (a class folder given as data.root: its videos outside any class)
            f"{root} holds {counted(len(loose), 'video')} outside class folders"
            if loose
            else f"no videos found in {root}"
        )
        raise UserError(
            f"{found}: expected <root>/<class>/<video> (or <root>/train/<class>/... and "
            f"<root>/test/<class>/...) with extensions {' '.join(VIDEO_EXTENSIONS)} (check "
            "data.root)"
        )
    if len(splits.classes) == 1:
        _warn_classes_one_level_down(root, splits.classes[0], split_named)
    loose = [p.name for p in _videos_directly_in(root)]
    if loose:  # (it was silent, where other folders left out are said)
        logger.warning(
            "%s: %s directly in it, in no class folder, left out: %s", root,
            counted(len(loose), "video"), some_names(sorted(loose), 4),
        )  # fmt: skip
    splits.listed = len(splits.train) + len(splits.test)
    return splits


def _warn_classes_one_level_down(root: Path, only: str, split_named: dict[str, str]) -> None:
    """The one class ``only`` holds no videos of its own but 2+ folders with videos: were they
    meant as the classes (``data.root`` one folder too high)? Said here (the data check, the
    pose cache and pretraining list the videos all the same); training refuses one class."""
    parents = [root / n for n in split_named.values() if n.lower() in ("train", "test")]
    for folder in [p / only for p in parents or [root]]:
        if not folder.is_dir() or _videos_directly_in(folder):
            continue
        inner = [name for name in _subfolders(folder) if videos_under(folder / name)]
        if len(inner) > 1:
            fix = f"set data.root={folder}" if not parents else "move them up one folder"
            logger.warning(
                "%s holds one class folder, %s/, whose folders %s hold the videos: were they "
                "meant as the classes? then %s", root, only,
                ", ".join(inner[:4]) + ", ..." * (len(inner) > 4), fix,
            )  # fmt: skip
            return


def _videos_directly_in(folder: Path) -> list[Path]:
    """The video files in ``folder`` itself (not in its subfolders)."""
    return [
        p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and p.name[0] != "."
    ]  # (hidden ones, macOS's ._clip.mp4: no videos, as videos_under has it)


def _split_folder_records(root: Path, split_named: dict[str, str]) -> RecordSplits:
    """``<root>/train/<class>/...`` and ``<root>/test/<class>/...`` (``split_named``: the split
    folders by lower-case name); other split-like folders are named in a warning."""
    layout = [(s, root / split_named[s]) for s in ("train", "test")]
    unread = sorted(n for low, n in split_named.items() if low not in ("train", "test"))
    if unread:
        logger.warning(
            "%s: %s/ is not read (the splits are train/ and test/; data.val_fraction holds "
            "validation videos out of train/)", root, "/, ".join(unread),
        )  # fmt: skip
    folders = {s: class_folders(_subfolders(folder)) for s, folder in layout}
    names = sorted(set(folders["train"]) | set(folders["test"]))
    found = {
        (s, n): _videos_in(folder, folders[s].get(n, [])) for s, folder in layout for n in names
    }
    found = _read_once(root, found)
    classes = _with_videos(root, names, lambda n: found["train", n] or found["test", n])
    splits = RecordSplits([], [], classes)
    for split_name, _ in layout:
        out = splits.train if split_name == "train" else splits.test
        for label, name in enumerate(classes):
            for path in found[split_name, name]:
                out.append(VideoRecord(path, label, path.relative_to(root).as_posix()))
    return splits


def _held_out_records(
    root: Path, subfolders: list[str], split_like: set[str], test_fraction: float, seed: int
) -> RecordSplits:
    """``<root>/<class>/...`` split by a stratified hold-out; refuses two split-like folders
    (``<root>/train`` + ``<root>/val``: not two classes)."""
    if len(split_like) >= 2:
        raise UserError(
            f"{root} holds folders named {', '.join(sorted(split_like))}: hpnet reads split "
            f"folders only as <root>/train and <root>/test (here they would become classes); "
            "rename the held-out folder to test, or point data.root at a folder of classes"
        )
    groups = class_folders(subfolders)
    names = sorted(groups)
    found = _read_once(root, {name: _videos_in(root, groups[name]) for name in names})
    classes = _with_videos(root, names, found.__getitem__)
    items = [
        (rel, label)
        for label, name in enumerate(classes)
        for rel in sorted(p.relative_to(root).as_posix() for p in found[name])
    ]
    records = [VideoRecord(root / rel, label, rel) for rel, label in items]
    kept, held = stratified_holdout(items, test_fraction, seed)
    return RecordSplits([records[i] for i in kept], [records[i] for i in held], classes)
