"""The synthetic splits: each clip rendered from its own seed, a split rendered once and cached.

Clip ``index`` of ``split`` is a pure function of ``(seed, split, index)``: its label is
``index % C`` and everything else is drawn from :func:`clip_rng`. :func:`load_or_render` renders
a whole split (or reads it back from ``<root>/synthetic-<key>/<split>.npz``; the key covers the
settings and the renderer's source, so a changed renderer never serves stale clips).

    video, joints, label = render_one(0, "train", 5, resolution=64, length=32, distractor=False)
    video   # uint8 (32, 3, 64, 64); joints float32 (32, 2, 17, 3); label 5 % 11
    video, joints, labels = load_or_render("test", num_videos=160, resolution=64, length=32,
                                           seed=0, distractor=False, root="data/synthetic")
    video   # uint8 (160, 32, 3, 64, 64)
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hpnet.atomic import remove_stale_temp_files, write_atomic, write_json
from hpnet.cli import progress_enabled
from hpnet.data import motions, render
from hpnet.data.motions import ACTIONS
from hpnet.data.render import render_clip

__all__ = ["SPLIT_ID", "cache_file", "clip_rng", "load_or_render", "render_one", "render_split"]

SPLIT_ID = {"train": 0, "test": 1}
_CACHE_VERSION = 1


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that draws everything in clip ``index`` of ``split``."""
    return np.random.default_rng([seed % 2**64, SPLIT_ID[split], index, _CACHE_VERSION])


def render_one(
    seed: int,
    split: str,
    index: int,
    *,
    resolution: int,
    length: int,
    distractor: bool,
    actions: Sequence[str] = ACTIONS,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Clip ``index``: ``video uint8 (L, 3, R, R)``, ``joints float32 (L, 2, 17, 3)``, label
    (``index % len(actions)``: ``actions`` are the classes, a subset of :data:`ACTIONS`)."""
    label = index % len(actions)
    rng = clip_rng(seed, split, index)
    other = None
    if distractor:
        choices = [a for a in ACTIONS if a != actions[label]]
        other = choices[int(rng.integers(len(choices)))]
    video, joints = render_clip(rng, actions[label], other, resolution=resolution, length=length)
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
    actions: Sequence[str] = ACTIONS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All clips of a split: ``video (N, L, 3, R, R)``, ``joints (N, L, 2, 17, 3)``, ``labels``."""
    video = np.empty((num_videos, length, 3, resolution, resolution), np.uint8)
    joints = np.empty((num_videos, length, 2, 17, 3), np.float32)
    labels = np.empty(num_videos, np.int64)
    for i in tqdm(
        range(num_videos),
        desc=f"rendering synthetic {split}",
        disable=not progress_enabled(progress),
    ):
        video[i], joints[i], labels[i] = render_one(
            seed,
            split,
            i,
            resolution=resolution,
            length=length,
            distractor=distractor,
            actions=actions,
        )
    return video, joints, labels


def _renderer_digest() -> str:
    """Hash of the renderer's source: editing motions.py, render.py or this file (labels,
    distractors, seeding) invalidates caches."""
    digest = hashlib.sha256()
    for path in (motions.__file__, render.__file__, __file__):
        digest.update(Path(path or "").read_bytes())
    return digest.hexdigest()[:16]


def cache_file(root: str | Path, split: str, **settings: Any) -> Path:
    """Where a rendered split is cached: ``<root>/synthetic-<key>/<split>.npz`` (``~`` in
    ``root`` is the home folder, as for every other path hpnet reads)."""
    key = {"version": _CACHE_VERSION, "renderer": _renderer_digest(), "split": split, **settings}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(root).expanduser() / f"synthetic-{digest}" / f"{split}.npz"


def load_or_render(
    split: str,
    *,
    num_videos: int,
    resolution: int,
    length: int,
    seed: int,
    distractor: bool,
    root: str | Path | None,
    progress: bool = True,
    actions: Sequence[str] = ACTIONS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`render_split`, through the on-disk cache under ``root`` when one is given.

    A missing, unreadable or mis-shaped cache file is rendered again and replaced (atomically,
    so concurrent runs, e.g. DDP ranks, at worst render the same split twice)."""
    settings = {
        "num_videos": num_videos,
        "resolution": resolution,
        "length": length,
        "seed": seed,
        "distractor": distractor,
    }
    if tuple(actions) != ACTIONS:  # (the key of an all-actions split is unchanged)
        settings["actions"] = list(actions)
    path = None if root is None else cache_file(root, split, **settings)
    if path is not None:  # what writers killed mid-write left (a DDP rank may be writing)
        for name in (path, path.with_suffix(".json")):
            remove_stale_temp_files(name, keep_live_writers=True)
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = data["video"], data["joints"], data["labels"]
            if arrays[0].shape == (num_videos, length, 3, resolution, resolution):
                return arrays
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable cache: render again and replace it
    video, joints, labels = render_split(split, progress=progress, **settings)
    if path is not None:
        arrays = {"video": video, "joints": joints, "labels": labels}
        where = {"what": "synthetic dataset cache", "folder_option": "data.root=DIR"}
        write_atomic(path, lambda f: np.savez(f, **arrays), **where)
        write_json(path.with_suffix(".json"), {"split": split, **settings}, indent=1, **where)
    return video, joints, labels
