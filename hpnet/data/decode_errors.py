"""Why a video cannot be read: :class:`VideoDecodeError` and the reasons it gives.

The reasons name the problem and its fix in the user's terms: not a readable video (FFmpeg's own
words), no video stream, no decoder for the codec (an AVI's FourCC named, e.g. ``ZZZZ``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or whose requested frames cannot be decoded.

    ``.path`` is the file (``None`` when rebuilt from a bare message, as DataLoader workers do).
    """

    def __init__(self, path: str | Path | None, reason: str | None = None) -> None:
        if reason is None:  # one-argument form: the whole message (DataLoader re-raise)
            message, path = str(path), None
        else:
            message = f"cannot decode {path}: {reason}"
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        if self.reason is None:
            return (type(self), (str(self),))
        return (type(self), (self.path, self.reason))


class VideoUnfitError(VideoDecodeError):
    """A readable video that the request cannot use (e.g. a ``--window`` shorter than one of its
    frames): reported for that video, like a decode error, while the others go on."""

    def __init__(self, path: str | Path | None, reason: str | None = None) -> None:
        super().__init__(path, reason)
        if reason is not None:
            self.args = (f"cannot use {path}: {reason}",)


def first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def no_video_stream_reason(path: Path) -> str | None:
    """Why FFmpeg (PyAV's) finds no decodable video stream in ``path``; None if it finds one."""
    import av

    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            if not streams:
                return "the file has no video stream"
            if streams[0].codec_context is None:
                return no_decoder_reason(path)
    except (av.FFmpegError, OSError) as err:
        return f"not a readable video ({getattr(err, 'strerror', None) or first_line(err)})"
    return None


def no_decoder_reason(path: Path) -> str:
    """The message for a video stream whose codec FFmpeg cannot decode (names an AVI's FourCC)."""
    fourcc = _avi_fourcc(path)
    codec = f"codec {fourcc}" if fourcc else "its video codec"
    return (
        f"no decoder for {codec} in FFmpeg (re-encode the video, "
        "e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)"
    )


def _avi_fourcc(path: Path) -> str:
    """The video FourCC of an AVI file (``strf`` biCompression, else ``strh`` fccHandler), or ''."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)  # the header list (hdrl) comes first
    if head[:4] != b"RIFF" or head[8:12] != b"AVI ":
        return ""
    strh = head.find(b"strh")  # stream header: "strh", size, fccType, fccHandler, ...
    while strh >= 0 and head[strh + 8 : strh + 12] != b"vids":
        strh = head.find(b"strh", strh + 4)
    if strh < 0:
        return ""
    strf = head.find(b"strf", strh)  # "strf", size, BITMAPINFOHEADER (biCompression at 16)
    tags = [head[strf + 24 : strf + 28] if strf > 0 else b"", head[strh + 12 : strh + 16]]
    for tag in tags:
        if len(tag) == 4 and tag.strip(b"\0 ") and all(32 <= c < 127 for c in tag):
            return tag.decode("ascii")
    return ""


def ffmpeg_reason(err: BaseException) -> str:
    """torchcodec's message without its C++ source location."""
    return re.sub(r"^\w+, \S+:\d+, ", "", first_line(err))
