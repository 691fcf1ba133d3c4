"""End-to-end inference speed of ``hpnet.predict``: seconds per video, split into decode / pose /
model, for the tiny and base HP-Net.

    python bench/predict.py [--data DIR] [--sizes tiny base] [--device cpu|cuda] [--threads N]
                            [--frames 16] [--views 2] [--crops 3] [--repeats 2]
                            [--pose-track dense sampled] [--pose-stride 1]

Every video of the 7 real HMDB51 clips (``<data>/hmdb51_mini``) goes through the same
:class:`hpnet.predictor.Predictor` the command uses: decode the ``views x frames`` sampled frames
(``data.decoder=auto``: PyAV for these AVIs), YOLO11n-pose (the real weights in
``<data>/weights``; no pose cache) as ``pose.track`` says: ``dense`` (the default) on every
``pose.stride``-th frame up to the last sampled one, people tracked through them as the pose
cache does (their decoding is counted in the pose column), ``sampled`` on the distinct
sampled frames only; then the model on ``views x crops`` clips at 224 px. The
models are randomly initialised (speed does not depend on the weights) with 51 classes and
random text embeddings. One warm-up video first; the table reports the mean over the videos
of the best of ``--repeats`` passes.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

from hpnet.config import load_config
from hpnet.inference import collect_videos
from hpnet.models.hpnet import build_model
from hpnet.predictor import Predictor

REPO = Path(__file__).resolve().parents[1]
STAGES = ("decode", "pose", "model")


def build_predictor(size: str, track: str, args: argparse.Namespace, weights: Path) -> Predictor:
    """A random-weight HP-Net of ``size`` behind the predict command's Predictor, estimating
    joints with ``pose.track=track``."""
    cfg = load_config(
        REPO / "configs" / "hmdb51_fusion.yaml",
        [
            f"model.size={size}",
            "model.pretrained=",
            f"data.frames={args.frames}",
            f"eval.views={args.views}",
            f"eval.crops={args.crops}",
            f"train.device={args.device}",
            f"pose.device={args.device}",
            f"pose.weights={weights}",
            f"pose.track={track}",
            f"pose.stride={args.pose_stride}",
        ],
    )
    classes = [f"class_{i}" for i in range(51)]
    embeddings = torch.nn.functional.normalize(torch.randn(51, 512), dim=-1)
    model = build_model(cfg, classes, class_embeddings=embeddings, load_weights=False)
    return Predictor.for_model(model, cfg, uses_pose=True, pose_cache="")  # YOLO, no cache


def time_videos(predictor: Predictor, videos: list, repeats: int) -> dict[str, float]:
    """Mean seconds per video of each stage (best of ``repeats`` passes per video)."""
    predictor(videos[0], top_k=1)  # warm-up: codec, YOLO and model initialisation
    totals = dict.fromkeys(STAGES, 0.0)
    for video in videos:
        runs = [predictor(video, top_k=1)["seconds"] for _ in range(repeats)]
        best = min(runs, key=lambda s: sum(s.values()))
        for stage in STAGES:
            totals[stage] += best[stage]
    return {stage: value / len(videos) for stage, value in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--crops", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pose-track", nargs="+", default=["dense"], choices=["dense", "sampled"])
    parser.add_argument("--pose-stride", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = args.data / "weights" / "yolo11n-pose.pt"
    if not weights.is_file():
        sys.exit(f"YOLO pose weights not found at {weights} (--data)")
    videos = collect_videos([args.data / "hmdb51_mini"])
    device = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor()
    print(f"# {len(videos)} HMDB51 clips, {args.frames} frames x {args.views} views x ")
    print(f"# {args.crops} crops, device {args.device} ({device or platform.machine()}), ")
    print(f"# torch threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"# pose.stride {args.pose_stride}")
    print("| model | pose.track | decode s | pose s | model s | total s/video |")
    print("|---|---|---:|---:|---:|---:|")
    for size in args.sizes:
        for track in args.pose_track:
            predictor = build_predictor(size, track, args, weights)
            seconds = time_videos(predictor, videos, args.repeats)
            total = sum(seconds.values())
            cells = " | ".join(f"{seconds[s]:.3f}" for s in STAGES)
            print(f"| {size} | {track} | {cells} | {total:.3f} |", flush=True)


if __name__ == "__main__":
    main()
