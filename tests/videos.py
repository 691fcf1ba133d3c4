"""Small real video files for tests (imported by test modules: ``from videos import ...``)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_video(path: Path, num_frames: int, size: tuple[int, int] = (24, 32)) -> Path:
    """A real MPEG-4 video whose frame k is a flat grey of value 8 * k (mod 256)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for k in range(num_frames):
            image = np.full((*size, 3), (8 * k) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
