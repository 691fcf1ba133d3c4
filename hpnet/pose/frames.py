"""The frames the pose cache feeds its model: every ``pose.stride``-th frame of each video,
decoded (and resized to the model's letterbox) in DataLoader workers, in chunks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from hpnet.data.decode import open_video
from hpnet.data.decode_reader import sar_text
from hpnet.pose.estimator import letterbox_size


class FrameChunks(IterableDataset):
    """Chunks of every ``stride``-th frame of each video, decoded in DataLoader workers.

    Each worker takes videos ``[worker::workers]`` and yields, per video, ``ceil(F / chunk)``
    dicts ``{"video", "frames": uint8 (n, 3, h, w), "indices": int64 (n,), "chunks", "info"}``,
    or one ``{"video", "error"}`` when the video cannot be decoded.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        stride: int,
        chunk: int,
        imgsz: int,
        resize: bool,
        backend: str = "auto",
        max_pixels: int = 0,
    ) -> None:
        self.paths, self.stride, self.chunk = list(paths), stride, chunk
        self.imgsz, self.resize, self.backend = imgsz, resize, backend
        self.max_pixels = max_pixels  # larger frames: the video fails (data.max_pixels)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = get_worker_info()
        first, step = (worker.id, worker.num_workers) if worker else (0, 1)
        for video in range(first, len(self.paths), step):
            try:
                yield from self.video_chunks(video)
            except Exception as err:  # any decoder failure: reported, never fatal
                yield {"video": video, "error": f"{type(err).__name__}: {err}"}

    def video_chunks(self, video: int) -> Iterator[dict[str, Any]]:
        """The chunks of video number ``video``, in order (raises what its decoder raises)."""
        path = self.paths[video]
        with open_video(path, backend=self.backend, max_pixels=self.max_pixels) as reader:
            info = reader.info
            if info.num_frames < 1:
                raise ValueError("the video has no frames")
            indices = torch.arange(0, info.num_frames, self.stride)
            size = letterbox_size(info.height, info.width, self.imgsz)
            if not self.resize and size[0] >= info.height:  # upscaling: the model device does it
                size = None
            parts = indices.split(self.chunk)
            facts = (info.num_frames, float(info.fps), info.width, info.height, reader.backend)
            facts += (info.rotation, sar_text(info.sar))  # how the frames were displayed
            for part in parts:
                frames = reader.frames(part.tolist(), size=size)
                yield {
                    "video": video,
                    "frames": frames,
                    "indices": part,
                    "chunks": len(parts),
                    "info": facts,
                    "error": None,
                }
