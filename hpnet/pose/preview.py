"""Skeleton overlays: PNGs of video frames with the cached joints drawn, to check poses by eye.

save_skeleton_png("preview/golf.png", frame, joints, title="golf/clip.avi frame 12")
write_previews("pose_cache", [(path, rel), ...], count=8)  # -> pose_cache/preview/*.png
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpnet.atomic import make_file_folder
from hpnet.pose.skeleton import BONES
from hpnet.pose.store import CachedJoints, cache_path, is_cached, load_joints

logger = logging.getLogger(__name__)

# Limbs drawn: the skeleton tree plus the shoulder and hip cross-links.
DRAW_EDGES: tuple[tuple[int, int], ...] = (*BONES, (5, 6), (11, 12))
LEFT_JOINTS = frozenset((1, 3, 5, 7, 9, 11, 13, 15))
PERSON_COLOURS = ("#ff3b30", "#0a84ff", "#30d158", "#ffd60a", "#bf5af2", "#64d2ff")


def save_skeleton_png(
    path: str | Path,
    frame: np.ndarray,
    joints: np.ndarray,
    *,
    title: str = "",
    min_conf: float = 0.3,
) -> Path:
    """Draw every person's skeleton on ``frame`` and save a PNG at the frame's resolution.

    Args:
        frame: uint8 (H, W, 3) RGB image.
        joints: (P, 17, 3) x, y normalised to the frame, confidence; joints below ``min_conf``
            (and their limbs) are not drawn. Person p has colour ``PERSON_COLOURS[p]``; left-side
            joints are drawn as circles, right-side and the face as squares.
        title: text written in the top-left corner.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    height, width = frame.shape[:2]
    scale = max(1.0, 480 / max(height, width))  # small frames are enlarged so lines stay visible
    fig = plt.figure(figsize=(width * scale / 100, height * scale / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(frame, extent=(0, width, height, 0), interpolation="bilinear")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    for p, person in enumerate(np.asarray(joints, dtype=np.float32)):
        _draw_person(ax, person, width, height, PERSON_COLOURS[p % len(PERSON_COLOURS)], min_conf)
    if title:
        ax.text(
            4,
            4,
            title,
            color="white",
            fontsize=8,
            va="top",
            ha="left",
            bbox={"facecolor": "black", "alpha": 0.6, "pad": 2, "linewidth": 0},
        )
    path = Path(path)
    make_file_folder(path, what="pose preview")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _draw_person(ax, person: np.ndarray, width: int, height: int, colour: str, min_conf: float):
    """One person's limbs and joints, (17, 3) normalised, onto matplotlib axes in pixels."""
    visible = person[:, 2] >= min_conf
    xs, ys = person[:, 0] * width, person[:, 1] * height
    for a, b in DRAW_EDGES:
        if visible[a] and visible[b]:
            ax.plot([xs[a], xs[b]], [ys[a], ys[b]], color=colour, linewidth=2, alpha=0.9)
    for marker, joints in (("o", sorted(LEFT_JOINTS)), ("s", _right_and_face())):
        keep = [j for j in joints if visible[j]]
        ax.scatter(
            xs[keep],
            ys[keep],
            s=14,
            marker=marker,
            c=colour,
            edgecolors="white",
            linewidths=0.6,
            zorder=3,
        )


def _right_and_face() -> Sequence[int]:
    return [j for j in range(17) if j not in LEFT_JOINTS]


def write_previews(
    cache_dir: str | Path,
    videos: Sequence[tuple[Path, str]],
    count: int,
    *,
    settings: Mapping[str, Any] | None = None,
    backend: str = "auto",
    seed: int = 0,
) -> list[Path]:
    """PNGs of ``count`` frames spread over the cached ``videos`` (path, rel), with joints drawn.

    Frames are drawn at random (seeded) from different videos first; files go to
    ``<cache_dir>/preview/<rel with / as __>_f<frame>.png``. Videos without a current cache
    file (none, unreadable, or with other ``settings`` or from an earlier version of the
    video: :func:`~hpnet.pose.store.is_cached`) are passed over; a frame that cannot be
    decoded is logged and skipped.
    """
    from hpnet.data.decode import decode_frames

    rng = np.random.default_rng(seed)
    picked = _current_files(cache_dir, videos, count, settings, rng)
    written = []
    for n in range(count if picked else 0):
        path, rel, joints = picked[n % len(picked)]
        row = int(rng.integers(len(joints.frame_indices)))
        frame_index = int(joints.frame_indices[row])
        try:
            frame = decode_frames(path, [frame_index], backend=backend)[0]  # (3, H, W)
        except Exception as err:  # a preview never stops the command
            logger.warning("preview: cannot decode frame %d of %s: %s", frame_index, path, err)
            continue
        name = rel.replace("/", "__") + f"_f{frame_index:05d}.png"
        written.append(
            save_skeleton_png(
                Path(cache_dir) / "preview" / name,
                frame.permute(1, 2, 0).numpy(),
                joints.keypoints[row],
                title=f"{rel}  frame {frame_index}",
            )
        )
    return written


def _current_files(
    cache_dir: str | Path,
    videos: Sequence[tuple[Path, str]],
    count: int,
    settings: Mapping[str, Any] | None,
    rng: np.random.Generator,
) -> list[tuple[Path, str, CachedJoints]]:
    """Up to ``count`` of ``videos`` in random order with their current cache files read
    (only as many files opened as it takes: a dataset's are not read for a few previews)."""
    picked = []
    for i in rng.permutation(len(videos)) if count > 0 else ():
        path, rel = videos[i]
        file = cache_path(cache_dir, rel)
        if not file.is_file() or (settings is not None and not is_cached(file, settings, path)):
            continue
        try:
            picked.append((path, rel, load_joints(file)))
        except (OSError, ValueError):
            continue  # unreadable: as if there were none
        if len(picked) == count:
            break
    return picked
