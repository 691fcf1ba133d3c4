"""Clip datasets over real video files, and the datasets a :class:`~hpnet.config.Config` names.

:class:`VideoClipDataset` turns :class:`~hpnet.data.records.VideoRecord` s (from the split
file parsers in :mod:`hpnet.data.records`) into sample dicts::

    {"video": uint8 (T, 3, H, W), "joints": float32 (T, P, 17, 3), "label": int, "index": int}

(test mode: ``video (V, T, 3, H, W)``, ``joints (V, T, P, 17, 3)`` with V temporal views).
``__getitem__`` opens the video once, reads its frame count, samples frame indices with
:func:`~hpnet.data.sampling.sample_frame_indices`, decodes only those frames, resized to the
loader canvas ``(H, W)`` (cropped, padded or stretched there: :mod:`hpnet.data.canvas`), and
asks the joint source for the joints at the same frames, moved onto the canvas likewise.

Train-time randomness: the frame offsets of sample ``index`` in epoch ``e`` come from
``numpy.random.default_rng([seed, e, index])`` (:func:`~hpnet.data.sampling.sample_rng`). So a
run is reproducible for a fixed seed whatever the number of workers and whichever worker loads
which sample, two samples never share a random stream, and each epoch draws new offsets. A
class-balanced pass draws rare clips several times: its sampler hands the repeats over as
:func:`~hpnet.data.sampling.draw_key` s, and each repeat samples its own frames. The epoch
lives in shared memory, so :meth:`VideoClipDataset.set_epoch` reaches persistent workers too.
The training loader's sampler (:class:`~hpnet.data.loader.EpochSampler`, from
:func:`~hpnet.data.loader.build_loader`) calls it at the start of every pass with the epoch of
the sampler it wraps (DistributedSampler, class-balanced) or its own count of passes from 0;
``loader.sampler.set_epoch(e)`` (the DistributedSampler idiom) sets it explicitly and is
forwarded to the wrapped sampler, which exact resume needs. Without a wrapped sampler the
shuffle order is drawn the same way, from ``(seed, epoch)``.

Bad videos: decoding raises :class:`~hpnet.data.decode.VideoDecodeError`. With
``on_error="skip"`` the dataset logs a warning once per file, counts it and returns ``None``;
:func:`~hpnet.data.loader.collate_clips` drops the ``None`` s and reports how many in
``batch["skipped"]``, so an epoch never stops on a bad file. With ``on_error="raise"`` the
error propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from hpnet.cli import UserError
from hpnet.config import Config, check_pose_source
from hpnet.data.canvas import Canvas, fit_joints, fit_scaled, loader_canvas, warn_small_canvas
from hpnet.data.config_records import records_for_config
from hpnet.data.decode import VideoDecodeError, VideoInfo, open_video
from hpnet.data.holdout import config_validation_split, rendered_keys
from hpnet.data.records import VideoRecord
from hpnet.data.sampling import DrawKey, sample_frame_indices, sample_rng, split_draw_key
from hpnet.pose.skeleton import NUM_KEYPOINTS

__all__ = [
    "DatasetSplits",
    "JointSource",
    "VideoClipDataset",
    "VideoRecord",
    "build_datasets",
    "loader_canvas",
    "records_for_config",
    "synthetic_actions",
]

logger = logging.getLogger(__name__)

NUM_JOINTS = NUM_KEYPOINTS  # COCO keypoints per person (YOLO pose)
# (record, frame indices (V, T), video info) -> joints float32 (V, T, P, 17, 3)
JointSource = Callable[[VideoRecord, np.ndarray, VideoInfo], "np.ndarray | torch.Tensor"]


class VideoClipDataset(Dataset):
    """Clips of ``frames`` frames from video files, put on the ``canvas_hw`` canvas.

    ``train=True``: one clip with random offsets per segment, ``video (T, 3, H, W)``.
    ``train=False``: ``views`` evenly spread clips, ``video (V, T, 3, H, W)`` (also for V = 1).
    ``joint_source(record, indices (V, T), info) -> (V, T, P, 17, 3)``; None gives zeros with
    ``persons`` persons (confidence 0 = missing, so nothing downstream uses them).
    ``max_pixels``: videos with larger frames (width x height) fail like undecodable ones
    (0 = no limit), so no worker decodes, say, 8K frames at full size. ``resize`` and
    ``interpolation``: how frames get onto the canvas (:class:`~hpnet.data.canvas.Canvas`).
    """

    draw_keys = True  # takes (index, draw) keys: a repeat in a pass samples its own frames

    def __init__(
        self,
        records: Sequence[VideoRecord],
        *,
        frames: int,
        train: bool,
        views: int = 1,
        canvas_hw: tuple[int, int],
        on_error: Literal["skip", "raise"] = "skip",
        backend: str = "auto",
        max_pixels: int = 0,
        joint_source: JointSource | None = None,
        seed: int = 0,
        persons: int = 1,
        classes: Sequence[str] | None = None,
        resize: str = "pad",
        interpolation: str = "bilinear",
    ) -> None:
        if train and views != 1:
            raise ValueError(f"training clips have one view, got views={views}")
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        self.records = list(records)
        self.frames = frames
        self.train = train
        self.views = views
        self.canvas = Canvas(canvas_hw, resize, interpolation)
        self.on_error = on_error
        self.backend = backend
        self.max_pixels = max_pixels
        self.joint_source = joint_source
        self.seed = seed
        self.persons = persons
        self.classes = list(classes) if classes is not None else None
        # Shared with DataLoader workers (also persistent ones): the epoch, and per video how
        # often it failed to decode (so the main process can report skipped files).
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._failures = torch.zeros(len(self.records), dtype=torch.int32).share_memory_()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def canvas_hw(self) -> tuple[int, int]:
        return self.canvas.hw

    @property
    def labels(self) -> list[int]:
        """Label of every record (for class-balanced sampling and loss weights)."""
        return [r.label for r in self.records]

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the training epoch whose random frame offsets ``__getitem__`` draws."""
        self._epoch[0] = epoch

    def failed(self) -> list[tuple[VideoRecord, int]]:
        """``(record, times it failed)`` for every video that could not be decoded so far."""
        return [(self.records[i], int(n)) for i, n in enumerate(self._failures.tolist()) if n]

    def rng_for(self, index: int, draw: int = 0) -> np.random.Generator:
        """The generator of sample ``index``'s frame offsets in the current epoch (``draw``: its
        repeat in a class-balanced pass, from 0)."""
        return sample_rng(self.seed, self.epoch, index, draw)

    def __getitem__(self, key: DrawKey) -> dict[str, Any] | None:
        index, draw = split_draw_key(key)  # key: an index or a draw_key
        record = self.records[index]
        rng = self.rng_for(index, draw) if self.train else None
        try:
            video, indices, info = self.read_clip(record, rng)
            joints = self._joints(record, indices, info)  # (one the pose cache could not read)
        except VideoDecodeError as err:
            if self.on_error == "raise":
                raise
            if int(self._failures[index]) == 0:
                logger.warning("skipping a video (data.on_error=skip): %s", err)
            self._failures[index] += 1
            return None
        if self.train:
            video, joints = video[0], joints[0]
        return {"video": video, "joints": joints, "label": record.label, "index": index}

    def read_clip(
        self, record: VideoRecord, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, np.ndarray, VideoInfo]:
        """Decode ``record``'s clip: ``video uint8 (V, T, 3, H, W)``, ``indices (V, T)``, info.

        Raises VideoDecodeError when the video cannot be read (``on_error`` is not applied).
        """
        with open_video(record.path, backend=self.backend, max_pixels=self.max_pixels) as reader:
            info = reader.info
            if info.num_frames < 1:
                raise VideoDecodeError(record.path, "the video reports no frames")
            views = 1 if self.train else self.views
            indices = sample_frame_indices(
                info.num_frames, self.frames, train=self.train, views=views, rng=rng
            )  # (V, T)
            placement = self.canvas.place((info.height, info.width))
            scaled = reader.frames(
                indices.reshape(-1),
                size=placement.scaled_hw,
                interpolation=self.canvas.interpolation,
            )  # one resize, straight to the scaled size
        video = fit_scaled(scaled, placement)  # (V*T, 3, H, W)
        return video.reshape(*indices.shape, *video.shape[1:]), indices, info

    def _joints(self, record: VideoRecord, indices: np.ndarray, info: VideoInfo) -> torch.Tensor:
        """Joints ``float32 (V, T, P, 17, 3)`` at the sampled frames."""
        if self.joint_source is None:
            return torch.zeros(*indices.shape, self.persons, NUM_JOINTS, 3)
        joints = torch.as_tensor(self.joint_source(record, indices, info), dtype=torch.float32)
        if joints.shape[:2] != indices.shape or joints.shape[-2:] != (NUM_JOINTS, 3):
            raise ValueError(
                f"joint source returned shape {tuple(joints.shape)} for {record.rel}; "
                f"expected ({indices.shape[0]}, {indices.shape[1]}, P, {NUM_JOINTS}, 3)"
            )
        return fit_joints(joints, self.canvas.place((info.height, info.width)))


# ----------------------------------------------------------------------- building from Config


@dataclass
class DatasetSplits:
    """The datasets of one config; unpacks (and indexes) as the tuple ``(train_ds, test_ds,
    classes)``, as ``build_datasets`` returned before it had ``val``."""

    train: Dataset
    test: Dataset
    classes: list[str]
    val: Dataset | None = None  # data.val_fraction of the training videos (test mode), or None

    def __iter__(self) -> Iterator:
        return iter((self.train, self.test, self.classes))

    def __getitem__(self, index: int) -> Any:
        return (self.train, self.test, self.classes)[index]


def build_datasets(
    cfg: Config,
    joint_source: JointSource | None = None,
    *,
    test_views: int | None = None,
    needs_train: bool = True,
) -> DatasetSplits:
    """Train, test (and validation) datasets for ``cfg.data.dataset``; decodes nothing yet.

    The test and validation sets give ``test_views`` temporal views per video (default
    ``eval.views``). ``data.val_fraction > 0`` moves that share of each class's training videos
    to ``val`` (:func:`~hpnet.data.holdout.validation_split`, seeded with ``data.seed``).
    Joints: ``pose.source=none`` gives zeros; ``cache`` uses ``joint_source`` (e.g.
    :class:`hpnet.pose.store.JointCache`); ``groundtruth`` (synthetic only) the rendered
    skeletons. Frame sampling is seeded with ``train.seed``; the folder hold-out with
    ``data.seed``. ``needs_train=False``: see :func:`records_for_config`.
    """
    check_pose_source(cfg)
    warn_small_canvas(cfg)
    views = cfg.eval.views if test_views is None else test_views
    if cfg.pose.source == "none":
        joint_source = None
    if cfg.data.dataset == "synthetic" and cfg.pose.source != "cache":
        return _rendered_datasets(cfg, views)
    if cfg.pose.source == "cache" and joint_source is None and cfg.model.pose:
        logger.warning("pose.source=cache but no joint source was given: joints are zeros")
    splits = records_for_config(cfg, needs_train=needs_train)
    if not splits.train and not splits.test:
        hint = f". {splits.root_hint}" if splits.root_hint else ""  # (data.root too high: set it)
        raise UserError(f"{cfg.data.dataset} dataset at {cfg.data.root} has no videos{hint}")
    common: dict[str, Any] = {
        "frames": cfg.data.frames,
        "canvas_hw": loader_canvas(cfg.data.size, cfg.data.load_size, cfg.data.aspect),
        "resize": cfg.data.resize,
        "interpolation": cfg.data.interpolation,
        "on_error": cfg.data.on_error,
        "backend": cfg.data.decoder,
        "max_pixels": cfg.data.max_pixels,
        "joint_source": joint_source,
        "seed": cfg.train.seed,
        "persons": cfg.pose.persons,
        "classes": splits.classes,
    }
    keys = [r.rel for r in splits.train]
    labels = [r.label for r in splits.train]
    kept, held = config_validation_split(cfg, keys, labels, splits.classes)
    train_ds = VideoClipDataset([splits.train[i] for i in kept], train=True, views=1, **common)
    test_ds = VideoClipDataset(splits.test, train=False, views=views, **common)
    val_records = [splits.train[i] for i in held]
    val_ds = VideoClipDataset(val_records, train=False, views=views, **common) if held else None
    return DatasetSplits(train_ds, test_ds, list(splits.classes), val_ds)


_WARNED_UNREAD: set[Path] = set()  # data.root folders warned of by _warn_written_files_unread


def _warn_written_files_unread(cfg: Config) -> None:
    """Say so when ``data.root`` holds clips written as files (``python -m
    hpnet.data.synthetic``) that this run does not read: without ``pose.source=cache`` the
    clips are rendered in memory (and cached under ``data.root``). Once per folder and process
    (``--splits`` and a joint run build datasets more than once)."""
    from hpnet.data.synthetic_files import MANIFEST

    root = Path(cfg.data.root).expanduser() if cfg.data.root else None
    if root is not None and root not in _WARNED_UNREAD and (root / MANIFEST).is_file():
        _WARNED_UNREAD.add(root)
        logger.warning(
            "%s holds synthetic clips written as files, but pose.source=%s renders the clips "
            "in memory and does not read them: to train on the files, cache their joints "
            "(python -m hpnet.pose.cache) and add pose.source=cache (or "
            "pose.cache_dir=%s pose.source=cache for their ground-truth joints)",
            root, cfg.pose.source, root / "pose_cache",
        )  # fmt: skip


def synthetic_actions(cfg: Config) -> tuple[str, ...]:
    """The classes of the rendered synthetic dataset: ``data.synthetic.actions`` (``[]``: all of
    :data:`~hpnet.data.motions.ACTIONS`), refused unless 2 or more distinct known actions."""
    import difflib

    from hpnet.data.motions import ACTIONS

    given = list(cfg.data.synthetic.actions)
    actions = tuple(given) or ACTIONS
    unknown = [a for a in dict.fromkeys(actions) if a not in ACTIONS]
    if unknown or len(set(actions)) < max(2, len(actions)):
        close = difflib.get_close_matches(unknown[0], ACTIONS, n=1) if unknown else []
        hint = f" ('{unknown[0]}': did you mean '{close[0]}'?)" if close else ""
        raise UserError(
            f"data.synthetic.actions={given}: give 2 or more distinct actions of "
            f"{', '.join(ACTIONS)} (or [] for all){hint}"
        )
    return actions


def _rendered_datasets(cfg: Config, views: int) -> DatasetSplits:
    """The in-memory synthetic dataset; ground-truth joints, or zeros for pose.source=none."""
    from hpnet.data.synthetic import SyntheticActions

    d, s = cfg.data, cfg.data.synthetic
    _warn_written_files_unread(cfg)
    actions = synthetic_actions(cfg)
    shared: dict[str, Any] = {
        "frames": d.frames,
        "resolution": s.resolution,
        "length": s.length,
        "seed": d.seed,
        "distractor": s.distractor,
        "persons": cfg.pose.persons,
        "joints": cfg.pose.source == "groundtruth",
        "root": d.root,
        "canvas": Canvas.of(d),
        "sample_seed": cfg.train.seed,
        "actions": actions,
    }
    train_ds = SyntheticActions("train", num_videos=s.train_videos, train=True, **shared)
    test_ds = SyntheticActions("test", num_videos=s.test_videos, train=False, views=views, **shared)
    classes = list(train_ds.classes)
    if not d.val_fraction:
        return DatasetSplits(train_ds, test_ds, classes)
    keys = rendered_keys(len(train_ds))
    kept, held = config_validation_split(cfg, keys, train_ds.labels, classes)
    val_ds = train_ds.subset(held, train=False, views=views)
    return DatasetSplits(train_ds.subset(kept, train=True), test_ds, classes, val_ds)
