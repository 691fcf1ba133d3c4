"""``python -m hpnet.predict VIDEO|FOLDER... --checkpoint run/best.pt [options] [key=value ...]``.

Top-k actions with probabilities for each video: decode the sampled frames (the training
sampler, test mode), joints from the pose cache or the YOLO pose model (run as the cache runs
it, ``pose.track``), the model over
``eval.views`` clips x ``eval.crops`` crops, softmax averaged. ``--labels`` classifies over
another label set through the model's text head. A video that cannot be read is reported and
skipped; the exit code is then 1 (0 when every video was predicted).

``--json`` prints one JSON document (schema in README.md, "Predict"); ``--overlay out.mp4``
(or ``.png`` for a strip) draws the sampled frames with the skeletons and the top 3 labels,
``--explain gradcam|activation|guided`` adds a heat map of the top label (any arch; see
:mod:`hpnet.explain`; ``--cam`` is ``--explain gradcam``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpnet.cli import CommandParser, UserError, run_cli
from hpnet.config_cli import OneConfig, add_help_config
from hpnet.explain import METHODS
from hpnet.predictor import Predictor
from hpnet.text.prompts import read_labels
from hpnet.timeline import check_smooth, check_window

__all__ = ["main"]

# data.frames=8 (also a misspelt "frames=8" or a joint entry's "data.joint.a-1.root=x": named
# as a bad key, not tried as a video), not a file name
OVERRIDE = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*=")


def split_inputs(items: Sequence[str]) -> tuple[list[str], list[str]]:
    """Positional arguments -> ``(videos, key=value overrides)``; an existing path is a video."""
    videos, overrides = [], []
    for item in items:
        is_override = OVERRIDE.match(item) and not Path(item).exists()
        (overrides if is_override else videos).append(item)
    return videos, overrides


def print_table(results: list[dict[str, Any]], top_k: int) -> None:
    """Human-readable output: per video its top-k labels with probabilities."""
    for r in results:
        if not r["ok"]:
            print(f"{r['video']}: FAILED: {r['error']}")
            continue
        timing = ", ".join(f"{stage} {t:.2f} s" for stage, t in r.get("seconds", {}).items())
        pose = f"pose: {r['pose']}; " if "pose" in r else ""
        print(f"{r['video']}  ({pose}{timing})")
        for rank, t in enumerate(r["top"][:top_k], 1):
            print(f"  {rank}. {t['label']:<28s} {100 * t['prob']:6.2f} %")
        if "window" in r:  # a timeline: the windows as run (whole grid steps)
            every = f"every {r['stride']:g} s over {r['duration']:g} s"
            print(f"  windows of {r['window']:g} s {every}")
        for seg in r.get("segments", []):
            span = f"{seg['start']:8.2f} - {seg['end']:8.2f} s"
            print(f"  {span}  {seg['label']:<28s} {100 * seg['score']:6.2f} %")
        for kind in ("overlay", "timeline"):
            if r.get(kind):
                print(f"  {kind}: {r[kind]}")


def add_video_arguments(
    parser: argparse.ArgumentParser, *, videos: str, labels: str, config: str
) -> None:
    """The arguments ``hpnet.predict`` and ``hpnet.zeroshot`` share (``videos``: nargs;
    ``config``: where the settings come from without ``--config``)."""
    parser.add_argument(
        "inputs",
        nargs=videos,
        metavar="VIDEO|FOLDER|key=value",
        help="video files or folders (searched recursively), then optional config overrides",
    )
    parser.add_argument("--config", action=OneConfig, help=f"YAML config file (default: {config})")
    add_help_config(parser)
    parser.add_argument("--top-k", type=int, default=5, help="labels shown per video (5)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--labels", help=f'{labels}, comma-separated: "wave,clap,run"')
    parser.add_argument("--labels-file", help=f"{labels}, one per line")


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m hpnet.predict", description=__doc__.split("\n")[0])
    add_video_arguments(
        parser, videos="+", labels="other labels", config="the checkpoint's own settings"
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint written by hpnet.train, or a .pt2/.onnx file of hpnet.export",
    )
    parser.add_argument("--overlay", help="write an overlay: out.mp4 (video) or out.png (strip)")
    parser.add_argument(
        "--explain",
        choices=METHODS,
        help="draw a map of the top label on the overlay: gradcam (Grad-CAM on the backbone's "
        "feature map), activation (its mean |activation|) or guided (guided backpropagation "
        "to the pixels)",
    )
    parser.add_argument(
        "--cam", action="store_true", help="same as --explain gradcam (the older name, kept)"
    )
    parser.add_argument(
        "--pose-cache",
        help="pose cache folder to look in first (default: pose.cache_dir); '' = never",
    )
    parser.add_argument(
        "--no-pose-estimation",
        action="store_true",
        help="do not run the pose model on videos without cached joints (no joints then)",
    )
    long = parser.add_argument_group("long videos: actions over time")
    long.add_argument("--window", type=float, help="score windows of this many seconds")
    long.add_argument("--stride", type=float, help="seconds between windows (window / 4)")
    long.add_argument("--smooth", type=int, default=3, help="windows averaged per score, odd (3)")
    long.add_argument("--timeline", help="draw the labels over time: out.png")
    return parser


def emit(
    results: list[dict[str, Any]],
    predictor: Predictor,
    *,
    top_k: int,
    as_json: bool,
    source: dict[str, Any],
    views: int | None = None,
) -> int:
    """Print the results (table, or one JSON document with ``source`` first); the exit code:
    1 when a video could not be read, else 0. ``views``: clips scored per video (default
    ``eval.views``; a timeline's windows are one each)."""
    failed = sum(not r["ok"] for r in results)
    if as_json:
        cfg = predictor.cfg
        document = {
            **source,
            "labels": predictor.labels,
            "top_k": min(top_k, len(predictor.labels)),  # (as many as there are)
            "frames": cfg.data.frames,
            "views": cfg.eval.views if views is None else views,
            "crops": cfg.eval.crops,
            "videos": results,
            "failed": failed,
        }
        json.dump(document, sys.stdout, indent=2)
        print()
    else:
        print_table(results, top_k)
        if failed:
            print(f"{failed} of {len(results)} videos could not be read")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    from hpnet.api import explain_method, load
    from hpnet.export import exported_format
    from hpnet.inference import check_top_k, collect_videos
    from hpnet.overlay import check_output_names

    args = _parser().parse_intermixed_args(argv)
    paths, overrides = split_inputs(args.inputs)
    check_top_k(args.top_k)
    explain = explain_method(args.explain, args.cam)
    if explain and not args.overlay:
        raise UserError(
            f"--explain {explain} draws on the overlay: add --overlay out.mp4 (or .png)"
        )
    if explain and exported_format(args.checkpoint):
        raise UserError(
            f"--explain needs the model's layers: {args.checkpoint} is exported "
            "(give the checkpoint it was exported from)"
        )
    _check_window_arguments(args)
    check_output_names(args.overlay, args.timeline, window=args.window is not None)
    collect_videos(paths)  # a missing folder or one without videos: refused before loading
    classifier = load(
        args.checkpoint,
        config=args.config,
        overrides=overrides,
        labels=read_labels(args.labels, args.labels_file),
        pose_cache=args.pose_cache,
        estimate_pose=not args.no_pose_estimation,
    )
    if args.window is not None:
        stride = _stride(args)
        results = classifier.timeline(
            paths, window=args.window, stride=stride, smooth=args.smooth, top_k=args.top_k,
            plot=args.timeline, overlay=args.overlay,
        )  # fmt: skip
    else:
        results = classifier.predict(paths, top_k=args.top_k, overlay=args.overlay, explain=explain)
    source = {"checkpoint": str(args.checkpoint)}
    views = None if args.window is None else 1  # (a timeline scores each window once)
    return emit(
        results, classifier.predictor, top_k=args.top_k, as_json=args.json, source=source,
        views=views,
    )  # fmt: skip


def _check_window_arguments(args: argparse.Namespace) -> None:
    if args.window is None:
        if args.stride is not None or args.timeline:
            raise UserError("--stride and --timeline go with --window SECONDS")
        return
    if args.cam or args.explain:
        raise UserError("--explain (--cam) draws on one clip: drop --window, or --explain")
    check_window(args.window, _stride(args))
    check_smooth(args.smooth)


def _stride(args: argparse.Namespace) -> float:
    """``--stride``, by default a quarter of ``--window``."""
    return args.stride if args.stride is not None else args.window / 4


def cli(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
