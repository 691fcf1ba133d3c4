"""Decode only the frames a clip needs, with torchcodec (PyAV when torchcodec cannot load FFmpeg).

    with open_video("clip.avi") as reader:  # keeps the decoder open
        idx = sample_frame_indices(reader.info.num_frames, 16, train=False)  # (1, 16)
        clip = reader.frames(idx[0], size=(256, 341))  # uint8 (16, 3, 256, 341)
    clip = decode_frames("clip.avi", [0, 8, 8, 15])  # uint8 (4, 3, H, W), in the requested order

Frame numbering (the same for both backends): ``num_frames`` counts the video packets in the
file (torchcodec's "exact" scan, not the header, which is wrong for truncated or re-muxed AVIs)
and frame ``i`` is the first decoded picture whose timestamp reaches the ``i``-th packet
timestamp in presentation order. For ordinary files this is simply the ``i``-th picture. Some
AVIs carry packets without a picture (every HMDB51 clip has a 1-byte "drop" packet right after
its first frame): there two neighbouring indices give the same picture, every index stays
readable, and the two backends can differ by one frame because their FFmpeg versions time-stamp
such files differently. torchcodec cannot return a picture that its decoder only gives when
flushed at the end of the stream (a one-frame stream copy of a DivX AVI, for one): frames at the
very end that torchcodec reports as past the end of the stream are read with PyAV instead.

Bad files raise :class:`VideoDecodeError` naming the file and why: not found, a directory, empty,
permission denied, not a video, no decoder for its codec (an AVI's FourCC is named), no frames,
or frames that cannot be decoded (truncated or corrupt). ``max_pixels`` refuses a video whose
frames are larger, from the stream header before any frame is decoded: frames are decoded at
full size and resized afterwards, so 16 frames of 7680x4320 hold 1.6 GB.

Resizing uses antialiased bilinear interpolation on the decoded uint8 frames (about 1 ms for 16
frames on one core). torchcodec 0.14 can also resize inside the decoder
(``torchcodec.transforms.Resize``), but that fixes the size when the decoder is built and was not
faster for clip-sized requests, so both backends share the same tensor resize.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from hpnet.data.decode_errors import (
    VideoDecodeError,
    ffmpeg_reason,
    first_line,
    no_decoder_reason,
    no_video_stream_reason,
)

Backend = Literal["auto", "torchcodec", "pyav"]
BACKENDS = ("auto", "torchcodec", "pyav")

# An index this close to the end may reuse the last picture when the stream ends cleanly without
# one (packets that carry no picture); anything else missing is a decode error.
_TAIL_SLACK = 3
# torchcodec's error for a frame it cannot find before the end of the stream.
_TORCHCODEC_END_OF_STREAM = "no more frames left to decode"


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int  # readable frames (packets found by scanning the file, not the header)
    fps: float  # average frame rate (0.0 when the file does not say)
    width: int  # frame width in pixels
    height: int  # frame height in pixels


# ----------------------------------------------------------------------------------- backends

_TORCHCODEC: dict[str, Any] = {}  # cache: "class" (VideoDecoder or None), "error", "warned"


def _import_torchcodec_decoder() -> type:
    from torchcodec.decoders import VideoDecoder  # loads torchcodec's FFmpeg libraries

    return VideoDecoder


def _torchcodec_decoder_class() -> type | None:
    """torchcodec's VideoDecoder, or None when torchcodec cannot load FFmpeg (checked once)."""
    if "class" not in _TORCHCODEC:
        try:
            _TORCHCODEC["class"], _TORCHCODEC["error"] = _import_torchcodec_decoder(), ""
        except (ImportError, OSError, RuntimeError) as err:
            _TORCHCODEC["class"], _TORCHCODEC["error"] = None, first_line(err)
    return _TORCHCODEC["class"]


def resolve_backend(backend: str = "auto") -> Literal["torchcodec", "pyav"]:
    """The decoder that ``backend`` means here: ``auto`` is torchcodec, else PyAV (one warning)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "pyav":
        return "pyav"
    if _torchcodec_decoder_class() is not None:
        return "torchcodec"
    reason = _TORCHCODEC["error"]
    if backend == "torchcodec":
        raise RuntimeError(
            f"torchcodec cannot load FFmpeg ({reason}): install FFmpeg 4-8 "
            "(e.g. apt install ffmpeg) or use the PyAV decoder (data.decoder=pyav)"
        )
    if not _TORCHCODEC.get("warned"):
        _TORCHCODEC["warned"] = True
        warnings.warn(
            f"torchcodec cannot load FFmpeg ({reason}); decoding videos with PyAV instead "
            "(slower; install FFmpeg 4-8 for torchcodec, or set data.decoder=pyav to silence this)",
            RuntimeWarning,
            stacklevel=3,
        )
    return "pyav"


# ------------------------------------------------------------------------------------ readers


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
        self, indices: Sequence[int] | np.ndarray, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Frames at ``indices`` (any order, repeats allowed) -> uint8 ``(N, 3, H, W)``.

        ``size = (H, W)`` resizes them (antialiased bilinear); ``None`` keeps the video's size.
        The result may be channels-last in memory (decoders write ``(N, H, W, 3)``; copying it to
        NCHW costs as much as a resize, and batching copies it anyway). Raises VideoDecodeError
        for indices outside ``[0, num_frames)`` or frames that cannot be decoded.
        """
        wanted, inverse = _unique_indices(indices, self.info.num_frames, self.path)
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"size must be (height, width) with positive sides, got {size}")
        if wanted.size == 0:
            height, width = size or (self.info.height, self.info.width)
            return torch.empty((0, 3, height, width), dtype=torch.uint8, device=self.device)
        unique = resize_frames(self._read_sorted(wanted.tolist()), size)  # (U, 3, H, W)
        if len(inverse) == len(wanted) and (np.diff(inverse) > 0).all():  # already in order
            return unique
        return unique.index_select(0, torch.from_numpy(inverse).to(unique.device))

    def _read_sorted(self, wanted: list[int]) -> torch.Tensor:
        """Frames at sorted, distinct, in-range indices -> uint8 (U, 3, H, W) on self.device."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the decoder."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {self._info})"


class _TorchcodecReader(VideoReader):
    """torchcodec ``VideoDecoder`` in exact seek mode (frame-accurate, scanned frame count).

    torchcodec decodes an index that directly follows the previous one as "the next picture"
    without checking timestamps; on files whose packets do not all carry a picture that shifts
    later frames by one and fails at the end of the file. So no decoder is ever asked for index
    ``k + 1`` right after ``k``: runs of consecutive indices alternate between two decoders.
    Frames within ``_TAIL_SLACK`` of the end that torchcodec cannot find before the end of the
    stream are read with a PyAV reader of the same file (see the module docstring).
    """

    backend = "torchcodec"

    def __init__(self, path: Path, device: torch.device, threads: int) -> None:
        super().__init__(path, device)
        self._threads = threads
        self._decoders: list[Any] = [self._open_decoder(), None]
        self._last_index: list[int | None] = [None, None]  # last index each decoder returned
        self._tail_reader: _PyAVReader | None = None  # opened on the first end-of-stream miss
        meta = self._decoders[0].metadata
        num_frames = int(meta.num_frames or 0)
        if num_frames < 1:
            raise VideoDecodeError(path, "the video stream has no frames")
        fps = meta.average_fps or meta.average_fps_from_header or 0.0
        self._info = VideoInfo(num_frames, float(fps), int(meta.width), int(meta.height))

    def _open_decoder(self) -> Any:
        decoder_class = _torchcodec_decoder_class()
        assert decoder_class is not None
        try:
            return decoder_class(
                str(self.path),
                seek_mode="exact",
                device=str(self.device),
                num_ffmpeg_threads=self._threads,
            )
        except ValueError as err:  # no video stream, or none FFmpeg has a decoder for
            reason = no_video_stream_reason(self.path)
            if reason is None:  # PyAV's FFmpeg can decode it: torchcodec's cannot
                reason = (
                    f"no decodable video stream for torchcodec's FFmpeg ({ffmpeg_reason(err)}); "
                    "the PyAV decoder may read it (data.decoder=pyav)"
                )
            raise VideoDecodeError(self.path, reason) from None
        except RuntimeError as err:
            message = ffmpeg_reason(err).replace(f"{self.path} ", "")  # named once, in front
            raise VideoDecodeError(self.path, f"not a readable video ({message})") from None

    def _split_between_decoders(self, wanted: list[int]) -> list[list[int]]:
        """Assign sorted indices to the two decoders so none gets k + 1 right after k."""
        groups: list[list[int]] = [[], []]
        for index in wanted:
            for slot in (0, 1):
                previous = groups[slot][-1] if groups[slot] else self._last_index[slot]
                if previous is None or index != previous + 1:
                    groups[slot].append(index)
                    break
            else:  # both decoders just returned index - 1: start decoder 1 afresh
                self._decoders[1], self._last_index[1] = None, None
                groups[1].append(index)
        return groups

    def _read_sorted(self, wanted: list[int]) -> torch.Tensor:
        groups = self._split_between_decoders(wanted)
        if not groups[1]:  # the usual sparse clip: one call, no copy
            return self._decode_group(0, wanted)
        position = {index: i for i, index in enumerate(wanted)}
        out: torch.Tensor | None = None
        for slot, group in enumerate(groups):
            if not group:
                continue
            batch = self._decode_group(slot, group)  # (G, 3, H, W)
            if out is None:
                out = batch.new_empty((len(wanted), *batch.shape[1:]))
            rows = torch.tensor([position[index] for index in group], device=batch.device)
            out[rows] = batch
        assert out is not None
        return out

    def _decode_group(self, slot: int, group: list[int]) -> torch.Tensor:
        """Decoder ``slot``'s frames at sorted ``group`` -> uint8 (G, 3, H, W)."""
        if self._decoders[slot] is None:
            self._decoders[slot] = self._open_decoder()
        try:
            batch = self._decoders[slot].get_frames_at(group).data
        except (RuntimeError, ValueError, IndexError) as err:
            self._decoders[slot], self._last_index[slot] = None, None  # state unknown
            at_tail = group[-1] >= self.info.num_frames - _TAIL_SLACK
            if at_tail and _TORCHCODEC_END_OF_STREAM in str(err):
                return self._read_tail_with_pyav(group)
            raise VideoDecodeError(
                self.path,
                f"frames {group[0]}..{group[-1]} could not be decoded "
                f"({ffmpeg_reason(err)}); the file may be truncated or corrupt",
            ) from None
        self._last_index[slot] = group[-1]
        return batch

    def _read_tail_with_pyav(self, group: list[int]) -> torch.Tensor:
        """Frames at sorted ``group`` (ending near the end) read with PyAV -> uint8 (G, 3, H, W)."""
        if self._tail_reader is None:
            self._tail_reader = _PyAVReader(self.path, self.device, self._threads)
        tail = self._tail_reader
        if tail.info.num_frames != self.info.num_frames:  # the two scans disagree: no mapping
            raise VideoDecodeError(
                self.path,
                f"frames {group[0]}..{group[-1]} could not be decoded (torchcodec counts "
                f"{self.info.num_frames} frames, PyAV {tail.info.num_frames}); "
                "the file may be truncated or corrupt",
            )
        return tail._read_sorted(group)

    def close(self) -> None:
        self._decoders = [None, None]
        self._last_index = [None, None]
        if self._tail_reader is not None:
            self._tail_reader.close()
            self._tail_reader = None


class _PyAVReader(VideoReader):
    """PyAV (bundled FFmpeg): seek to the keyframe before the first wanted frame, decode
    forward, convert only the wanted pictures. Keeps its position, so reading a video in
    consecutive chunks decodes every picture once."""

    backend = "pyav"

    def __init__(self, path: Path, device: torch.device, threads: int) -> None:
        import av

        super().__init__(path, device)
        self._av = av
        try:
            self._container = av.open(str(path))
        except (av.FFmpegError, OSError) as err:
            message = getattr(err, "strerror", None) or first_line(err)
            raise VideoDecodeError(path, f"not a readable video ({message})") from None
        if not self._container.streams.video:
            self._container.close()
            raise VideoDecodeError(path, "the file has no video stream")
        self._stream = self._container.streams.video[0]
        context = self._stream.codec_context
        if context is None:  # FFmpeg has no decoder for the stream's codec
            self._container.close()
            raise VideoDecodeError(path, no_decoder_reason(path))
        context.thread_count = threads
        if threads != 1:
            context.thread_type = "AUTO"
        self._cut_off: set[int] = set()  # timestamps of packets cut short (truncated file)
        try:
            self._timestamps, self._keyframes = self._scan()  # (num_frames,), (K,) sorted
        except VideoDecodeError:
            self._container.close()
            raise
        fps = self._stream.average_rate or self._stream.guessed_rate or 0
        self._info = VideoInfo(len(self._timestamps), float(fps), context.width, context.height)
        self._pictures: Any = None  # generator of decoded pictures from the current position
        self._last_label: int | None = None  # timestamp of the last picture it gave
        self._error = ""  # first decode error since the last seek

    def _scan(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted timestamps of all video packets and of the keyframes (demuxing, no decoding)."""
        stamps, keys = [], []
        try:
            for packet in self._container.demux(self._stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    if packet.size == 0:  # the end-of-stream flush packet
                        continue
                    raise VideoDecodeError(self.path, "video packets carry no timestamps")
                if not packet.is_discard:
                    stamps.append(stamp)
                    if packet.is_keyframe:
                        keys.append(stamp)
                    if packet.is_corrupt:  # e.g. the last packet of a truncated file
                        self._cut_off.add(stamp)
        except self._av.FFmpegError:
            pass  # unreadable tail: the frames before it stay usable
        if not stamps:
            raise VideoDecodeError(self.path, "the video stream has no frames")
        return np.sort(np.asarray(stamps, np.int64)), np.sort(np.asarray(keys or stamps[:1]))

    def _keyframe_before(self, stamp: int) -> int:
        position = max(int(np.searchsorted(self._keyframes, stamp, side="right")) - 1, 0)
        return int(self._keyframes[position])

    def _seek(self, stamp: int) -> None:
        try:
            self._container.seek(stamp, stream=self._stream, backward=True, any_frame=False)
        except self._av.FFmpegError as err:
            raise VideoDecodeError(self.path, f"cannot seek ({first_line(err)})") from None
        self._pictures, self._last_label, self._error = self._decode_forward(), None, ""

    def _decode_forward(self) -> Any:
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except self._av.FFmpegError as err:
                self._error = self._error or first_line(err)
                return
            try:
                yield from packet.decode()
            except self._av.FFmpegError as err:  # a damaged packet: note it, go on
                self._error = self._error or first_line(err)

    def _resume_or_seek(self, first: int) -> None:
        """Be positioned before the first picture at or after timestamp ``first``."""
        if (
            self._pictures is not None
            and self._last_label is not None
            and self._last_label < first
            and self._keyframe_before(first) == self._keyframe_before(self._last_label)
        ):
            return  # same keyframe group, ahead of us: keep decoding forward
        keyframe = self._keyframe_before(first)
        self._seek(keyframe)
        if keyframe == self._keyframes[0]:
            return
        head = next(self._pictures, None)  # FFmpeg may land past the keyframe: check
        if head is not None and (_label(head) or 0) <= first:
            self._pictures = itertools.chain([head], self._pictures)
        else:
            self._seek(int(self._keyframes[0]))

    def _read_sorted(self, wanted: list[int]) -> torch.Tensor:
        targets = self._timestamps[wanted]  # first picture at or after these timestamps
        self._resume_or_seek(int(targets[0]))
        height, width = self.info.height, self.info.width
        out = np.empty((len(wanted), height, width, 3), np.uint8)  # (U, H, W, 3)
        filled, last_picture = 0, None
        for picture in self._pictures:
            label = _label(picture)
            label = self._last_label if label is None else label
            self._last_label, last_picture = label, picture
            if label is None or label < targets[filled]:
                continue  # decoded but not wanted: never converted
            if label in self._cut_off:  # FFmpeg conceals the missing part: not a real frame
                self._pictures = None
                raise VideoDecodeError(
                    self.path,
                    f"frame {wanted[filled]} could not be decoded (its data is cut off); "
                    "the file may be truncated or corrupt",
                )
            rgb = picture.to_ndarray(format="rgb24", width=width, height=height)
            while filled < len(wanted) and label >= targets[filled]:
                out[filled] = rgb
                filled += 1
            if filled == len(wanted):
                break
        else:  # the stream ended before every wanted frame was found
            self._pictures = None
            missing = wanted[filled]
            if self._error or last_picture is None or missing < self.info.num_frames - _TAIL_SLACK:
                reason = self._error or "the stream ends before it"
                raise VideoDecodeError(
                    self.path,
                    f"frame {missing} could not be decoded ({reason}); "
                    "the file may be truncated or corrupt",
                )
            out[filled:] = last_picture.to_ndarray(format="rgb24", width=width, height=height)
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(self.device)  # (U, 3, H, W)

    def close(self) -> None:
        self._pictures = None
        self._container.close()


# ---------------------------------------------------------------------------------- functions


def open_video(
    path: str | Path,
    *,
    backend: Backend = "auto",
    device: str | torch.device = "cpu",
    threads: int = 1,
    max_pixels: int = 0,
) -> VideoReader:
    """Open a video for reading frames; use as a context manager.

    ``backend``: ``auto`` (torchcodec, PyAV if torchcodec cannot load FFmpeg), ``torchcodec`` or
    ``pyav``. ``device="cuda"`` decodes on the GPU with torchcodec (PyAV decodes on the CPU and
    moves the frames). ``threads``: FFmpeg decoding threads (1 suits DataLoader workers; 0 = auto).
    ``max_pixels``: refuse frames of more than this many pixels (width x height; 0 = no limit),
    checked from the stream header before anything is decoded.
    Raises VideoDecodeError for a missing, empty, unreadable, non-video, undecodable or too
    large file.
    """
    path = Path(path)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"decode device {device} requested but CUDA is not available: use cpu")
    if not path.exists():
        raise VideoDecodeError(path, "file not found")
    if path.is_dir():
        raise VideoDecodeError(path, "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "the file is empty (0 bytes)")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        reason = "permission denied (this user may not read the file: fix its permissions)"
        raise VideoDecodeError(path, reason) from None
    except OSError as err:
        raise VideoDecodeError(path, f"cannot read the file ({err.strerror or err})") from None
    if resolve_backend(backend) == "torchcodec":
        reader: VideoReader = _TorchcodecReader(path, device, threads)
    else:
        reader = _PyAVReader(path, device, threads)
    width, height = reader.info.width, reader.info.height
    if max_pixels and width * height > max_pixels:
        reader.close()
        raise VideoDecodeError(
            path,
            f"frames of {width}x{height} ({width * height} pixels) are over the limit of "
            f"{max_pixels} pixels (raise data.max_pixels, 0 = no limit, or downscale the video, "
            "e.g. ffmpeg -i IN -vf scale=-2:720 OUT)",
        )
    return reader


def decode_frames(
    path: str | Path,
    indices: Sequence[int] | np.ndarray,
    *,
    size: tuple[int, int] | None = None,
    backend: Backend = "auto",
    device: str | torch.device = "cpu",
    threads: int = 1,
) -> torch.Tensor:
    """Decode only the frames at ``indices`` (any order, repeats allowed) -> uint8 (N, 3, H, W).

    ``size = (H, W)`` resizes them (antialiased bilinear). See :func:`open_video`.
    """
    with open_video(path, backend=backend, device=device, threads=threads) as reader:
        return reader.frames(indices, size)


# ------------------------------------------------------------------------------------ helpers


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


def resize_frames(frames: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """uint8 (N, 3, h, w) -> uint8 (N, 3, H, W), antialiased bilinear (no-op at the same size)."""
    if size is None or tuple(frames.shape[-2:]) == tuple(size):
        return frames
    size = (int(size[0]), int(size[1]))
    if frames.device.type == "cpu":  # uint8 kernel, fastest on channels-last input
        return F.interpolate(frames, size=size, mode="bilinear", antialias=True)
    resized = F.interpolate(frames.float(), size=size, mode="bilinear", antialias=True)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def _label(picture: Any) -> int | None:
    """A decoded PyAV picture's timestamp (pts, else the packet dts)."""
    return picture.pts if picture.pts is not None else picture.dts
