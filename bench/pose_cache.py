"""Frames/s of the pose cache pipeline against a naive per-frame ``model.predict`` loop.

    python bench/pose_cache.py                       # the HMDB51 mini clips, real weights, CPU
    python bench/pose_cache.py --videos DIR --weights yolo11n-pose.pt --device cuda

Both run in this process on the same clips, weights, image size, thresholds and device:

- naive: PyAV decodes each video frame by frame and ``YOLO.predict(frame)`` runs once per frame
  (what a first script does; Ultralytics' default precision: fp32, fp16 only if asked).
- cache: :func:`hpnet.pose.cache.cache_videos`, the ``python -m hpnet.pose.cache`` pipeline
  (decoding in worker processes, batches across videos, person slots, npz writes), end to end
  including model load and worker start, once in fp32 (same arithmetic as the naive loop) and
  once with ``pose.precision=auto`` (fp16 on CUDA, bf16 on CPUs with AMX / AVX512-BF16).

Prints one line per measurement and a JSON summary. ``--threads`` sets torch's intra-op threads
of this process for both (default 1, so the numbers do not depend on what else the machine runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HPNET_TEST_DATA", REPO.parent / "shared" / "data"))


def naive_loop(videos: list[Path], weights: str, imgsz: int, device: str) -> tuple[int, float]:
    """Decode every frame with PyAV and call ``model.predict`` once per frame: (frames, seconds)."""
    import av
    from ultralytics import YOLO

    model = YOLO(weights, verbose=False)
    model.predict(torch.zeros(1, 3, imgsz, imgsz), device=device, verbose=False)  # load, warm up
    frames, start = 0, time.perf_counter()
    for path in videos:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                image = frame.to_ndarray(format="bgr24")
                model.predict(image, imgsz=imgsz, conf=0.25, iou=0.7, device=device, verbose=False)
                frames += 1
    return frames, time.perf_counter() - start


def cache_pipeline(
    folder: Path, weights: str, imgsz: int, device: str, precision: str, batch: int, workers: int
) -> tuple[int, float]:
    """``python -m hpnet.pose.cache --videos folder`` into a temp dir: (frames, seconds)."""
    from hpnet.config import load_config
    from hpnet.pose.cache import cache_videos, folder_videos

    overrides = [f"pose.weights={weights}", f"pose.imgsz={imgsz}", f"pose.device={device}"]
    overrides += [f"pose.precision={precision}", f"pose.batch={batch}", f"pose.workers={workers}"]
    cfg = load_config(None, overrides)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        report = cache_videos(folder_videos(folder), cfg, Path(out), progress=False)
        seconds = time.perf_counter() - start
    if report.failures:
        raise SystemExit(f"cache failures: {report.failures}")
    return report.frames, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=Path, default=DATA / "hmdb51_mini")
    parser.add_argument("--weights", default=str(DATA / "weights" / "yolo11n-pose.pt"))
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from hpnet.pose.cache import folder_videos
    from hpnet.pose.estimator import resolve_device, resolve_precision

    videos = [job.path for job in folder_videos(args.videos)]
    auto = resolve_precision("auto", resolve_device(args.device))
    print(
        f"{len(videos)} videos from {args.videos}; weights {args.weights}; imgsz {args.imgsz}; "
        f"device {args.device}; torch threads {args.threads}; {platform.processor() or ''}"
    )
    results: dict[str, dict[str, float]] = {}
    runs = [("cache fp32", "fp32"), (f"cache auto ({auto})", "auto")]
    if not args.skip_naive:
        runs.insert(0, ("naive", ""))
    for name, precision in runs:
        if precision:
            frames, seconds = cache_pipeline(
                args.videos,
                args.weights,
                args.imgsz,
                args.device,
                precision,
                args.batch,
                args.workers,
            )
        else:
            frames, seconds = naive_loop(videos, args.weights, args.imgsz, args.device)
        results[name] = {
            "frames": frames,
            "seconds": round(seconds, 2),
            "fps": round(frames / seconds, 2),
        }
        print(
            f"{name:22s} {frames:6d} frames {seconds:8.1f} s {frames / seconds:8.1f} frames/s",
            flush=True,
        )
    if "naive" in results:
        for name in results:
            if name != "naive":
                speedup = results[name]["fps"] / results["naive"]["fps"]
                results[name]["speedup_vs_naive"] = round(speedup, 2)
                print(f"{name} / naive: {speedup:.2f}x")
    json.dump({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
