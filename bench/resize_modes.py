"""Which way onto the loader canvas: ``data.resize`` = crop, pad or stretch?

    python bench/resize_modes.py train [--modes crop,pad,stretch] [key=value ...]
    python bench/resize_modes.py joints --videos ../shared/data/hmdb51_mini ../shared/data/videos

``train``: the demo (configs/demo.yaml) with a 4:3 canvas (``data.aspect=1.3333``: the
rendered square frames must be cropped, padded or stretched to it, as a 16:9 clip on the
default canvas), one run per mode, same seed and budget; prints test top-1 per mode.

``joints``: on real clips, YOLO joints of ``--frames`` frames per video (the frame as decoded,
aspect kept), then per mode on the default 256 x 341 canvas: the share of the confident joints
that stay on the canvas, the share of the canvas that is picture, and how many canvas pixels
the tallest person spans (the detail the model sees). No training: the real clips in
``../shared/data`` are one per class, too few to compare accuracies.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from hpnet.data.canvas import Canvas, fit_joints, loader_canvas
from hpnet.data.decode import open_video
from hpnet.data.records import videos_under
from hpnet.data.sampling import sample_frame_indices

MODES = ("crop", "pad", "stretch")


def train(args: argparse.Namespace) -> None:
    from hpnet.train import main as train_main

    rows = []
    for mode in args.modes.split(","):
        out = Path(args.out) / mode
        start = time.perf_counter()
        train_main(
            [
                "--config",
                args.config,
                "data.aspect=1.3333",
                f"data.resize={mode}",
                f"train.out_dir={out}",
                "train.resume=auto",
                "train.eval_every=0",
                *args.extra,
            ]
        )
        report = json.loads((out / "eval.json").read_text())
        rows.append((mode, report["top1"], report["mean_class_acc"], time.perf_counter() - start))
        print(f"## {mode}: top-1 {100 * report['top1']:.1f} %", flush=True)
    print("\n| data.resize | test top-1 | mean class acc | wall (s) |\n|---|---:|---:|---:|")
    for mode, top1, mca, wall in rows:
        print(f"| {mode} | {100 * top1:.1f} % | {100 * mca:.1f} % | {wall:.0f} |")


def joints(args: argparse.Namespace) -> None:
    from hpnet.pose.estimator import PoseEstimator

    estimator = PoseEstimator(args.weights, imgsz=640)
    canvases = {m: Canvas(loader_canvas(224), m) for m in args.modes.split(",")}
    kept = {m: [] for m in canvases}
    filled = {m: [] for m in canvases}
    person_px = {m: [] for m in canvases}
    shapes = []
    for video in [v for folder in args.videos for v in videos_under(Path(folder))]:
        with open_video(video) as reader:
            info = reader.info
            indices = sample_frame_indices(info.num_frames, args.frames, train=False)[0]
            frames = reader.frames(indices)
        shapes.append(f"{info.width}x{info.height}")
        found = torch.from_numpy(estimator(frames, persons=2))  # (T, P, 17, 3)
        seen = found[..., 2] > 0
        for mode, canvas in canvases.items():
            placement = canvas.place((info.height, info.width))
            moved = fit_joints(found, placement)
            kept[mode].append(float((moved[..., 2] > 0)[seen].float().mean()) if seen.any() else 1)
            (sh, sw), (ch, cw) = placement.scaled_hw, placement.canvas_hw
            filled[mode].append(min(sh, ch) * min(sw, cw) / (ch * cw))
            ys = found[..., 1].masked_fill(~seen, float("nan"))
            span = (ys.nan_to_num(-1).amax(-1) - ys.nan_to_num(2).amin(-1)).clamp(min=0)
            person_px[mode].append(float(span.amax()) * sh)
    print(f"{len(shapes)} videos ({', '.join(sorted(set(shapes)))}), {args.frames} frames each\n")
    print("| data.resize | confident joints kept | canvas that is picture | tallest person (px) |")
    print("|---|---:|---:|---:|")
    for mode in canvases:
        print(
            f"| {mode} | {100 * statistics.mean(kept[mode]):.1f} % (min "
            f"{100 * min(kept[mode]):.1f} %) | {100 * statistics.mean(filled[mode]):.1f} % | "
            f"{np.median(person_px[mode]):.0f} (median) |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("train", "joints"))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--out", default="runs/resize_modes")
    p.add_argument("--videos", nargs="+", default=["../shared/data/hmdb51_mini"])
    p.add_argument("--weights", default="../shared/data/weights/yolo11n-pose.pt")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("extra", nargs="*", help="more key=value overrides for every training run")
    args = p.parse_intermixed_args()
    train(args) if args.what == "train" else joints(args)


if __name__ == "__main__":
    main()
