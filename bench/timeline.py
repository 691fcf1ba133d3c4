"""Long-video speed and memory: ``predict --window`` on a multi-minute video made of real clips.

    python bench/timeline.py [--minutes 5] [--size tiny|base] [--device cpu|cuda] [--no-pose]
                             [--window 2] [--stride 0.5] [--threads N]

Makes (once, in ``--work``; an existing ``long_<minutes>min.mp4`` there is reused) a
``--minutes`` long 30 fps 320x240 H.264 video by concatenating the real HMDB51 clips of
``<data>/hmdb51_mini`` (re-timed to 30 fps, looped), then scores it with
:meth:`hpnet.api.Classifier.timeline` (random-weight HP-Net at the recipe's input of that size,
the real YOLO11n-pose weights for joints unless ``--no-pose``). Prints seconds of compute per
second of video (<= 1 is real time), the distinct frames decoded, and the process's peak
RSS; run it with two lengths to see that memory does not grow with the video.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "tiny": ["data.frames=8", "data.size=112", "data.load_size=128", "model.size=tiny"],
    "base": [],
}


def make_video(clips: list[Path], out: Path, minutes: float) -> Path:
    """Concatenate ``clips`` (scaled to 320x240, 30 fps) in a loop until ``minutes`` long."""
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{c.resolve()}'\n" for c in clips * 200))
    cmd = [
        "ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
        "-t", str(minutes * 60), "-vf", "scale=320:240,fps=30", "-c:v", "libx264", "-preset",
        "veryfast", "-crf", "23", "-an", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return out


def build(size: str, args: argparse.Namespace, weights: Path):
    from hpnet.api import Classifier
    from hpnet.config import load_config
    from hpnet.models.hpnet import build_model
    from hpnet.predictor import Predictor

    overrides = [
        "model.pretrained=", "text.pretrained=", f"train.device={args.device}",
        f"pose.device={args.device}", f"pose.weights={weights}", "eval.crops=1", "pose.cache_dir=",
        *SETTINGS[size], *(["model.pose=false"] if args.no_pose else []),
    ]  # fmt: skip
    cfg = load_config(REPO / "configs" / "hmdb51_fusion.yaml", overrides)
    classes = [f"class_{i}" for i in range(51)]
    embeddings = F.normalize(torch.randn(51, 512), dim=-1)
    model = build_model(cfg, classes, class_embeddings=embeddings, load_weights=False)
    predictor = Predictor.for_model(model, cfg, uses_pose=not args.no_pose, pose_cache="")
    return Classifier(predictor, f"random {size}"), cfg


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "hpnet_timeline")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--size", default="tiny", choices=sorted(SETTINGS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-pose", action="store_true")
    p.add_argument("--window", type=float, default=2.0)
    p.add_argument("--stride", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = args.data / "weights" / "yolo11n-pose.pt"
    if not args.no_pose and not weights.is_file():
        sys.exit(f"YOLO weights not found under {args.data} (--data), or give --no-pose")
    args.work.mkdir(parents=True, exist_ok=True)
    video = args.work / f"long_{args.minutes:g}min.mp4"
    if not video.is_file():
        clips = sorted((args.data / "hmdb51_mini").glob("*/*.avi"))
        if not clips:
            sys.exit(f"no real clips under {args.data / 'hmdb51_mini'} (--data) to make {video}")
        make_video(clips, video, args.minutes)
    clf, cfg = build(args.size, args, weights)
    warm = args.work / "warm_up.mp4"  # first-call set-up (allocator, kernels) is not timed
    if not warm.is_file():
        make_video(sorted((args.data / "hmdb51_mini").glob("*/*.avi"))[:1], warm, 0.1)
    clf.timeline(warm, window=args.window, stride=args.stride)
    start = time.perf_counter()
    result = clf.timeline(video, window=args.window, stride=args.stride)
    seconds = time.perf_counter() - start
    length = result["num_frames"] / 30.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # GiB (Linux: KiB)
    pose = "no pose" if args.no_pose else "YOLO11n-pose joints"
    print(f"# {video.name}: {length:.0f} s, {result['num_frames']} frames; {args.size} HP-Net "
          f"T={cfg.data.frames} {cfg.data.size}px, {pose}, device {args.device}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print("| video | windows | frames decoded | wall (s) | s per video s | peak RSS (GiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| {args.minutes:g} min | {len(result['windows'])} | {result['frames_decoded']} | "
        f"{seconds:.0f} | {seconds / length:.2f} | {peak:.2f} |"
    )


if __name__ == "__main__":
    main()
