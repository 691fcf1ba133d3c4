"""Whether a pose cache file is still its video's: what a file records of the video it was
made from (:func:`video_facts`: size, modification time, digest), the check a rerun of the
cache command and ``hpnet.predict`` make (:func:`same_video_file`), the quick one a run makes
of every file at its start (:func:`size_changed`), and the one made when a file is read
(:func:`check_same_video`: frame count, size and rotation as decoded)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpnet.cli import UserError
from hpnet.data.decode_reader import sar_text

DIGEST_SPAN = 1 << 20  # bytes read at each end of a video for its digest


def video_digest(path: Path) -> str:
    """BLAKE2b of the video's first and last MiB (the whole file up to 2 MiB): where
    containers keep their headers (MP4's moov, AVI's hdrl), so a video whose rotation or
    other metadata changed, or that was re-encoded, gets another digest."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        digest.update(f.read(DIGEST_SPAN))
        size = os.fstat(f.fileno()).st_size
        if size > DIGEST_SPAN:
            f.seek(max(DIGEST_SPAN, size - DIGEST_SPAN))
            digest.update(f.read())
    return digest.hexdigest()


def video_facts(path: Path) -> dict[str, Any]:
    """What a cache file records of its video so a rerun can tell it was replaced since:
    ``video_bytes``, ``video_mtime_ns`` and ``video_digest`` ({} when it cannot be read)."""
    try:
        stat = path.stat()
        return {
            "video_bytes": stat.st_size,
            "video_mtime_ns": stat.st_mtime_ns,
            "video_digest": video_digest(path),
        }
    except OSError:
        return {}


def same_video_file(meta: Mapping[str, Any], video: Path) -> bool:
    """Whether the video at ``video`` is still the one a cache file with ``meta`` was made
    from: the same size and either the same modification time or (a copy, which gets a new
    time) the same :func:`video_digest`. What the file did not record (older files), or a
    video that cannot be read (the run reports it), does not count against it."""
    if size_changed(meta, video):
        return False
    try:
        if meta.get("video_mtime_ns") in (None, video.stat().st_mtime_ns):
            return True
        return meta.get("video_digest") in (None, video_digest(video))
    except OSError:
        return True


def size_changed(meta: Mapping[str, Any], video: Path) -> bool:
    """Whether the video at ``video`` no longer has the size recorded in ``meta`` (one stat:
    a replaced or re-encoded video; a video that cannot be read, or a file that recorded no
    size, does not count)."""
    try:
        return meta.get("video_bytes", None) not in (None, video.stat().st_size)
    except OSError:
        return False


def check_same_video(path: Path, meta: dict[str, Any], info: Any, command: str) -> None:
    """A cache file made for another video (replaced, re-encoded, or another one of the same
    name), or from its frames turned or shaped otherwise than they are now displayed, would give
    joints at the wrong places: refuse it, saying what differs."""
    then = (meta.get("num_frames"), meta.get("width"), meta.get("height"))
    now = (info.num_frames, info.width, info.height)
    seen = _rotation_seen(meta, info)
    if None in then or then[0] != now[0]:
        reason = "" if None in then else _other_video(then, now)
    elif seen is not None and seen != info.rotation:
        reason = (
            f"it was made from the video {_turned(seen)} but the video is displayed "
            f"{_turned(info.rotation)}"
        )
    elif tuple(then) != now and meta.get("pixel_aspect", "1:1") != sar_text(info.sar):
        reason = (
            f"it was made from {then[1]}x{then[2]} frames with pixel aspect "
            f"{meta.get('pixel_aspect', '1:1')} but the video is displayed {now[1]}x{now[2]} "
            f"(its pixel aspect {sar_text(info.sar)} corrected)"
        )
    else:
        reason = "" if tuple(then) == now else _other_video(then, now)
    if reason:
        raise UserError(
            f"stale pose cache file {path}: {reason}; delete it and run `{command}` to recompute it"
        )


def _other_video(then: tuple, now: tuple) -> str:
    return (
        f"it holds joints of a {then[0]}-frame {then[1]}x{then[2]} video, this video has "
        f"{now[0]} frames of {now[1]}x{now[2]}"
    )


def _rotation_seen(meta: dict[str, Any], info: Any) -> int | None:
    """The rotation of the frames a cache file was made from (None = unknown). Older files
    have none recorded: torchcodec turned the frames, PyAV gave them as stored."""
    if meta.get("rotation") is not None:
        return int(meta["rotation"])
    return {"torchcodec": info.rotation, "pyav": 0}.get(meta.get("decoder", ""))


def _turned(rotation: int) -> str:
    return f"rotated {rotation}°" if rotation else "as stored (rotation 0)"
