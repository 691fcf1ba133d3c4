"""Pictures of what the model saw: sampled frames with skeletons, a heat map and the top labels.

``render_frame`` draws one frame; ``write_overlay`` saves the rendered frames as a video
(``.mp4``/``.mkv``/``.avi``, one sampled frame per ``1 / fps`` seconds) or as one PNG strip
(``.png``: a grid of the frames under a header line)::

    tiles = [render_frame(f, j, heat=h, lines=["golf 0.91", "swing baseball 0.05"]) for ...]
    write_overlay("golf_overlay.mp4", tiles, header="golf.avi: golf 0.91")
    write_clip_overlay("golf.png", frames, indices, joints, top, title="golf.avi")  # all in one
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from hpnet.atomic import make_file_folder, write_atomic, write_error
from hpnet.cli import UserError
from hpnet.pose.preview import DRAW_EDGES, LEFT_JOINTS, PERSON_COLOURS

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi")
IMAGE_SUFFIXES = (".png",)
OVERLAY_FORMATS = VIDEO_SUFFIXES + IMAGE_SUFFIXES
MIN_SIDE = 360  # frames are enlarged to at least this height so text and limbs stay legible
STRIP_COLUMNS = 4


@functools.cache
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """matplotlib's DejaVu Sans (Latin, Greek, Cyrillic: Pillow's default font drew class names
    such as ``klättern`` with a box), else Pillow's default."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except (ImportError, OSError, ValueError):
        pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _heat_rgb(heat: np.ndarray) -> np.ndarray:
    """float (h, w) in [0, 1] -> uint8 (h, w, 3) with matplotlib's 'jet' colours."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255).astype(np.uint8)


def _blend_heat(
    image: Image.Image, heat: np.ndarray, box: tuple[int, int, int, int], alpha: float
) -> None:
    """Blend the coloured heat map into ``box`` of ``image``, opaque in proportion to the heat
    (cold regions keep the frame's own colours)."""
    x0, y0, x1, y1 = box
    size = (x1 - x0, y1 - y0)
    level = Image.fromarray(np.clip(heat, 0, 1).astype(np.float32), mode="F").resize(
        size, Image.Resampling.BILINEAR
    )
    level_np = np.clip(np.asarray(level), 0, 1)[..., None]  # (h, w, 1)
    colour = _heat_rgb(level_np[..., 0]).astype(np.float32)
    region = np.asarray(image.crop(box)).astype(np.float32)
    mixed = region * (1 - alpha * level_np) + colour * (alpha * level_np)
    image.paste(Image.fromarray(mixed.round().astype(np.uint8)), (x0, y0))


def render_frame(
    frame: np.ndarray,
    joints: np.ndarray | None = None,
    *,
    heat: np.ndarray | None = None,
    heat_box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
    lines: Sequence[str] = (),
    min_conf: float = 0.3,
    heat_alpha: float = 0.6,
) -> np.ndarray:
    """Draw on one frame and return it as uint8 ``(H', W', 3)`` (enlarged to ``MIN_SIDE``).

    Args:
        frame: uint8 ``(H, W, 3)`` RGB.
        joints: ``(P, 17, 3)`` x, y in [0, 1] of the frame, confidence; joints below
            ``min_conf`` and their limbs are not drawn; person p in ``PERSON_COLOURS[p]``.
        heat: float ``(h, w)`` in [0, 1] blended over ``heat_box`` = (x0, y0, x1, y1) in [0, 1]
            of the frame (the region the model looked at), e.g. a Grad-CAM map.
        lines: text written top-left (e.g. the top labels with probabilities).
    """
    image = Image.fromarray(np.ascontiguousarray(frame)).convert("RGB")
    if image.height < MIN_SIDE:
        scale = MIN_SIDE / image.height
        image = image.resize((round(image.width * scale), MIN_SIDE), Image.Resampling.BILINEAR)
    width, height = image.size
    if heat is not None:
        x0, y0, x1, y1 = (round(v * s) for v, s in zip(heat_box, (width, height) * 2, strict=True))
        if x1 > x0 and y1 > y0:
            _blend_heat(image, heat, (x0, y0, x1, y1), heat_alpha)
    draw = ImageDraw.Draw(image)
    line_width = max(2, round(height / 180))
    for p, person in enumerate(np.zeros((0, 17, 3)) if joints is None else np.asarray(joints)):
        colour = PERSON_COLOURS[p % len(PERSON_COLOURS)]
        visible = person[:, 2] >= min_conf
        xy = [(float(x) * width, float(y) * height) for x, y in person[:, :2]]
        for a, b in DRAW_EDGES:
            if visible[a] and visible[b]:
                draw.line([xy[a], xy[b]], fill=colour, width=line_width)
        r = line_width + 1
        for j in np.flatnonzero(visible):
            x, y = xy[j]
            box = (x - r, y - r, x + r, y + r)
            if j in LEFT_JOINTS:
                draw.ellipse(box, fill=colour, outline="white")
            else:
                draw.rectangle(box, fill=colour, outline="white")
    _write_lines(draw, lines, size=max(12, height // 24))
    return np.asarray(image)


def _write_lines(draw: ImageDraw.ImageDraw, lines: Sequence[str], *, size: int) -> None:
    """White text on a dark box, one line under the other, from the top-left corner."""
    font = _font(size)
    y = 4
    for text in lines:
        left, top, right, bottom = draw.textbbox((6, y), text, font=font)
        draw.rectangle((left - 3, top - 2, right + 3, bottom + 2), fill=(0, 0, 0))
        draw.text((6, y), text, fill="white", font=font)
        y = bottom + 5


def is_overlay_format(path: str | Path) -> bool:
    """Whether ``path``'s suffix names a format :func:`write_overlay` writes."""
    return Path(path).suffix.lower() in OVERLAY_FORMATS


def check_output_names(
    overlay: str | Path | None,
    plot: str | Path | None = None,
    *,
    window: bool = False,
    names: tuple[str, str] = ("--overlay", "--timeline"),
) -> None:
    """Refuse, before any video is scored, an ``overlay`` of no format :func:`write_overlay`
    writes (with ``window``, of no video format) and a timeline ``plot`` not named .png, and
    make their folders (:func:`~hpnet.atomic.make_file_folder`); ``names``: how the caller
    calls the two (``--overlay``/``--timeline``, or ``overlay=``/``plot=``)."""
    if overlay:
        if not is_overlay_format(overlay):
            formats = ", ".join(OVERLAY_FORMATS)
            raise UserError(f"{names[0]} {overlay}: name it with one of {formats}")
        if window and Path(overlay).suffix.lower() not in VIDEO_SUFFIXES:
            raise UserError(
                f"{names[0]} {overlay}: a timeline's overlay writes a video: name it out.mp4 "
                "(or .mkv, .avi)"
            )
        make_file_folder(overlay, what="overlay", folder_option=names[0])
    if plot:
        if Path(plot).suffix.lower() != ".png":
            raise UserError(f"{names[1]} {plot}: name it out.png")
        make_file_folder(plot, what="timeline plot", folder_option=names[1])


def write_overlay(
    path: str | Path, frames: Sequence[np.ndarray], *, header: str = "", fps: float = 4.0
) -> Path:
    """Save rendered frames as a video (by suffix: .mp4 .mkv .avi) or one PNG strip (.png)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not is_overlay_format(path):
        raise ValueError(
            f"overlay {path}: unknown format {suffix!r}; use one of {', '.join(OVERLAY_FORMATS)}"
        )
    if not frames:
        raise ValueError("no frames to write")
    make_file_folder(path, what="overlay")
    if suffix in IMAGE_SUFFIXES:
        sheet = _strip(frames, header)
        write_atomic(path, lambda f: sheet.save(f, format="PNG"), what="overlay")
    else:
        _video(path, frames, fps)
    return path


def _strip(frames: Sequence[np.ndarray], header: str) -> Image.Image:
    """A grid of ``STRIP_COLUMNS`` frames per row under a header line."""
    tiles = [Image.fromarray(f) for f in frames]
    w, h = max(t.width for t in tiles), max(t.height for t in tiles)
    cols = min(STRIP_COLUMNS, len(tiles))
    rows = -(-len(tiles) // cols)
    head = max(24, h // 10) if header else 0
    sheet = Image.new("RGB", (cols * w, rows * h + head), (20, 20, 20))
    if header:
        ImageDraw.Draw(sheet).text((8, 4), header, fill="white", font=_font(head * 2 // 3))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * w, head + (i // cols) * h))
    return sheet


@contextlib.contextmanager
def video_output(path: Path) -> Iterator[tuple[Any, str]]:
    """``(PyAV output container, codec)`` for a video at ``path`` (container by suffix: .mp4
    .mkv .avi; H.264, or MPEG-4 part 2 if this FFmpeg lacks an H.264 encoder), written to a
    temp file that replaces ``path`` only when the block ends without error (no partial file).
    A failed write (no such folder, a full disk: PyAV raises OS errors) is the one-line
    :class:`~hpnet.atomic.WriteError`."""
    import av

    from hpnet.atomic import temp_name

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    tmp, muxer = temp_name(path), path.suffix.lstrip(".").lower().replace("mkv", "matroska")
    try:
        with av.open(str(tmp), "w", format=muxer) as container:
            yield container, codec
        tmp.replace(path)
    except OSError as err:
        if err.errno is None:
            raise
        raise write_error(path, err, what="overlay") from err
    finally:
        with contextlib.suppress(OSError):  # never hide the real error behind a cleanup error
            tmp.unlink(missing_ok=True)


def stream_rate(fps: float) -> Fraction:
    """``fps`` as a stream's frame rate: a decoder's averaged 30.000968 is 30, 29.97003 is NTSC's
    30000/1001 (within 1e-4 of either); other rates as the nearest fraction over at most 1001."""
    for nice in (Fraction(round(fps)), Fraction(round(fps * 1.001) * 1000, 1001)):
        if nice > 0 and abs(float(nice) - fps) <= 1e-4 * fps:
            return nice
    return Fraction(fps).limit_denominator(1001)


def video_stream(container: Any, codec: str, fps: float, height: int, width: int) -> Any:
    """A yuv420p video stream of ``codec`` at ``fps`` (:func:`stream_rate`) in ``container``;
    in an AVI without B-frames (AVI stores no presentation times: reordered frames lose
    theirs)."""
    stream = container.add_stream(codec, rate=stream_rate(fps))
    stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
    if container.format.name == "avi":
        stream.codec_context.max_b_frames = 0
    return stream


def _video(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    """The frames as a video (:func:`video_output`), even frame sizes."""
    import av

    h, w = (max(f.shape[i] for f in frames) // 2 * 2 for i in (0, 1))
    with video_output(path) as (container, codec):
        stream = video_stream(container, codec, fps, h, w)
        for frame in frames:
            canvas = np.zeros((h, w, 3), np.uint8)
            fh, fw = min(h, frame.shape[0]), min(w, frame.shape[1])
            canvas[:fh, :fw] = frame[:fh, :fw]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        container.mux(stream.encode())


def write_clip_overlay(
    path: str | Path,
    frames: torch.Tensor,
    frame_indices: np.ndarray,
    joints: np.ndarray | None,
    top: Sequence[dict],
    *,
    title: str,
    heat: np.ndarray | None = None,
    heat_box: tuple[float, float, float, float] | None = None,
) -> Path:
    """One clip's overlay: every frame with its skeletons, the top-3 labels and its number.

    Args:
        frames: uint8 ``(T, 3, h, w)``; frame_indices: ``(T,)`` their numbers in the video.
        joints: ``(T, P, 17, 3)`` or None; top: ``[{"label", "prob"}, ...]`` best first.
        heat: ``(T, gh, gw)`` in [0, 1] drawn over ``heat_box`` (see :func:`render_frame`).
    """
    lines = [f"{t['label']}  {100 * t['prob']:.1f}%" for t in top[:3]]
    tiles = [
        render_frame(
            frame,
            None if joints is None else joints[i],
            heat=None if heat is None else heat[i],
            heat_box=heat_box or (0.0, 0.0, 1.0, 1.0),
            lines=[*lines, f"frame {int(frame_indices[i])}"],
        )
        for i, frame in enumerate(frames.permute(0, 2, 3, 1).numpy())
    ]
    return write_overlay(path, tiles, header=f"{title}: {lines[0]}")
