"""The model side of ``python -m hpnet.predict``: :class:`Predictor` (a model plus how its
videos are prepared: sampling, canvas, test crops, joints) and :func:`predict_videos`.

:mod:`hpnet.api` (``hpnet.load``) and the predict and zero-shot commands drive it.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpnet.cli import UserError, progress_enabled
from hpnet.config import Config, apply_overrides, config_from_dict, load_config


def overlay_paths(base: str, rels: Sequence[str], inputs: Sequence[Path] = ()) -> list[Path]:
    """``--overlay`` for one video is the file itself; with several, one file per video named
    after it (``out-golf_clip.png``), numbered when two names would clash (``out-clip-2.png``).
    One that is one of the ``inputs`` (the videos read) is refused: it would overwrite it."""
    path = Path(base)
    out = [path] if len(rels) == 1 else _per_video(path, rels)
    read = {Path(p).resolve() for p in inputs}
    for chosen in out:
        if chosen.resolve() in read:
            raise UserError(f"{base} would overwrite the input video {chosen}: name it otherwise")
    return out


def _per_video(path: Path, rels: Sequence[str]) -> list[Path]:
    """``path`` with each video's name after its stem, numbered where two would clash."""
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
    (``None``: crop the decoded frames as they are, aspect kept); the frames the model gets are
    decoded as the loader decodes them, and the pose model and the overlays get them with their
    long side at most ``max_side`` (0: the model's; :func:`~hpnet.inference.decode_for_model`);
    ``joints`` finds the joints of a video (``None``: the model gets none);
    ``reports_pose=False`` leaves the pose fields out of the results (a model that never takes
    joints).
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
        reports_pose: bool = True,
    ) -> None:
        from hpnet.devices import pick_device
        from hpnet.runtime import amp_dtype_for

        self.cfg = cfg
        self.labels = list(labels)
        self.device = pick_device(cfg.train.device)
        self.model = model.to(self.device).eval()
        self.amp_dtype = amp_dtype_for(cfg.train.amp, self.device)
        self.transform = transform
        self.canvas = canvas
        self.max_side = max_side
        self.joints = joints
        self.reports_pose = reports_pose  # False: a model without pose input (zero-shot CLIP)

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
        from hpnet.models.from_checkpoint import model_from_checkpoint

        ckpt = load_checkpoint(checkpoint)
        if config:
            cfg = load_config(config, overrides)
        else:
            cfg = apply_overrides(config_from_dict(ckpt["config"]), overrides)
        model = model_from_checkpoint(ckpt, cfg, labels, source=checkpoint)
        return cls.for_model(
            model, cfg, uses_pose=cfg.model.pose, pose_cache=pose_cache, estimate_pose=estimate_pose
        )

    @classmethod
    def for_model(
        cls,
        model: torch.nn.Module,
        cfg: Config,
        *,
        uses_pose: bool,
        pose_cache: str | None = None,
        estimate_pose: bool = True,
    ) -> Predictor:
        """A predictor around ``model`` (its ``class_names`` are the labels) that prepares videos
        as ``cfg`` trained it: the loader canvas, the test crops, joints when ``uses_pose``
        (from ``pose_cache`` or ``pose.cache_dir``, else the pose model if ``estimate_pose``;
        with ``pose.source=none`` the model trained on joints all missing, and gets the same)."""
        from hpnet.data.canvas import Canvas
        from hpnet.inference import JointFinder
        from hpnet.runtime import build_transform

        canvas = Canvas.of(cfg.data)
        joints = None
        if uses_pose and cfg.pose.source == "none":
            joints = JointFinder("", cfg.pose.persons, None)  # every joint missing
        elif uses_pose:
            cache_dir = pose_cache if pose_cache is not None else cfg.pose.cache_dir
            if pose_cache is None and cfg.pose.source == "cache":
                _warn_no_cache_folder(cache_dir, estimate_pose)
            build = partial(pose_estimator, cfg) if estimate_pose else None
            joints = JointFinder(
                cache_dir, cfg.pose.persons, build, dense_frames(cfg), pose=cfg.pose
            )
        return cls(
            model,
            model.class_names,
            cfg,
            transform=build_transform(cfg),
            canvas=canvas,
            max_side=max(cfg.pose.imgsz, *canvas.hw),
            joints=joints,
        )

    def probs(self, sampled: Any, joints: np.ndarray | None) -> torch.Tensor:
        """Class probabilities ``(C,)`` of a :class:`~hpnet.inference.SampledVideo` and its
        joints ``(V, T, P, 17, 3)`` (or None): canvas, test crops, model, softmax averaged."""
        from hpnet.inference import clip_probs

        return clip_probs(
            self.model,
            sampled,
            joints,
            transform=self.transform,
            canvas=self.canvas,
            device=self.device,
            amp_dtype=self.amp_dtype,
            crops=self.cfg.eval.crops,
        )

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def __call__(
        self,
        video: Any,
        *,
        top_k: int = 5,
        overlay: Path | None = None,
        explain: str | None = None,
    ) -> dict[str, Any]:
        """Classify one :class:`~hpnet.inference.VideoInput`; a JSON-ready result dict.

        ``overlay``: draw the first clip there, with the map of ``explain`` (a method of
        :data:`hpnet.explain.METHODS`, for the top label) when given.

        Raises :class:`~hpnet.data.decode.VideoDecodeError` when the video cannot be read.
        """
        from hpnet.inference import read_sampled
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
        probs = self.probs(sampled, joints)
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
            "explain": None,
        }
        if not self.reports_pose:
            del result["pose"], result["seconds"]["pose"]
        if overlay is not None:
            self._write_overlay(overlay, video, sampled, joints, top, explain)
            result["overlay"], result["explain"] = str(overlay), explain
        return result

    def _write_overlay(
        self,
        path: Path,
        video: Any,
        sampled: Any,
        joints: np.ndarray | None,
        top: list[dict[str, Any]],
        explain: str | None,
    ) -> None:
        """Frames of the first view with skeletons, the top-3 labels and the optional heat map
        of method ``explain`` (:mod:`hpnet.explain`) for the top label."""
        from hpnet.explain import centre_crop_cam
        from hpnet.overlay import write_clip_overlay

        heat = box = None
        if explain is not None:
            heat, box = centre_crop_cam(
                self.model,
                self.transform,
                sampled.frames[0],
                None if joints is None else joints[0],
                canvas=self.canvas,
                target=top[0]["index"],
                method=explain,
            )
        write_clip_overlay(
            path,
            sampled.shown[0],  # (the map's box is in [0, 1] of the frame: any size)
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


def dense_frames(cfg: Config) -> Any:
    """What :class:`~hpnet.inference.JointFinder` reads to run the pose model on a video as
    the pose cache runs it (``pose.track=dense``), or None (``sampled``)."""
    from hpnet.pose.frames import FrameChunks

    if cfg.pose.track != "dense":
        return None
    return partial(
        FrameChunks,
        stride=cfg.pose.stride,
        chunk=cfg.pose.batch,
        imgsz=cfg.pose.imgsz,
        backend=cfg.data.decoder,
        max_pixels=cfg.data.max_pixels,
    )


def predict_videos(
    predictor: Predictor,
    videos: Sequence[Any],
    *,
    top_k: int,
    overlay: str | None = None,
    explain: str | None = None,
) -> list[dict[str, Any]]:
    """One result per video, in input order; an unreadable video gives ``ok: false``."""
    from hpnet.data.decode import VideoDecodeError

    results = []
    rels, paths = [v.rel for v in videos], [v.path for v in videos]
    outs = overlay_paths(overlay, rels, paths) if overlay else [None] * len(videos)
    for video, out in zip(_progress(videos), outs, strict=True):
        try:
            results.append(predictor(video, top_k=top_k, overlay=out, explain=explain))
        except VideoDecodeError as err:  # reported with the results (FAILED / "ok": false)
            results.append({"video": str(video.path), "ok": False, "error": str(err)})
    return results


def _progress(videos: list) -> Any:
    from tqdm import tqdm

    return tqdm(
        videos,
        desc="predict",
        unit="video",
        disable=not progress_enabled(len(videos) > 1),
        file=sys.stderr,
    )


def _warn_no_cache_folder(cache_dir: str, estimate_pose: bool) -> None:
    """The checkpoint's ``pose.cache_dir`` (where its training read the joints) not found from
    here, e.g. a relative path and another working folder: said once, not a silent YOLO run on
    every video."""
    if cache_dir and not Path(cache_dir).expanduser().is_dir():
        instead = "estimated by the pose model" if estimate_pose else "missing (no pose model)"
        logging.getLogger(__name__).warning(
            "the checkpoint's pose cache folder %s (pose.cache_dir) is not there from %s: "
            "joints are %s; give --pose-cache DIR (pose_cache= in Python) to read them",
            cache_dir, Path.cwd(), instead,
        )  # fmt: skip
