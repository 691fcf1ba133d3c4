"""The built-in dataset: rendered stick-figure actions with ground-truth joints, no download.

Each clip is a pure function of ``(seed, split, index)``: the label is ``index % C``, and the
scene (background clutter, lighting, moving shapes, figure size, speed, colours, and with
``distractor=True`` a second, smaller figure doing a different action) comes from
``numpy.random.default_rng([seed, split, index])``. A split is rendered once, kept in memory
and cached on disk under ``<root>/synthetic-<key>/`` so later runs reuse it.

    ds = SyntheticActions("train", num_videos=480, frames=8, resolution=64, length=32, seed=0,
                          distractor=False, train=True, root="data/synthetic")
    ds[0]["video"]   # uint8 (8, 3, 64, 64)
    ds[0]["joints"]  # float32 (8, 2, 17, 3): the actor first, then the distractor (or zeros)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from hpnet.atomic import write_atomic
from hpnet.data.motions import ACTIONS, REVERSAL_PAIRS
from hpnet.data.render import render_clip
from hpnet.data.sampling import sample_frame_indices

__all__ = [
    "ACTIONS",
    "REVERSAL_PAIRS",
    "SyntheticActions",
    "render_split",
    "write_synthetic_videos",
]

_SPLIT_ID = {"train": 0, "test": 1}
_CACHE_VERSION = 1


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that draws everything in clip ``index`` of ``split``."""
    return np.random.default_rng([seed, _SPLIT_ID[split], index, _CACHE_VERSION])


def render_one(
    seed: int, split: str, index: int, *, resolution: int, length: int, distractor: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    """Clip ``index``: ``video uint8 (L, 3, R, R)``, ``joints float32 (L, 2, 17, 3)``, label."""
    label = index % len(ACTIONS)
    rng = clip_rng(seed, split, index)
    other = None
    if distractor:
        choices = [a for a in ACTIONS if a != ACTIONS[label]]
        other = choices[int(rng.integers(len(choices)))]
    video, joints = render_clip(rng, ACTIONS[label], other, resolution=resolution, length=length)
    return video, joints, label


def render_split(
    split: str,
    *,
    num_videos: int,
    resolution: int,
    length: int,
    seed: int,
    distractor: bool,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All clips of a split: ``video (N, L, 3, R, R)``, ``joints (N, L, 2, 17, 3)``, ``labels``."""
    video = np.empty((num_videos, length, 3, resolution, resolution), np.uint8)
    joints = np.empty((num_videos, length, 2, 17, 3), np.float32)
    labels = np.empty(num_videos, np.int64)
    for i in tqdm(range(num_videos), desc=f"rendering synthetic {split}", disable=not progress):
        video[i], joints[i], labels[i] = render_one(
            seed, split, i, resolution=resolution, length=length, distractor=distractor
        )
    return video, joints, labels


def _cache_key(**settings: Any) -> str:
    text = json.dumps({"version": _CACHE_VERSION, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Uncompressed npz, written atomically: readers never see half a file."""
    write_atomic(path, lambda f: np.savez(f, **arrays))


def load_or_render(
    split: str,
    *,
    num_videos: int,
    resolution: int,
    length: int,
    seed: int,
    distractor: bool,
    root: str | Path | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`render_split`, through the on-disk cache under ``root`` when one is given."""
    settings = dict(
        num_videos=num_videos,
        resolution=resolution,
        length=length,
        seed=seed,
        distractor=distractor,
    )
    path = None
    if root is not None:
        path = Path(root) / f"synthetic-{_cache_key(split=split, **settings)}" / f"{split}.npz"
        if path.is_file():
            try:
                with np.load(path) as data:
                    return data["video"], data["joints"], data["labels"]
            except (OSError, ValueError, KeyError):
                pass  # unreadable cache: render again and replace it
    video, joints, labels = render_split(split, **settings)
    if path is not None:
        _save_npz(path, video=video, joints=joints, labels=labels)
        (path.parent / "settings.json").write_text(json.dumps(settings, indent=1) + "\n")
    return video, joints, labels


class SyntheticActions(Dataset):
    """Rendered clips sampled like real videos; ground-truth joints when ``joints=True``.

    Train mode: ``video uint8 (T, 3, H, W)``, ``joints (T, P, 17, 3)`` with random frame offsets
    per segment, drawn from ``(sample_seed, epoch, index)`` (``set_epoch`` selects the epoch).
    Test mode: ``(V, T, ...)`` with ``views`` evenly spread clips. Frames are resized to
    ``canvas_hw`` when it differs from the rendered resolution.
    """

    def __init__(
        self,
        split: Literal["train", "test"],
        *,
        num_videos: int,
        frames: int,
        resolution: int,
        length: int,
        seed: int,
        distractor: bool,
        train: bool,
        views: int = 1,
        persons: int = 2,
        joints: bool = True,
        root: str | Path | None = None,
        canvas_hw: tuple[int, int] | None = None,
        sample_seed: int = 0,
    ) -> None:
        if split not in _SPLIT_ID:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.video, self.joints_gt, labels = load_or_render(
            split,
            num_videos=num_videos,
            resolution=resolution,
            length=length,
            seed=seed,
            distractor=distractor,
            root=root,
        )
        self.video = torch.from_numpy(self.video)  # (N, L, 3, R, R)
        self.joints_gt = torch.from_numpy(self.joints_gt)  # (N, L, 2, 17, 3)
        self._labels = labels.tolist()
        self.classes = list(ACTIONS)
        self.frames, self.train, self.views = frames, train, views
        self.persons, self.use_joints = persons, joints
        self.canvas_hw = canvas_hw
        self.sample_seed = sample_seed
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> list[int]:
        return list(self._labels)

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        length = self.video.shape[1]
        rng = np.random.default_rng([self.sample_seed, int(self._epoch[0]), index])
        idx = sample_frame_indices(
            length, self.frames, train=self.train, views=1 if self.train else self.views, rng=rng
        )  # (V, T)
        flat = torch.from_numpy(idx.reshape(-1))
        video = self.video[index, flat]  # (V*T, 3, R, R)
        if self.canvas_hw is not None and tuple(video.shape[-2:]) != tuple(self.canvas_hw):
            video = (
                F.interpolate(
                    video.float(),
                    size=self.canvas_hw,
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )
                .round()
                .clamp(0, 255)
                .to(torch.uint8)
            )
        video = video.view(*idx.shape, *video.shape[1:])
        p = self.persons
        joints = torch.zeros(*idx.shape, p, 17, 3)
        if self.use_joints:
            gt = self.joints_gt[index, flat][:, :p]  # (V*T, min(P, 2), 17, 3)
            joints[..., : gt.shape[1], :, :] = gt.view(*idx.shape, *gt.shape[1:])
        if self.train:
            video, joints = video[0], joints[0]
        return {"video": video, "joints": joints, "label": self._labels[index], "index": index}


def write_synthetic_videos(
    out_dir: str | Path,
    *,
    num_train: int,
    num_test: int,
    resolution: int = 64,
    length: int = 32,
    fps: float = 15.0,
    seed: int = 0,
    distractor: bool = False,
) -> Path:
    """Write the dataset as real videos so the whole file pipeline can run on it.

    ``<out>/<class>/<split>_<index>.mp4`` (H.264, yuv420p), ``train.txt`` / ``test.txt``
    (``<relative path> <label>`` lines, for ``data.dataset=list``), ``classes.txt``, and the
    ground-truth joints in the pose-cache format under ``<out>/pose_cache/`` (for
    ``pose.source=cache`` with ``pose.cache_dir=<out>/pose_cache``).
    """
    import av

    from hpnet.pose.store import cache_path, save_joints

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(ACTIONS) + "\n")
    side = resolution + resolution % 2  # H.264 with yuv420p needs even sizes
    for split, n in (("train", num_train), ("test", num_test)):
        lines = []
        for i in tqdm(range(n), desc=f"writing synthetic {split} videos"):
            video, joints, label = render_one(
                seed, split, i, resolution=resolution, length=length, distractor=distractor
            )
            rel = f"{ACTIONS[label]}/{split}_{i:05d}.mp4"
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with av.open(str(path), "w") as container:
                stream = container.add_stream("libx264", rate=round(fps))
                stream.width = stream.height = side
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "18", "preset": "veryfast"}
                for frame in video:
                    rgb = np.ascontiguousarray(frame.transpose(1, 2, 0))
                    if side != resolution:
                        rgb = np.pad(rgb, ((0, 1), (0, 1), (0, 0)), mode="edge")
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
                container.mux(stream.encode())
            meta = {
                "source": "groundtruth",
                "model_id": "groundtruth",
                "persons": 2,
                "stride": 1,
                "num_frames": length,
                "fps": fps,
                "width": side,
                "height": side,
            }
            save_joints(cache_path(out / "pose_cache", rel), joints, np.arange(length), meta)
            lines.append(f"{rel} {label}")
        (out / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return out
