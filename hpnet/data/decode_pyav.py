"""The PyAV video reader: the fallback when torchcodec cannot load FFmpeg, and ``backend="pyav"``.

PyAV bundles its own FFmpeg. :func:`hpnet.data.decode.open_video` builds this reader; the frame
numbering it follows (the same as torchcodec's) is described in :mod:`hpnet.data.decode`. ``av``
is imported when a reader is opened, not with this module.

AVI stores no presentation timestamps: FFmpeg numbers the packets, and in DivX/XviD files with
packed B-frames (most HMDB51 and UCF101 clips: a packet holding a P- and a B-frame, then an
8-byte placeholder) the pictures come out of the decoder in display order but with the P's and
the B's numbers swapped. Labelled by those numbers, a third of the pictures could never be
returned and their neighbours came twice. So in AVI a picture is labelled by its place in the
decoder's output: the k-th picture after a keyframe gets the k-th timestamp (counting the packets
that carry a picture) from that keyframe's own, which is reliable.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpnet.data.decode_errors import VideoDecodeError, first_line, no_decoder_reason
from hpnet.data.decode_reader import _TAIL_SLACK, VideoInfo, VideoReader


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
        self._by_order = self._container.format.name == "avi"  # label pictures by output order
        self._picture_stamps = np.zeros(0, np.int64)  # sorted stamps of packets with a picture
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
        stamps, keys, pictures = [], [], []
        try:
            for packet in self._container.demux(self._stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    if packet.size == 0:  # the end-of-stream flush packet
                        continue
                    raise VideoDecodeError(self.path, "video packets carry no timestamps")
                if not packet.is_discard:
                    stamps.append(stamp)
                    if packet.size > 1:  # AVI "drop" packets (0-1 bytes) carry no picture
                        pictures.append(stamp)
                    if packet.is_keyframe:
                        keys.append(stamp)
                    if packet.is_corrupt:  # e.g. the last packet of a truncated file
                        self._cut_off.add(stamp)
        except self._av.FFmpegError:
            pass  # unreadable tail: the frames before it stay usable
        if not stamps:
            raise VideoDecodeError(self.path, "the video stream has no frames")
        self._picture_stamps = np.sort(np.asarray(pictures or stamps, np.int64))
        return np.sort(np.asarray(stamps, np.int64)), np.sort(np.asarray(keys or stamps[:1]))

    def _keyframe_before(self, stamp: int) -> int:
        position = max(int(np.searchsorted(self._keyframes, stamp, side="right")) - 1, 0)
        return int(self._keyframes[position])

    def _seek(self, stamp: int) -> None:
        try:
            self._container.seek(stamp, stream=self._stream, backward=True, any_frame=False)
        except self._av.FFmpegError as err:
            raise VideoDecodeError(self.path, f"cannot seek ({first_line(err)})") from None
        self._pictures, self._last_label, self._error = self._decode_forward(stamp), None, ""

    def _decode_forward(self, start: int) -> Any:
        """``(picture, label)`` after a seek to keyframe ``start``: the label is the picture's
        timestamp, or in AVI the timestamp of its place in the output (see the module)."""
        packets = self._container.demux(self._stream)
        stamps = self._picture_stamps
        place = int(np.searchsorted(stamps, start))
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except self._av.FFmpegError as err:
                self._error = self._error or first_line(err)
                return
            try:
                for picture in packet.decode():
                    label = _label(picture)
                    if self._by_order and label is not None:
                        if picture.key_frame:  # its own timestamp is right: count from there
                            place = int(np.searchsorted(stamps, label))
                        label = int(stamps[min(place, len(stamps) - 1)])
                        place += 1
                    yield picture, label
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
        if head is not None and (head[1] or 0) <= first:
            self._pictures = itertools.chain([head], self._pictures)
        else:
            self._seek(int(self._keyframes[0]))

    def _read_sorted(self, wanted: list[int]) -> torch.Tensor:
        targets = self._timestamps[wanted]  # first picture at or after these timestamps
        self._resume_or_seek(int(targets[0]))
        height, width = self.info.height, self.info.width
        out = np.empty((len(wanted), height, width, 3), np.uint8)  # (U, H, W, 3)
        filled, last_picture = 0, None
        for picture, label in self._pictures:
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


def _label(picture: Any) -> int | None:
    """A decoded PyAV picture's timestamp (pts, else the packet dts)."""
    return picture.pts if picture.pts is not None else picture.dts
