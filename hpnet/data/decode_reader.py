"""The reader interface every video decoder backend implements, and what they share.

:class:`VideoReader` (``info``, then ``frames(indices, size)``; a backend supplies
``_read_sorted``), :class:`VideoInfo`, the index checks and :func:`resize_frames`. The backends
are the torchcodec reader in :mod:`hpnet.data.decode` and the PyAV reader in
:mod:`hpnet.data.decode_pyav`; open a video with :func:`hpnet.data.decode.open_video`.

Frames come as displayed: turned by the stream's rotation (its display matrix, rounded to a
multiple of 90 degrees; mirroring is not applied, as in torchcodec) and, for non-square pixels
(sample aspect ratio ``sar`` != 1), resized to the display aspect by scaling the stored width to
``round(width * sar)`` and keeping the stored height (FFmpeg's ``scale=iw*sar:ih``), before the
turn. :class:`VideoInfo` gives that displayed size; a backend's ``_read_sorted`` returns turned
frames at the stored pixel aspect and :meth:`VideoReader.frames` does the one resize, to the
display size or straight to the requested ``size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hpnet.data.decode_errors import VideoDecodeError

# An index this close to the end may reuse the last picture when the stream ends cleanly without
# one (packets that carry no picture); anything else missing is a decode error.
_TAIL_SLACK = 3


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int  # readable frames (packets found by scanning the file, not the header)
    fps: float  # average frame rate (0.0 when the file does not say)
    width: int  # width of the frames as displayed (rotation and pixel aspect applied)
    height: int  # height of the frames as displayed
    rotation: int = 0  # degrees counter-clockwise the stored picture is turned: 0/90/180/270
    sar: Fraction = Fraction(1)  # sample (pixel) aspect ratio of the stored picture
    decoder: str = field(default="", compare=False)  # the backend that reads the frames


def sar_text(sar: Fraction) -> str:
    """``Fraction(64, 51)`` -> ``"64:51"`` (the form FFmpeg prints and the pose cache stores)."""
    return f"{sar.numerator}:{sar.denominator}"


def display_geometry(
    width: int, height: int, rotation: float | None, sar: Fraction | float | None
) -> tuple[int, int, int, Fraction]:
    """Stored ``width x height``, display-matrix ``rotation`` (degrees counter-clockwise, any
    sign, None = none) and sample aspect ``sar`` (None or 0 = square) -> displayed
    ``(width, height, rotation in {0, 90, 180, 270}, sar)``."""
    turn = round(float(rotation or 0) / 90) % 4 * 90
    ratio = Fraction(sar).limit_denominator(1 << 16) if sar else Fraction(1)
    shown = max(1, round(width * ratio))
    return (height, shown, turn, ratio) if turn % 180 else (shown, height, turn, ratio)


class VideoReader:
    """An open video: ``info`` then ``frames(indices)`` as often as needed; close when done."""

    backend: str = ""

    def __init__(self, path: Path, device: torch.device) -> None:
        self.path = path
        self.device = device
        self._info: VideoInfo | None = None

    @property
    def info(self) -> VideoInfo:
        assert self._info is not None
        return self._info

    def frames(
        self,
        indices: Sequence[int] | np.ndarray,
        size: tuple[int, int] | None = None,
        interpolation: str = "bilinear",
    ) -> torch.Tensor:
        """Frames at ``indices`` (any order, repeats allowed) -> uint8 ``(N, 3, H, W)``.

        Frames are as displayed (see the module): ``size = (H, W)`` resizes them (antialiased
        ``interpolation``, bilinear or bicubic), ``None`` gives the displayed
        ``info.height x info.width``.
        The result may be channels-last in memory (decoders write ``(N, H, W, 3)``; copying it to
        NCHW costs as much as a resize, and batching copies it anyway). Raises VideoDecodeError
        for indices outside ``[0, num_frames)`` or frames that cannot be decoded.
        """
        return self.frames_at_sizes(indices, [(size, interpolation)])[0]

    def frames_at_sizes(
        self,
        indices: Sequence[int] | np.ndarray,
        sizes: Sequence[tuple[tuple[int, int] | None, str]],
    ) -> list[torch.Tensor]:
        """The frames at ``indices`` once per ``(size, interpolation)`` of ``sizes``, decoded
        once: each is what :meth:`frames` gives at that size (one resize of the decoded frame,
        e.g. the model's frames and larger ones for the pose model)."""
        wanted, inverse = _unique_indices(indices, self.info.num_frames, self.path)
        for size, _ in sizes:
            if size is not None and (len(size) != 2 or min(size) < 1):
                raise ValueError(f"size must be (height, width) with positive sides, got {size}")
        # (a size of None is the displayed one: that also corrects non-square pixels)
        shown = [(size or (self.info.height, self.info.width), how) for size, how in sizes]
        if wanted.size == 0:
            empty = partial(torch.empty, dtype=torch.uint8, device=self.device)
            return [empty((0, 3, *size)) for size, _ in shown]
        decoded = self._read_sorted(wanted.tolist())
        in_order = len(inverse) == len(wanted) and (np.diff(inverse) > 0).all()
        rows = None if in_order else torch.from_numpy(inverse).to(decoded.device)
        out = []
        for size, interpolation in shown:
            unique = resize_frames(decoded, size, interpolation)
            out.append(unique if rows is None else unique.index_select(0, rows))
        return out

    def _read_sorted(self, wanted: list[int]) -> torch.Tensor:
        """Frames at sorted, distinct, in-range indices -> uint8 (U, 3, H, W) on self.device,
        turned by ``info.rotation`` but at the stored pixel aspect (``frames`` resizes)."""
        raise NotImplementedError

    def frame_times(self) -> np.ndarray | None:
        """Seconds after the first frame at which each frame shows, float64 ``(num_frames,)``,
        for a variable-frame-rate video (:func:`uneven_times`); None when the frames are
        evenly spaced at ``info.fps`` (frame ``i`` at ``i / fps``) or the file does not say."""
        return None

    def close(self) -> None:
        """Release the decoder."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {self._info})"


# ------------------------------------------------------------------------------------ helpers


def uneven_times(seconds: np.ndarray, fps: float) -> np.ndarray | None:
    """Frame times ``(N,)`` in seconds (sorted) -> the same from the first frame when some frame
    is more than half a frame away from even spacing at ``fps`` (a phone's variable frame
    rate), else None (frame ``i`` shows at ``i / fps`` near enough)."""
    if len(seconds) < 2 or fps <= 0:
        return None
    times = np.asarray(seconds, np.float64) - float(seconds[0])
    even = np.arange(len(times)) / fps
    return times if np.abs(times - even).max() > 0.5 / fps else None


def refuse_larger(path: Path, width: int, height: int, max_pixels: int) -> None:
    """Raise VideoDecodeError when displayed frames of ``width x height`` have more than
    ``max_pixels`` pixels (0 = no limit)."""
    if max_pixels and width * height > max_pixels:
        raise VideoDecodeError(
            path,
            f"frames of {width}x{height} ({width * height} pixels) are over the limit of "
            f"{max_pixels} pixels (raise data.max_pixels, 0 = no limit, or downscale the video, "
            "e.g. ffmpeg -i IN -vf scale=-2:720 OUT)",
        )


def _unique_indices(
    indices: Sequence[int] | np.ndarray, num_frames: int, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct indices (U,) and, per requested index, its row in them (N,)."""
    array = np.asarray(indices)
    if array.ndim != 1:
        raise ValueError(f"frame indices must be a 1-D sequence, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"frame indices must be integers, got {array.dtype}")
    array = array.astype(np.int64)
    outside = array[(array < 0) | (array >= num_frames)]
    if outside.size:
        raise VideoDecodeError(
            path,
            f"frame {int(outside[0])} requested but the video has {num_frames} readable frames "
            "(truncated file, or indices computed from another frame count?)",
        )
    wanted, inverse = np.unique(array, return_inverse=True)
    return wanted, inverse.reshape(-1)


def resize_frames(
    frames: torch.Tensor, size: tuple[int, int] | None, interpolation: str = "bilinear"
) -> torch.Tensor:
    """uint8 (N, 3, h, w) -> uint8 (N, 3, H, W), antialiased ``interpolation`` (bilinear or
    bicubic; a no-op at the same size). On the CPU the uint8 kernels run directly (fastest on
    channels-last input); elsewhere in float32, rounded back."""
    if size is None or tuple(frames.shape[-2:]) == tuple(size):
        return frames
    if interpolation not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolation must be bilinear or bicubic, got {interpolation!r}")
    size = (int(size[0]), int(size[1]))
    if frames.device.type == "cpu":
        return F.interpolate(frames, size=size, mode=interpolation, antialias=True)
    resized = F.interpolate(frames.float(), size=size, mode=interpolation, antialias=True)
    return resized.round_().clamp_(0, 255).to(torch.uint8)
