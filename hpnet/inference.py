"""Classify video files one at a time: collect them, decode the sampled frames, find joints, score.

The building blocks of ``python -m hpnet.predict`` and ``python -m hpnet.zeroshot``:

- :func:`collect_videos`: files and folders (searched recursively for video files) -> inputs;
- :func:`read_sampled`: opens one video, samples ``views`` test clips of ``frames`` frames with
  the training sampler (:func:`~hpnet.data.sampling.sample_frame_indices`, centre of each
  segment) and decodes only those frames, once: at the size the loader's canvas scales them to
  (as the training loader decodes them) and, for the pose model and the overlays, with their
  aspect ratio and long side at most ``max_side``;
- :class:`JointFinder`: joints from the pose cache when the video has a file there, else from
  the YOLO pose model (built on first use), run as the cache runs it (every ``pose.stride``-th
  frame, people tracked through them) or on the sampled frames only;
- :func:`clip_probs`: the loader's canvas (crop, pad or stretch: :mod:`hpnet.data.canvas`), the
  test crops and the model, softmax averaged over views x crops, as
  :func:`hpnet.scoring.evaluate` scores a test video.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hpnet.cli import UserError, long_work_bar
from hpnet.data.canvas import Canvas
from hpnet.data.datasets import NUM_JOINTS
from hpnet.data.decode import VideoDecodeError, VideoInfo, VideoReader, open_video
from hpnet.data.records import VIDEO_EXTENSIONS, videos_under
from hpnet.data.sampling import sample_frame_indices
from hpnet.data.transforms import ClipTransform
from hpnet.scoring import view_probs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInput:
    """A video to classify: its path and its path relative to the folder it was found in."""

    path: Path
    rel: str  # the key of its pose cache file (<cache_dir>/<rel>.npz)


@dataclass
class SampledVideo:
    """The sampled frames of one video: as the model gets them and, where those are small,
    larger ones for the pose model and the overlays."""

    frames: torch.Tensor  # uint8 (V, T, 3, h, w), the video's aspect ratio: the model's
    indices: np.ndarray  # int64 (V, T) frame numbers in the video
    info: VideoInfo
    large: torch.Tensor | None = None  # uint8 (V, T, 3, h', w') the same frames (None: frames)

    @property
    def shown(self) -> torch.Tensor:
        """The frames the pose model and the overlays get ``(V, T, 3, h', w')``."""
        return self.frames if self.large is None else self.large


def collect_videos(inputs: Sequence[str | Path]) -> list[VideoInput]:
    """Video files from ``inputs`` (files as given; folders searched recursively, sorted).

    A path that does not exist is kept (it is reported as failed when read), so one typo does
    not hide the other videos; when none of them exists, or a folder has no video file, it is
    an error (before any model is loaded).
    """
    videos: list[VideoInput] = []
    for item in inputs:
        path = Path(item).expanduser()
        if not path.is_dir():
            videos.append(VideoInput(path, path.name))
            continue
        found = videos_under(path)  # hidden files and folders (e.g. macOS "._x.mp4") left out
        if not found:
            raise UserError(
                f"no video files ({', '.join(sorted(VIDEO_EXTENSIONS))}) under folder {path}"
            )
        videos += [VideoInput(p, p.relative_to(path).as_posix()) for p in found]
    if not videos:
        raise UserError("no videos given: pass video files or folders")
    if not any(v.path.exists() for v in videos):
        shown = ", ".join(str(v.path) for v in videos[:3]) + (", ..." if len(videos) > 3 else "")
        raise UserError(f"video not found: {shown} (check the path)")
    return videos


def fit_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """``(h, w)`` with the aspect of ``height x width`` and long side at most ``max_side``."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def read_sampled(
    path: Path,
    *,
    frames: int,
    views: int,
    max_side: int = 640,
    backend: str = "auto",
    max_pixels: int = 0,
    canvas: Canvas | None = None,
) -> SampledVideo:
    """Decode the ``views`` x ``frames`` test-sampled frames of ``path`` (raises
    :class:`~hpnet.data.decode.VideoDecodeError` for an unreadable video, or one whose frames
    have more than ``max_pixels`` pixels): see :func:`decode_for_model`."""
    with open_video(path, backend=backend, max_pixels=max_pixels) as reader:
        info = reader.info
        if info.num_frames < 1:
            raise VideoDecodeError(path, "the video reports no frames")
        indices = sample_frame_indices(info.num_frames, frames, train=False, views=views)
        video, large = decode_for_model(reader, indices.reshape(-1), canvas, max_side)
    v, t = indices.shape
    return SampledVideo(
        video.view(v, t, *video.shape[1:]),
        indices,
        info,
        None if large is None else large.view(v, t, *large.shape[1:]),
    )


def decode_for_model(
    reader: VideoReader, indices: np.ndarray, canvas: Canvas | None, max_side: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The frames at ``indices (N,)``, decoded once: uint8 ``(N, 3, h, w)`` for the model, and
    the same frames with their long side at most ``max_side`` (for the pose model and the
    overlays; None when ``max_side`` is 0, or when they are the model's).

    With a ``canvas`` the model's are at the size it scales the video to, one resize of the
    decoded frames as the training loader makes it: predict and evaluate see the same pixels.
    Without one, the model's are those of ``max_side`` (0: as displayed)."""
    info = reader.info
    large = fit_size(info.height, info.width, max_side or max(info.height, info.width))
    if canvas is None:
        return reader.frames(indices, size=large), None
    scaled = canvas.place((info.height, info.width)).scaled_hw
    if max_side == 0:
        return reader.frames(indices, scaled, canvas.interpolation), None
    model, shown = reader.frames_at_sizes(
        indices, [(scaled, canvas.interpolation), (large, "bilinear")]
    )
    return model, shown


class JointFinder:
    """Joints ``float32 (V, T, P, 17, 3)`` of a sampled video: cached, else estimated.

    Args:
        cache_dir: the pose cache folder ('' = never look); a video's file is
            ``<cache_dir>/<rel>.npz``.
        persons: P.
        estimator: a callable building the pose model on first use (``None`` = never
            estimate: videos without a cache file get no joints, all confidences 0).
        dense_frames: ``partial(FrameChunks, stride=..., chunk=..., imgsz=..., ...)`` of the
            cache's settings (:class:`~hpnet.pose.frames.FrameChunks` less its paths and
            ``resize``): the pose model then runs on the frames the cache would run it on, and
            a video gets the joints its cache file would hold (``pose.track=dense``); ``None``:
            on the sampled frames only (``pose.track=sampled``, and frames given without a
            video file).
        pose: the model's ``pose`` config section: a cache file made with other settings is
            warned of (once per cache folder and settings), as a training run warns of one.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        persons: int,
        estimator: Any = None,
        dense_frames: Callable[..., Any] | None = None,
        pose: Any = None,
    ) -> None:
        from hpnet.pose.store import JointCache

        self.cache = JointCache(cache_dir, persons) if cache_dir else None
        self.persons = persons
        self._build_estimator = estimator
        self._estimator: Any = None
        self._dense_frames = dense_frames
        self._pose = pose
        self._warned: set[tuple[str, ...]] = set()  # other settings said (once each)
        # One video at a time in the pose model: Ultralytics keeps per-input-shape state, so two
        # threads of one Classifier got each other's joints (or a shape error).
        self._pose_lock = threading.RLock()

    def cached_record(self, video: VideoInput) -> VideoInput | None:
        """The video as its cache file names it, or None without one.

        Tried: ``<cache_dir>/<rel>.npz`` and the video's path with its parent folders, the
        most folders first (..., ``golf/clip.avi``, ``clip.avi``; a symbolic link's own path,
        then its target's, as a dataset may list either), so a file given on its own
        finds the entry a dataset-wide cache run wrote for it, and the most specific one.
        A file made from another video (its recorded size, and mtime or digest, differ:
        :func:`~hpnet.pose.same_video.same_video_file`) is passed over, with a warning when no
        other file is found.
        """
        from hpnet.pose.same_video import same_video_file
        from hpnet.pose.store import read_meta

        if self.cache is None:
            return None
        tails = dict.fromkeys([video.rel])
        for parts in (video.path.absolute().parts, video.path.resolve().parts):  # (a link: both)
            tails.update(dict.fromkeys("/".join(parts[-n:]) for n in range(1, len(parts))))
        passed_over = []
        for rel in sorted(tails, key=lambda tail: -tail.count("/")):  # (stable)
            candidate = VideoInput(video.path, rel)
            path = self.cache.path(candidate)
            if not path.is_file():
                continue
            meta = read_meta(path)  # None (unreadable): __call__ warns and does without it
            if meta is None or same_video_file(meta, video.path):
                if meta is not None:
                    self._warn_other_settings(meta, path)
                return candidate
            passed_over.append(str(path))
        if passed_over:
            logger.warning(
                "pose cache file %s was made from another video than %s (or an earlier version "
                "of it): not used; %s",
                passed_over[0], video.path, self.instead_of_cache,
            )  # fmt: skip
        return None

    def _warn_other_settings(self, meta: dict[str, Any], path: Path) -> None:
        """Warn (once per settings) that the cache file at ``path`` was made with other
        ``pose.*`` settings than the model's: its joints are used, unlike those the model
        trained on (and those a video without a file gets)."""
        from hpnet.pose.store import other_settings

        if self._pose is None or meta.get("source") == "groundtruth":  # (rendered clips')
            return
        differ = tuple(other_settings(meta, self._pose, "the model's"))
        if differ and differ not in self._warned:
            self._warned.add(differ)
            logger.warning(
                "pose cache file %s was made with other pose settings than the model's: %s; "
                "its joints are used, but a video without a file gets the model's (pass "
                "--pose-cache '' to estimate every video's, or cache again with the "
                "checkpoint's config)", path, ", ".join(differ),
            )  # fmt: skip

    def __call__(self, video: VideoInput, sampled: SampledVideo) -> tuple[np.ndarray, str]:
        """The joints and where they came from: ``"cache"``, ``"estimated"`` or ``"none"``."""
        cached = self.cached_record(video)
        if cached is not None:
            try:
                return self.cache(cached, sampled.indices, sampled.info), "cache"
            except UserError as err:  # a corrupt file: as if the video had none
                logger.warning("%s; %s", err, self.instead_of_cache)
        return self.from_frames(sampled, video.path)

    def from_frames(
        self, sampled: SampledVideo, path: Path | None = None
    ) -> tuple[np.ndarray, str]:
        """Joints ``(V, T, P, 17, 3)`` of the sampled frames without looking in the cache: the
        pose model's (``"estimated"``: tracked through the video at ``path`` when built with
        ``dense_frames``, else through the sampled frames), else all missing (``"none"``: zeros,
        confidence 0, as the loader gives a video without cached joints)."""
        if self.can_estimate and path is not None and self._dense_frames is not None:
            return self.track_dense(path, sampled), "estimated"
        if self.can_estimate:
            return self.estimate(sampled), "estimated"
        v, t = sampled.indices.shape
        return np.zeros((v, t, self.persons, NUM_JOINTS, 3), np.float32), "none"

    @property
    def instead_of_cache(self) -> str:
        """What gives the joints of a video whose cache file cannot be read (for warnings)."""
        if self.can_estimate:
            return "estimating the joints instead"
        return "its joints count as missing (pose estimation is off)"

    @property
    def can_estimate(self) -> bool:
        """Whether a pose model is there for videos without cached joints."""
        return self._build_estimator is not None

    def _pose_model(self) -> Any:
        """The pose model, built on first use (there must be one: :attr:`can_estimate`)."""
        with self._pose_lock:
            if self._estimator is None:
                self._estimator = self._build_estimator()
            return self._estimator

    def estimate(self, sampled: SampledVideo) -> np.ndarray:
        """Joints ``(V, T, P, 17, 3)`` of the sampled frames from the pose model."""
        v, t = sampled.indices.shape
        # Run the pose model once per distinct frame, in time order (its person tracker
        # follows the video), then lay the joints out as (V, T).
        flat = sampled.indices.reshape(-1)
        order, first = np.unique(flat, return_index=True)
        shown = sampled.shown
        frames = shown.reshape(-1, *shown.shape[2:])[torch.from_numpy(first)]
        with self._pose_lock:
            joints = self._pose_model()(frames, self.persons)  # (U, P, 17, 3)
        rows = np.searchsorted(order, flat)
        return joints[rows].reshape(v, t, *joints.shape[1:]).astype(np.float32)

    def track_dense(self, path: Path, sampled: SampledVideo) -> np.ndarray:
        """Joints ``(V, T, P, 17, 3)`` at the sampled frames of the video at ``path``, as its
        pose cache file would give them: the pose model on every ``pose.stride``-th frame up
        to the first at or after the last sampled one (decoded and sized as the cache decodes
        them), people tracked through all of them, and each sampled frame taking the nearest
        such frame's joints.

        Raises :class:`~hpnet.data.decode.VideoDecodeError` when the video cannot be decoded.
        """
        assert self._dense_frames is not None
        with self._pose_lock:
            return self._track_dense(path, sampled)

    def _track_dense(self, path: Path, sampled: SampledVideo) -> np.ndarray:
        """:meth:`track_dense`, the pose model held."""
        from hpnet.pose.store import nearest_rows
        from hpnet.pose.tracking import PersonTracker

        model = self._pose_model()
        tracker = PersonTracker(self.persons)
        frames = self._dense_frames([path], resize=model.device.type == "cpu")
        # Up to the first such frame at or after the last sampled one: it may be the nearest.
        end = int(sampled.indices.max()) + frames.stride
        joints: list[np.ndarray] = []
        done: list[np.ndarray] = []
        total = -(-min(end, sampled.info.num_frames) // frames.stride)  # frames it runs on
        bar = long_work_bar(total, f"pose {path.name}", "frame", delay=2.0)  # (a long video)
        with closing(frames.video_chunks(0)) as chunks, closing(bar):  # (closes on the break)
            for chunk in chunks:
                indices = chunk["indices"].numpy()
                n = int((indices < end).sum())  # the frames after those: unused
                joints += [tracker.update(d) for d in model.detect(chunk["frames"][:n])]
                done.append(indices[:n])
                bar.update(n)
                if n < len(indices):
                    break
        found = np.stack(joints).astype(np.float32)  # (F, P, 17, 3)
        return found[nearest_rows(np.concatenate(done), sampled.indices)]

    def from_stream(self, frames: torch.Tensor, tracker: Any) -> np.ndarray:
        """Joints ``(N, P, 17, 3)`` of the next consecutive frames ``uint8 (N, 3, H, W)`` of a
        video read in pieces, without looking in the cache: the pose model's, ``tracker`` (a
        :class:`~hpnet.pose.tracking.PersonTracker`, one per video) carrying its people's slots
        from one piece to the next; else all missing."""
        if not self.can_estimate:
            return np.zeros((len(frames), self.persons, NUM_JOINTS, 3), np.float32)
        with self._pose_lock:
            detections = self._pose_model().detect(frames)
        return np.stack([tracker.update(d) for d in detections]).astype(np.float32)


def clip_probs(
    model: nn.Module,
    sampled: SampledVideo,
    joints: np.ndarray | None,
    *,
    transform: ClipTransform,
    canvas: Canvas | None,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    crops: int = 1,
) -> torch.Tensor:
    """Class probabilities ``(C,)``: softmax averaged over the video's views x crops.

    ``canvas``: the loader's canvas before the crops (``None``: crop the frames as decoded);
    ``joints`` ``(V, T, P, 17, 3)`` in [0, 1] of the frame, or None.
    """
    v, t = sampled.indices.shape
    frames = sampled.frames.flatten(0, 1)  # (V*T, 3, h, w)
    joint_tensor = None if joints is None else torch.from_numpy(joints)
    if canvas is not None:
        frames, joint_tensor = canvas.apply(frames, joint_tensor)
    video = frames.view(1, v, t, *frames.shape[1:]).to(device)
    joint_batch = None if joint_tensor is None else joint_tensor[None].to(device)
    return view_probs(
        model, video, joint_batch, transform=transform, amp_dtype=amp_dtype, crops=crops
    )[0].cpu()


def check_top_k(k: int, option: str = "--top-k") -> None:
    """How many labels to list (``--top-k``, the API's ``top_k``): 1 or more."""
    if k < 1:
        raise UserError(f"{option} must be at least 1, got {k}")


def top_k(probs: torch.Tensor, labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` most probable labels: ``[{"label", "index", "prob"}, ...]``, best first.

    Ties keep label order (a stable sort), so the output order is reproducible.
    """
    order = sorted(range(len(labels)), key=lambda i: -float(probs[i]))[: max(1, k)]
    return [{"label": labels[i], "index": i, "prob": round(float(probs[i]), 6)} for i in order]
