"""The built-in dataset: rendered stick-figure actions with ground-truth joints, no download.

Each clip is a pure function of ``(seed, split, index)``: the label is ``index % C``, and the
scene (background clutter, lighting, moving shapes, figure size, speed, colours, and with
``distractor=True`` a second, smaller figure doing a different action) comes from
``numpy.random.default_rng([seed, split, index])``. A split is rendered once (about 8 ms per
32-frame 64 x 64 clip on one CPU core), kept in memory and cached on disk under
``<root>/synthetic-<key>/`` so later runs reuse it; the key covers the settings and the
renderer's source code, so a changed renderer never serves stale clips.

    ds = SyntheticActions("train", num_videos=480, frames=8, resolution=64, length=32, seed=0,
                          distractor=False, train=True, root="data/synthetic")
    ds[0]["video"]   # uint8 (8, 3, 64, 64)
    ds[0]["joints"]  # float32 (8, 2, 17, 3): the actor first, then the distractor (or zeros)

The same clips as real files, for the file pipeline (decode, pose cache, list datasets):
``python -m hpnet.data.synthetic data/synthetic_files --train 480 --test 160``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from hpnet.data.canvas import Canvas
from hpnet.data.motions import ACTIONS, REVERSAL_PAIRS
from hpnet.data.sampling import DrawKey, sample_frame_indices, sample_rng, split_draw_key
from hpnet.data.synthetic_files import main, save_preview, write_synthetic_videos
from hpnet.data.synthetic_splits import SPLIT_ID, load_or_render, render_one, render_split

__all__ = [
    "ACTIONS",
    "REVERSAL_PAIRS",
    "SyntheticActions",
    "main",
    "render_one",
    "render_split",
    "save_preview",
    "write_synthetic_videos",
]


class SyntheticActions(Dataset):
    """Rendered clips sampled like real videos; ground-truth joints when ``joints=True``.

    Train mode: ``video uint8 (T, 3, H, W)``, ``joints (T, P, 17, 3)`` with random frame offsets
    per segment, drawn from ``(sample_seed, epoch, index)`` (``set_epoch`` selects the epoch,
    also in DataLoader workers). Test mode: ``(V, T, ...)`` with ``views`` evenly spread clips.
    Frames are put on ``canvas`` (or a padding ``Canvas(canvas_hw)``) when given, the joints
    moved with them (:mod:`hpnet.data.canvas`; a no-op at the rendered size). Person 0
    is the actor, person 1 the distractor (all zeros without one); ``joints=False`` gives zeros.
    ``classes`` = ``actions`` (default :data:`ACTIONS`); ``labels`` (``index % C``) for
    class-balanced sampling.
    """

    draw_keys = True  # takes (index, draw) keys: a repeat in a pass samples its own frames

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
        canvas: Canvas | None = None,
        sample_seed: int = 0,
        progress: bool = True,
        actions: Sequence[str] = ACTIONS,
    ) -> None:
        if split not in SPLIT_ID:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        unknown = [a for a in actions if a not in ACTIONS]
        if unknown or len(set(actions)) != len(actions) or not actions:
            raise ValueError(f"actions must be distinct names from {ACTIONS}, got {actions}")
        for name, value in (("num_videos", num_videos), ("frames", frames), ("length", length)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if resolution < 16 or views < 1 or persons < 1:
            raise ValueError(
                f"need resolution >= 16, views >= 1 and persons >= 1, "
                f"got {resolution}, {views} and {persons}"
            )
        video, joints_gt, labels = load_or_render(
            split,
            num_videos=num_videos,
            resolution=resolution,
            length=length,
            seed=seed,
            distractor=distractor,
            root=root,
            progress=progress,
            actions=actions,
        )
        self.video = torch.from_numpy(video)  # (N, L, 3, R, R)
        self.joints_gt = torch.from_numpy(joints_gt)  # (N, L, 2, 17, 3)
        self._labels = labels.tolist()
        self.classes = list(actions)
        self.frames, self.train, self.views = frames, train, views
        self.persons, self.use_joints = persons, joints
        if canvas is None and canvas_hw is not None:
            canvas = Canvas(canvas_hw)
        self.canvas = canvas
        self.sample_seed = sample_seed
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> list[int]:
        return list(self._labels)

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    def subset(self, indices: Sequence[int], *, train: bool, views: int = 1) -> SyntheticActions:
        """The clips at ``indices`` (renumbered from 0) in train or test mode (``views``); the
        rest of the settings as here (a validation split of the training clips)."""
        out = copy.copy(self)
        rows = torch.as_tensor(list(indices), dtype=torch.long)
        out.video, out.joints_gt = self.video[rows], self.joints_gt[rows]
        out._labels = [self._labels[i] for i in indices]
        out.train, out.views = train, 1 if train else views
        out._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        return out

    def __getitem__(self, key: DrawKey) -> dict[str, Any]:
        index, draw = split_draw_key(key)  # key: an index or a draw_key
        index = range(len(self))[index]  # IndexError out of range; negative indices allowed
        length = self.video.shape[1]
        rng = sample_rng(self.sample_seed, int(self._epoch[0]), index, draw)
        idx = sample_frame_indices(
            length, self.frames, train=self.train, views=1 if self.train else self.views, rng=rng
        )  # (V, T)
        flat = torch.from_numpy(idx.reshape(-1))
        video = self.video[index, flat]  # (V*T, 3, R, R)
        p = self.persons
        joints = torch.zeros(*idx.shape, p, 17, 3)
        if self.use_joints:
            gt = self.joints_gt[index, flat][:, :p]  # (V*T, min(P, 2), 17, 3)
            joints[..., : gt.shape[1], :, :] = gt.view(*idx.shape, *gt.shape[1:])
        if self.canvas is not None:
            video, joints = self.canvas.apply(video, joints)
        video = video.view(*idx.shape, *video.shape[1:])  # (V, T, 3, H, W)
        if self.train:
            video, joints = video[0], joints[0]
        return {"video": video, "joints": joints, "label": self._labels[index], "index": index}


if __name__ == "__main__":
    from hpnet.cli import run_cli

    run_cli(lambda argv: main(argv, description=__doc__))
