"""``python -m hpnet.predict VIDEO|FOLDER... --checkpoint run/best.pt [options] [key=value ...]``.

Top-k actions with probabilities for each video: decode the sampled frames (the training
sampler, test mode), joints from the pose cache or the YOLO pose model, the model over
``eval.views`` clips x ``eval.crops`` crops, softmax averaged. ``--labels`` classifies over
another label set through the model's text head. A video that cannot be read is reported and
skipped; the exit code is then 1 (0 when every video was predicted).

``--json`` prints one JSON document (schema in README.md, "Predict"); ``--overlay out.mp4``
(or ``.png`` for a strip) draws the sampled frames with the skeletons and the top 3 labels,
``--cam`` adds the backbone's Grad-CAM heat map of the top label.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpnet.cli import CommandParser, UserError, run_cli
from hpnet.config import Config, apply_overrides, config_from_dict, load_config

OVERRIDE = re.compile(r"^[a-z_]+(\.[a-z_0-9]+)+=")  # data.frames=8, not a file name


def split_inputs(items: Sequence[str]) -> tuple[list[str], list[str]]:
    """Positional arguments -> ``(videos, key=value overrides)``; an existing path is a video."""
    videos, overrides = [], []
    for item in items:
        is_override = OVERRIDE.match(item) and not Path(item).exists()
        (overrides if is_override else videos).append(item)
    return videos, overrides


def read_labels(labels: str | None, labels_file: str | None) -> list[str] | None:
    """``--labels "a,b,c"`` or ``--labels-file F`` (one label per line) -> labels, or None."""
    if labels and labels_file:
        raise UserError("give --labels or --labels-file, not both")
    if labels_file:
        path = Path(labels_file).expanduser()
        if not path.is_file():
            raise UserError(f"labels file not found: {path} (--labels-file)")
        names = [line.strip() for line in path.read_text().splitlines()]
    elif labels:
        names = [name.strip() for name in labels.split(",")]
    else:
        return None
    names = [n for n in names if n]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"label {twice[0]!r} is given twice (--labels/--labels-file)")
    if len(names) < 2:
        raise UserError(f"need at least 2 labels, got {names} (--labels/--labels-file)")
    return names


def overlay_paths(base: str, rels: Sequence[str]) -> list[Path]:
    """``--overlay`` for one video is the file itself; with several, one file per video named
    after it (``out-golf_clip.png``), numbered when two names would clash (``out-clip-2.png``)."""
    path = Path(base)
    if len(rels) == 1:
        return [path]
    out: list[Path] = []
    for rel in rels:
        stem = re.sub(r"[^\w.-]+", "_", Path(rel).with_suffix("").as_posix())
        name, n = f"{path.stem}-{stem}", 1
        while path.with_name(f"{name}{path.suffix}") in out:
            n += 1
            name = f"{path.stem}-{stem}-{n}"
        out.append(path.with_name(f"{name}{path.suffix}"))
    return out


class Predictor:
    """A model ready to classify video files one at a time (see :meth:`__call__`).

    Build it from a training checkpoint with :meth:`from_checkpoint`; ``hpnet.zeroshot``
    builds one around a frozen CLIP. ``canvas`` is the loader's canvas before the test crops
    (``None``: crop the decoded frames as they are, aspect kept); frames are decoded with their
    long side at most ``max_side`` (0: straight at the canvas's scaled size); ``joints`` finds
    the joints of a video (``None``: the model gets none).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        labels: Sequence[str],
        cfg: Config,
        *,
        transform: Any,
        canvas: Any,
        max_side: int,
        joints: Any = None,
    ) -> None:
        from hpnet.runtime import amp_dtype_for, pick_device

        self.cfg = cfg
        self.labels = list(labels)
        self.device = pick_device(cfg.train.device)
        self.model = model.to(self.device).eval()
        self.amp_dtype = amp_dtype_for(cfg.train.amp, self.device)
        self.transform = transform
        self.canvas = canvas
        self.max_side = max_side
        self.joints = joints

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str,
        *,
        config: str | None = None,
        overrides: Sequence[str] = (),
        labels: Sequence[str] | None = None,
        pose_cache: str | None = None,
        estimate_pose: bool = True,
    ) -> Predictor:
        """The trained model of ``checkpoint`` with its own config (or ``config``) plus
        ``overrides``; ``labels`` other than the trained ones go through the text head."""
        from hpnet.checkpoint import load_checkpoint
        from hpnet.data.canvas import Canvas
        from hpnet.inference import JointFinder
        from hpnet.models.hpnet import model_from_checkpoint
        from hpnet.runtime import build_transform, pick_device

        ckpt = load_checkpoint(checkpoint)
        if config:
            cfg = load_config(config, overrides)
        else:
            cfg = apply_overrides(config_from_dict(ckpt["config"]), overrides)
        model = model_from_checkpoint(ckpt, cfg, labels, source=checkpoint)
        canvas = Canvas.of(cfg.data)
        joints = None
        if cfg.model.pose and cfg.pose.source != "none":
            cache_dir = pose_cache if pose_cache is not None else cfg.pose.cache_dir
            build = partial(pose_estimator, cfg) if estimate_pose else None
            joints = JointFinder(cache_dir, cfg.pose.persons, build)
        return cls(
            model,
            model.class_names,
            cfg,
            transform=build_transform(cfg, pick_device(cfg.train.device)),
            canvas=canvas,
            max_side=max(cfg.pose.imgsz, *canvas.hw),
            joints=joints,
        )

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def __call__(
        self, video: Any, *, top_k: int = 5, overlay: Path | None = None, cam: bool = False
    ) -> dict[str, Any]:
        """Classify one :class:`~hpnet.inference.VideoInput`; a JSON-ready result dict.

        Raises :class:`~hpnet.data.decode.VideoDecodeError` when the video cannot be read.
        """
        from hpnet.inference import clip_probs, read_sampled
        from hpnet.inference import top_k as best

        e = self.cfg.eval
        t0 = self._sync()
        sampled = read_sampled(
            video.path,
            frames=self.cfg.data.frames,
            views=e.views,
            max_side=self.max_side,
            backend=self.cfg.data.decoder,
            max_pixels=self.cfg.data.max_pixels,
            canvas=self.canvas,
        )
        t1 = self._sync()
        joints, pose_from = self.joints(video, sampled) if self.joints else (None, "none")
        t2 = self._sync()
        probs = clip_probs(
            self.model,
            sampled,
            joints,
            transform=self.transform,
            canvas=self.canvas,
            device=self.device,
            amp_dtype=self.amp_dtype,
            crops=e.crops,
        )
        t3 = self._sync()
        top = best(probs, self.labels, top_k)
        result: dict[str, Any] = {
            "video": str(video.path),
            "ok": True,
            "top": top,
            "pose": pose_from,
            "num_frames": sampled.info.num_frames,
            "frame_indices": sampled.indices.tolist(),
            "seconds": {
                "decode": round(t1 - t0, 4),
                "pose": round(t2 - t1, 4),
                "model": round(t3 - t2, 4),
            },
            "overlay": None,
        }
        if overlay is not None:
            self._write_overlay(overlay, video, sampled, joints, top, cam)
            result["overlay"] = str(overlay)
        return result

    def _write_overlay(
        self,
        path: Path,
        video: Any,
        sampled: Any,
        joints: np.ndarray | None,
        top: list[dict[str, Any]],
        cam: bool,
    ) -> None:
        """Frames of the first view with skeletons, the top-3 labels and the optional heat map."""
        from hpnet.explain import centre_crop_cam
        from hpnet.overlay import write_clip_overlay

        heat = box = None
        if cam:
            heat, box = centre_crop_cam(
                self.model,
                self.transform,
                sampled.frames[0],
                None if joints is None else joints[0],
                canvas=self.canvas,
                target=top[0]["index"],
            )
        write_clip_overlay(
            path,
            sampled.frames[0],
            sampled.indices[0],
            None if joints is None else joints[0],
            top,
            title=video.rel,
            heat=heat,
            heat_box=box,
        )


def pose_estimator(cfg: Config) -> Any:
    """The YOLO pose model of ``cfg.pose`` (built when a video has no cached joints)."""
    from hpnet.pose.estimator import PoseEstimator

    p = cfg.pose
    return PoseEstimator(
        p.weights, imgsz=p.imgsz, conf=p.conf, iou=p.iou, device=p.device, precision=p.precision
    )


def print_table(results: list[dict[str, Any]], top_k: int) -> None:
    """Human-readable output: per video its top-k labels with probabilities."""
    for r in results:
        if not r["ok"]:
            print(f"{r['video']}: FAILED: {r['error']}")
            continue
        s = r["seconds"]
        timing = f"decode {s['decode']:.2f} s, pose {s['pose']:.2f} s, model {s['model']:.2f} s"
        print(f"{r['video']}  (pose: {r['pose']}; {timing})")
        for rank, t in enumerate(r["top"][:top_k], 1):
            print(f"  {rank}. {t['label']:<28s} {100 * t['prob']:6.2f} %")
        if r["overlay"]:
            print(f"  overlay: {r['overlay']}")


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
    parser.add_argument("--config", help=f"YAML config file (default: {config})")
    parser.add_argument("--top-k", type=int, default=5, help="labels shown per video (5)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--labels", help=f'{labels}, comma-separated: "wave,clap,run"')
    parser.add_argument("--labels-file", help=f"{labels}, one per line")


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m hpnet.predict", description=__doc__.split("\n")[0])
    add_video_arguments(
        parser, videos="+", labels="other labels", config="the checkpoint's own settings"
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by hpnet.train")
    parser.add_argument("--overlay", help="write an overlay: out.mp4 (video) or out.png (strip)")
    parser.add_argument("--cam", action="store_true", help="draw Grad-CAM on the overlay")
    parser.add_argument(
        "--pose-cache",
        help="pose cache folder to look in first (default: pose.cache_dir); '' = never",
    )
    parser.add_argument(
        "--no-pose-estimation",
        action="store_true",
        help="do not run the pose model on videos without cached joints (no joints then)",
    )
    return parser


def predict_videos(
    predictor: Predictor,
    videos: Sequence[Any],
    *,
    top_k: int,
    overlay: str | None = None,
    cam: bool = False,
) -> list[dict[str, Any]]:
    """One result per video, in input order; an unreadable video gives ``ok: false``."""
    from hpnet.data.decode import VideoDecodeError

    results = []
    outs = overlay_paths(overlay, [v.rel for v in videos]) if overlay else [None] * len(videos)
    for video, out in zip(_progress(videos), outs, strict=True):
        try:
            results.append(predictor(video, top_k=top_k, overlay=out, cam=cam))
        except VideoDecodeError as err:  # reported with the results (FAILED / "ok": false)
            results.append({"video": str(video.path), "ok": False, "error": str(err)})
    return results


def emit(
    results: list[dict[str, Any]],
    predictor: Predictor,
    *,
    top_k: int,
    as_json: bool,
    source: dict[str, Any],
) -> int:
    """Print the results (table, or one JSON document with ``source`` first); the exit code:
    1 when a video could not be read, else 0."""
    failed = sum(not r["ok"] for r in results)
    if as_json:
        cfg = predictor.cfg
        document = {
            **source,
            "labels": predictor.labels,
            "top_k": top_k,
            "frames": cfg.data.frames,
            "views": cfg.eval.views,
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
    from hpnet.inference import collect_videos

    args = _parser().parse_intermixed_args(argv)
    paths, overrides = split_inputs(args.inputs)
    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {args.top_k}")
    if args.cam and not args.overlay:
        raise UserError("--cam draws on the overlay: add --overlay out.mp4 (or out.png)")
    if args.overlay:
        from hpnet.overlay import OVERLAY_FORMATS, is_overlay_format

        if not is_overlay_format(args.overlay):
            formats = ", ".join(OVERLAY_FORMATS)
            raise UserError(f"--overlay {args.overlay}: name it with one of {formats}")
    videos = collect_videos(paths)
    predictor = Predictor.from_checkpoint(
        args.checkpoint,
        config=args.config,
        overrides=overrides,
        labels=read_labels(args.labels, args.labels_file),
        pose_cache=args.pose_cache,
        estimate_pose=not args.no_pose_estimation,
    )
    arch = predictor.cfg.model.arch
    if args.cam and arch != "lsvit":
        raise UserError(f"--cam draws LS-ViT's Grad-CAM; this checkpoint is model.arch={arch}")
    results = predict_videos(
        predictor, videos, top_k=args.top_k, overlay=args.overlay, cam=args.cam
    )
    source = {"checkpoint": str(args.checkpoint)}
    return emit(results, predictor, top_k=args.top_k, as_json=args.json, source=source)


def _progress(videos: list) -> Any:
    from tqdm import tqdm

    return tqdm(videos, desc="predict", unit="video", disable=len(videos) < 2, file=sys.stderr)


def cli(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
