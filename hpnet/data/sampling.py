"""Which frames of a video make a clip: TSN-style uniform segments.

One pure function shared by the datasets, the pose cache and ``predict``, so that a clip's frames
and its joints always come from the same frame indices.

    rng = np.random.default_rng(0)
    sample_frame_indices(300, 16, train=True, rng=rng)  # (1, 16): one random frame per segment
    sample_frame_indices(300, 16, train=False, views=2)  # (2, 16): two evenly offset test clips
    sample_frame_indices(5, 8, train=False)  # [[0, 1, 2, 3, 4, 4, 4, 4]]: last frame repeated
"""

from __future__ import annotations

import numpy as np


def segment_bounds(num_frames: int, clip_len: int) -> np.ndarray:
    """Integer boundaries of ``clip_len`` equal segments of ``[0, num_frames)``.

    Returns int64 ``(clip_len + 1,)``: segment ``i`` is ``[bounds[i], bounds[i + 1])``. Every
    segment holds at least one frame when ``num_frames >= clip_len``.
    """
    return (np.arange(clip_len + 1, dtype=np.int64) * num_frames) // clip_len


def sample_frame_indices(
    num_frames: int,
    clip_len: int,
    *,
    train: bool,
    views: int = 1,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frame indices of ``views`` clips of ``clip_len`` frames from a video of ``num_frames``.

    ``[0, num_frames)`` is split into ``clip_len`` equal segments (TSN) and each clip takes one
    frame per segment: training draws a uniform random frame in every segment (from ``rng``, one
    independent draw per view); testing takes, for view ``v``, the frame at ``(v + 0.5) / views``
    of each segment (one view = the segment centres). Videos shorter than ``clip_len`` give
    ``0, 1, ..., num_frames - 1`` followed by the last frame repeated (temporal padding).

    Returns int64 ``(views, clip_len)``, each row non-decreasing (strictly increasing when
    ``num_frames >= clip_len``) and inside ``[0, num_frames)``. Pure: the result depends only on
    the arguments and the state of ``rng``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames} (the video has no frames)")
    if clip_len < 1:
        raise ValueError(f"clip_len must be >= 1, got {clip_len}")
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    if train and rng is None:
        raise ValueError("training sampling is random: pass rng=np.random.Generator")

    if num_frames < clip_len:
        padded = np.minimum(np.arange(clip_len, dtype=np.int64), num_frames - 1)
        return np.tile(padded, (views, 1))

    bounds = segment_bounds(num_frames, clip_len)
    starts, lengths = bounds[:-1], np.diff(bounds)  # (clip_len,), every length >= 1
    if train:
        assert rng is not None
        offsets = rng.integers(0, lengths, size=(views, clip_len))  # uniform in each segment
    else:
        fraction = (np.arange(views, dtype=np.float64) + 0.5) / views  # (views,)
        offsets = np.floor(fraction[:, None] * lengths[None, :]).astype(np.int64)
    return (starts[None, :] + offsets).astype(np.int64)


DrawKey = int | tuple[int, int]


def draw_key(index: int, draw: int) -> DrawKey:
    """The key a training sampler hands a dataset for the ``draw``-th draw (from 0) of sample
    ``index`` in one pass: ``index`` itself for the first draw, ``(index, draw)`` for a repeat.
    A class-balanced pass draws rare clips several times, and each draw must sample its own
    frames (:func:`sample_rng`)."""
    return (index, draw) if draw else index


def split_draw_key(key: DrawKey) -> tuple[int, int]:
    """``(index, draw)`` of a :func:`draw_key`; a plain index is draw 0."""
    if isinstance(key, tuple):
        return key
    return key, 0


def sample_rng(seed: int, epoch: int, index: int, draw: int = 0) -> np.random.Generator:
    """The generator of a training sample's frame offsets: one stream per (seed, epoch, index,
    draw), whatever the worker that loads it."""
    key = [seed % 2**64, epoch, index] + ([draw] if draw else [])
    return np.random.default_rng(key)
