"""Frames as displayed: rotation metadata and non-square pixels, in both decoders and pose cache.

The test clips hold an upright picture of four coloured quadrants, stored turned the other way
with a display matrix that turns it back (written by PyAV's muxer, and by the system's ``ffmpeg``
CLI where installed), or stored 64x48 with sample aspect ratio 64:51 (displayed 80x48).
"""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from hpnet.cli import UserError
from hpnet.data.decode import decode_frames, open_video
from hpnet.data.decode_errors import VideoDecodeError
from hpnet.data.records import VideoRecord
from hpnet.pose.store import JointCache, cache_path, load_joints, save_joints

BACKENDS = ["torchcodec", "pyav"]
HEIGHT, WIDTH, FRAMES = 48, 64, 6  # the upright (displayed) picture of the rotation clips
COLOURS = np.array([[220, 30, 30], [30, 220, 30], [30, 30, 220], [230, 230, 230]], np.uint8)


def _quadrants(height: int, width: int) -> np.ndarray:
    """uint8 (H, W, 3): red top-left, green top-right, blue bottom-left, white bottom-right."""
    image = np.empty((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    for k, (rows, cols) in enumerate([(slice(0, h), slice(0, w)), (slice(0, h), slice(w, None)),
                                      (slice(h, None), slice(0, w)),
                                      (slice(h, None), slice(w, None))]):  # fmt: skip
        image[rows, cols] = COLOURS[k]
    return image


def _quadrant_colours(frame: torch.Tensor) -> np.ndarray:
    """uint8 (3, H, W) -> the mean colour of each quadrant's centre, (4, 3)."""
    image = frame.permute(1, 2, 0).float().numpy()
    height, width = image.shape[:2]
    ys, xs = (height // 4, 3 * height // 4), (width // 4, 3 * width // 4)
    return np.array([image[y - 2 : y + 2, x - 2 : x + 2].mean((0, 1)) for y in ys for x in xs])


def _write(path: Path, image: np.ndarray, rotation: int = 0, sar: Fraction | None = None) -> Path:
    """A libx264 MP4 of ``image`` (H, W, 3) repeated, with a display rotation (counter-clockwise
    degrees, set as FFmpeg's display matrix) and/or a sample aspect ratio."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        stream.height, stream.width, stream.pix_fmt = *image.shape[:2], "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        for _ in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _stored_for(rotation: int) -> np.ndarray:
    """The stored picture that a display rotation of ``rotation`` degrees shows upright."""
    return np.rot90(_quadrants(HEIGHT, WIDTH), -rotation // 90)


def _ffmpeg_version() -> int:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
    return int(out.split()[2].split(".")[0].lstrip("n") or 0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("display")
    made = {
        f"rot{r}": _write(folder / f"rot{r}.mp4", _stored_for(r), rotation=r)
        for r in (90, 180, 270)
    }
    made["sar"] = _write(folder / "sar.mp4", _quadrants(HEIGHT, WIDTH), sar=Fraction(64, 51))
    made["sar_rot90"] = _write(
        folder / "sar_rot90.mp4", _stored_for(90), rotation=90, sar=Fraction(64, 51)
    )
    if shutil.which("ffmpeg"):  # FFmpeg's own tools: display matrix and setsar
        plain = _write(folder / "plain.mp4", _stored_for(180))
        flag = ["-display_rotation", "180"] if _ffmpeg_version() >= 6 else []
        meta = [] if flag else ["-metadata:s:v:0", "rotate=180"]  # FFmpeg 5 writes the matrix
        made["ffmpeg_rot180"] = folder / "ffmpeg_rot180.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", *flag, "-i", str(plain), "-c", "copy", *meta,
             str(made["ffmpeg_rot180"])], check=True,
        )  # fmt: skip
        made["ffmpeg_sar"] = folder / "ffmpeg_sar.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(_write(folder / "q.mp4", _quadrants(
                HEIGHT, WIDTH))), "-vf", "setsar=64/51", "-c:v", "libx264", "-preset",
             "ultrafast", str(made["ffmpeg_sar"])], check=True,
        )  # fmt: skip
    return made


# ------------------------------------------------------------------------------------ rotation


@pytest.mark.parametrize("name", ["rot90", "rot180", "rot270", "ffmpeg_rot180"])
def test_rotated_clips_come_upright_from_both_decoders(clips: dict, name: str) -> None:
    if name not in clips:
        pytest.skip("no ffmpeg command on this machine")
    rotation = int(name.split("rot")[1])
    decoded, infos = {}, {}
    for backend in BACKENDS:
        with open_video(clips[name], backend=backend) as reader:
            decoded[backend], infos[backend] = reader.frames([0, FRAMES - 1, 2]), reader.info
    for backend, frames in decoded.items():
        assert frames.shape == (3, 3, HEIGHT, WIDTH), backend
        for frame in frames:  # upright: red top-left ... white bottom-right
            np.testing.assert_allclose(_quadrant_colours(frame), COLOURS, atol=12, err_msg=backend)
    for backend, info in infos.items():
        assert (info.width, info.height) == (WIDTH, HEIGHT), backend  # the displayed size
        assert (info.rotation, info.sar) == (rotation, 1), backend
    difference = (decoded["torchcodec"].float() - decoded["pyav"].float()).abs().mean()
    assert difference < 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotated_clip_read_in_chunks_and_resized(clips: dict, backend: str) -> None:
    with open_video(clips["rot90"], backend=backend) as reader:
        whole = reader.frames(range(FRAMES))
        again = torch.cat([reader.frames([4, 5]), reader.frames([0, 1, 2, 3])])
        small = reader.frames([3], size=(24, 32))
    assert torch.equal(again, whole[[4, 5, 0, 1, 2, 3]])
    assert small.shape == (1, 3, 24, 32)
    np.testing.assert_allclose(_quadrant_colours(small[0]), COLOURS, atol=12)
    empty = decode_frames(clips["rot90"], [], backend=backend)
    assert empty.shape == (0, 3, HEIGHT, WIDTH)


# -------------------------------------------------------------------------- non-square pixels


@pytest.mark.parametrize("name", ["sar", "ffmpeg_sar"])
def test_non_square_pixels_give_display_aspect_frames(clips: dict, name: str) -> None:
    """Stored 64x48 with pixel aspect 64:51 shows 80x48 (width x 64/51, height kept)."""
    if name not in clips:
        pytest.skip("no ffmpeg command on this machine")
    decoded = {}
    for backend in BACKENDS:
        with open_video(clips[name], backend=backend) as reader:
            decoded[backend] = reader.frames([1, 0])
            info = reader.info
        assert decoded[backend].shape == (2, 3, HEIGHT, 80), backend
        assert (info.width, info.height) == (80, HEIGHT), backend
        assert (info.sar, info.rotation) == (Fraction(64, 51), 0), backend
        np.testing.assert_allclose(_quadrant_colours(decoded[backend][0]), COLOURS, atol=12)
    assert (decoded["torchcodec"].float() - decoded["pyav"].float()).abs().mean() < 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_pixel_aspect_then_rotation(clips: dict, backend: str) -> None:
    """Stored 48x64 (turned), pixel aspect 64:51: the stored width 48 shows as 60, and the
    90-degree turn makes it the height: 64x60, upright."""
    with open_video(clips["sar_rot90"], backend=backend) as reader:
        frame = reader.frames([2])[0]
        assert (reader.info.width, reader.info.height) == (WIDTH, 60)
    assert frame.shape == (3, 60, WIDTH)
    np.testing.assert_allclose(_quadrant_colours(frame), COLOURS, atol=12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pixels_counts_the_displayed_frame(clips: dict, backend: str) -> None:
    with pytest.raises(VideoDecodeError, match=r"80x48 \(3840 pixels\) are over the limit of 3500"):
        open_video(clips["sar"], backend=backend, max_pixels=3500)  # stored 64x48 = 3072
    with open_video(clips["sar"], backend=backend, max_pixels=3840) as reader:
        assert reader.info.width * reader.info.height == 3840


# ---------------------------------------------------------------------------------- pose cache


def _cache_file(folder: Path, meta: dict) -> Path:
    path = cache_path(folder, "clip.mp4")
    save_joints(path, np.ones((FRAMES, 1, 17, 3)), np.arange(FRAMES), {"stride": 1, **meta})
    return path


def _joints(folder: Path, video: Path) -> np.ndarray:
    record = VideoRecord(video, 0, "clip.mp4")
    with open_video(video) as reader:
        info = reader.info
    return JointCache(folder, persons=1)(record, np.array([[0, 3]]), info)


def test_pose_cache_of_other_orientation_is_stale(clips: dict, tmp_path: Path) -> None:
    video = clips["rot180"]
    facts = {"num_frames": FRAMES, "width": WIDTH, "height": HEIGHT}
    _cache_file(tmp_path, {**facts, "rotation": 180, "pixel_aspect": "1:1"})
    assert _joints(tmp_path, video).shape == (1, 2, 1, 17, 3)  # made as displayed: fine
    for made_as in (
        {"rotation": 0, "pixel_aspect": "1:1"},  # written as stored, or the video was replaced
        {"decoder": "pyav"},  # an older file: the PyAV reader gave frames as stored
    ):
        _cache_file(tmp_path, {**facts, **made_as})
        with pytest.raises(
            UserError,
            match=r"stale pose cache file .*clip\.mp4\.npz: it was made from the video as stored "
            r"\(rotation 0\) but the video is displayed rotated 180°; delete it and run `python -m "
            r"hpnet\.pose\.cache",
        ):
            _joints(tmp_path, video)
    _cache_file(tmp_path, {**facts, "decoder": "torchcodec"})  # older, torchcodec turned it
    assert _joints(tmp_path, video).shape == (1, 2, 1, 17, 3)


def test_pose_cache_of_stored_pixel_aspect_is_stale(clips: dict, tmp_path: Path) -> None:
    facts = {"num_frames": FRAMES, "height": HEIGHT, "decoder": "torchcodec"}
    _cache_file(tmp_path, {**facts, "width": WIDTH})  # older: frames 64 wide, as stored
    with pytest.raises(
        UserError,
        match=r"made from 64x48 frames with pixel aspect 1:1 but the video is displayed 80x48 "
        r"\(its pixel aspect 64:51 corrected\)",
    ):
        _joints(tmp_path, clips["sar"])
    _cache_file(tmp_path, {**facts, "width": 80, "rotation": 0, "pixel_aspect": "64:51"})
    assert _joints(tmp_path, clips["sar"]).shape == (1, 2, 1, 17, 3)


def test_pose_cache_command_records_what_it_saw(clips: dict, tmp_path: Path) -> None:
    from hpnet.pose.cache import main

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(clips["sar_rot90"], videos / "clip.mp4")
    random_yolo = ["pose.weights=yolo11n-pose.yaml", "pose.imgsz=64", "pose.conf=0.00001"]
    out = tmp_path / "cache"
    assert main(["--videos", str(videos), "--out", str(out), "--no-progress", *random_yolo,
                 "pose.workers=0"]) == 0  # fmt: skip
    meta = load_joints(cache_path(out, "clip.mp4")).meta
    assert (meta["width"], meta["height"], meta["rotation"]) == (WIDTH, 60, 90)
    assert (meta["pixel_aspect"], meta["frames_as"]) == ("64:51", "displayed")
    assert _joints(out, videos / "clip.mp4").shape == (1, 2, 1, 17, 3)


def test_pose_cache_decoder_warning_follows_the_reader_of_each_file(tmp_path: Path, caplog) -> None:
    """Under ``auto`` an AVI is read with PyAV, other files with torchcodec: a file cached from
    an AVI read with PyAV, read again with PyAV, is no cause for a warning."""
    import logging

    from hpnet.data.decode import VideoInfo
    from hpnet.pose import store

    facts = {"num_frames": FRAMES, "width": WIDTH, "height": HEIGHT, "rotation": 0}
    _cache_file(tmp_path, {**facts, "pixel_aspect": "1:1", "decoder": "pyav"})
    record, indices = VideoRecord(tmp_path / "clip.mp4", 0, "clip.mp4"), np.array([[0, 3]])
    cache = JointCache(tmp_path, persons=1, decoder="torchcodec")  # what auto resolves to
    store._WARNED_DECODERS.clear()
    with caplog.at_level(logging.WARNING, logger="hpnet.pose.store"):
        cache(record, indices, VideoInfo(FRAMES, 10.0, WIDTH, HEIGHT, decoder="pyav"))
        assert not caplog.records
        cache(record, indices, VideoInfo(FRAMES, 10.0, WIDTH, HEIGHT, decoder="torchcodec"))
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "made with the pyav decoder, this run reads frames with torchcodec" in warning
