"""``--timeline out.png``: a long video's label track over time, with thumbnails above it."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def write_timeline_png(path: str | Path, timeline: dict[str, Any], title: str = "") -> None:
    """Draw ``timeline`` (from :func:`hpnet.timeline.score_timeline`, with thumbnails):
    thumbnails on top, one coloured bar per segment with its label, and the smoothed
    probability of the top label of each window; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hpnet.atomic import write_atomic

    segments, windows = timeline["segments"], timeline["windows"]
    end = max(segments[-1]["end"], windows[-1]["end"])
    thumbs = timeline.get("thumbnails") or []
    fig = plt.figure(figsize=(12, 4.2 if thumbs else 2.6))
    grid = fig.add_gridspec(3 if thumbs else 2, max(1, len(thumbs)), height_ratios=(
        [1.4, 0.7, 1.0] if thumbs else [0.7, 1.0]))  # fmt: skip
    for k, (seconds, frame) in enumerate(thumbs):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(np.ascontiguousarray(frame.permute(1, 2, 0).numpy()))
        ax.set_title(f"{seconds:.1f} s", fontsize=8)
        ax.axis("off")
    row = 1 if thumbs else 0
    track = fig.add_subplot(grid[row, :])
    names = sorted({s["label"] for s in segments})
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(names), 2)))
    for seg in segments:
        width = max(seg["end"] - seg["start"], 1e-3)
        colour = colours[names.index(seg["label"])]
        track.barh(0, width, left=seg["start"], color=colour, edgecolor="white")
        track.text(seg["start"] + width / 2, 0, seg["label"], ha="center", va="center", fontsize=8)
    track.set_xlim(0, end)
    track.set_yticks([])
    track.set_title(title or "actions over time", fontsize=9)
    curve = fig.add_subplot(grid[row + 1, :], sharex=track)
    mids = [(w["start"] + w["end"]) / 2 for w in windows]
    curve.plot(mids, [w["top"][0]["prob"] for w in windows], color="black", linewidth=1)
    curve.set_ylim(0, 1)
    curve.set_xlabel("seconds")
    curve.set_ylabel("top prob", fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100), what="timeline")
    plt.close(fig)


def label_at(timeline: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The top label of the window whose centre is nearest to ``seconds`` (smoothed)."""
    windows = timeline["windows"]
    centres = np.array([(w["start"] + w["end"]) / 2 for w in windows])
    return windows[int(np.abs(centres - seconds).argmin())]["top"][0]


_MS = Fraction(1, 1000)  # the time base of a variable-frame-rate overlay


def write_timeline_video(
    path: str | Path,
    video: Path,
    timeline: dict[str, Any],
    *,
    backend: str = "auto",
    max_side: int = 640,
    chunk: int = 64,
) -> None:
    """Every frame of ``video`` with the label of the moment and the time written on it,
    decoded and encoded in chunks of ``chunk`` frames (memory flat in the video's length);
    H.264 (MPEG-4 part 2 without libx264), written atomically. A variable-frame-rate video
    keeps each frame's time (in .mp4 / .mkv; an .avi plays at the mean rate), as the
    timeline's plan found them (no second scan of the file)."""
    import av

    from hpnet.atomic import make_file_folder
    from hpnet.cli import long_work_bar
    from hpnet.data.decode import open_video
    from hpnet.inference import fit_size
    from hpnet.overlay import render_frame, video_output, video_stream

    path = Path(path)
    make_file_folder(path, what="overlay")
    with open_video(video, backend=backend) as reader, video_output(path) as (out, codec):
        info = reader.info
        size = fit_size(info.height, info.width, max_side)
        times = timeline["plan"].times  # None: frame i shows at i / fps
        own_times = times is not None and path.suffix.lower() != ".avi"
        if times is not None and not own_times:
            logger.warning(
                "%s: %s has a variable frame rate, which an .avi cannot keep: it plays at the "
                "mean rate, its labels away from the moments they name; write an .mp4 or .mkv "
                "to keep each frame's time", path, Path(video).name,
            )  # fmt: skip
        stream = None
        bar = long_work_bar(info.num_frames, f"overlay {path.name}", "frame")
        for first in range(0, info.num_frames, chunk):
            indices = range(first, min(first + chunk, info.num_frames))
            frames = reader.frames(list(indices), size=size).permute(0, 2, 3, 1).numpy()
            for index, frame in zip(indices, frames, strict=True):
                seconds = index / info.fps if times is None else float(times[index])
                top = label_at(timeline, seconds)
                lines = [f"{top['label']}  {100 * top['prob']:.1f}%", f"{seconds:7.2f} s"]
                image = render_frame(frame, lines=lines)
                if stream is None:
                    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
                    stream = video_stream(out, codec, info.fps, h, w)
                    if own_times:  # (reordered B-frames would cut the track's duration short)
                        stream.codec_context.time_base = _MS
                        stream.codec_context.max_b_frames = 0
                image = np.ascontiguousarray(image[: stream.height, : stream.width])
                picture = av.VideoFrame.from_ndarray(image, format="rgb24")
                if own_times:  # the frame's own time
                    picture.pts, picture.time_base = round(seconds * 1000), _MS
                out.mux(stream.encode(picture))
            bar.update(len(indices))
        bar.close()
        if stream is not None:
            out.mux(stream.encode())
