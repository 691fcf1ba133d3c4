"""The Python API: ``clf = hpnet.load("runs/x/best.pt"); clf.predict("clip.mp4")``.

:func:`load` opens a training checkpoint (with its own config, or another config file, plus
``key=value`` overrides; ``labels`` for an open vocabulary through the text head) or a file of
:mod:`hpnet.export` (``.pt2``/``.onnx``, run on the CPU). The :class:`Classifier` it returns
prepares videos exactly as ``python -m hpnet.predict`` does, because that command is built on
it: the same sampling, canvas, test crops, joints (pose cache, else the YOLO pose model) and
softmax averaged over views x crops::

    import hpnet
    clf = hpnet.load("runs/x/best.pt", device="cuda")
    clf.predict("clip.mp4")              # one result dict: {"top": [...], "ok": True, ...}
    clf.predict(["a.mp4", "clips/"])     # a list, one per video found (folders searched)
    clf.predict_tensor(frames)           # uint8 (T, 3, H, W) already in memory
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpnet.cli import UserError, missing
from hpnet.exported import exported_format
from hpnet.pose.skeleton import check_joint_values


class Classifier:
    """A trained model that classifies videos (build it with :func:`load`)."""

    def __init__(self, predictor: Any, source: str) -> None:
        from hpnet.devices import pick_device
        from hpnet.pose.estimator import local_weights

        self.predictor = predictor  # hpnet.predictor.Predictor: model, config, transforms, joints
        self.source = source
        joints = predictor.joints
        if joints is not None and joints.can_estimate:  # (its model is built on first use:
            pose = predictor.cfg.pose  # what would stop it is said now, not at a predict)
            pick_device(pose.device, option="pose.device")
            local_weights(pose.weights)  # (a path not there; a name is Ultralytics' to find)

    @property
    def labels(self) -> list[str]:
        return list(self.predictor.labels)

    @property
    def cfg(self) -> Any:
        return self.predictor.cfg

    def predict(
        self,
        videos: str | Path | Sequence[str | Path],
        *,
        top_k: int = 5,
        overlay: str | None = None,
        explain: str | None = None,
        cam: bool = False,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Classify a video file (-> one result dict) or several files and folders (-> a list,
        one per video, in order). A result holds ``top`` (``[{"label", "index", "prob"}]``, best
        first), ``ok``, the sampled ``frame_indices``, where the joints came from and the
        seconds per stage; a video that cannot be read gives ``{"ok": False, "error": ...}``.
        ``overlay``/``explain`` (``gradcam``, ``activation`` or ``guided``, any arch): as
        ``hpnet.predict --overlay/--explain``; ``cam=True`` is ``explain="gradcam"``."""
        from hpnet.inference import check_top_k
        from hpnet.overlay import check_output_names
        from hpnet.predictor import predict_videos

        check_top_k(top_k, "top_k")
        explain = explain_method(explain, cam)
        if explain and not overlay:
            raise UserError(f"explain={explain!r} draws on the overlay: give overlay='out.png'")
        if explain and not hasattr(self.predictor.model, "backbone"):
            raise UserError(f"--explain needs the model's layers: {self.source} is exported")
        check_output_names(overlay, names=API_NAMES)
        one, found = _collect(videos)
        results = predict_videos(
            self.predictor, found, top_k=top_k, overlay=overlay, explain=explain
        )
        return results[0] if one else results

    def timeline(
        self,
        videos: str | Path | Sequence[str | Path],
        *,
        window: float = 2.0,
        stride: float | None = None,
        smooth: int = 3,
        top_k: int = 5,
        plot: str | None = None,
        overlay: str | None = None,
        _names: tuple[str, ...] = ("window=", "stride=", "smooth="),
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Actions along a long video (or each of several): windows of ``window`` seconds every
        ``stride`` seconds (by default a quarter of the window, as ``--stride``), scores
        smoothed over ``smooth`` windows, cut into segments (:mod:`hpnet.timeline`). A result
        holds ``windows`` (``[{"start", "end", "top"}]``), ``segments`` (``[{"label", "start",
        "end", "score"}]``), ``top`` (the mean over the windows), ``num_frames``, ``duration``,
        the ``window`` and ``stride`` as run (seconds, whole steps of the window /
        ``data.frames``), ``frames_decoded`` and ``pose`` (where the joints came from: cache,
        estimated or none); ``plot``: a PNG of the label track, ``overlay``: the video
        (.mp4/.mkv/.avi) with the label of the moment on every frame (one file per video, named
        as ``--overlay`` names them). (``_names``: how messages name the options; the
        predict command's ``--window``.)"""
        from hpnet.data.decode import VideoDecodeError
        from hpnet.inference import check_top_k
        from hpnet.overlay import check_output_names
        from hpnet.predictor import overlay_paths
        from hpnet.timeline import check_smooth, check_window, score_timeline, warn_stride_gap
        from hpnet.timeline_plot import write_timeline_png, write_timeline_video

        check_top_k(top_k, "top_k")
        stride = window / 4 if stride is None else stride
        check_window(window, stride, _names)
        check_smooth(smooth, _names)
        warn_stride_gap(window, stride, self.predictor.cfg.data.frames)
        check_output_names(overlay, plot, window=True, names=API_NAMES)
        one, found = _collect(videos)
        rels, paths = [v.rel for v in found], [v.path for v in found]
        plots = overlay_paths(plot, rels, paths) if plot else [None] * len(found)
        videos_out = overlay_paths(overlay, rels, paths) if overlay else [None] * len(found)
        results = []
        for video, out, video_out in zip(found, plots, videos_out, strict=True):
            start = time.perf_counter()
            try:  # the overlay reads every frame: a damaged one may show only there
                t = score_timeline(
                    self.predictor, video, window=window, stride=stride, smooth=smooth,
                    top_k=top_k, thumbnails=8 if out else 0, names=_names,
                )  # fmt: skip
                if out is not None:
                    write_timeline_png(out, t, title=video.rel)
                if video_out is not None:
                    write_timeline_video(video_out, video.path, t, backend=self.cfg.data.decoder)
            except VideoDecodeError as err:
                results.append({"video": str(video.path), "ok": False, "error": str(err)})
                continue
            seconds = time.perf_counter() - start
            results.append(self._timeline_result(video.path, t, top_k, seconds, out, video_out))
        return results[0] if one else results

    def _timeline_result(
        self,
        path: Path,
        t: dict[str, Any],
        top_k: int,
        seconds: float,
        plot: Path | None,
        video: Path | None,
    ) -> dict[str, Any]:
        """What :meth:`timeline` returns for one video from its
        :func:`~hpnet.timeline.score_timeline` result ``t`` (``seconds``: the time it took;
        ``plot`` / ``video``: the files written, or None)."""
        from hpnet.inference import top_k as best

        plan = t["plan"]
        result = {
            "video": str(path),
            "ok": True,
            "top": best(t["mean_probs"], self.labels, top_k),
            "num_frames": plan.num_frames,
            "duration": round(plan.duration, 3),
            "window": round(plan.frames * plan.step, 4),  # as run: whole grid steps
            "stride": round(plan.stride * plan.step, 4),
            "frames_decoded": t["num_decoded"],
            "windows": t["windows"],
            "segments": t["segments"],
            "seconds": {"total": round(seconds, 4)},
            "timeline": str(plot) if plot else None,
            "overlay": str(video) if video else None,
        }
        if t["pose"] is not None and self.predictor.reports_pose:
            result["pose"] = t["pose"]
        return result

    def predict_tensor(
        self,
        video: torch.Tensor,
        joints: torch.Tensor | np.ndarray | None = None,
        *,
        top_k: int = 5,
    ) -> dict[str, Any]:
        """Classify frames already in memory: uint8 ``(T, 3, H, W)`` (one clip) or ``(V, T, 3,
        H, W)`` (V clips, averaged), T = ``data.frames``, any H x W (the canvas and the test
        crops are applied). ``joints``: ``(V, T, P, 17, 3)`` (or ``(T, P, 17, 3)`` for one clip)
        in [0, 1] of the frame; None = estimated with the pose model on these frames when the
        model uses pose (there is no file to track people through at ``pose.track=dense``; all
        missing without a pose model, or with ``pose.source=none``). Returns
        ``{"top": [...], "probs": [C floats]}``."""
        from hpnet.inference import SampledVideo, check_top_k
        from hpnet.inference import top_k as best

        check_top_k(top_k, "top_k")
        p = self.predictor
        video = torch.as_tensor(video)  # (a numpy array too)
        frames = video[None] if video.dim() == 4 else video
        t = p.cfg.data.frames
        if (
            frames.dim() != 5
            or frames.shape[1:3] != (t, 3)
            or frames.dtype != torch.uint8
            or not len(frames)
        ):
            raise ValueError(
                f"video must be uint8 (T, 3, H, W) or (V, T, 3, H, W) with T = {t} "
                f"(data.frames), got {frames.dtype} {tuple(video.shape)}"
            )
        v = frames.shape[0]
        sampled = SampledVideo(frames.cpu(), np.arange(v * t).reshape(v, t), info=None)  # type: ignore[arg-type]
        if joints is not None:
            given = torch.as_tensor(joints, dtype=torch.float32).detach().cpu()
            joints = (given[None] if given.dim() == 4 else given).numpy()
            if joints.ndim != 5 or joints.shape[:2] != (v, t) or joints.shape[-2:] != (17, 3):
                wanted = f"({t}, P, 17, 3) or " if v == 1 else ""  # one clip's: V clips' differ
                raise ValueError(
                    f"joints must be {wanted}({v}, {t}, P, 17, 3) for this video of {v} "
                    f"clip(s) of {t} frames, got {tuple(given.shape)}"
                )
            check_joint_values(joints)
        elif p.joints is not None:  # as predict() at pose.track=sampled
            joints, _ = p.joints.from_frames(sampled)
        probs = p.probs(sampled, joints)
        return {"top": best(probs, self.labels, top_k), "probs": probs.tolist()}

    def __repr__(self) -> str:
        return f"Classifier({self.source!r}, {len(self.labels)} labels)"


API_NAMES = ("overlay=", "plot=")  # as check_output_names calls them in the API's messages


def explain_method(explain: str | None, cam: bool) -> str | None:
    """The method of ``--explain`` / ``explain=`` with ``--cam`` / ``cam=True`` (its older name
    for ``gradcam``) folded in; None: no map."""
    from hpnet.explain import check_method

    if cam and explain not in (None, "gradcam"):
        raise UserError(f"--cam is --explain gradcam: drop --cam or --explain {explain}")
    if cam:
        return "gradcam"
    return None if explain is None else check_method(explain)


def _collect(videos: str | Path | Sequence[str | Path]) -> tuple[bool, list[Any]]:
    """``(one, inputs)``: whether ``videos`` names one file (the caller returns one result, not
    a list) and the video inputs it names (folders searched)."""
    from hpnet.inference import collect_videos

    if isinstance(videos, bytes | bytearray):  # (iterated, they are numbers)
        raise TypeError(f"videos must be a path (str or Path) or a list of them, got {videos!r}")
    if isinstance(videos, str | Path):
        return not Path(videos).is_dir(), collect_videos([videos])
    return False, collect_videos(list(videos))


def load(
    path: str | Path,
    *,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    device: str | None = None,
    labels: Sequence[str] | None = None,
    pose_cache: str | None = None,
    estimate_pose: bool = True,
) -> Classifier:
    """A :class:`Classifier` from a checkpoint of ``hpnet.train`` or an exported file.

    Args:
        config: a config file instead of the checkpoint's own (checkpoints only).
        overrides: ``key=value`` config overrides (e.g. ``eval.views=1``).
        device: ``cpu``, ``cuda`` or ``auto`` for the model and the pose model
            (``train.device`` and ``pose.device``; default: the config's).
        labels: classify over these labels through the text head (checkpoints only; an exported
            file has its labels baked in).
        pose_cache: a pose cache folder to look in first ('' = never; default ``pose.cache_dir``);
            one given that is not a folder is refused.
        estimate_pose: run the pose model on videos without cached joints.
    """
    from hpnet.config import overrides_key
    from hpnet.devices import pick_device
    from hpnet.predictor import Predictor

    path = Path(path)
    if isinstance(overrides, str):  # (each character would be read as an override)
        raise UserError(f"overrides must be a list of 'key=value' strings, e.g. [{overrides!r}]")
    if device:
        pick_device(device, option="device")  # a missing GPU said as the API's argument
    _check_pose_cache(pose_cache)
    if device:  # the pose model too, unless the overrides place it
        pose = [] if overrides_key(overrides, "pose.device") else [f"pose.device={device}"]
        overrides = [*overrides, f"train.device={device}", *pose]
    if exported_format(path):
        if labels is not None or config is not None:
            raise UserError(
                f"{path} is an exported model: its labels and config are baked in "
                "(drop labels/config, or load the checkpoint it was exported from)"
            )
        return _load_exported(path, overrides, pose_cache, estimate_pose)
    predictor = Predictor.from_checkpoint(
        str(path),
        config=str(config) if config else None,
        overrides=overrides,
        labels=labels,
        pose_cache=pose_cache,
        estimate_pose=estimate_pose,
    )
    return Classifier(predictor, str(path))


def _check_pose_cache(folder: str | None) -> None:
    """A pose cache folder given (``--pose-cache``, ``pose_cache=``) that is missing or a file
    would silently mean no cached joints: a one-line :class:`UserError` instead."""
    if not folder or Path(folder).is_dir():
        return
    raise UserError(
        f"pose cache folder {missing(folder, folder=True)}: {folder} (give the --out folder of "
        "python -m hpnet.pose.cache, or '' to use no cache)"
    )


def _load_exported(
    path: Path, overrides: Sequence[str], pose_cache: str | None, estimate_pose: bool
) -> Classifier:
    from hpnet.config import apply_overrides, config_from_dict
    from hpnet.exported import ExportedModule, load_exported
    from hpnet.predictor import Predictor

    exported = load_exported(path)
    baked = config_from_dict(exported.meta["config"])
    baked.train.device = "cpu"  # whatever it trained on: only an override here may say cuda
    cfg = apply_overrides(baked, overrides)
    meta, d = exported.meta, cfg.data
    shape = {"data.frames": meta["frames"], "data.size": meta["size"]}
    shape["pose.persons"] = meta["persons"] if meta["uses_pose"] else cfg.pose.persons
    asked = {"data.frames": d.frames, "data.size": d.size, "pose.persons": cfg.pose.persons}
    changed = [f"{k}={asked[k]} (it takes {v})" for k, v in shape.items() if asked[k] != v]
    if changed:
        raise UserError(
            f"{path}: an exported model's input shape is fixed, not {', '.join(changed)}: drop "
            "those overrides, or export the checkpoint again with them"
        )
    if cfg.train.device not in ("cpu", "auto"):
        raise UserError(f"{path}: an exported model runs on the CPU (drop device/train.device)")
    cfg.train.device = "cpu"
    model = ExportedModule(exported)
    predictor = Predictor.for_model(
        model,
        cfg,
        uses_pose=exported.meta["uses_pose"],
        pose_cache=pose_cache,
        estimate_pose=estimate_pose,
    )
    return Classifier(predictor, str(path))
