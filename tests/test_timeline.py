"""Long videos: the window plan, smoothing and segments, and the streaming timeline command
(each frame decoded once, memory bounded by the windows in flight)."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import hpnet
from hpnet.cli import UserError
from hpnet.predict import main as predict_main
from hpnet.timeline import plan_windows, segments, smooth_scores


def test_window_plan_shares_frames_between_overlapping_windows(caplog):
    from types import SimpleNamespace

    from hpnet.data.sampling import sample_frame_indices
    from hpnet.timeline import _warn_repeats

    plan = plan_windows(num_frames=300, fps=30.0, frames=8, window=2.0, stride=0.5)
    assert plan.step == pytest.approx(0.25) and plan.stride == 2
    first, second = plan.indices(0), plan.indices(1)
    assert first.tolist() == [3, 11, 18, 26, 33, 41, 48, 56]  # segment centres of 0-60
    assert first.tolist() == sample_frame_indices(60, 8, train=False)[0].tolist()  # as a test clip
    assert set(second[:6]) == set(first[2:])  # a stride of 2 grid steps: 6 frames shared
    assert plan.span(1) == pytest.approx((0.5, 2.5))
    last = plan.indices(plan.count - 1)
    assert last.max() < 300 and plan.span(plan.count - 1)[1] == pytest.approx(10.0)
    assert plan.count == (40 - 8) // 2 + 1  # 40 grid positions in 300 frames
    # 24 fps, 16 frames a window: evenly spread, as the test sampler spreads them
    even = plan_windows(num_frames=240, fps=24.0, frames=16, window=2.0, stride=0.5)
    assert np.diff(even.indices(0)).tolist() == [3] * 15
    short = plan_windows(num_frames=20, fps=30.0, frames=8, window=2.0, stride=0.5)
    assert short.count == 1 and short.indices(0).max() < 20
    tiny = plan_windows(num_frames=5, fps=30.0, frames=8, window=2.0, stride=0.5)
    assert tiny.indices(0).tolist() == sample_frame_indices(5, 8, train=False)[0].tolist()
    # several windows over a video of fewer frames than a clip: each takes the frames on screen
    # in its time (was: the first took every frame, the others only the last)
    few = plan_windows(num_frames=5, fps=5.0, frames=8, window=0.5, stride=0.5)
    assert [few.span(i) for i in range(few.count)] == [(0.0, 0.5), (0.5, 1.0)]
    assert few.indices(0).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]  # frame k shows 0.2k..0.2k+0.2
    assert few.indices(1).tolist() == [2, 2, 3, 3, 3, 4, 4, 4]
    with caplog.at_level(logging.WARNING, logger="hpnet.timeline"):
        _warn_repeats(SimpleNamespace(path="tiny.mp4"), tiny)  # one padded clip, as predict's
        assert "frames repeat" not in caplog.text
        _warn_repeats(SimpleNamespace(path="few.mp4"), few)
    assert "few.mp4: a window of 0.50 s holds about 2 frames" in caplog.text
    with pytest.raises(UserError, match="frame rate"):
        plan_windows(num_frames=20, fps=0.0, frames=8, window=2.0, stride=0.5)


def test_the_end_of_the_video_is_scored_whatever_the_stride():
    """A last window ends where the grid ends: what is left unscored is under one grid step
    (window / T), not up to a stride (half the video with windows of 10 s every 10 s)."""
    plan = plan_windows(num_frames=599, fps=30.0, frames=8, window=10.0, stride=10.0)
    assert plan.count == 2 and plan.span(1) == pytest.approx((8.75, 18.75))
    assert plan.duration - plan.span(1)[1] < plan.step
    # an fps a hair above 30 must not lose a window to rounding
    assert plan_windows(300, 30.0000001, 16, 2.0, 0.5).count == 17
    odd = plan_windows(310, 30.00097, 16, 2.0, 0.5)
    assert odd.duration - odd.span(odd.count - 1)[1] < odd.step
    starts = [odd.span(i)[0] for i in range(odd.count)]
    assert starts[:-1] == pytest.approx([0.5 * i for i in range(odd.count - 1)])  # as asked


def test_a_variable_frame_rate_video_is_cut_by_its_frames_own_times():
    """Frames 0-149 at 30 fps (0-5 s), then 25 frames at 5 fps (5-10 s): each window takes the
    frames on screen during its seconds, not those at index / mean fps."""
    times = np.concatenate([np.arange(150) / 30, 5 + np.arange(25) / 5])
    fps = 175 / 10.0
    plan = plan_windows(175, fps, frames=8, window=2.0, stride=1.0, times=times)
    assert plan.duration == pytest.approx(9.856, abs=1e-3) and plan.count == 9
    for i in range(plan.count):
        start, end = plan.span(i)
        shown = times[plan.indices(i)]
        assert (shown >= start - 1 / 30).all() and (shown < end).all()
        assert shown.max() - shown.min() > 1.5  # spread over the window's 2 s
    assert times[plan.indices(6)] == pytest.approx([6.0, 6.2, 6.6, 6.8, 7.0, 7.2, 7.6, 7.8])


def test_window_and_stride_must_be_finite_and_positive():
    cases = [(0.0, 0.5, "--window"), (float("nan"), 0.5, "--window")]
    cases += [(2.0, float("inf"), "--stride"), (2.0, -1.0, "--stride")]
    for window, stride, bad in cases:
        with pytest.raises(UserError, match=f"^{bad} must be a number of seconds > 0"):
            plan_windows(num_frames=300, fps=30.0, frames=8, window=window, stride=stride)
    for tiny in (0.001, 1e-9):  # (a hang and a MemoryError: a grid of up to 1e10 steps)
        with pytest.raises(UserError, match=r"shorter than one frame .*at least 0\.267 s"):
            plan_windows(num_frames=300, fps=30.0, frames=8, window=tiny, stride=tiny)
    one_frame = plan_windows(num_frames=300, fps=30.0, frames=8, window=1 / 30, stride=1 / 30)
    assert one_frame.count == 300


def test_smoothing_and_segments():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7]])
    smooth = smooth_scores(probs, 3)
    torch.testing.assert_close(smooth[1], probs[:3].mean(0))
    torch.testing.assert_close(smooth[0], probs[:2].mean(0))  # shrunk at the ends
    torch.testing.assert_close(smooth_scores(probs, 1), probs)
    hours = torch.rand(20_000, 11, generator=torch.Generator().manual_seed(0)).softmax(1)
    exact = torch.nn.functional.avg_pool1d(hours.double().T[None], 3, 1)[0].T  # the inner ones
    drift = (smooth_scores(hours, 3)[1:-1].double() - exact).abs().max()
    assert drift < 1e-6  # (running float32 sums drifted by 4e-5 over 20k windows: 2.8 h)
    spans = [(0.5 * i, 0.5 * i + 2.0) for i in range(5)]
    segs = segments(probs, spans, ["sit", "run"])
    # the change lies midway between the centres of windows 1 (1.5 s) and 2 (2.0 s)
    assert [(s["label"], s["start"], s["end"]) for s in segs] == [
        ("sit", 0.0, 1.75),
        ("run", 1.75, 4.0),
    ]
    assert segs[1]["score"] == pytest.approx(0.8)
    assert segments(probs, spans, ["sit", "run"], end=4.3)[-1]["end"] == 4.3  # the video's end


def _long_video(path: Path, seconds: int, fps: int = 10, size: tuple[int, int] = (48, 64)):
    """A video whose left half is bright for the first half of the time, then dark."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width, stream.pix_fmt = *size, "yuv420p"
        for k in range(seconds * fps):
            image = np.full((*size, 3), 40, np.uint8)
            image[:, : size[1] // 2] = 220 if k < seconds * fps // 2 else 20
            image[: size[0] // 4, :] = (k * 3) % 256  # motion
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    return tiny_checkpoint


def test_timeline_command_json_and_png(checkpoint, tmp_path, capsys):
    video = _long_video(tmp_path / "long.mp4", seconds=12)
    png = tmp_path / "timeline.png"
    capsys.readouterr()
    args = [str(video), "--checkpoint", str(checkpoint), "--window", "2", "--stride", "0.5"]
    args += ["--json", "--timeline", str(png), "--pose-cache", "", "--no-pose-estimation"]
    assert predict_main(args) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert "timeline long.mp4:   0%|          | 0/21 " in captured.err  # shown from the start
    result = doc["videos"][0]
    assert doc["views"] == 1  # each window is one clip (x eval.crops), whatever eval.views
    windows, segs = result["windows"], result["segments"]
    assert len(windows) == 21 and windows[0]["start"] == 0.0 and windows[1]["start"] == 0.5
    assert (result["window"], result["stride"], result["duration"]) == (2.0, 0.5, 12.0)
    assert result["frames_decoded"] < 21 * 4  # windows share their frames
    assert all(abs(sum(t["prob"] for t in w["top"]) - 1) < 0.5 for w in windows)
    assert segs[0]["start"] == 0.0 and segs[-1]["end"] == windows[-1]["end"]
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(segs))
    assert png.is_file() and png.stat().st_size > 1000
    with pytest.raises(UserError, match=r"writes a video: name it out\.mp4"):
        predict_main([*args[:5], "--overlay", str(tmp_path / "o.png")])
    with pytest.raises(UserError, match="--smooth must be an odd number of windows"):
        predict_main([*args, "--smooth", "2"])
    with pytest.raises(UserError, match=r"^--window must be a number of seconds > 0, got nan"):
        predict_main([str(video), "--checkpoint", "none.pt", "--window", "nan"])  # before loading
    clf = hpnet.load(checkpoint, pose_cache="", estimate_pose=False)
    with pytest.raises(UserError, match=r"^stride= must be"):  # (the API's names: not --stride)
        clf.timeline(video, stride=0)
    with pytest.raises(UserError, match=r"^smooth= must be an odd number"):
        clf.timeline(video, smooth=2)
    quarter = clf.timeline(video, window=1.2)  # the stride by default: a quarter, as --stride
    assert quarter["windows"] == clf.timeline(video, window=1.2, stride=0.3)["windows"]
    assert quarter["stride"] != clf.timeline(video, window=1.2, stride=0.5)["stride"]
    with pytest.raises(UserError, match="go with --window"):
        predict_main([str(video), "--checkpoint", str(checkpoint), "--timeline", str(png)])
    capsys.readouterr()
    one = [str(video), "--checkpoint", str(checkpoint), "--pose-cache", "", "--window", "100"]
    assert predict_main([*one, "--no-pose-estimation"]) == 0  # a window longer than the video
    assert "windows of 12 s (one: the video is 12 s)" in capsys.readouterr().out
    tiny = [*one[:-1], "0.01", "--stride", "0.01", "--no-pose-estimation"]  # under one frame
    assert predict_main(tiny) == 1  # the command's own option, not the API's window=
    assert "--window 0.01 s is shorter than one frame" in capsys.readouterr().out
    with pytest.raises(UserError, match="--stride, --smooth and --timeline go with --window"):
        predict_main([str(video), "--checkpoint", str(checkpoint), "--smooth", "5"])  # (unread)


def test_a_video_failing_its_overlay_or_windows_fails_alone(checkpoint, tmp_path, monkeypatch):
    """The overlay decodes every frame, the windows only theirs: a damaged frame only the
    overlay reads fails that video (``ok: false``), not the run and the other videos."""
    from hpnet import timeline_plot
    from hpnet.data.decode import VideoDecodeError

    for name in ("a", "b"):
        _long_video(tmp_path / f"{name}.mp4", seconds=3)
    real = timeline_plot.write_timeline_video

    def damaged_a(out, video, *args, **kwargs):
        if Path(video).name == "a.mp4":
            raise VideoDecodeError(f"{video}: frame 80 cannot be decoded")
        return real(out, video, *args, **kwargs)

    monkeypatch.setattr(timeline_plot, "write_timeline_video", damaged_a)
    clf = hpnet.load(checkpoint, pose_cache="", estimate_pose=False)
    a, b = clf.timeline([tmp_path / "a.mp4", tmp_path / "b.mp4"], overlay=str(tmp_path / "o.mp4"))
    assert not a["ok"] and "frame 80" in a["error"]
    assert b["ok"] and Path(b["overlay"]).is_file()
    # a video that records no frame rate fails alone too (windows are in seconds)
    from hpnet.data import decode

    real_open = decode.open_video

    @contextlib.contextmanager
    def no_rate_for_b(path, **kwargs):
        with real_open(path, **kwargs) as reader:
            if Path(path).name == "b.mp4":
                reader._info = dataclasses.replace(reader.info, fps=0.0)
            yield reader

    monkeypatch.setattr(decode, "open_video", no_rate_for_b)
    a, b = clf.timeline([tmp_path / "a.mp4", tmp_path / "b.mp4"])
    assert a["ok"] and not b["ok"] and "records no frame rate" in b["error"]
    # a window shorter than one frame of a 1 fps video: its problem alone (was: none scored)
    slow = _long_video(tmp_path / "slow.mp4", seconds=3, fps=1)
    a, s = clf.timeline([tmp_path / "a.mp4", slow], window=0.5, stride=0.5)
    assert a["ok"] and not s["ok"]
    assert s["error"].startswith(f"cannot use {slow}: window=0.5 s is shorter than one frame")


class _TwoPeople:
    """A pose model that sees A (left) and B (right) in every frame, A ranked first in the first
    call and B from then on (B grew bigger): a tracker that starts afresh swaps their slots."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, frames: torch.Tensor) -> list:
        from hpnet.pose.tracking import FrameDetections

        boxes = np.array([[0.1, 0.1, 0.4, 0.9], [0.6, 0.3, 0.8, 0.7]], np.float32)  # A, B
        kpts = np.ones((2, 17, 3), np.float32)
        kpts[0, :, 0], kpts[1, :, 0] = 0.25, 0.7
        order = [0, 1] if self.calls == 0 else [1, 0]
        self.calls += 1
        found = FrameDetections(boxes[order], np.ones(2, np.float32), kpts[order])
        return [found] * len(frames)


def test_estimated_people_keep_their_slots_across_batches():
    """The timeline reads a video in batches of windows: one tracker follows the whole video,
    so the person in slot 0 stays A when B outranks A in a later batch."""
    from types import SimpleNamespace

    from hpnet.inference import JointFinder
    from hpnet.timeline import _FrameStore, _joints_of

    p = SimpleNamespace(joints=JointFinder("", 2, _TwoPeople))
    store, frames = _FrameStore(), torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    first, later = _joints_of(p, store, frames), _joints_of(p, store, frames)
    assert (first[:, 0, :, 0] == 0.25).all() and (later[:, 0, :, 0] == 0.25).all()
    assert (later[:, 1, :, 0] == 0.7).all()


def test_the_pose_model_gets_the_frames_as_decoded(checkpoint, tmp_path):
    """Not the model's (the canvas's 32 px) ones: the pose model's are at most its size."""
    from hpnet.inference import JointFinder
    from hpnet.pose.tracking import FrameDetections

    seen: set[tuple[int, ...]] = set()

    class PoseModel:
        def detect(self, frames):
            seen.add(tuple(frames.shape[1:]))
            return [FrameDetections.empty() for _ in frames]

    clf = hpnet.load(checkpoint, pose_cache="", estimate_pose=False)
    clf.predictor.joints = JointFinder("", 2, estimator=PoseModel)
    clf.timeline(_long_video(tmp_path / "v.mp4", seconds=2), window=1.0, stride=0.5)
    assert seen == {(3, 48, 64)}


def test_api_timeline_decodes_each_frame_once(checkpoint, tmp_path, monkeypatch, capsys):
    from hpnet.data import decode_reader

    video = _long_video(tmp_path / "long.mp4", seconds=8)
    seen: list[int] = []
    original = decode_reader.VideoReader.frames_at_sizes  # (frames() calls it)

    def counting(self, indices, *a, **kw):
        seen.extend(int(i) for i in indices)
        return original(self, indices, *a, **kw)

    monkeypatch.setattr(decode_reader.VideoReader, "frames_at_sizes", counting)
    clf = hpnet.load(checkpoint, pose_cache="", estimate_pose=False)
    result = clf.timeline(video, window=1.0, stride=0.25)
    assert len(seen) == len(set(seen)) == result["frames_decoded"]
    assert len(result["windows"]) > 20
    monkeypatch.undo()
    out = tmp_path / "labelled.mp4"
    capsys.readouterr()
    assert clf.timeline(video, window=1.0, stride=0.25, overlay=str(out))["overlay"] == str(out)
    assert "overlay labelled.mp4:   0%|          | 0/80 " in capsys.readouterr().err  # its frames
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == 80 and float(stream.average_rate) == pytest.approx(10.0)
    assert frames[0].shape[0] >= 360  # enlarged for legible text
    assert not list(tmp_path.glob("*.tmp"))


def test_overlay_streams_keep_the_videos_own_rate():
    """A decoder's averaged rate (torchcodec: 30.000968 for a 30 fps mkv) is written as the
    rate it stands for, 30/1 (was 30031/1001); NTSC rates as 1001ths."""
    from fractions import Fraction

    from hpnet.overlay import stream_rate

    assert stream_rate(30.000968) == 30 and stream_rate(25.0) == 25
    assert stream_rate(29.970029) == Fraction(30000, 1001)
    assert stream_rate(23.976) == Fraction(24000, 1001)
    assert stream_rate(12.5) == Fraction(25, 2) and stream_rate(7.69) == Fraction(769, 100)


def test_a_cached_video_reads_its_pose_file_once(checkpoint, tmp_path, monkeypatch, caplog):
    """The joints of every window come from one read of the pose cache file, not one per
    batch of windows; they are the cache's joints (the model's scores change with them)."""
    from hpnet.data.decode import open_video
    from hpnet.pose import store
    from hpnet.timeline import plan_windows

    video = _long_video(tmp_path / "long.mp4", seconds=8)
    with open_video(video) as reader:
        info = reader.info
    plan = plan_windows(info.num_frames, info.fps, 4, 1.0, 0.25)
    union = np.unique(np.concatenate([plan.indices(i) for i in range(plan.count)]))
    assert np.array_equal(plan.grid(), union)
    keypoints = np.random.default_rng(0).uniform(0.2, 0.8, (info.num_frames, 1, 17, 3))
    keypoints[..., 2] = 1.0
    meta = {"num_frames": info.num_frames, "width": info.width, "height": info.height}
    store.save_joints(tmp_path / "cache" / "long.mp4.npz", keypoints,
                      np.arange(info.num_frames), {"stride": 1, **meta})  # fmt: skip
    reads: list[Path] = []
    original = store.load_joints
    monkeypatch.setattr(store, "load_joints", lambda path: reads.append(path) or original(path))
    clf = hpnet.load(checkpoint, pose_cache=str(tmp_path / "cache"), estimate_pose=False)
    result = clf.timeline(video, window=1.0, stride=0.25)
    assert len(result["windows"]) == plan.count > 16  # more than one batch of 16 windows
    assert len(reads) == 1 and result["pose"] == "cache"
    without = hpnet.load(checkpoint, pose_cache="", estimate_pose=False)
    plain = without.timeline(video, window=1.0, stride=0.25)
    assert plain["windows"][0]["top"] != result["windows"][0]["top"] and plain["pose"] == "none"
    (tmp_path / "cache" / "long.mp4.npz").write_bytes(b"not a zip")  # corrupt: said, not hidden
    with caplog.at_level(logging.WARNING, logger="hpnet.timeline"):
        broken = clf.timeline(video, window=1.0, stride=0.25)
    assert broken["pose"] == "none" and "corrupt pose cache file" in caplog.text
    assert "count as missing (pose estimation is off)" in caplog.text  # not "estimating"


@pytest.mark.slow
def test_a_multi_minute_video_streams_with_bounded_memory(checkpoint, tmp_path, monkeypatch):
    """A 3-minute video: every window scored, every frame decoded once, and the frames held at
    any time bounded by one batch of windows (not growing with the video)."""
    from hpnet import timeline as tl

    video = _long_video(tmp_path / "long.mp4", seconds=180, size=(48, 64))
    held: list[int] = []
    original = tl._window_probs

    def watching(p, store, wanted):
        held.append(len(store.frames))
        return original(p, store, wanted)

    monkeypatch.setattr(tl, "_window_probs", watching)
    clf = hpnet.load(checkpoint, pose_cache="", estimate_pose=False)
    result = clf.timeline(video, window=2.0, stride=0.5)
    plan = plan_windows(1800, 10.0, 4, 2.0, 0.5)
    assert len(result["windows"]) == plan.count == 357
    assert result["frames_decoded"] == len({i for w in range(plan.count) for i in plan.indices(w)})
    bound = 16 * plan.stride + plan.frames  # one batch of 16 windows and its overlap
    assert max(held) <= bound and len(held) == -(-plan.count // 16)
    assert result["segments"][-1]["end"] == pytest.approx(180.0, abs=0.5)


def _vfr_video(path: Path) -> Path:
    """5 s at 30 fps (dark), then 5 s at 5 fps (bright): 175 frames, each with its own time
    (in milliseconds; an AVI numbers its frames at 30 fps, skipping 5 places after each of the
    slow ones, as ffmpeg writes a variable-rate source there)."""
    from fractions import Fraction

    unit = Fraction(1, 30) if path.suffix == ".avi" else Fraction(1, 1000)
    times = [k / 30 for k in range(150)] + [5 + k / 5 for k in range(25)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv420p"
        stream.codec_context.time_base = unit
        for t in times:
            image = np.full((48, 64, 3), 40 if t < 5 else 200, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round(t / unit), unit
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("backend", ["pyav", "torchcodec"])
@pytest.mark.parametrize("suffix", [".mp4", ".avi"])  # (an AVI's gaps in its frame numbers)
def test_readers_give_the_times_of_a_variable_frame_rate_video(tmp_path, backend, suffix):
    from hpnet.data.decode import open_video

    with open_video(_vfr_video(tmp_path / f"vfr{suffix}"), backend=backend) as reader:
        times = reader.frame_times()
    assert times is not None and len(times) == 175
    assert times[149] == pytest.approx(149 / 30, abs=1e-3)  # stored in milliseconds
    assert times[150:152] == pytest.approx([5.0, 5.2])
    with open_video(_long_video(tmp_path / "cfr.mp4", seconds=2), backend=backend) as reader:
        assert reader.frame_times() is None  # evenly spaced: frame i at i / fps


def test_an_even_avi_with_b_frames_is_even_for_both_readers(tmp_path):
    """torchcodec's rate of an XviD AVI with B-frames (24.67 fps for 25: its packet count over
    the stream's length) is not the rate PyAV's frame numbers run at: measured against it, the
    even frames read as a variable rate."""
    import shutil
    import subprocess

    from hpnet.data.decode import open_video

    if not shutil.which("ffmpeg"):
        pytest.skip("needs FFmpeg's command-line tool (libxvid)")
    video = tmp_path / "xvid.avi"
    made = subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:"
         "duration=6", "-c:v", "libxvid", "-bf", "2", str(video)], capture_output=True,
    )  # fmt: skip
    if made.returncode:
        pytest.skip("this FFmpeg has no libxvid encoder")
    for backend in ("pyav", "torchcodec"):
        with open_video(video, backend=backend) as reader:
            assert reader.frame_times() is None, backend


def test_timeline_of_a_variable_frame_rate_video(checkpoint, tmp_path, caplog):
    video = _vfr_video(tmp_path / "vfr.mp4")
    clf = hpnet.load(checkpoint, pose_cache="", estimate_pose=False)
    out = tmp_path / "labelled.mp4"
    result = clf.timeline(video, window=2.0, stride=0.3, overlay=str(out))
    assert result["duration"] == pytest.approx(9.856, abs=0.01)
    assert result["segments"][-1]["end"] == pytest.approx(result["duration"], abs=0.01)
    step = 2.0 / clf.cfg.data.frames  # the stride asked, 0.3 s, is run in whole grid steps
    assert result["window"] == 2.0 and result["stride"] == pytest.approx(step * round(0.3 / step))
    starts = [w["start"] for w in result["windows"]]
    assert starts[:-1] == pytest.approx([result["stride"] * i for i in range(len(starts) - 1)])
    assert result["windows"][-1]["end"] > result["duration"] - 0.5  # the end is scored
    with av.open(str(out)) as container:  # the overlay keeps each frame's time
        stream = container.streams.video[0]
        track = float(stream.duration * stream.time_base)  # (no B-frames: not cut short)
        shown = [float(f.time) for f in container.decode(stream)]
    assert track >= shown[-1] and track == pytest.approx(9.85, abs=0.05)
    assert len(shown) == 175 and shown[150] - shown[149] == pytest.approx(1 / 30, abs=2e-3)
    assert shown[152] - shown[151] == pytest.approx(0.2, abs=2e-3)
    assert "frames repeat" not in caplog.text
    assert "cannot keep" not in caplog.text
    with caplog.at_level("WARNING", logger="hpnet.timeline_plot"):  # an .avi has no times
        clf.timeline(video, window=2.0, stride=1.0, overlay=str(tmp_path / "labelled.avi"))
    assert "vfr.mp4 has a variable frame rate, which an .avi cannot keep" in caplog.text
    frames = clf.cfg.data.frames
    mean_fps = 175 / 9.8
    clf.timeline(video, window=1.05 * frames / mean_fps, stride=0.5)  # T frames a window...
    assert "frames repeat" not in caplog.text
    clf.timeline(video, window=0.5 * frames / mean_fps, stride=0.5)  # ...and half as many
    assert "frames repeat within it: use --window" in caplog.text
