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

Frames are returned as displayed (see :mod:`hpnet.data.decode_reader`): PyAV gives the display
matrix only on decoded pictures (``VideoFrame.rotation``), so opening a reader decodes the first
picture to read it; the reader stays there, so a read that starts in the first keyframe group
costs nothing extra. Pictures are converted with one ``VideoReformatter`` per reader: a new one
per picture (what ``VideoFrame.to_ndarray`` makes) sets up FFmpeg's scaler each time (0.3 ms per
320x240 picture against 0.1 ms, CPU time).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpnet.data.decode_errors import VideoDecodeError, first_line, no_decoder_reason
from hpnet.data.decode_reader import (
    _TAIL_SLACK,
    VideoInfo,
    VideoReader,
    display_geometry,
    refuse_larger,
    uneven_times,
)


class _PyAVReader(VideoReader):
    """PyAV (bundled FFmpeg): seek to the keyframe before the first wanted frame, decode
    forward, convert only the wanted pictures, and seek again where the next wanted frame
    lies in a later keyframe group. Keeps its position, so reading a video in consecutive
    chunks decodes every picture once."""

    backend = "pyav"

    def __init__(self, path: Path, device: torch.device, threads: int, max_pixels: int) -> None:
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
        from av.video.reformatter import VideoReformatter

        self._cut_off: set[int] = set()  # timestamps of packets cut short (truncated file)
        self._by_order = self._container.format.name == "avi"  # label pictures by output order
        self._picture_stamps = np.zeros(0, np.int64)  # sorted stamps of packets with a picture
        self._reformatter = VideoReformatter()  # one scaler set-up for all pictures
        self._pictures: Any = None  # generator of decoded pictures from the current position
        self._start: int | None = None  # keyframe the generator started at
        self._last_label: int | None = None  # timestamp of the last picture it gave
        self._error = ""  # first decode error since the last seek
        self._seeks_land = True  # a seek lands at or before the keyframe asked for
        self._stored = (context.width, context.height)  # size of the decoded pictures
        sar = self._stream.sample_aspect_ratio
        try:  # the pixel count does not depend on the rotation, known once a picture is decoded
            refuse_larger(path, *display_geometry(*self._stored, 0, sar)[:2], max_pixels)
            self._timestamps, self._keyframes = self._scan()  # (num_frames,), (K,) sorted
            rotation = self._first_rotation()
        except VideoDecodeError:
            self._container.close()
            raise
        fps = float(self._stream.average_rate or self._stream.guessed_rate or 0)
        width, height, turn, sar = display_geometry(*self._stored, rotation, sar)
        self._info = VideoInfo(
            len(self._timestamps), fps, width, height, turn, sar, decoder=self.backend
        )

    def _first_rotation(self) -> int:
        """The display rotation of the first picture (0 when it cannot be decoded); the reader
        is left before that picture."""
        self._seek(int(self._keyframes[0]))
        head = next(self._pictures, None)
        if head is None:
            self._pictures = None
            return 0
        self._pictures = itertools.chain([head], self._pictures)
        return int(head[0].rotation)

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

    def frame_times(self) -> np.ndarray | None:
        """See :meth:`VideoReader.frame_times`: from the packets' timestamps."""
        seconds = self.packet_seconds()
        return None if seconds is None else uneven_times(seconds, self.info.fps)

    def packet_seconds(self) -> np.ndarray | None:
        """The sorted timestamps of the frames' packets in seconds ``(num_frames,)``; None
        without a time base. In AVI they are the packets' places in the stream at the header's
        rate, which say when each frame shows all the same: a writer that dropped frames (a
        variable-rate source, ``ffmpeg -fps_mode passthrough``) leaves gaps in those places."""
        base = self._stream.time_base
        if base is None:
            return None
        return self._timestamps * float(base)

    def _keyframe_before(self, stamp: int) -> int:
        position = max(int(np.searchsorted(self._keyframes, stamp, side="right")) - 1, 0)
        return int(self._keyframes[position])

    def _seek(self, stamp: int) -> None:
        try:
            if stamp == int(self._keyframes[0]):  # the start: MPEG-PS/TS seeks by timestamp
                self._container.seek(0)  # land past the first keyframe, the file's start not
            else:
                self._container.seek(stamp, stream=self._stream, backward=True, any_frame=False)
        except self._av.FFmpegError as err:
            raise VideoDecodeError(self.path, f"cannot seek ({first_line(err)})") from None
        self._pictures, self._last_label, self._error = self._decode_forward(stamp), None, ""
        self._start = stamp

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
        keyframe = self._keyframe_before(first)
        if self._pictures is not None:
            if self._last_label is None and self._start == keyframe:
                return  # just seeked to that keyframe (on opening): nothing read yet
            if (
                self._last_label is not None
                and self._last_label < first
                and keyframe == self._keyframe_before(self._last_label)
            ):
                return  # same keyframe group, ahead of us: keep decoding forward
        self._seek(keyframe)
        head = next(self._pictures, None)  # FFmpeg may land past the keyframe: check
        if head is not None and (head[1] or 0) > first and keyframe != self._keyframes[0]:
            self._seeks_land = False  # this file's seeks overshoot: decode on, never skip
            self._seek(int(self._keyframes[0]))  # then read on from the start
            head = next(self._pictures, None)
        if head is not None:
            self._pictures = itertools.chain([head], self._pictures)

    def _read_sorted(self, wanted: list[int]) -> torch.Tensor:
        targets = self._timestamps[wanted]  # first picture at or after these timestamps
        width, height = self._stored
        out = np.empty((len(wanted), height, width, 3), np.uint8)  # (U, H, W, 3)
        filled, last_picture = 0, None
        while filled < len(wanted):  # a pass per keyframe group holding wanted frames
            self._resume_or_seek(int(targets[filled]))
            filled, last_picture = self._fill(out, wanted, targets, filled, last_picture)
        frames = torch.from_numpy(out).permute(0, 3, 1, 2)  # (U, 3, h, w) as stored
        if self.info.rotation:  # turned counter-clockwise, as the display matrix says
            frames = torch.rot90(frames, self.info.rotation // 90, dims=(2, 3))
        return frames.to(self.device)

    def _fill(
        self,
        out: np.ndarray,
        wanted: list[int],
        targets: np.ndarray,
        filled: int,
        last_picture: Any,
    ) -> tuple[int, Any]:
        """Decode on from the reader's position, converting into ``out[filled:]`` the pictures
        of ``wanted`` (at timestamps ``targets``). Stops when all are there, or when the next
        lies in a later keyframe group and seeks land where asked: the caller seeks there
        instead of decoding the pictures between. ``(frames filled, last picture decoded)``."""
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
            rgb = self._rgb(picture)
            while filled < len(wanted) and label >= targets[filled]:
                out[filled] = rgb
                filled += 1
            if filled == len(wanted) or (
                self._seeks_land
                and self._keyframe_before(int(targets[filled])) > self._keyframe_before(label)
            ):
                return filled, last_picture
        self._pictures = None  # the stream ended before every wanted frame was found
        missing = wanted[filled]
        if self._error or last_picture is None or missing < self.info.num_frames - _TAIL_SLACK:
            reason = self._error or "the stream ends before it"
            raise VideoDecodeError(
                self.path,
                f"frame {missing} could not be decoded ({reason}); "
                "the file may be truncated or corrupt",
            )
        out[filled:] = self._rgb(last_picture)
        return len(wanted), last_picture

    def _rgb(self, picture: Any) -> np.ndarray:
        """A decoded picture -> uint8 (h, w, 3) RGB at the stream's stored size."""
        width, height = self._stored
        rgb = self._reformatter.reformat(picture, format="rgb24", width=width, height=height)
        return rgb.to_ndarray()

    def close(self) -> None:
        self._pictures = None
        # freed now, with its FFmpeg slice threads: left to the collector (a reader in a
        # reference cycle, e.g. through an exception's traceback) it may be freed in a forked
        # loader worker, where those threads do not exist, and hang it (see ForkSafeLoader)
        self._reformatter = None
        self._container.close()


def _label(picture: Any) -> int | None:
    """A decoded PyAV picture's timestamp (pts, else the packet dts)."""
    return picture.pts if picture.pts is not None else picture.dts
