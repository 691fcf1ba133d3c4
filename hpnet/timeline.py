"""Actions along a long video: overlapping windows scored as streams, smoothed, cut into segments.

A window of ``window`` seconds is sampled like a test clip (``data.frames`` frames, one per
equal segment), but on a grid shared by all windows: grid position ``j`` is the moment
``(j + 0.5) * step`` seconds (``step = window / T``) and takes the frame on screen then (frame
``floor((j + 0.5) * step * fps)``, or by the frames' own times in a variable-frame-rate video),
and window ``i`` takes positions ``i * s .. i * s + T - 1`` (``s`` = the stride in grid steps),
plus one last window that ends where the grid ends, so that at most one step of the video's end
goes unscored. Overlapping windows therefore share their frames, and each frame is decoded and
pose-estimated once.

The video is read as a stream: windows go through decode, joints and model in batches of
``batch`` windows, and only the frames later windows still need are kept, so memory stays flat
in the length of the video. Scores are smoothed over ``smooth`` windows (a centred moving
average) and consecutive windows with the same top label become a segment::

    timeline = score_timeline(predictor, video, window=2.0, stride=0.5)
    timeline["windows"]   # [{"start", "end", "top": [{"label", "index", "prob"}, ...]}]
    timeline["segments"]  # [{"label", "start", "end", "score"}]  (seconds; score = mean prob)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpnet.cli import UserError, long_work_bar

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of a video lie (see the module); times in seconds from its first frame.

    Grid position ``j`` is the moment ``(j + 0.5) * step`` and shows the frame on screen then;
    window ``i`` takes positions ``starts[i] .. starts[i] + frames - 1``.
    """

    num_frames: int
    fps: float  # average frame rate
    frames: int  # T per window
    step: float  # seconds between grid positions: the window / T
    stride: int  # grid positions between window starts (the last one may start closer)
    starts: tuple[int, ...]  # first grid position of each window
    duration: float  # seconds the video plays
    # when each frame shows, for a variable-frame-rate video (None: frame i at i / fps)
    times: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def count(self) -> int:
        """Number of windows."""
        return len(self.starts)

    @property
    def pads(self) -> bool:
        """Whether the one window is a whole video of fewer than ``frames`` frames, which takes
        each frame once and then its last again, as a test clip does (several windows over
        such a video take the frames on screen at their grid positions)."""
        return self.num_frames < self.frames and self.count == 1

    def _frames_at(self, positions: np.ndarray) -> np.ndarray:
        """Grid positions ``(K,)`` -> the frame index shown at each ``(K,)``."""
        if self.pads:
            return np.minimum(positions, self.num_frames - 1).astype(np.int64)
        moments = (positions + 0.5) * self.step
        if self.times is None:
            index = np.floor(moments * self.fps + 1e-6)
        else:
            index = np.searchsorted(self.times, moments + 1e-9, side="right") - 1
        return np.clip(index, 0, self.num_frames - 1).astype(np.int64)

    def indices(self, i: int) -> np.ndarray:
        """Frame indices ``(T,)`` of window ``i``."""
        return self._frames_at(np.arange(self.starts[i], self.starts[i] + self.frames))

    def grid(self) -> np.ndarray:
        """Every frame index ``(G,)`` some window uses, sorted, each once."""
        return np.unique(self._frames_at(np.arange(self.starts[-1] + self.frames)))

    def span(self, i: int) -> tuple[float, float]:
        """``(start, end)`` of window ``i`` in seconds."""
        start = self.starts[i] * self.step
        return start, min(start + self.frames * self.step, self.duration)


CLI_NAMES = ("--window", "--stride", "--smooth")  # how the errors name them (the API: "window=")


def check_window(window: float, stride: float, names: tuple[str, ...] = CLI_NAMES) -> None:
    """``--window`` / ``--stride`` (seconds): finite and > 0; ``names``: the options'
    (``window=``, ``stride=`` for the Python API)."""
    for name, value in ((names[0], window), (names[1], stride)):
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"{name} must be a number of seconds > 0, got {value}")


def plan_windows(
    num_frames: int,
    fps: float,
    frames: int,
    window: float,
    stride: float,
    times: np.ndarray | None = None,
    names: tuple[str, ...] = CLI_NAMES,
) -> WindowPlan:
    """Windows of ``window`` seconds every ``stride`` seconds (rounded to whole grid steps)
    over a video of ``num_frames`` frames at ``fps``, the last one ending at the video's end;
    ``times``: when each frame shows, for a variable frame rate (see
    :meth:`~hpnet.data.decode_reader.VideoReader.frame_times`). A video shorter than one window
    is one window over all of it (see :attr:`WindowPlan.pads`). A window shorter than one frame
    is refused, naming the option as ``names`` say (:func:`check_window`)."""
    check_window(window, stride, names)
    if fps <= 0:
        raise UserError("the video records no frame rate (windows are in seconds)")
    if times is None:
        duration = num_frames / fps
    else:  # the last frame shows for a mean frame's time
        duration = float(times[-1]) * num_frames / max(num_frames - 1, 1)
    frame_time = duration / max(num_frames, 1)  # (a mean frame's, with a variable rate)
    if window < frame_time * (1 - 1e-6):  # (below, the windows would hold no frame at all)
        raise UserError(
            f"{_given(names[0], window)} s is shorter than one frame of this video "
            f"({frame_time:.3g} s at {num_frames / duration:.3g} fps): give at least "
            f"{frames * frame_time:.3g} s, the model's {frames} frames"
        )
    step = min(window, duration) / frames
    grid_stride = max(1, round(stride / step))
    positions = max(frames, math.floor(duration / step + 1e-6))  # grid positions in the video
    starts = list(range(0, positions - frames + 1, grid_stride))
    if starts[-1] != positions - frames:  # the rest, shorter than a stride: one more window
        starts.append(positions - frames)
    return WindowPlan(num_frames, fps, frames, step, grid_stride, tuple(starts), duration, times)


def _given(name: str, value: float) -> str:
    """How a message names a value given: ``--window 0.5`` (CLI), ``window=0.5`` (API)."""
    return f"{name}{'' if name.endswith('=') else ' '}{value:g}"


def check_smooth(smooth: int, names: tuple[str, ...] = CLI_NAMES) -> None:
    """``--smooth`` / ``smooth=``: an odd number of windows (a centred average)."""
    if smooth < 1 or smooth % 2 == 0:
        raise UserError(
            f"{names[2]} must be an odd number of windows (a centred average: the window and "
            f"as many on each side), got {smooth}: e.g. 1 (no smoothing), 3 or 5"
        )


def warn_stride_gap(window: float, stride: float, frames: int) -> None:
    """Warn when the stride as run (whole grid steps of ``window / frames``) is longer than the
    window: the moments between windows are then scored by none."""
    step = window / frames
    run = max(1, round(stride / step)) * step
    if run > window * (1 + 1e-9):
        logger.warning(
            "--stride %g s (run as %.4g s, whole steps of %.4g s) is longer than --window %g s: "
            "%.3g s after each window is in no window (unscored; the segments span it): give a "
            "stride <= the window to score every moment", stride, run, step, window, run - window,
        )  # fmt: skip


def smooth_scores(probs: torch.Tensor, width: int) -> torch.Tensor:
    """``(N, C)`` window probabilities -> the centred moving average over ``width`` windows
    (odd; shrunk at both ends, so the first and last windows average fewer)."""
    if width <= 1 or probs.shape[0] < 2:
        return probs.clone()
    half = width // 2
    sums = probs.double().cumsum(0)  # (float32 sums drift over hours of windows)
    padded = torch.cat([sums.new_zeros(1, probs.shape[1]), sums])
    n = probs.shape[0]
    lo = torch.clamp(torch.arange(n) - half, min=0)
    hi = torch.clamp(torch.arange(n) + half + 1, max=n)
    return ((padded[hi] - padded[lo]) / (hi - lo).unsqueeze(1)).to(probs.dtype)


def segments(
    probs: torch.Tensor,
    spans: Sequence[tuple[float, float]],
    labels: Sequence[str],
    end: float | None = None,
) -> list[dict[str, Any]]:
    """Consecutive windows with the same top label of ``probs (N, C)`` -> segments, ``score`` =
    the mean probability of its label. Where the top label changes, the segments meet midway
    between the centres of the two windows (each moment goes to the window centred nearest to
    it); the first starts where the first window does, the last ends at ``end`` (the video's
    end; default: where the last window ends)."""
    top = probs.argmax(1).tolist()
    centres = [(a + b) / 2 for a, b in spans]
    out: list[dict[str, Any]] = []
    first, start = 0, spans[0][0] if spans else 0.0
    for i in range(1, len(top) + 1):
        if i < len(top) and top[i] == top[first]:
            continue
        label = top[first]
        if i < len(top):
            stop = (centres[i - 1] + centres[i]) / 2
        else:
            stop = end if end is not None else spans[i - 1][1]
        out.append(
            {
                "label": labels[label],
                "start": round(start, 3),
                "end": round(max(stop, start), 3),
                "score": round(float(probs[first:i, label].mean()), 6),
            }
        )
        first, start = i, stop
    return out


def _batches(count: int, size: int) -> Iterator[range]:
    for start in range(0, count, size):
        yield range(start, min(start + size, count))


class _FrameStore:
    """Decoded frames and their joints by frame index, for the windows still to come."""

    def __init__(self) -> None:
        self.frames: dict[int, torch.Tensor] = {}
        self.joints: dict[int, np.ndarray] = {}
        self.tracker: Any = None  # the video's PersonTracker, when the pose model runs

    def forget_before(self, index: int) -> None:
        for key in [k for k in self.frames if k < index]:
            del self.frames[key]
            self.joints.pop(key, None)


def score_timeline(
    predictor: Any,
    video: Any,
    *,
    window: float,
    stride: float,
    smooth: int = 3,
    top_k: int = 5,
    batch: int = 16,
    thumbnails: int = 0,
    names: tuple[str, ...] = CLI_NAMES,
) -> dict[str, Any]:
    """Score the windows of ``video`` (an :class:`~hpnet.inference.VideoInput`) with a
    :class:`~hpnet.predictor.Predictor`; returns ``windows``, ``segments``, ``probs`` (the
    smoothed ``(N, C)`` as a tensor), ``mean_probs`` (``(C,)``, over the raw windows), the
    ``plan``, ``pose`` (where the joints came from, see :func:`_pose_source`), ``num_decoded``
    (distinct frames decoded) and ``thumbnails``: up to that many
    ``(seconds, uint8 (3, h, w))`` first frames of evenly spread windows; ``names``: the
    options' names in messages (the API's ``window=``)."""
    from hpnet.data.decode import open_video
    from hpnet.data.decode_errors import VideoUnfitError
    from hpnet.inference import top_k as best

    check_smooth(smooth, names)
    p, store = predictor, _FrameStore()
    with open_video(video.path, backend=p.cfg.data.decoder, max_pixels=p.cfg.data.max_pixels) as r:
        info = r.info
        try:  # this video's frame rate, not the run's settings: reported for this video only
            plan = plan_windows(
                info.num_frames, info.fps, p.cfg.data.frames, window, stride, r.frame_times(),
                names,
            )  # fmt: skip
        except UserError as err:
            raise VideoUnfitError(video.path, str(err)) from None
        _warn_repeats(video, plan)
        probs, decoded, thumbs = [], 0, []
        keep = set(np.linspace(0, plan.count - 1, thumbnails).round().astype(int).tolist())
        cached = _cached_joints(p, video, plan, info)  # one read of the cache file, or None
        bar = long_work_bar(plan.count, f"timeline {Path(video.path).name}", "window")
        for group in _batches(plan.count, batch):
            wanted = np.stack([plan.indices(i) for i in group])  # (W, T)
            new = np.setdiff1d(np.unique(wanted), np.fromiter(store.frames, np.int64))
            if new.size:
                _add_frames(p, store, r, new, cached)
                decoded += int(new.size)
            probs.append(_window_probs(p, store, wanted))
            bar.update(len(group))
            for i in sorted(keep.intersection(group)):
                thumbs.append((plan.span(i)[0], store.frames[int(plan.indices(i)[0])].clone()))
            if group.stop < plan.count:
                store.forget_before(int(plan.indices(group.stop)[0]))
        bar.close()
    raw = torch.cat(probs)  # (N, C)
    smoothed = smooth_scores(raw, smooth)
    spans = [plan.span(i) for i in range(plan.count)]
    windows = [
        {"start": round(a, 3), "end": round(b, 3), "top": best(smoothed[i], p.labels, top_k)}
        for i, (a, b) in enumerate(spans)
    ]
    return {
        "windows": windows,
        "segments": segments(smoothed, spans, p.labels, end=plan.duration),
        "probs": smoothed,
        "mean_probs": raw.mean(0),
        "plan": plan,
        "pose": _pose_source(p, cached),
        "num_decoded": decoded,
        "thumbnails": thumbs,
    }


def _add_frames(
    p: Any, store: _FrameStore, reader: Any, new: np.ndarray, cached: dict | None
) -> None:
    """Decode frames ``new`` (sorted indices, none in ``store``) into ``store`` with their
    joints: rows of the cache file's ``cached`` or, without it, the pose model's on the large
    frames (none when the predictor uses no joints)."""
    from hpnet.inference import decode_for_model

    frames, large = decode_for_model(reader, new, p.canvas, p.max_side)  # (U, 3, h, w)
    store.frames.update(zip(new.tolist(), frames, strict=True))
    if cached is not None:
        store.joints.update((i, cached[i]) for i in new.tolist())
    elif p.joints is not None:
        joints = _joints_of(p, store, frames if large is None else large)
        store.joints.update(zip(new.tolist(), joints, strict=True))


def _warn_repeats(video: Any, plan: WindowPlan) -> None:
    """Warn when a window holds fewer frames than the model takes (a low frame rate, or a short
    ``--window``): each window then shows the model some frames twice."""
    shown = plan.step * plan.fps * plan.frames  # frames a window spans
    if not plan.pads and shown < plan.frames - 1e-6:
        logger.warning(
            "%s: a window of %.2f s holds about %.0f frames at %.3g fps, fewer than the %d the "
            "model takes, so frames repeat within it: use --window %.2f or longer",
            video.path, plan.step * plan.frames, shown, plan.fps, plan.frames,
            math.ceil(100 * plan.frames / plan.fps) / 100,
        )  # fmt: skip


def _pose_source(p: Any, cached: dict | None) -> str | None:
    """Where the windows' joints came from: ``"cache"``, ``"estimated"`` (the pose model),
    ``"none"`` (zeros), or None for a model that takes no joints."""
    if p.joints is None:
        return None
    if cached is not None:
        return "cache"
    return "estimated" if p.joints.can_estimate else "none"


def _cached_joints(p: Any, video: Any, plan: WindowPlan, info: Any) -> dict | None:
    """Joints ``(P, 17, 3)`` by frame index of every grid frame, read from the video's pose
    cache file in one go; None without a file (or with a corrupt one: the joints then come
    batch by batch from :func:`_joints_of`, as for a video without a file)."""
    if p.joints is None or (record := p.joints.cached_record(video)) is None:
        return None
    grid = plan.grid()
    try:
        joints = p.joints.cache(record, grid[None], info)[0]  # (G, P, 17, 3)
    except UserError as err:  # a corrupt file, or one of another video
        logger.warning("%s; %s", err, p.joints.instead_of_cache)
        return None
    return dict(zip(grid.tolist(), joints, strict=True))


def _joints_of(p: Any, store: _FrameStore, frames: torch.Tensor) -> np.ndarray:
    """Joints ``(U, P, 17, 3)`` of the next frames (in time order) of a video without a pose
    cache file: the pose model's, tracked by one tracker over the whole video (its people keep
    their slots from batch to batch), else all missing."""
    from hpnet.pose.tracking import PersonTracker

    if store.tracker is None:
        store.tracker = PersonTracker(p.joints.persons)
    return p.joints.from_stream(frames, store.tracker)


def _window_probs(p: Any, store: _FrameStore, wanted: np.ndarray) -> torch.Tensor:
    """Probabilities ``(W, C)`` of the windows whose frame indices are ``wanted (W, T)``."""
    from hpnet.scoring import view_probs

    flat = wanted.reshape(-1).tolist()
    frames = torch.stack([store.frames[i] for i in flat])  # (W*T, 3, h, w)
    joints = None
    if p.joints is not None:
        joints = torch.from_numpy(np.stack([store.joints[i] for i in flat]))
    if p.canvas is not None:
        frames, joints = p.canvas.apply(frames, joints)
    w, t = wanted.shape
    video = frames.view(w, 1, t, *frames.shape[1:]).to(p.device)
    if joints is not None:
        joints = joints.view(w, 1, t, *joints.shape[1:]).to(p.device)
    return view_probs(
        p.model, video, joints, transform=p.transform, amp_dtype=p.amp_dtype, crops=p.cfg.eval.crops
    ).cpu()


if __name__ == "__main__":  # a library module: say which command runs it
    import sys

    print(
        "hpnet: error: hpnet.timeline is no command: run python -m hpnet.predict VIDEO "
        "--checkpoint RUN/best.pt --window SECONDS (README.md: Long videos)",
        file=sys.stderr,
    )
    sys.exit(2)
