"""The pose cache on disk: one ``.npz`` per video, written atomically, and its reader.

File format (public; version :data:`FORMAT_VERSION`), at ``<cache_dir>/<relative video path>.npz``:

- ``keypoints``: float32 (F, P, 17, 3): x, y in [0, 1] of the original frame, confidence in
  [0, 1]; a missing person or joint has confidence 0 and x = y = 0.
- ``frame_indices``: int64 (F,): which video frames the F rows are (every ``stride``-th frame).
- ``meta``: a JSON string: ``format_version``, the settings (``model``, ``model_id``, ``imgsz``,
  ``conf``, ``iou``, ``persons``, ``stride``, ``precision``, ``frames_as``), the video's
  ``num_frames``, ``fps``, the ``width`` x ``height`` of the frames as displayed, the
  ``rotation`` (degrees counter-clockwise) and ``pixel_aspect`` (e.g. ``"64:51"``) that were
  applied to make them (a file whose video or orientation differs is refused as stale, naming
  the difference), the ``decoder`` that numbered the frames (a run reading with the other one
  gets a warning), and the video file's ``video_bytes``, ``video_mtime_ns`` and
  ``video_digest`` (a rerun redoes the file of a video replaced since:
  :func:`~hpnet.pose.same_video.same_video_file`).
  Files written before frames were turned and pixel-aspect corrected have no ``frames_as`` (the
  cache command redoes them), no ``rotation`` and no ``pixel_aspect``: their frames were as the
  decoder then gave them (torchcodec turned, PyAV as stored, neither corrected the pixel
  aspect).

    cached = load_joints("pose_cache/golf/clip.avi.npz")
    cached.keypoints.shape  # (F, P, 17, 3)

:class:`JointCache` is the ``joint_source`` the datasets take: joints at exactly the sampled frames.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hpnet.atomic import write_atomic
from hpnet.cli import UserError
from hpnet.data.decode_errors import VideoDecodeError
from hpnet.pose.report import REPORT_NAME, undecodable_videos
from hpnet.pose.same_video import check_same_video, same_video_file, size_changed
from hpnet.pose.skeleton import NUM_KEYPOINTS

logger = logging.getLogger(__name__)
FORMAT_VERSION = 1
# Meta keys that must match for a cached file to count as done; anything else is information.
SETTINGS_KEYS = (
    "format_version", "model_id", "imgsz", "conf", "iou", "persons", "stride", "frames_as"
)  # fmt: skip
FRAMES_AS = "displayed"  # the ``frames_as`` of files whose joints are of the frames as displayed
CACHE_COMMAND = "python -m hpnet.pose.cache --config <your config>"
CACHE_DIR_OPTION = "pose.cache_dir=DIR"  # how a user points the cache elsewhere (in messages)


@dataclass
class CachedJoints:
    """The content of one cache file."""

    keypoints: np.ndarray  # float32 (F, P, 17, 3)
    frame_indices: np.ndarray  # int64 (F,)
    meta: dict[str, Any]


class _Record(Protocol):
    path: Path  # the video file
    rel: str


def cache_path(cache_dir: str | Path, rel: str) -> Path:
    """Where the joints of the video at relative path ``rel`` live: ``<cache_dir>/<rel>.npz``."""
    return Path(cache_dir) / f"{rel}.npz"


def save_joints(
    path: str | Path,
    keypoints: np.ndarray,
    frame_indices: np.ndarray,
    meta: Mapping[str, Any],
    *,
    folder_option: str = CACHE_DIR_OPTION,
) -> None:
    """Write one cache file atomically.

    A failed write leaves the previous file intact and raises
    :class:`hpnet.atomic.WriteError` (its ``is_storage_error`` tells a full disk or a
    permission problem, which every following file would hit too, from a problem of this file).

    Args:
        keypoints: (F, P, 17, 3) joints, stored as float32.
        frame_indices: (F,) video frame of each row, stored as int64.
        meta: settings and video facts (JSON-serialisable); ``format_version`` is added.
        folder_option: how the user chooses another cache folder, for the error message.
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    frame_indices = np.asarray(frame_indices, dtype=np.int64)
    if keypoints.ndim != 4 or keypoints.shape[2:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must be (F, P, 17, 3), got {keypoints.shape}")
    if frame_indices.shape != keypoints.shape[:1]:
        raise ValueError(f"frame_indices {frame_indices.shape} != F of keypoints {keypoints.shape}")
    text = json.dumps({"format_version": FORMAT_VERSION, **meta}, sort_keys=True)
    write_atomic(
        Path(path),
        lambda f: np.savez_compressed(
            f, keypoints=keypoints, frame_indices=frame_indices, meta=np.array(text)
        ),
        what="pose cache file",
        folder_option=folder_option,
    )


def load_joints(path: str | Path) -> CachedJoints:
    """Read one cache file; raises ``ValueError`` (or ``OSError``) if corrupt or incomplete."""
    return _load(path)


def _load(
    path: str | Path, keep: Callable[[dict[str, Any]], bool] | None = None
) -> CachedJoints | None:
    """Read one cache file, its arrays only when ``keep(meta)`` (if given) is true: None
    then. Raises ``ValueError`` (or ``OSError``) if corrupt or incomplete."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if keep is not None and not keep(meta):
                return None
            keypoints = data["keypoints"].astype(np.float32, copy=False)
            frame_indices = data["frame_indices"].astype(np.int64, copy=False)
    except (KeyError, zipfile.BadZipFile, EOFError, json.JSONDecodeError) as err:
        raise ValueError(f"corrupt pose cache file {path}: {type(err).__name__}: {err}") from None
    if keypoints.ndim != 4 or keypoints.shape[0] != len(frame_indices) or not len(frame_indices):
        raise ValueError(f"corrupt pose cache file {path}: shapes {keypoints.shape}")
    return CachedJoints(keypoints, frame_indices, meta)


def read_meta(path: str | Path) -> dict[str, Any] | None:
    """The ``meta`` of a cache file, or None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def is_cached(path: str | Path, settings: Mapping[str, Any], video: Path | None = None) -> bool:
    """True when ``path`` is a complete cache file made with the same ``settings`` and, when
    ``video`` is given, from that video as it is now (:func:`same_video_file`; a video
    replaced or re-encoded since makes the file stale). The file is opened once; its arrays
    are read (a file cut short fails there) only when its meta matches."""
    wanted = {"format_version": FORMAT_VERSION, **settings}

    def current(meta: dict[str, Any]) -> bool:
        if any(meta.get(k) != wanted.get(k) for k in SETTINGS_KEYS):
            return False
        return video is None or same_video_file(meta, video)

    try:
        return _load(path, current) is not None
    except (OSError, ValueError):
        return False


def nearest_rows(cached: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of the nearest cached frame for each wanted frame index (ties go to the earlier one).

    Args:
        cached: sorted int (F,) frame indices in the cache file.
        wanted: int array of any shape.
    Returns: int64 array of ``wanted``'s shape with values in [0, F).
    """
    if len(cached) == 1:
        return np.zeros(np.shape(wanted), np.int64)
    pos = np.searchsorted(cached, wanted).clip(1, len(cached) - 1)
    before, after = cached[pos - 1], cached[pos]
    return np.where(wanted - before <= after - wanted, pos - 1, pos).astype(np.int64)


def other_settings(meta: Mapping[str, Any], pose: Any, ours: str = "this run") -> list[str]:
    """``pose.<key>=<cached> (this run: <now>)`` for each setting a cache file's ``meta`` was
    made with that ``pose`` (a config's ``pose``, ``ours`` in the words) sets otherwise; more
    persons than cached too (fewer read the first ones)."""
    now = {"weights": Path(pose.weights).name, "imgsz": pose.imgsz, "conf": pose.conf,
           "iou": pose.iou, "stride": pose.stride}  # fmt: skip
    then = {"weights": meta.get("model"), **{k: meta.get(k) for k in list(now)[1:]}}
    differ = [
        f"pose.{k}={then[k]} ({ours}: {now[k]})" for k in now if then[k] not in (None, now[k])
    ]
    cached = meta.get("persons")
    if isinstance(cached, int) and pose.persons > cached:
        differ.append(f"pose.persons={cached} ({ours}: {pose.persons}; the rest are empty)")
    return differ


class JointCache:
    """Joints from the pose cache at exactly the frames a dataset samples.

    The ``joint_source`` callable of :func:`hpnet.data.datasets.build_datasets`:
    ``JointCache(cfg.pose.cache_dir, cfg.pose.persons)``. Each call reads the video's file
    (``<cache_dir>/<record.rel>.npz``) and picks, for every sampled frame, the nearest cached
    frame (the cache holds every ``stride``-th frame). Persons beyond those cached are zeros.
    """

    def __init__(self, cache_dir: str | Path, persons: int = 2, decoder: str = "") -> None:
        self.cache_dir = Path(cache_dir).expanduser()
        self.persons = persons
        self.decoder = decoder  # the reader of the run ("torchcodec" / "pyav"; "" = unknown)
        self._undecodable: dict[str, str] | None = None  # read from the report on first need
        self._metas: dict[str, dict[str, Any] | None] = {}  # rel -> its file's meta (start checks)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for the loader's workers without the start checks' metas (they read none)."""
        return {**self.__dict__, "_metas": {}}

    def path(self, record: _Record) -> Path:
        return cache_path(self.cache_dir, record.rel)

    def missing(self, records: Iterable[_Record]) -> list[_Record]:
        """The records that have no cache file (to check a whole split before a long run)."""
        return [r for r in records if not self.path(r).is_file()]

    @property
    def undecodable(self) -> dict[str, str]:
        """``{rel: error}`` of the videos the cache command failed on (its ``failures.json``;
        empty without one; an entry without its ``rel`` is passed over)."""
        if self._undecodable is None:
            self._undecodable = undecodable_videos(self.cache_dir)
        return self._undecodable

    def check_complete(self, records: Sequence[_Record], on_error: str = "skip") -> None:
        """Raise the missing-file error (with the count) unless every record has a file: a
        run checks this at start instead of failing at its first batch without joints.

        A video the cache command could not decode is a bad video, not a missing file: with
        ``on_error="skip"`` (``data.on_error``) the run is told it will be left out (the
        loader skips it: :meth:`__call__` raises ``VideoDecodeError``); with ``"raise"``
        it stops the run here."""
        gone = self.missing(records)
        bad = [r for r in gone if r.rel in self.undecodable]
        if bad:
            first = f"{bad[0].path}: {self.undecodable[bad[0].rel]}"
            listed = f"the pose cache command failed on {len(bad)} of these videos "
            listed += f"(listed in {self.cache_dir / REPORT_NAME}; the first: {first})"
            if on_error == "raise":
                raise UserError(
                    f"{listed}: fix or remove them, or set data.on_error=skip to leave them out"
                )
            logger.warning("%s: they are left out as bad videos (data.on_error=skip)", listed)
        gone = [r for r in gone if r.rel not in self.undecodable]
        if gone:
            error = self._missing_error(self.path(gone[0]), "no")
            count = f"{len(gone)} of {len(records)} videos have no pose cache file"
            raise UserError(f"{count}; the first: {error}")
        stale = self.replaced(records)
        if stale:
            raise UserError(
                f"{len(stale)} of {len(records)} videos were replaced since their pose cache "
                f"files were made (another size; the first: {stale[0].path}): run "
                f"`{CACHE_COMMAND}` again, it redoes those files (pose.cache_dir={self.cache_dir})"
            )

    def _meta(self, record: _Record) -> dict[str, Any] | None:
        """The meta of ``record``'s cache file (None: no file, or unreadable), read once per
        cache object: the start checks (:meth:`replaced`, :meth:`warn_other_settings`) share
        one read of each file."""
        if record.rel not in self._metas:
            self._metas[record.rel] = read_meta(self.path(record))
        return self._metas[record.rel]

    def replaced(self, records: Sequence[_Record]) -> list[_Record]:
        """The records whose video no longer has the size its cache file recorded (a replaced
        or re-encoded video: its joints would be another clip's). One stat and one small read
        per file (about 0.2 ms): what a run checks at start."""
        changed = []
        for record in records:
            meta = self._meta(record)
            if meta is not None and size_changed(meta, Path(record.path)):
                changed.append(record)
        return changed

    def warn_other_settings(self, records: Sequence[_Record], pose: Any) -> None:
        """One warning when cache files of ``records`` were made with other ``pose.*``
        settings than ``pose`` (the run's ``cfg.pose``), saying how many of them with which:
        the run reads those joints, but a video without a file (``hpnet.predict`` on a new
        clip) gets joints of this config's settings, unlike the ones the model trained on."""
        groups: Counter[tuple[str, ...]] = Counter()
        files = 0
        for record in records:
            meta = self._meta(record)
            if meta is None or meta.get("source") == "groundtruth":  # (rendered clips' joints)
                continue
            files += 1
            differ = other_settings(meta, pose)
            if differ:
                groups[tuple(differ)] += 1
        if not groups:
            return
        said = [f"{n} of {files} files with {', '.join(differ)}" for differ, n in groups.items()]
        if len(groups) == 1 and sum(groups.values()) == files:
            said = [f"every file with {', '.join(next(iter(groups)))}"]
        logger.warning(
            "the pose cache %s was made with other pose settings than this run's: %s. This run "
            "reads those joints, but a video without a cache file (hpnet.predict on a new "
            "clip) gets this config's; set them as the cache's, or run `%s` again with this "
            "config (it redoes those files)", self.cache_dir, "; ".join(said[:4]), CACHE_COMMAND,
        )  # fmt: skip

    def _missing_error(self, path: Path, what: str) -> UserError:
        return UserError(
            f"{what} pose cache file {path}: run `{CACHE_COMMAND}` (pose.cache_dir="
            f"{self.cache_dir}) to compute the joints, or set pose.source=none to go without them"
        )

    def __call__(self, record: _Record, frame_indices: np.ndarray, info: Any = None) -> np.ndarray:
        """Joints float32 (V, T, P, 17, 3) at ``frame_indices`` int (V, T) of ``record``'s video."""
        path = self.path(record)
        if not path.is_file():
            if record.rel in self.undecodable:  # a bad video: the loader's data.on_error
                error = self.undecodable[record.rel]
                raise VideoDecodeError(record.path, f"the pose cache command failed on it: {error}")
            raise self._missing_error(path, "no")
        try:
            cached = load_joints(path)
        except (OSError, ValueError):
            raise self._missing_error(path, "corrupt") from None
        if info is not None:
            check_same_video(path, cached.meta, info, CACHE_COMMAND)
        made_with = cached.meta.get("decoder")
        reading_with = getattr(info, "decoder", "") or self.decoder  # auto: per file
        if reading_with and made_with and made_with != reading_with:
            _warn_other_decoder(self.cache_dir, made_with, reading_with)
        wanted = np.asarray(frame_indices, dtype=np.int64)
        picked = cached.keypoints[nearest_rows(cached.frame_indices, wanted)]  # (V, T, Pc, 17, 3)
        out = np.zeros((*wanted.shape, self.persons, NUM_KEYPOINTS, 3), np.float32)
        keep = min(self.persons, picked.shape[-3])
        out[..., :keep, :, :] = picked[..., :keep, :, :]
        return out


_WARNED_DECODERS: set[tuple[str, str, str]] = set()


def _warn_other_decoder(cache_dir: Path, made_with: str, reading_with: str) -> None:
    key = (str(cache_dir), made_with, reading_with)
    if key not in _WARNED_DECODERS:
        _WARNED_DECODERS.add(key)
        logger.warning(
            "pose cache %s was made with the %s decoder, this run reads frames with %s: on "
            "MPEG-4 AVIs (HMDB51, UCF101) the two can number frames up to 2 apart, so the "
            "joints may lag; set data.decoder=%s, or delete the cache files and cache again "
            "with data.decoder=%s (a rerun keeps files whose settings did not change)",
            cache_dir, made_with, reading_with, made_with, reading_with,
        )  # fmt: skip
