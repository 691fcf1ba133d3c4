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

Prints one line per measurement (wall seconds, and CPU seconds of this process and its decoding
workers, which other jobs on a shared machine change less) and a JSON summary. ``--threads`` sets
torch's intra-op threads of this process for both (default 1, so the numbers do not depend on
what else the machine runs).
``--same-files`` then caches the videos once more with another batch make-up (``pose.batch=5``,
no workers) and counts the videos whose joints differ from the ``pose.precision=auto`` run's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HPNET_TEST_DATA", REPO.parent / "shared" / "data"))


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (decoding workers)."""
    usages = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


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
    folder: Path,
    weights: str,
    imgsz: int,
    device: str,
    precision: str,
    batch: int,
    workers: int,
    out: Path,
) -> tuple[int, float]:
    """``python -m hpnet.pose.cache --videos folder --out out``: (frames, seconds)."""
    from hpnet.config import load_config
    from hpnet.pose.cache import cache_videos
    from hpnet.pose.jobs import folder_videos

    overrides = [f"pose.weights={weights}", f"pose.imgsz={imgsz}", f"pose.device={device}"]
    overrides += [f"pose.precision={precision}", f"pose.batch={batch}", f"pose.workers={workers}"]
    cfg = load_config(None, overrides)
    start = time.perf_counter()
    report = cache_videos(folder_videos(folder), cfg, out, progress=False)
    seconds = time.perf_counter() - start
    if report.failures:
        raise SystemExit(f"cache failures: {report.failures}")
    return report.frames, seconds


def compare_caches(first: Path, second: Path) -> dict[str, float]:
    """Videos whose cached joints are not bit for bit the same, and the largest joint move (px)."""
    import numpy as np

    from hpnet.pose.store import load_joints

    files = sorted(p.relative_to(first) for p in first.rglob("*.npz"))
    differ, worst = 0, 0.0
    for rel in files:
        a, b = load_joints(first / rel), load_joints(second / rel)
        if np.array_equal(a.keypoints, b.keypoints):
            continue
        differ += 1
        seen = (a.keypoints[..., 2] > 0) & (b.keypoints[..., 2] > 0)
        scale = np.array([a.meta["width"], a.meta["height"]])
        moved = np.abs(a.keypoints[..., :2] - b.keypoints[..., :2]) * scale
        worst = max(worst, float(moved[seen].max(initial=0)))
    return {"videos": len(files), "differ": differ, "max_px": round(worst, 3)}


def measure(args: argparse.Namespace, videos: list[Path], auto: str, scratch: Path) -> dict:
    """The naive loop (unless skipped) and the cache in fp32 and auto precision: frames/s each."""
    results: dict[str, dict[str, float]] = {}
    runs = [("cache fp32", "fp32"), (f"cache auto ({auto})", "auto")]
    if not args.skip_naive:
        runs.insert(0, ("naive", ""))
    setup = (args.videos, args.weights, args.imgsz, args.device)
    for name, precision in runs:
        cpu_start = cpu_seconds()
        if precision:
            out = scratch / precision
            frames, seconds = cache_pipeline(*setup, precision, args.batch, args.workers, out)
        else:
            frames, seconds = naive_loop(videos, args.weights, args.imgsz, args.device)
        cpu = cpu_seconds() - cpu_start
        results[name] = {"frames": frames, "seconds": round(seconds, 2), "cpu_s": round(cpu, 1)}
        results[name]["fps"] = round(frames / seconds, 2)
        print(
            f"{name:22s} {frames:6d} frames {seconds:8.1f} s {frames / seconds:8.1f} frames/s "
            f"{cpu:8.1f} CPU s {1000 * cpu / frames:6.1f} CPU ms/frame",
            flush=True,
        )
    if "naive" in results:
        for name in results:
            if name != "naive":
                speedup = results[name]["fps"] / results["naive"]["fps"]
                results[name]["speedup_vs_naive"] = round(speedup, 2)
                print(f"{name} / naive: {speedup:.2f}x")
    return results


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
    parser.add_argument("--same-files", action="store_true", help="also compare batch make-ups")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from hpnet.devices import pick_device
    from hpnet.pose.estimator import resolve_precision
    from hpnet.pose.jobs import folder_videos

    videos = [job.path for job in folder_videos(args.videos)]
    auto = resolve_precision("auto", pick_device(args.device, option="--device"))
    print(
        f"{len(videos)} videos from {args.videos}; weights {args.weights}; imgsz {args.imgsz}; "
        f"device {args.device}; torch threads {args.threads}; {platform.processor() or ''}"
    )
    summary: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="pose_cache_bench_") as tmp:
        scratch = Path(tmp)
        summary["results"] = measure(args, videos, auto, scratch)
        if args.same_files:  # the auto run again, another batch make-up: the same bits?
            setup = (args.videos, args.weights, args.imgsz, args.device)
            cache_pipeline(*setup, "auto", 5, 0, scratch / "auto_batch5")
            same = compare_caches(scratch / "auto", scratch / "auto_batch5")
            print(f"batch {args.batch}, {args.workers} workers vs batch 5, no workers: {same}")
            summary["same_files"] = same
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
