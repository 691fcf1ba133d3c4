"""Sparse reads of a long video: 16 frames sampled across a clip of minutes, as training, the
pose cache's grid and predict read them, with each backend.

    python bench/sparse_decode.py [--minutes 2] [--gop 250] [--repeats 3] [--work DIR]

Writes (once, under ``--work``) a ``--minutes`` long 30 fps 320x240 MPEG-4 Part 2 AVI (as
HMDB51's DivX clips) and an H.264 MP4 with a keyframe every ``--gop`` frames (x264's default
250), then times ``open_video(...).frames(indices)`` for the 16 test-mode indices of each, best
of ``--repeats``, counting the pictures the PyAV reader decodes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import numpy as np

from hpnet.data.decode import open_video
from hpnet.data.sampling import sample_frame_indices

FPS, WIDTH, HEIGHT = 30, 320, 240


def write_video(path: Path, codec: str, frames: int, gop: int) -> Path:
    """Moving noise bands, one keyframe every ``gop`` frames (skipped when ``path`` exists)."""
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (HEIGHT, WIDTH * 2, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.bit_rate = 1_000_000
        for i in range(frames):
            shift = i % WIDTH
            image = np.ascontiguousarray(base[:, shift : shift + WIDTH])
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def timed_read(path: Path, backend: str) -> tuple[float, int]:
    """Seconds to open ``path`` and read its 16 sampled frames, and the PyAV pictures decoded."""
    start = time.perf_counter()
    with open_video(path, backend=backend) as reader:
        decoded = [0]
        if backend == "pyav":
            forward = reader._decode_forward

            def counted(stamp: int):
                for item in forward(stamp):
                    decoded[0] += 1
                    yield item

            reader._decode_forward = counted
        reader.frames(sample_frame_indices(reader.info.num_frames, 16, train=False)[0])
    return time.perf_counter() - start, decoded[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--gop", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/hpnet_sparse_decode"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    frames = int(args.minutes * 60 * FPS)
    print(f"{frames} frames ({args.minutes} min at {FPS} fps), keyframe every {args.gop}")
    print("| file | backend | s per 16-frame read | pictures decoded (PyAV) |")
    print("|---|---|---:|---:|")
    for name, codec in (("long.avi", "mpeg4"), ("long.mp4", "libx264")):
        path = write_video(args.work / f"{args.gop}_{frames}_{name}", codec, frames, args.gop)
        for backend in ("pyav", "torchcodec"):
            runs = [timed_read(path, backend) for _ in range(args.repeats)]
            seconds, decoded = min(r[0] for r in runs), runs[0][1] if backend == "pyav" else ""
            print(f"| {name} | {backend} | {seconds:.3f} | {decoded} |")


if __name__ == "__main__":
    main()
