"""Decode only the frames a clip needs, with torchcodec or PyAV, as displayed.

    with open_video("clip.avi") as reader:  # keeps the decoder open
        idx = sample_frame_indices(reader.info.num_frames, 16, train=False)  # (1, 16)
        clip = reader.frames(idx[0], size=(256, 341))  # uint8 (16, 3, 256, 341)
    clip = decode_frames("clip.avi", [0, 8, 8, 15])  # uint8 (4, 3, H, W), in the requested order

Frames come as displayed, from either backend: turned by the video's rotation metadata and, for
non-square pixels, resized to the display aspect (see :mod:`hpnet.data.decode_reader`);
``reader.info`` gives that displayed size, its ``rotation`` and pixel aspect ``sar``.

Which backend (``data.decoder``): ``auto`` reads AVI files and MPEG program and transport streams
(``.mpg``, ``.ts``; recognised by their first bytes) with the PyAV reader and everything else with
torchcodec (on MPEG streams torchcodec's seeks return other frames: 20 of 60 wrong on an MPEG-2
``.mpg`` and on a ``.ts`` remux of an H.264 clip, none with PyAV); PyAV everywhere when torchcodec
cannot load FFmpeg. AVI stores no presentation timestamps, and torchcodec finds a frame by the
timestamps its FFmpeg gives the decoded pictures, which for a decoder that holds pictures back
(B-frames, DivX/XviD packed bitstream, as in the HMDB51 and UCF101 clips here, and H.264 AVIs) are
those of later packets: it then returns a neighbour instead of some pictures (measured: at least
one picture of each of the 7 HMDB51 test clips, 6 of 73 on one, one of the UCF101 clip, two of the
NTU H.264 AVI). The PyAV reader labels AVI pictures by their place in the decoder's output (see
:mod:`hpnet.data.decode_pyav`) and returns every picture in order, at about torchcodec's speed on
these small clips (``bench/decode.py``). ``torchcodec`` and ``pyav`` force one backend.

Frame numbering (the same for both backends): ``num_frames`` counts the video packets in the
file (torchcodec's "exact" scan, not the header, which is wrong for truncated or re-muxed AVIs)
and frame ``i`` is the first decoded picture whose timestamp reaches the ``i``-th packet
timestamp in presentation order. For ordinary files this is simply the ``i``-th picture. Some
AVIs carry packets without a picture (every HMDB51 clip has a 1-byte "drop" packet right after
its first frame): there two neighbouring indices give the same picture and every index stays
readable; read with torchcodec (``data.decoder=torchcodec``) such files can be numbered up to two
frames apart from PyAV's. torchcodec cannot return a picture that its decoder only gives when
flushed at the end of the stream: frames at the very end that torchcodec reports as past the
end of the stream are read with PyAV instead.

Bad files raise :class:`VideoDecodeError` naming the file and why: not found, a directory, empty,
permission denied, not a video, no decoder for its codec (an AVI's FourCC is named), no frames,
or frames that cannot be decoded (truncated or corrupt). ``max_pixels`` refuses a video whose
frames are larger, from the stream header before any frame is decoded: frames are decoded at
full size and resized afterwards, so 16 frames of 7680x4320 hold 1.6 GB.

Resizing uses antialiased bilinear interpolation on the decoded uint8 frames (about 1 ms for 16
frames on one core). torchcodec 0.14 can also resize inside the decoder
(``torchcodec.transforms.Resize``), but that fixes the size when the decoder is built and was not
faster for clip-sized requests, so both backends share the same tensor resize.

This module is the entry point (:func:`open_video`, :func:`decode_frames`, :func:`resolve_backend`)
and holds the torchcodec reader. The PyAV reader is in :mod:`hpnet.data.decode_pyav`, the reader
interface both implement (:class:`VideoReader`, :class:`VideoInfo`, :func:`resize_frames`) in
:mod:`hpnet.data.decode_reader` and the errors in :mod:`hpnet.data.decode_errors`; import
``VideoReader``, ``VideoInfo``, ``resize_frames`` and ``VideoDecodeError`` from here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from hpnet.cli import HpnetRuntimeWarning
from hpnet.data.decode_errors import (
    VideoDecodeError,
    ffmpeg_reason,
    first_line,
    no_video_stream_reason,
)
from hpnet.data.decode_pyav import _PyAVReader
from hpnet.data.decode_reader import (
    _TAIL_SLACK,
    VideoInfo,
    VideoReader,
    display_geometry,
    refuse_larger,
    uneven_times,
)
from hpnet.data.decode_reader import resize_frames as resize_frames  # re-exported: public here

Backend = Literal["auto", "torchcodec", "pyav"]
BACKENDS = ("auto", "torchcodec", "pyav")

# torchcodec's error for a frame it cannot find before the end of the stream.
_TORCHCODEC_END_OF_STREAM = "no more frames left to decode"


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
    """The decoder that ``backend`` means here: ``auto`` is torchcodec, else PyAV (one warning).

    :func:`open_video` reads AVI files with PyAV under ``auto`` all the same; ``reader.backend``
    (and ``reader.info.decoder``) say which decoder read a file."""
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
            HpnetRuntimeWarning,
            stacklevel=3,
        )
    return "pyav"


# ------------------------------------------------------------------------------------ readers


class _TorchcodecReader(VideoReader):
    """torchcodec ``VideoDecoder`` in exact seek mode (frame-accurate, scanned frame count).

    torchcodec decodes an index that directly follows the previous one as "the next picture"
    without checking timestamps; on files whose packets do not all carry a picture (AVIs: drop
    packets, packed bitstreams) that shifts later frames by one and fails at the end of the
    file. So in an AVI no decoder is ever asked for index ``k + 1`` right after ``k``: runs of
    consecutive indices alternate between two decoders (each then decodes every picture, so
    other files, whose packets each carry one, are read by one decoder: 2-2.5x faster dense
    reads, the same frames).
    Frames within ``_TAIL_SLACK`` of the end that torchcodec cannot find before the end of the
    stream are read with a PyAV reader of the same file (see the module docstring).
    """

    backend = "torchcodec"

    def __init__(
        self, path: Path, device: torch.device, threads: int, max_pixels: int, avi: bool
    ) -> None:
        super().__init__(path, device)
        self._threads = threads
        self._decoders: list[Any] = [self._open_decoder(), None]
        self._last_index: list[int | None] = [None, None]  # last index each decoder returned
        self._alternate = avi  # (see the class docstring)
        self._tail_reader: _PyAVReader | None = None  # opened on first use (_pyav_twin)
        meta = self._decoders[0].metadata
        num_frames = int(meta.num_frames or 0)
        if num_frames < 1:
            raise VideoDecodeError(path, "the video stream has no frames")
        fps = float(meta.average_fps or meta.average_fps_from_header or 0.0)
        turned = round(float(meta.rotation or 0) / 90) % 2  # width and height come turned
        stored = (meta.height, meta.width) if turned else (meta.width, meta.height)
        width, height, rotation, sar = display_geometry(
            int(stored[0]), int(stored[1]), meta.rotation, meta.pixel_aspect_ratio
        )
        refuse_larger(path, width, height, max_pixels)  # nothing decoded yet
        self._info = VideoInfo(num_frames, fps, width, height, rotation, sar, decoder=self.backend)

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
        """Assign sorted indices to the two decoders so none gets k + 1 right after k (AVI;
        other files: all to decoder 0)."""
        if not self._alternate:
            return [list(wanted), []]
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

    def _pyav_twin(self) -> _PyAVReader:
        """A PyAV reader of the same file, opened on first use."""
        if self._tail_reader is None:
            self._tail_reader = _PyAVReader(self.path, self.device, self._threads, 0)
        return self._tail_reader

    def frame_times(self) -> np.ndarray | None:
        """See :meth:`VideoReader.frame_times`: from the packets' timestamps, as PyAV reads
        them (None when its count of frames differs from torchcodec's)."""
        twin = self._pyav_twin()
        seconds = twin.packet_seconds()
        if seconds is None or twin.info.num_frames != self.info.num_frames:
            return None
        return uneven_times(seconds, twin.info.fps)  # (the rate those timestamps are stamped at)

    def _read_tail_with_pyav(self, group: list[int]) -> torch.Tensor:
        """Frames at sorted ``group`` (ending near the end) read with PyAV -> uint8 (G, 3, H, W)."""
        tail = self._pyav_twin()
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


# ---------------------------------------------------------------------------------- functions


def _is_avi(head: bytes) -> bool:
    """Whether a file's first 12 bytes are an AVI's (``RIFF``, size, ``AVI ``)."""
    return head[:4] == b"RIFF" and head[8:12] == b"AVI "


TS_SYNC = ((0, 188), (4, 192))  # (first sync byte, packet size) of .ts and .m2ts


def _is_mpeg_stream(head: bytes) -> bool:
    """Whether a file starts as an MPEG program stream (``.mpg``: pack header ``00 00 01 BA``)
    or transport stream (``.ts``: sync byte 0x47 every 188 bytes; ``.m2ts``: 192, 4 bytes in)."""
    if head[:4] == b"\x00\x00\x01\xba":
        return True
    return any(len(head) > i + step and head[i] == head[i + step] == 0x47 for i, step in TS_SYNC)


def open_video(
    path: str | Path,
    *,
    backend: Backend = "auto",
    device: str | torch.device = "cpu",
    threads: int = 1,
    max_pixels: int = 0,
) -> VideoReader:
    """Open a video for reading frames, as displayed (see :mod:`hpnet.data.decode_reader`); use
    as a context manager.

    ``backend``: ``auto`` (torchcodec; PyAV for AVI files and when torchcodec cannot load
    FFmpeg), ``torchcodec`` or ``pyav``; ``reader.backend`` says which one reads.
    ``device="cuda"`` decodes on the GPU with torchcodec (PyAV decodes on the CPU and moves the
    frames). ``threads``: FFmpeg decoding threads (1 suits DataLoader workers; 0 = auto).
    ``max_pixels``: refuse frames of more than this many pixels (displayed width x height; 0 =
    no limit), checked from the stream header before anything is decoded.
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
        with open(path, "rb") as f:
            head = f.read(200)
    except PermissionError:
        reason = "permission denied (this user may not read the file: fix its permissions)"
        raise VideoDecodeError(path, reason) from None
    except OSError as err:
        raise VideoDecodeError(path, f"cannot read the file ({err.strerror or err})") from None
    avi = _is_avi(head)
    # AVI: no timestamps, torchcodec may miss pictures; MPEG-PS/TS: its seeks land on others.
    # (decided first: resolving "auto" imports torchcodec, ~4 s, which such files never use)
    if backend == "auto" and (avi or _is_mpeg_stream(head)):
        chosen = "pyav"
    else:
        chosen = resolve_backend(backend)
    if chosen == "torchcodec":
        return _TorchcodecReader(path, device, threads, max_pixels, avi)
    return _PyAVReader(path, device, threads, max_pixels)


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
