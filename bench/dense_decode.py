"""Dense reads (every frame, as the pose cache at ``pose.stride=1`` and overlays read them) with
torchcodec: one decoder (non-AVI files) against the two alternating decoders AVIs need.

    python bench/dense_decode.py [--data DIR] [--repeats 3]

For each non-AVI clip under ``<data>/videos`` (Kinetics mp4 / mkv), all frames are read through
``open_video(..., backend="torchcodec").frames(range(n))`` as hpnet reads them, then with the
reader's AVI workaround forced on (consecutive indices alternate between two decoders, so each
decodes every picture). Best wall time of ``--repeats``; the frames must be equal.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from hpnet.data.decode import open_video

REPO = Path(__file__).resolve().parents[1]


def dense_read(path: Path, alternate: bool | None) -> tuple[torch.Tensor, float]:
    """All frames of ``path`` and the seconds they took (``alternate``: force the workaround)."""
    with open_video(path, backend="torchcodec") as reader:
        if alternate is not None:
            reader._alternate = alternate  # (the AVI workaround, on any file)
        start = time.perf_counter()
        frames = reader.frames(range(reader.info.num_frames))
        return frames, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    clips = sorted(p for p in (args.data / "videos").rglob("*") if p.suffix in (".mp4", ".mkv"))
    print("| clip | frames | one decoder s | two alternating s | speed-up | same frames |")
    print("|---|---:|---:|---:|---:|---|")
    for clip in clips:
        runs = {
            mode: [dense_read(clip, mode) for _ in range(args.repeats)] for mode in (None, True)
        }
        one, two = (min(t for _, t in runs[mode]) for mode in (None, True))
        same = torch.equal(runs[None][0][0], runs[True][0][0])
        n = runs[None][0][0].shape[0]
        print(f"| {clip.name} | {n} | {one:.3f} | {two:.3f} | {two / one:.2f}x | {same} |")


if __name__ == "__main__":
    main()
