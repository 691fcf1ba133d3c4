"""Which videos a dataset has: records, folders and list files (the official split files of
HMDB51 and UCF101 are parsed in :mod:`hpnet.data.official_splits`).

A *record* is one video: its path, its label and its path relative to the dataset root (the
pose cache mirrors that relative path). The builders below only read text files and list
folders; they never open a video, so they are fast even for HMDB51- or UCF101-size datasets.

Every builder returns a :class:`RecordSplits`, which unpacks as ``train, test, classes`` and
also carries the videos it could not find (``missing``). Videos listed by split or list files
but absent on disk are an error (:class:`hpnet.cli.UserError`) naming how many are missing,
the first few and the fix, unless ``allow_missing=True``: then they are dropped with one
logged warning giving the count.

Layouts:

- HMDB51 and UCF101's official split files: :mod:`hpnet.data.official_splits`.
- Folder (:func:`hpnet.data.folder_records.folder_records`): ``<root>/<class>/<video>``.
- List files (:func:`hpnet.data.list_files.list_records`): ``path label`` lines.

Names are taken literally: no shell, no glob patterns, no regular expressions on file names
(HMDB51 names contain ``( ) ! + , # [ ] & ;``).
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hpnet.cli import UserError

logger = logging.getLogger(__name__)
_missing_logger = logging.getLogger(f"{__name__}.missing")  # (hpnet.data lists them itself)

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v")
VIDEO_EXTENSIONS += (".3gp", ".3g2", ".wmv", ".asf", ".flv", ".ts", ".mts", ".m2ts", ".vob")
VIDEO_EXTENSIONS += (".mxf",)  # (phone, camcorder, broadcast: each read right by "auto")
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
    root_hint: str = ""  # data.root one level too high, or folders named in another case
    listed_rels: set[str] = field(default_factory=set)  # every video the files name, by rel
    missing_test: int = 0  # of ``missing``: those the test set lists

    def __iter__(self) -> Iterator:
        return iter((self.train, self.test, self.classes))


# ------------------------------------------------------------------------------ text files


def read_lines(path: Path, what: str, fix: str) -> list[tuple[int, str]]:
    """``(line number, stripped text)`` of the non-blank lines of ``path`` (CRLF and BOM ok;
    a UTF-16 file, as Windows' Notepad "Unicode" saves, is refused with the fix)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path} ({fix})") from None
    except OSError as err:
        raise UserError(f"cannot read {what} {path}: {err.strerror} ({fix})") from None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:4096]:
        raise UserError(f"{what} {path} is UTF-16 (or binary), not text in UTF-8: save it as UTF-8")
    text = data.decode("utf-8-sig", errors="surrogateescape")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


# ----------------------------------------------------------------------------- missing files


class FolderListing:
    """Which files exist, one directory listing per folder (a list of Kinetics size is one
    listing a folder, not a stat a line)."""

    def __init__(self) -> None:
        self._names: dict[Path, dict[str, str]] = {}  # folder -> NFC name -> name on disk

    def find(self, path: Path) -> Path | None:
        """``path`` if it exists, else its name in the other Unicode form if that one exists
        (macOS writes "café" as "cafe" + a combining accent; a list typed elsewhere has the
        other), else None."""
        names = self._names.get(path.parent)
        if names is None:
            try:
                found = os.listdir(path.parent)
            except OSError:
                found = []
            names = {unicodedata.normalize("NFC", n): n for n in sorted(found, reverse=True)}
            names.update({n: n for n in found})  # (a name as written wins)
            self._names[path.parent] = names
        name = names.get(path.name) or names.get(unicodedata.normalize("NFC", path.name))
        return path.with_name(name) if name is not None else None


def _present(records: Sequence[VideoRecord]) -> list[bool]:
    """Whether each record's file exists under its very name (:class:`FolderListing`)."""
    listing = FolderListing()
    return [listing.find(r.path) == r.path for r in records]


def _listed_once(splits: RecordSplits, dataset: str, lists: str) -> None:
    """Keep the first of each video listed twice in ``splits.train`` or ``splits.test`` (one
    warning); a video in both is a :class:`UserError` (its test score would be of a video
    trained on). Videos are compared by their path relative to the root; ``lists`` names the
    files that list them (what to fix)."""
    hint = f"Fix {lists}."
    for side in ("train", "test"):
        records = getattr(splits, side)
        first: dict[str, VideoRecord] = {}
        for r in records:
            kept = first.setdefault(r.rel, r)
            if kept.label != r.label:
                raise UserError(
                    f"{dataset}: {r.rel} is listed twice for {side}, with labels {kept.label} "
                    f"and {r.label}; a video has one class. {hint}"
                )
        once = list(first.values())
        if len(once) < len(records):
            twice = [rel for rel, n in Counter(r.rel for r in records).items() if n > 1]
            logger.warning(
                "%s: %d %s video(s) listed more than once (e.g. %s); each is used once",
                dataset, len(twice), side, twice[0],
            )  # fmt: skip
            setattr(splits, side, once)
    both = sorted({r.rel for r in splits.train} & {r.rel for r in splits.test})
    if both:
        more = f" and {len(both) - _SHOW} more" if len(both) > _SHOW else ""
        raise UserError(
            f"{dataset}: {len(both)} video(s) are listed for both training and testing: "
            f"{', '.join(both[:_SHOW])}{more}; a test video must not be trained on. {hint}"
        )


def drop_missing(
    splits: RecordSplits,
    everything: Sequence[VideoRecord],
    *,
    dataset: str,
    root: Path,
    allow_missing: bool,
    hint: str,
    lists: str,
) -> RecordSplits:
    """Check that every listed video exists; raise, or drop the missing ones with one warning
    (``hint``: what to check when videos are missing; the warning adds ``splits.root_hint``).
    First a video listed twice on one side is kept once (a warning), and one listed for both
    training and testing is an error naming ``lists`` (:func:`_listed_once`)."""
    _listed_once(splits, dataset, lists)
    once: dict[str, VideoRecord] = {}
    for r in everything:  # each video once, in the order listed
        once.setdefault(r.rel, r)
    everything = list(once.values())
    missing = [r for r, ok in zip(everything, _present(everything), strict=True) if not ok]
    splits.listed, splits.listed_rels = len(everything), {r.rel for r in everything}
    if not missing:
        return splits
    gone = {r.path for r in missing}
    used = len(splits.train) + len(splits.test)
    splits.missing_test = sum(r.path in gone for r in splits.test)
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
            f"{summary}: {first}{more}. {hint} Or set data.allow_missing=true to use the "
            f"{len(splits.train)} train / {len(splits.test)} test videos that are there "
            "(python -m hpnet.data --config ... lists what is missing)."
        )
    _missing_logger.warning(
        "%s; data.allow_missing=true: using the %d train / %d test videos that are there%s",
        summary, len(splits.train), len(splits.test),
        f". {splits.root_hint}" if splits.root_hint else "",
    )  # fmt: skip
    return splits


# ------------------------------------------------------------------------------ shared


def some_names(names: Sequence[str], limit: int = 8) -> str:
    """The first ``limit`` names, comma-separated, and how many more."""
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def subfolder_names(folder: Path) -> list[str]:
    """The sorted names of the folders directly in ``folder``, hidden ones left out (none when
    it cannot be listed)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.is_dir() and e.name[0] != ".")
    except OSError:
        return []


def videos_under(folder: Path) -> list[Path]:
    """Video files under ``folder`` (recursively, into linked folders too), sorted; hidden
    files are skipped, and links to nothing left out with a warning (they were listed, then
    "undecodable: file not found")."""
    found, broken = [], []
    seen = {(s.st_dev, s.st_ino) for s in map(os.stat, Path(folder).resolve().parents)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        stat = os.stat(dirpath)
        if (stat.st_dev, stat.st_ino) in seen:  # a link back up (to here or above): not read
            dirnames[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS):
                path = Path(dirpath) / name
                (found if path.exists() else broken).append(path)
    if broken:
        logger.warning(
            "%d video file(s) under %s are links to nothing (or went away), left out: %s",
            len(broken), folder, some_names([str(p) for p in sorted(broken)], 3),
        )  # fmt: skip
    return sorted(found)


def per_class_counts(records: Sequence[VideoRecord], classes: Sequence[str]) -> dict[str, int]:
    """``{class name: number of records}`` in class order (classes without videos give 0)."""
    counts: dict[int, int] = defaultdict(int)
    for record in records:
        counts[record.label] += 1
    return {name: counts[i] for i, name in enumerate(classes)}
