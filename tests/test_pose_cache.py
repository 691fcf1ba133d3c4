"""The pose cache: file format, JointCache, and ``python -m hpnet.pose.cache`` end to end.

The command runs a random-init YOLO11n-pose (``yolo11n-pose.yaml``, seeded, so every process has
the same weights) at imgsz 64 with a threshold low enough for it to report persons, on tiny
videos written with PyAV.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from hpnet.atomic import remove_stale_temp_files
from hpnet.cli import UserError
from hpnet.data.records import VideoRecord
from hpnet.pose.cache import main
from hpnet.pose.store import (
    JointCache,
    cache_path,
    is_cached,
    load_joints,
    nearest_rows,
    read_meta,
    save_joints,
)

RANDOM_YOLO = ["pose.weights=yolo11n-pose.yaml", "pose.imgsz=64", "pose.conf=0.00001"]
GOOD = ["a/clip one.mp4", "a/b/clip(2)!.mp4", "c/wide.mp4", "d.mp4"]  # nested, odd names
BROKEN = ["bad/garbage.mp4", "bad/empty.avi"]


def _write_video(path: Path, frames: int, height: int, width: int, seed: int) -> None:
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for t in range(frames):
            image = np.full((height, width, 3), 40, np.uint8)
            x = 4 + 2 * t
            image[8 : height - 8, x : x + 16] = rng.integers(120, 255, 3)  # a moving block
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Four small videos (12-16 frames, 64x64 and one 48x80) and two broken files."""
    root = tmp_path_factory.mktemp("videos")
    for i, rel in enumerate(GOOD):
        height, width = (48, 80) if "wide" in rel else (64, 64)
        _write_video(root / rel, frames=12 + 2 * (i % 3), height=height, width=width, seed=i)
    (root / BROKEN[0]).parent.mkdir()
    (root / BROKEN[0]).write_bytes(os.urandom(2000))
    (root / BROKEN[1]).write_bytes(b"")
    (root / "notes.txt").write_text("not a video")
    return root


def _run(videos: Path, out: Path, *extra: str) -> int:
    weights, *others = RANDOM_YOLO  # overrides before and after options
    return main(
        ["--videos", str(videos), weights, "--out", str(out), "--no-progress", *others, *extra]
    )


def _npz(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npz"))


def _same_files(a: Path, b: Path) -> None:
    assert _npz(a) == _npz(b)
    for rel in _npz(a):
        x, y = load_joints(a / rel), load_joints(b / rel)
        np.testing.assert_array_equal(x.frame_indices, y.frame_indices)
        np.testing.assert_allclose(x.keypoints, y.keypoints, atol=1e-5)
        assert x.meta == y.meta


# ----------------------------------------------------------------------------- the file format


def test_save_load_roundtrip_and_settings(tmp_path, monkeypatch):
    path = cache_path(tmp_path, "cls/v.avi")
    keypoints = np.random.default_rng(0).random((5, 2, 17, 3)).astype(np.float32)
    settings = {"model_id": "m", "imgsz": 64, "conf": 0.1, "iou": 0.7, "persons": 2, "stride": 2}
    save_joints(path, keypoints, np.arange(0, 10, 2), {**settings, "num_frames": 10})
    assert path == tmp_path / "cls" / "v.avi.npz" and path.is_file()
    assert not list(tmp_path.rglob("*.tmp"))
    cached = load_joints(path)
    np.testing.assert_array_equal(cached.keypoints, keypoints)
    assert cached.frame_indices.dtype == np.int64 and cached.meta["num_frames"] == 10
    assert cached.meta["format_version"] == 1
    with np.load(path) as raw:  # plain numpy can read it (public format)
        assert json.loads(str(raw["meta"]))["stride"] == 2
    settings["format_version"] = 1
    opened, real_load = [], np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: opened.append(a[0]) or real_load(*a, **k))
    assert is_cached(path, settings) and opened == [path]  # meta and arrays: one open
    monkeypatch.undo()
    assert not is_cached(path, {**settings, "conf": 0.2})
    path.write_bytes(path.read_bytes()[:100])  # cut short
    assert read_meta(path) is None and not is_cached(path, settings)
    with pytest.raises(ValueError, match="corrupt"):
        load_joints(path)


def test_stale_temp_files_are_removed(tmp_path):
    """Those of dead processes (and of an earlier process with this one's pid); a live one's,
    maybe another run writing the same file, stays unless the caller holds the folder's lock."""
    path = cache_path(tmp_path, "x/[odd] name.mp4")
    path.parent.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (path.parent / f"{path.name}.{gone}.tmp").write_bytes(b"half")
    (path.parent / f"{path.name}.{os.getpid()}.tmp").write_bytes(b"a dead run's with our pid")
    (path.parent / "other.mp4.npz.5.tmp").write_bytes(b"someone else's")
    (path.parent / f"{path.name}.1.tmp").write_bytes(b"of a live process, not this one")
    assert remove_stale_temp_files(path, keep_live_writers=True) == 2  # the dead one, our own
    left = sorted(p.name for p in path.parent.iterdir())
    assert left == sorted(["other.mp4.npz.5.tmp", f"{path.name}.1.tmp"])
    hour_ago = time.time() - 3601  # untouched for an hour: a dead run's, its pid reused
    os.utime(path.parent / f"{path.name}.1.tmp", (hour_ago, hour_ago))
    assert remove_stale_temp_files(path, keep_live_writers=True) == 1
    (path.parent / f"{path.name}.1.tmp").write_bytes(b"of a live process, not this one")
    assert remove_stale_temp_files(path) == 1  # holding the folder's lock: any is stale
    assert [p.name for p in path.parent.iterdir()] == ["other.mp4.npz.5.tmp"]


def test_nearest_rows():
    cached = np.array([0, 3, 6, 9])
    wanted = np.array([[0, 1, 2, 4, 5, 8, 20]])
    np.testing.assert_array_equal(nearest_rows(cached, wanted), [[0, 0, 1, 1, 2, 3, 3]])
    np.testing.assert_array_equal(nearest_rows(np.array([4]), np.array([0, 9])), [0, 0])


def test_joint_cache_picks_the_sampled_frames(tmp_path):
    keypoints = np.zeros((4, 2, 17, 3), np.float32)
    keypoints[..., 0] = np.arange(4)[:, None, None] / 10  # row r has x = r / 10
    keypoints[..., 2] = 1
    save_joints(cache_path(tmp_path, "v.mp4"), keypoints, [0, 2, 4, 6], {"stride": 2})
    record = VideoRecord(Path("/data/v.mp4"), 0, "v.mp4")
    joints = JointCache(tmp_path, persons=3)(record, np.array([[0, 3, 5], [6, 6, 9]]), None)
    assert joints.shape == (2, 3, 3, 17, 3) and joints.dtype == np.float32
    np.testing.assert_allclose(joints[..., 0, 0, 0], [[0.0, 0.1, 0.2], [0.3, 0.3, 0.3]])
    assert (joints[:, :, 2] == 0).all()  # a third person was never cached
    assert JointCache(tmp_path, persons=1)(record, np.array([[1]])).shape == (1, 1, 1, 17, 3)


def test_joint_cache_missing_or_corrupt_entry_says_what_to_run(tmp_path):
    record = VideoRecord(Path("/data/cls/v.avi"), 0, "cls/v.avi")
    cache = JointCache(tmp_path)
    with pytest.raises(
        UserError, match=r"python -m hpnet\.pose\.cache --config.*pose\.source=none"
    ):
        cache(record, np.zeros((1, 4), np.int64), None)
    assert cache.missing([record]) == [record]
    cache.path(record).parent.mkdir(parents=True)
    cache.path(record).write_bytes(b"garbage")
    with pytest.raises(UserError, match="corrupt pose cache file"):
        cache(record, np.zeros((1, 4), np.int64), None)


def test_a_video_replaced_since_its_file_was_made_stops_a_run_at_start(tmp_path):
    """Another clip under the same name, of the same frame count and size, trained on the old
    clip's joints without a word (train and evaluate checked only that files exist; the cache
    command and predict saw it). Its size changed: refused at start, saying what redoes it."""
    from videos import write_video

    from hpnet.pose.same_video import video_facts

    kept, swapped = (
        VideoRecord(write_video(tmp_path / "v" / name, num_frames=6), 0, name)
        for name in ("kept.mp4", "swapped.mp4")
    )
    cache_dir = tmp_path / "cache"
    for record in (kept, swapped):
        joints = np.ones((6, 1, 17, 3), np.float32)
        save_joints(cache_path(cache_dir, record.rel), joints, range(6), video_facts(record.path))
    cache = JointCache(cache_dir, persons=1)
    cache.check_complete([kept, swapped])
    assert cache.replaced([kept, swapped]) == []
    write_video(swapped.path, num_frames=9)  # (another clip: another size)
    assert cache.replaced([kept, swapped]) == [swapped]
    with pytest.raises(UserError, match=r"^1 of 2 videos were replaced since .*swapped\.mp4\)"):
        cache.check_complete([kept, swapped])


def test_videos_the_cache_command_could_not_decode_are_bad_videos(tmp_path, caplog):
    """Listed in failures.json: skipped as bad videos (data.on_error=skip, with one warning at
    start), or the run stops there (raise); not "missing" joints that no cache run can fill."""
    from videos import write_video

    from hpnet.data.datasets import VideoClipDataset

    good, bad, absent = (
        VideoRecord(write_video(tmp_path / "v" / name, num_frames=6), 0, name)
        for name in ("good.mp4", "bad.mp4", "absent.mp4")
    )
    cache_dir = tmp_path / "cache"
    save_joints(cache_path(cache_dir, "good.mp4"), np.ones((6, 1, 17, 3), np.float32), range(6), {})
    failure = {"path": str(bad.path), "rel": "bad.mp4", "error": "cannot decode: truncated"}
    odd = [{"path": "x"}, "text", {"rel": "other.mp4", "error": None}]  # passed over, or kept
    report = {"failures": [*odd, failure], "failed": 4, "from_a_newer_hpnet": 1}  # keys passed over
    (cache_dir / "failures.json").write_text(json.dumps(report))
    cache = JointCache(cache_dir, persons=1)
    assert cache.undecodable == {"other.mp4": "", "bad.mp4": "cannot decode: truncated"}
    with caplog.at_level("WARNING", logger="hpnet.pose.store"):
        cache.check_complete([good, bad])
    assert f"failed on 1 of these videos (listed in {cache_dir / 'failures.json'}" in (caplog.text)
    assert "bad.mp4: cannot decode: truncated): they are left out as bad videos" in caplog.text
    with pytest.raises(UserError, match=r"fix or remove them, or set data.on_error=skip"):
        cache.check_complete([good, bad], on_error="raise")
    with pytest.raises(UserError, match=r"^1 of 3 videos have no pose cache file; .*absent"):
        cache.check_complete([good, bad, absent])
    clips = VideoClipDataset([good, bad], frames=2, train=False, canvas_hw=(24, 32),
                             joint_source=cache)  # fmt: skip
    assert clips[0] is not None and clips[1] is None  # its frames decode; it has no joints
    assert clips.failed() == [(bad, 1)]


def test_evaluation_checks_the_joints_of_the_videos_it_scores_only(tmp_path):
    from videos import write_video

    from hpnet.config import load_config
    from hpnet.runtime import build_run_datasets

    cache_dir = tmp_path / "cache"
    for split, cls in ((s, c) for s in ("train", "test") for c in ("a", "b")):
        write_video(tmp_path / "clips" / split / cls / "v.mp4", num_frames=4)
        if split == "test":
            keypoints = np.ones((4, 1, 17, 3), np.float32)
            save_joints(cache_path(cache_dir, f"test/{cls}/v.mp4"), keypoints, range(4), {})
    overrides = ["data.dataset=folder", f"data.root={tmp_path / 'clips'}", "pose.source=cache"]
    cfg = load_config(None, [*overrides, f"pose.cache_dir={cache_dir}"])
    [scored] = build_run_datasets(cfg, test_views=1, used=("test", "val"))
    assert len(scored.test) == 2
    with pytest.raises(UserError, match=r"^2 of 4 videos have no pose cache file; .*train/a"):
        build_run_datasets(cfg, test_views=1)  # training reads them all
    failure = {"rel": "train/a/v.mp4", "error": "cannot decode"}  # the cache command's report
    (cache_dir / "failures.json").write_text(json.dumps({"failures": [failure]}))
    stop = load_config(None, [*overrides, f"pose.cache_dir={cache_dir}", "data.on_error=raise"])
    with pytest.raises(UserError, match=r"failed on 1 of these .* fix or remove them"):
        build_run_datasets(stop, test_views=1)


def test_joint_cache_refuses_a_file_made_for_another_video(tmp_path):
    """Same name, other video (replaced, re-encoded, or predict finding it by file name)."""
    from hpnet.data.decode import VideoInfo

    keypoints = np.ones((5, 1, 17, 3), np.float32)
    meta = {"stride": 1, "num_frames": 5, "width": 960, "height": 540}
    save_joints(cache_path(tmp_path, "clip.mp4"), keypoints, np.arange(5), meta)
    record = VideoRecord(Path("/data/clip.mp4"), 0, "clip.mp4")
    cache, indices = JointCache(tmp_path, persons=1), np.array([[0, 4]])
    assert cache(record, indices, VideoInfo(5, 30.0, 960, 540)).shape == (1, 2, 1, 17, 3)
    with pytest.raises(UserError, match=r"stale pose cache file .*clip\.mp4\.npz: .* 5-frame "
                       r"960x540 video, this video has 280 frames of 340x256"):  # fmt: skip
        cache(record, indices, VideoInfo(280, 30.0, 340, 256))


# ----------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory) -> Path:
    """One uninterrupted run (decoding in the main process)."""
    out = tmp_path_factory.mktemp("reference")
    assert _run(videos, out, "pose.workers=0") == 1  # the broken files fail the exit code
    return out


def test_command_writes_one_file_per_video(videos, reference, capsys):
    assert _npz(reference) == sorted(f"{rel}.npz" for rel in GOOD)
    for i, rel in enumerate(GOOD):
        cached = load_joints(cache_path(reference, rel))
        frames = 12 + 2 * (i % 3)
        assert cached.keypoints.shape == (frames, 2, 17, 3)
        np.testing.assert_array_equal(cached.frame_indices, np.arange(frames))
        meta = cached.meta
        assert meta["num_frames"] == frames and meta["fps"] == pytest.approx(10)
        assert (meta["width"], meta["height"]) == ((80, 48) if "wide" in rel else (64, 64))
        assert meta["model"] == "yolo11n-pose.yaml" and meta["imgsz"] == 64
        assert meta["decoder"] in ("torchcodec", "pyav")
        assert {"conf", "iou", "persons", "stride", "precision", "format_version"} <= set(meta)
        if "wide" not in rel:  # the random model puts its joints at the top: padding there
            assert (cached.keypoints[..., 2] > 0).any()  # the low threshold gave detections
    report = json.loads((reference / "failures.json").read_text())
    assert sorted(f["rel"] for f in report["failures"]) == sorted(BROKEN)
    assert all(f["error"] and f["path"].endswith(f["rel"]) for f in report["failures"])
    assert (report["videos"], report["cached"], report["failed"]) == (6, 4, 2)


def test_rerun_skips_and_redoes_changed_or_corrupt_files(videos, reference, tmp_path, capsys):
    out = tmp_path / "cache"
    for rel in _npz(reference):  # start from a finished cache
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes((reference / rel).read_bytes())
    capsys.readouterr()
    assert _run(videos, out, "pose.workers=0") == 1
    assert "0 cached, 4 already done, 2 failed" in capsys.readouterr().out
    (out / f"{GOOD[0]}.npz").write_bytes(b"corrupt")
    assert _run(videos, out, "pose.workers=0") == 1
    assert "1 cached, 3 already done" in capsys.readouterr().out
    _same_files(reference, out)
    assert _run(videos, out, "pose.workers=0", "pose.stride=5") == 1  # other settings: redone
    assert "4 cached, 0 already done" in capsys.readouterr().out
    np.testing.assert_array_equal(load_joints(out / f"{GOOD[0]}.npz").frame_indices, [0, 5, 10])


def test_rerun_redoes_the_file_of_a_replaced_video(videos, reference, tmp_path, capsys):
    """A video replaced by another of the same name (here 14 -> 16 frames): its file, which
    training would refuse as stale, is recomputed by the rerun, not kept as done."""
    import shutil

    mine, out = tmp_path / "videos", tmp_path / "cache"
    shutil.copytree(videos, mine)
    shutil.copytree(reference, out)
    assert (
        load_joints(out / f"{GOOD[1]}.npz").meta["video_bytes"] == (mine / GOOD[1]).stat().st_size
    )
    (mine / GOOD[1]).write_bytes((videos / GOOD[2]).read_bytes())
    capsys.readouterr()
    assert _run(mine, out, "pose.workers=0") == 1
    assert "1 cached, 3 already done" in capsys.readouterr().out
    assert load_joints(out / f"{GOOD[1]}.npz").meta["num_frames"] == 16


def test_rerun_tells_a_same_size_replacement_from_a_copy(
    videos, reference, tmp_path, capsys, monkeypatch
):
    """A video replaced by one of the same size (here one byte of it changed) is redone; the
    same video copied with a new modification time is kept, by its digest; with the time
    unchanged the video is not read at all."""
    import shutil

    from hpnet.pose import same_video as store

    mine, out = tmp_path / "videos", tmp_path / "cache"
    shutil.copytree(videos, mine)
    shutil.copytree(reference, out)
    digests = []
    real_digest = store.video_digest
    monkeypatch.setattr(store, "video_digest", lambda p: digests.append(p) or real_digest(p))
    capsys.readouterr()
    assert _run(mine, out, "pose.workers=0") == 1
    assert "0 cached, 4 already done" in capsys.readouterr().out and not digests
    copied = mine / GOOD[0]  # the same bytes, written anew (as `cp` without -p makes them)
    copied.unlink()
    copied.write_bytes((videos / GOOD[0]).read_bytes())
    os.utime(copied, ns=(0, (videos / GOOD[0]).stat().st_mtime_ns + 10**9))
    assert _run(mine, out, "pose.workers=0") == 1
    assert "0 cached, 4 already done" in capsys.readouterr().out and digests == [copied]
    edited = mine / GOOD[1]  # the same size, one byte in the middle changed
    data = bytearray(edited.read_bytes())
    data[len(data) // 2] ^= 0xFF
    edited.write_bytes(bytes(data))
    assert _run(mine, out, "pose.workers=0") == 1
    said = capsys.readouterr().out
    assert "3 already done" in said and "redoing 1 file made with other pose settings" in said
    meta = load_joints(out / f"{GOOD[1]}.npz").meta
    assert meta["video_digest"] == real_digest(edited)
    assert meta["video_mtime_ns"] == edited.stat().st_mtime_ns


def test_worker_processes_and_batches_across_videos_give_the_same_files(
    videos, reference, tmp_path
):
    out = tmp_path / "cache"
    assert _run(videos, out, "pose.workers=2", "pose.batch=5") == 1
    _same_files(reference, out)


def test_shares_split_the_videos_and_merge_the_report(videos, reference, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    codes = [_run(videos, out, "pose.workers=0", "--shard", f"{k}/3") for k in range(3)]
    # sorted rels [k::3]: share 1 holds no broken file, so only it exits 0
    assert codes == [1, 0, 1]
    _same_files(reference, out)
    merged = json.loads((out / "failures.json").read_text())
    assert (merged["videos"], merged["cached"], merged["failed"], merged["shards"]) == (6, 4, 2, 3)
    parts = [json.loads((out / f"failures-{k}-of-3.json").read_text()) for k in range(3)]
    assert sum(p["videos"] for p in parts) == 6
    # torchrun: RANK / WORLD_SIZE split the same way, combined with --shard across machines
    out2 = tmp_path / "torchrun"
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        _run(videos, out2, "pose.workers=0")
    _same_files(reference, out2)
    assert json.loads((out2 / "failures.json").read_text())["failed"] == 2


def test_a_second_run_of_the_same_share_is_refused(videos, tmp_path):
    """Two runs writing the same files would waste the work twice (and used to delete each
    other's temp files); shares of one run write side by side."""
    from hpnet.run_lock import run_folder_lock

    out = tmp_path / "busy"
    with run_folder_lock(out, name=".lock-0-of-1"):  # as a live unsharded run holds it
        with pytest.raises(UserError, match=r"another pose cache run is writing to .*busy "
                                            r"\(pid \d+\).*choose another --out"):  # fmt: skip
            _run(videos, out, "pose.workers=0")
        assert _run(videos, out, "pose.workers=0", "--shard", "1/2") == 1  # 1 bad file of 3
    assert len(_npz(out)) == 2


@pytest.mark.slow  # (~20 s: a real cache run killed and run again)
def test_killed_run_finishes_on_rerun(videos, reference, tmp_path):
    """SIGKILL mid-run, rerun: the same files as an uninterrupted run, and no debris."""
    out = tmp_path / "killed"
    stale = out / "a" / "clip one.mp4.npz.99999.tmp"  # debris of an even earlier kill
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")
    cmd = [sys.executable, "-m", "hpnet.pose.cache", "--videos", str(videos), "--out", str(out)]
    cmd += ["--no-progress", *RANDOM_YOLO, "pose.workers=1", "pose.batch=1"]
    env = {**os.environ, "YOLO_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "YOLO_VERBOSE": "False"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(_npz(out)) < 1:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(_npz(out)) < len(GOOD), "the run finished before it was killed"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 1, rerun.stderr
    assert "2 failed" in rerun.stdout
    _same_files(reference, out)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_config_mode_caches_every_split_and_writes_previews(videos, tmp_path, capsys):
    root = tmp_path / "dataset"
    for i, rel in enumerate(["walk/x1.mp4", "walk/x2.mp4", "jump/y1.mp4"]):
        _write_video(root / rel, frames=10, height=64, width=64, seed=10 + i)
    config = tmp_path / "folder.yaml"
    cache_dir = tmp_path / "pose_cache"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": "folder", "root": str(root)},
                "pose": {"cache_dir": str(cache_dir)},
            }
        )
    )
    args = ["--config", str(config), "--no-progress", *RANDOM_YOLO, "pose.workers=0"]
    assert main([*args, "--preview", "2"]) == 0
    assert _npz(cache_dir) == ["jump/y1.mp4.npz", "walk/x1.mp4.npz", "walk/x2.mp4.npz"]
    pngs = sorted((cache_dir / "preview").glob("*.png"))
    assert len(pngs) == 2
    from PIL import Image

    with Image.open(pngs[0]) as image:
        assert image.size == (480, 480)  # 64x64 frames drawn enlarged
    assert "previews: 2 PNGs" in capsys.readouterr().out


def test_missing_weights_are_refused_before_the_cache_folder_is_made(videos, tmp_path):
    out = tmp_path / "cache"
    with pytest.raises(UserError, match=r"nothing\.pt"):
        main(["--videos", str(videos), "--out", str(out), f"pose.weights={tmp_path}/nothing.pt"])
    assert not out.exists()


def test_previews_pass_over_leftover_files_of_failed_videos(videos, tmp_path, capsys):
    """A corrupt leftover file of a video that fails this run, then a readable one of other
    settings: no traceback, and only this run's files are drawn."""
    out = tmp_path / "cache"
    leftover = out / f"{BROKEN[0]}.npz"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"corrupt")
    assert _run(videos, out, "--preview", "4") == 1  # the broken videos fail
    save_joints(leftover, np.ones((3, 1, 17, 3), np.float32), np.arange(3), {"persons": 1})
    assert _run(videos, out, "--preview", "4") == 1
    pngs = sorted(p.name for p in (out / "preview").glob("*.png"))
    assert len(pngs) == 4 and not [p for p in pngs if p.startswith("bad")], pngs
    assert capsys.readouterr().out.count("previews: 4 PNGs") == 2


def test_a_joint_config_caches_each_dataset_where_training_reads_it(tmp_path, capsys):
    """data.joint: every entry's videos into its own pose_cache_dir (two entries in one folder
    share a pass); a missing cache then names its entry."""
    from hpnet.config import load_config
    from hpnet.runtime import build_run_datasets

    for name, rels in {
        "a": ["walk/x1.mp4", "jump/y1.mp4"],
        "b": ["sit/z1.mp4", "run/w1.mp4"],
    }.items():
        for i, rel in enumerate(rels):
            _write_video(tmp_path / name / rel, frames=10, height=64, width=64, seed=20 + i)
    entries = [
        {"name": n, "dataset": "folder", "root": str(tmp_path / n), "test_fraction": 0.5,
         "pose_cache_dir": str(tmp_path / f"pose_{n}")}
        for n in ("a", "b")
    ]  # fmt: skip
    config = tmp_path / "joint.yaml"
    config.write_text(yaml.safe_dump({"data": {"dataset": "folder", "joint": entries}}))
    args = ["--config", str(config), "--no-progress", *RANDOM_YOLO, "pose.workers=0"]
    with pytest.raises(UserError, match=r"entry 'a': .*no pose cache file .*pose_a"):
        build_run_datasets(load_config(config, ["model.text=false"]), test_views=1)
    with pytest.raises(UserError, match=r"--out with data.joint"):
        main([*args, "--out", str(tmp_path / "one")])
    assert main(args) == 0
    assert _npz(tmp_path / "pose_a") == ["jump/y1.mp4.npz", "walk/x1.mp4.npz"]
    assert _npz(tmp_path / "pose_b") == ["run/w1.mp4.npz", "sit/z1.mp4.npz"]
    printed = capsys.readouterr().out
    assert "pose cache (a): 2 videos: 2 cached" in printed and "pose cache (b): 2" in printed
    assert len(build_run_datasets(load_config(config, ["model.text=false"]), test_views=1)) == 2
    same = [{**e, "pose_cache_dir": str(tmp_path / "shared")} for e in entries]
    config.write_text(yaml.safe_dump({"data": {"dataset": "folder", "joint": same}}))
    assert main(args) == 0  # one pass over both datasets' videos into the shared folder
    assert len(_npz(tmp_path / "shared")) == 4 and "pose cache (a, b): 4 videos" in (
        capsys.readouterr().out
    )
    pyav = [{**same[0], "decoder": "pyav"}, same[1]]  # would read b's videos otherwise
    config.write_text(yaml.safe_dump({"data": {"dataset": "folder", "joint": pyav}}))
    with pytest.raises(UserError, match=r"entry 'b': its data.decoder .* entry 'a'"):
        main(args)


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="--config FILE"):
        main([])
    with pytest.raises(UserError, match="K/N"):
        main(["--videos", str(tmp_path), "--shard", "3"])
    with pytest.raises(UserError, match=r"K must be in \[0, N\)"):
        main(["--videos", str(tmp_path), "--shard", "2/2"])
    with pytest.raises(UserError, match="video folder not found"):
        main(["--videos", str(tmp_path / "nowhere")])
    with pytest.raises(UserError, match="no video files"):
        main(["--videos", str(tmp_path)])
    result = subprocess.run(
        [sys.executable, "-m", "hpnet.pose.cache", "--videos", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1


@pytest.mark.realdata
def test_hmdb51_config_caches_all_splits(hmdb51_mini, tmp_path):
    """``--config`` with an HMDB51 tree: every clip of splits 1-3, relative paths as in the tree."""
    cache_dir = tmp_path / "pose"
    config = tmp_path / "hmdb51.yaml"
    data = {"dataset": "hmdb51", "root": str(hmdb51_mini), "allow_missing": True, "split": 2}
    config.write_text(yaml.safe_dump({"data": data, "pose": {"cache_dir": str(cache_dir)}}))
    args = ["--config", str(config), "--no-progress", *RANDOM_YOLO]
    assert main([*args, "pose.stride=40", "pose.workers=0"]) == 0
    clips = sorted(p.relative_to(hmdb51_mini).as_posix() for p in hmdb51_mini.glob("*/*.avi"))
    assert _npz(cache_dir) == [f"{c}.npz" for c in clips]


def test_data_max_pixels_fails_videos_with_larger_frames(videos, tmp_path):
    out = tmp_path / "cache"
    assert _run(videos, out, "pose.workers=0", "data.max_pixels=4000") == 1  # 64x64 > 4000
    report = json.loads((out / "failures.json").read_text())
    too_large = [f for f in report["failures"] if "over the limit of 4000 pixels" in f["error"]]
    assert len(too_large) == sum("wide" not in rel for rel in GOOD)
    assert _npz(out) == [f"{rel}.npz" for rel in GOOD if "wide" in rel]  # 48x80 = 3840 pixels


def test_joint_cache_warns_once_when_read_with_another_decoder(tmp_path, caplog):
    import logging

    from hpnet.pose import store

    meta = {"stride": 1, "num_frames": 5, "width": 64, "height": 48, "decoder": "torchcodec"}
    save_joints(cache_path(tmp_path, "clip.avi"), np.ones((5, 1, 17, 3)), np.arange(5), meta)
    record = VideoRecord(Path("/data/clip.avi"), 0, "clip.avi")
    store._WARNED_DECODERS.clear()
    with caplog.at_level(logging.WARNING, logger="hpnet.pose.store"):
        JointCache(tmp_path, 1, decoder="torchcodec")(record, np.array([[0, 1]]))
        assert not caplog.records
        for _ in range(2):
            JointCache(tmp_path, 1, decoder="pyav")(record, np.array([[0, 1]]))
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "made with the torchcodec decoder, this run reads frames with pyav" in warning
    assert "delete the cache files and cache again with data.decoder=pyav" in warning


@pytest.mark.realdata
def test_real_clips_of_mixed_sizes_give_the_same_files_whatever_the_batches(
    shared_data, yolo_weights, tmp_path
):
    """Batches across two videos of two canvas sizes, two decoding workers: the same file bits as
    one frame per batch (the batch make-up and the workers' timing do not reach the joints)."""
    clips = tmp_path / "clips"
    clips.mkdir()
    # 320x240 and 424x240: canvases 480x640 and 384x640 (the 424x240 frames sat 48 rows lower
    # on the shared canvas when the largest frame of a batch set its size)
    for pattern in ("hmdb51_mini/golf/*.avi", "hmdb51_mini/swing_baseball/*.avi"):
        source = next(shared_data.glob(pattern))
        (clips / source.name).write_bytes(source.read_bytes())
    mixed, alone = tmp_path / "mixed", tmp_path / "alone"
    for out, batch, workers in ((mixed, 32, 2), (alone, 1, 0)):
        args = ["--videos", str(clips), "--out", str(out), "--no-progress"]
        args += [f"pose.weights={yolo_weights}", "pose.stride=45"]
        assert main([*args, f"pose.batch={batch}", f"pose.workers={workers}"]) == 0
    assert _npz(mixed) == _npz(alone) and len(_npz(mixed)) == 2
    for rel in _npz(mixed):
        a, b = load_joints(mixed / rel), load_joints(alone / rel)
        assert (a.keypoints[..., 2] > 0.5).sum() > 10, rel  # people were found
        np.testing.assert_array_equal(a.keypoints, b.keypoints, err_msg=rel)
        np.testing.assert_array_equal(a.frame_indices, b.frame_indices)
        assert a.meta == b.meta


def test_uncached_lists_each_folder_once_and_clears_only_debris(tmp_path, monkeypatch):
    """Checking 300 videos of one folder lists it once (a glob per video was quadratic: 15 s
    for 4000) and removes the debris of the one target that has some."""
    from hpnet.pose import jobs as pose_jobs

    cache = tmp_path / "cache"
    (cache / "a").mkdir(parents=True)
    videos = [pose_jobs.VideoJob(tmp_path / f"v{i}.mp4", f"a/v{i}.mp4") for i in range(300)]
    (cache / "a" / "v7.mp4.npz.99999.tmp").write_bytes(b"half")  # a dead run's
    listed, cleared = [], []
    real_list, real_clear = pose_jobs.temp_file_names, pose_jobs.remove_stale_temp_files
    monkeypatch.setattr(pose_jobs, "temp_file_names", lambda f: listed.append(f) or real_list(f))
    monkeypatch.setattr(
        pose_jobs,
        "remove_stale_temp_files",
        lambda target, **kw: cleared.append(target.name) or real_clear(target, **kw),
    )
    todo = pose_jobs.uncached(videos, cache, {"model": "x"})
    assert len(todo) == 300 and listed == [cache / "a"] and cleared == ["v7.mp4.npz"]
    assert not list((cache / "a").iterdir())


def test_a_cache_made_with_other_pose_settings_is_warned_of(tmp_path, caplog):
    """Training reads the cached joints whatever their settings; a clip without a file gets
    the config's: said once at start. Ground-truth joints of rendered clips have none."""
    from hpnet.config import load_config
    from hpnet.pose.store import JointCache

    record = VideoRecord(tmp_path / "a.mp4", 0, "a.mp4")
    meta = {"model": "yolo11n-pose.pt", "imgsz": 640, "conf": 0.25, "iou": 0.7, "stride": 4}
    meta["persons"] = 2
    save_joints(cache_path(tmp_path / "pc", "a.mp4"), np.ones((3, 1, 17, 3)), [0, 4, 8], meta)
    cache = JointCache(tmp_path / "pc")
    same = ["pose.stride=4", "pose.imgsz=640", "pose.conf=0.25"]
    pose = load_config(None, same).pose
    with caplog.at_level("WARNING", logger="hpnet.pose.store"):
        cache.warn_other_settings([record], pose)  # the same settings
        cache.warn_other_settings([record], load_config(None, [*same, "pose.persons=1"]).pose)
        assert caplog.messages == []  # (fewer persons: the first ones)
        cache.warn_other_settings([record], load_config(None, ["pose.stride=1"]).pose)
    assert len(caplog.messages) == 1
    assert "every file with pose.stride=4 (this run: 1)" in caplog.text
    caplog.clear()
    other = VideoRecord(tmp_path / "b.mp4", 0, "b.mp4")  # a mixed cache: said with the count
    save_joints(cache_path(tmp_path / "pc", "b.mp4"), np.ones((3, 1, 17, 3)), [0, 1, 2],
                {**meta, "stride": 1})  # fmt: skip
    with caplog.at_level("WARNING", logger="hpnet.pose.store"):
        JointCache(tmp_path / "pc").warn_other_settings([record, other], pose)
    assert "1 of 2 files with pose.stride=1 (this run: 4)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="hpnet.pose.store"):  # more persons than cached
        cache.warn_other_settings([record], load_config(None, [*same, "pose.persons=3"]).pose)
    assert "pose.persons=2 (this run: 3; the rest are empty)" in caplog.text
    caplog.clear()
    truth = {"source": "groundtruth", "model": "groundtruth", "stride": 1}
    save_joints(cache_path(tmp_path / "gt", "a.mp4"), np.ones((3, 1, 17, 3)), [0, 1, 2], truth)
    with caplog.at_level("WARNING", logger="hpnet.pose.store"):
        JointCache(tmp_path / "gt").warn_other_settings([record], pose)
    assert caplog.messages == []
