"""Pose-cache throughput: hpnet's batched pipeline against a naive per-frame predict loop.

    python bench/pose_cache.py --videos ../shared/data/hmdb51_mini \
        --weights ../shared/data/weights/yolo11n-pose.pt

Both paths see every frame of the same videos with the same weights, image size, thresholds
and device. Naive: decode each video, then ``model.predict`` once per frame (numpy BGR, as in
Ultralytics' examples). hpnet: ``python -m hpnet.pose.cache``'s ``cache_videos`` (decoding in
worker processes, frames batched across videos). Prints frames/s of each and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


def naive(
    paths: list[Path], weights: str, imgsz: int, conf: float, device: str
) -> tuple[int, float]:
    from ultralytics import YOLO

    from hpnet.data.decode import open_video

    model = YOLO(weights)
    frames_done = 0
    start = time.perf_counter()
    for path in paths:
        with open_video(path) as reader:
            frames = reader.frames(list(range(reader.info.num_frames)))
        for frame in frames:
            bgr = frame.permute(1, 2, 0).numpy()[:, :, ::-1].copy()
            model.predict(bgr, imgsz=imgsz, conf=conf, device=device, verbose=False)
            frames_done += 1
    return frames_done, time.perf_counter() - start


def batched(paths: list[Path], root: Path, args: argparse.Namespace) -> tuple[int, float]:
    from hpnet.config import load_config
    from hpnet.pose.cache import cache_videos, folder_videos

    cfg = load_config(
        None,
        [
            f"pose.weights={args.weights}",
            f"pose.imgsz={args.imgsz}",
            f"pose.conf={args.conf}",
            f"pose.batch={args.batch}",
            f"pose.workers={args.workers}",
            f"pose.device={args.device}",
            f"pose.precision={args.precision}",
        ],
    )
    jobs = folder_videos(root)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        report = cache_videos(jobs, cfg, Path(out), progress=False)
        elapsed = time.perf_counter() - start
    return report.frames, elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", default="../shared/data/hmdb51_mini")
    p.add_argument("--weights", default="../shared/data/weights/yolo11n-pose.pt")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="auto")
    p.add_argument("--skip-naive", action="store_true")
    args = p.parse_args()
    from hpnet.data.records import VIDEO_EXTENSIONS

    root = Path(args.videos)
    paths = sorted(q for q in root.rglob("*") if q.suffix.lower() in VIDEO_EXTENSIONS)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, device {args.device}, {len(paths)} videos, "
        f"imgsz {args.imgsz}, batch {args.batch}, workers {args.workers}"
    )
    n, t = batched(paths, root, args)
    rows = [("hpnet cache (batched, parallel decode)", n, t)]
    if not args.skip_naive:
        n0, t0 = naive(paths, args.weights, args.imgsz, args.conf, args.device)
        rows.insert(0, ("naive: model.predict per frame", n0, t0))
    print("| path | frames | seconds | frames/s |")
    print("|---|---|---|---|")
    for name, frames, seconds in rows:
        print(f"| {name} | {frames} | {seconds:.1f} | {frames / seconds:.1f} |")
    if len(rows) == 2:
        print(f"speed-up: {(rows[1][1] / rows[1][2]) / (rows[0][1] / rows[0][2]):.2f}x")


if __name__ == "__main__":
    main()
