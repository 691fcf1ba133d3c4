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
from collections.abc import Sequence

from hpnet.cli import CommandParser, UserError, run_cli
from hpnet.distributed import refuse_torchrun
from hpnet.explain import METHODS
from hpnet.text.prompts import read_labels
from hpnet.timeline import CLI_NAMES, check_smooth, check_window
from hpnet.video_cli import add_video_arguments, emit, split_inputs

__all__ = ["main"]


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
    long.add_argument("--smooth", type=int, help="windows averaged per score, odd (default 3)")
    long.add_argument("--timeline", help="draw the labels over time: out.png")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from hpnet.api import explain_method, load
    from hpnet.exported import exported_format
    from hpnet.inference import check_top_k, collect_videos
    from hpnet.overlay import check_output_names

    args = _parser().parse_intermixed_args(argv)
    refuse_torchrun("python -m hpnet.predict")
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
            plot=args.timeline, overlay=args.overlay, _names=CLI_NAMES,
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
        if args.stride is not None or args.timeline or args.smooth is not None:
            raise UserError("--stride, --smooth and --timeline go with --window SECONDS")
        return
    if args.smooth is None:
        args.smooth = 3
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
