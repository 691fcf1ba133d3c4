"""The built-in synthetic dataset: determinism, reversal pairs, joints, distractor, disk cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hpnet.cli import UserError
from hpnet.data import synthetic_splits
from hpnet.data.motions import figure_points
from hpnet.data.synthetic import (
    ACTIONS,
    REVERSAL_PAIRS,
    SyntheticActions,
    render_one,
    save_preview,
    write_synthetic_videos,
)

KW = {"resolution": 32, "length": 12}


def _bbox_area(joints: np.ndarray) -> np.ndarray:
    """Per-frame joint box area ``(L,)`` of ``joints (L, 17, 3)`` (visible joints only)."""
    vis = joints[..., 2] > 0
    out = []
    for j, v in zip(joints, vis, strict=True):
        xy = j[v, :2]
        out.append(np.prod(xy.max(0) - xy.min(0)) if len(xy) else 0.0)
    return np.array(out)


def test_classes_and_reversal_pairs():
    assert len(ACTIONS) >= 8 and len(set(ACTIONS)) == len(ACTIONS)
    names = {tuple(sorted(p)) for p in REVERSAL_PAIRS}
    assert ("sit_down", "stand_up") in names
    assert len(REVERSAL_PAIRS) >= 2


@pytest.mark.parametrize("pair", REVERSAL_PAIRS)
def test_reversal_pairs_are_exact_time_reverses(pair):
    forward, backward = pair
    for seed in range(3):
        a = figure_points(forward, 20, np.random.default_rng(seed))
        b = figure_points(backward, 20, np.random.default_rng(seed))
        np.testing.assert_array_equal(a, b[::-1])
        assert np.abs(a - a[::-1]).max() > 0.05  # and the motion itself is not symmetric


def test_deterministic_per_seed_and_index():
    a, ja, la = render_one(0, "train", 5, distractor=True, **KW)
    b, jb, lb = render_one(0, "train", 5, distractor=True, **KW)
    assert np.array_equal(a, b) and np.array_equal(ja, jb) and la == lb
    c, _, _ = render_one(1, "train", 5, distractor=True, **KW)
    d, _, _ = render_one(0, "test", 5, distractor=True, **KW)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert a.shape == (12, 3, 32, 32) and a.dtype == np.uint8
    assert ja.shape == (12, 2, 17, 3) and ja.dtype == np.float32


def test_reversed_pairs_move_in_opposite_directions():
    """sit_down lowers the hips over the clip, stand_up raises them (image y grows downwards)."""
    hips = [11, 12]
    drift = {}
    for name in ("sit_down", "stand_up"):
        label = ACTIONS.index(name)
        ys = []
        for i in range(label, label + 5 * len(ACTIONS), len(ACTIONS)):  # 5 clips of the class
            _, joints, lab = render_one(0, "train", i, resolution=64, length=32, distractor=False)
            assert lab == label
            y = joints[:, 0, hips, 1].mean(1)  # (L,) hip height of the actor
            ys.append((y[-4:].mean() - y[:4].mean()) / (np.ptp(joints[:, 0, :, 1]) + 1e-6))
        drift[name] = float(np.mean(ys))
    assert drift["sit_down"] > 0.05 > -0.05 > drift["stand_up"]


def test_joints_are_valid_and_the_figure_is_where_they_say():
    video, joints, _ = render_one(3, "train", 2, resolution=64, length=16, distractor=False)
    vis = joints[..., 2] > 0
    assert vis[:, 0].mean() > 0.9  # the actor is almost always fully in the frame
    assert ((joints[..., :2] >= 0) & (joints[..., :2] <= 1)).all()
    assert (joints[~vis] == 0).all()  # missing = x = y = conf = 0
    assert (joints[:, 1] == 0).all()  # no distractor: person 1 is all zeros
    # Pixels at the joints differ from the same pixels in frames where the figure has moved on.
    background = np.median(video, axis=0).astype(np.float32)  # (3, H, W)
    xy = (joints[:, 0, :, :2] * 63).round().astype(int)
    diffs = []
    for t in range(16):
        for k in np.flatnonzero(vis[t, 0]):
            x, y = xy[t, k]
            diffs.append(np.abs(video[t, :, y, x].astype(np.float32) - background[:, y, x]).sum())
    assert np.mean(diffs) > 2 * np.median(np.abs(video.astype(np.float32) - background).sum(1))


def test_distractor_is_smaller_in_every_frame():
    for i in range(6):
        _, joints, _ = render_one(0, "train", i, resolution=64, length=16, distractor=True)
        actor, other = _bbox_area(joints[:, 0]), _bbox_area(joints[:, 1])
        assert (other > 0).any()
        assert (actor > other).all()  # in every frame, as score x area ranking needs


def test_distractor_does_another_action(monkeypatch):
    calls = []

    def record(rng, action, other, **kwargs):
        calls.append((action, other))
        return np.zeros((1, 3, 2, 2), np.uint8), np.zeros((1, 2, 17, 3), np.float32)

    monkeypatch.setattr(synthetic_splits, "render_clip", record)
    for i in range(3 * len(ACTIONS)):
        render_one(0, "train", i, distractor=True, **KW)
    assert all(other in ACTIONS and other != action for action, other in calls)
    assert len({other for _, other in calls}) > len(ACTIONS) // 2  # drawn, not fixed
    calls.clear()
    render_one(0, "train", 0, distractor=False, **KW)
    assert calls == [(ACTIONS[0], None)]


def test_dataset_views_canvas_and_no_joints():
    ds = SyntheticActions(
        "test",
        num_videos=4,
        frames=5,
        seed=0,
        distractor=False,
        train=False,
        views=2,
        canvas_hw=(24, 40),
        **KW,
    )
    s = ds[1]
    assert s["video"].shape == (2, 5, 3, 24, 40) and s["video"].dtype == torch.uint8
    assert s["joints"].shape == (2, 5, 2, 17, 3)
    assert ds.labels == [0, 1, 2, 3] and ds.classes == list(ACTIONS)
    blind = SyntheticActions(
        "train", num_videos=2, frames=4, seed=0, distractor=True, train=True, joints=False, **KW
    )
    assert blind[0]["video"].shape == (4, 3, 32, 32)
    assert (blind[0]["joints"] == 0).all()


def test_train_sampling_depends_on_epoch():
    ds = SyntheticActions(
        "train", num_videos=2, frames=4, seed=0, distractor=False, train=True, **KW
    )
    a = ds[0]["video"]
    assert torch.equal(a, ds[0]["video"])  # same epoch, same clip
    ds.set_epoch(1)
    assert not torch.equal(a, ds[0]["video"])  # a new epoch draws other frames


def test_disk_cache_is_reused(tmp_path, monkeypatch):
    args = {"num_videos": 3, "frames": 4, "seed": 0, "distractor": False, "train": True, **KW}
    monkeypatch.setenv("HOME", str(tmp_path.parent))
    first = SyntheticActions("train", root=f"~/{tmp_path.name}", **args)  # (not a ./~ folder)
    assert list(tmp_path.glob("synthetic-*/train.npz"))

    def no_render(*a, **k):
        raise AssertionError("rendered again instead of reusing the cache")

    monkeypatch.setattr(synthetic_splits, "render_split", no_render)
    again = SyntheticActions("train", root=tmp_path, **args)
    assert torch.equal(first.video, again.video)
    with pytest.raises(AssertionError, match="rendered again"):
        SyntheticActions("train", root=tmp_path, **{**args, "seed": 1})  # other settings
    monkeypatch.undo()
    (path,) = tmp_path.glob("synthetic-*/train.npz")
    path.write_bytes(b"not a zip file")  # a damaged cache is rendered again and replaced
    for name in ("train.npz.4000004.tmp", "train.json.4000005.tmp"):  # killed writers' halves
        (path.parent / name).write_bytes(b"half")
    assert torch.equal(SyntheticActions("train", root=tmp_path, **args).video, first.video)
    assert not list(path.parent.glob("*.tmp"))


def test_dataset_indexing_and_settings_errors():
    ds = SyntheticActions(
        "train", num_videos=3, frames=4, seed=-5, distractor=False, train=True, **KW
    )
    assert ds[-1]["index"] == 2 and ds[-1]["label"] == 2
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(ValueError, match="split"):
        SyntheticActions("val", num_videos=1, frames=4, seed=0, distractor=False, train=True, **KW)


def test_written_videos_decode_and_have_joint_files(tmp_path):
    from hpnet.data.decode import open_video
    from hpnet.pose.store import cache_path, load_joints

    out = write_synthetic_videos(tmp_path, num_train=2, num_test=1, resolution=32, length=10)
    lines = (out / "train.txt").read_text().split("\n")
    rel, label = lines[0].rsplit(" ", 1)
    assert int(label) == 0 and (out / "classes.txt").read_text().split() == list(ACTIONS)
    with open_video(out / rel) as reader:
        assert reader.info.num_frames == 10 and reader.info.width == 32
        assert reader.frames([0, 9]).shape == (2, 3, 32, 32)
        decoded = reader.frames(list(range(10))).numpy().astype(np.float32)
    cached = load_joints(cache_path(out / "pose_cache", rel))
    assert cached.keypoints.shape == (10, 2, 17, 3)
    assert cached.meta["source"] == "groundtruth" and cached.meta["num_frames"] == 10
    video, joints, _ = render_one(0, "train", 0, resolution=32, length=10, distractor=False)
    np.testing.assert_allclose(cached.keypoints, joints)
    other, _, _ = render_one(0, "train", 1, resolution=32, length=10, distractor=False)
    error = np.abs(decoded - video).mean()  # the same clip, up to H.264 + yuv420p loss
    assert error < 20 and error < 0.5 * np.abs(decoded - other).mean()
    with pytest.raises(ValueError, match="even"):
        write_synthetic_videos(tmp_path / "odd", num_train=1, num_test=1, resolution=33)
    with pytest.raises(ValueError, match=r"fps must be >= 0\.1"):
        write_synthetic_videos(tmp_path / "slow", num_train=1, num_test=1, fps=0.0001)


def test_rewrite_stopped_half_way_leaves_no_old_joints(tmp_path, monkeypatch):
    """Writing other clips over a folder removes each old joints file before its new video,
    and the manifest until the end: a stop half-way never pairs a new video with old joints."""
    from hpnet.data import synthetic_files
    from hpnet.pose.store import cache_path

    out = write_synthetic_videos(tmp_path, num_train=2, num_test=1, resolution=32, length=10)
    assert json.loads((out / "synthetic.json").read_text())["seed"] == 0
    rel = (out / "train.txt").read_text().split()[0]
    stop = KeyboardInterrupt("stopped after the first video")

    def stop_after_video(*args, **kwargs):
        raise stop

    monkeypatch.setattr("hpnet.pose.store.save_joints", stop_after_video)
    with pytest.raises(KeyboardInterrupt):
        synthetic_files.write_synthetic_videos(
            out, num_train=2, num_test=1, resolution=32, length=10, seed=1
        )
    assert not cache_path(out / "pose_cache", rel).exists()
    assert not (out / "synthetic.json").exists()


def test_a_rewrite_removes_the_clips_it_does_not_write_again(tmp_path):
    """Fewer clips over a folder: the earlier write's others go, with their joints and the
    class folders they leave empty (a --videos cache run would have read them)."""
    kw = {"resolution": 16, "length": 4, "progress": False}
    out = write_synthetic_videos(tmp_path, num_train=4, num_test=2, **kw)
    before = {p.relative_to(out).as_posix() for p in out.rglob("*.mp4")}
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    (out / "mine" / "clip.mp4").write_bytes(b"a user's own clip, listed by hand")
    (out / "wave").mkdir(exist_ok=True)
    (out / "wave" / "wave_00001.mp4").write_bytes(b"another of the user's")
    with (out / "train.txt").open("a") as listed:
        listed.write("mine/clip.mp4 0\nwave/wave_00001.mp4 0\n../outside.mp4 0\n")
    write_synthetic_videos(out, num_train=2, num_test=1, actions=("wave", "kick"), **kw)
    listed = {line.split()[0] for n in ("train", "test") for line in (out / f"{n}.txt").open()}
    kept = {"mine/clip.mp4", "wave/wave_00001.mp4"}  # not this writer's: left alone
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.mp4")} == listed | kept
    assert len(before) == 6 and len(listed) == 3 and (out / "notes.txt").exists()
    assert {p.relative_to(out / "pose_cache").as_posix()[:-4] for p in out.rglob("*.npz")} == listed
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "kick",
        "mine",
        "pose_cache",
        "wave",
    ]


def test_a_rewrite_stopped_half_way_leaves_no_clip_unlisted(tmp_path, monkeypatch):
    """Fewer clips over a folder, stopped in the test split: the lists still name the earlier
    clips, so the next rewrite removes every clip it does not write again."""
    from hpnet.pose import store

    kw = {"resolution": 16, "length": 4, "progress": False}
    out = write_synthetic_videos(tmp_path, num_train=4, num_test=2, **kw)
    saved, save = [], store.save_joints

    def stop_in_the_test_split(*args, **kwargs):
        saved.append(args[0])
        if len(saved) == 3:  # the train split's 2 clips are written
            raise KeyboardInterrupt
        save(*args, **kwargs)

    monkeypatch.setattr(store, "save_joints", stop_in_the_test_split)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_videos(out, num_train=2, num_test=1, **kw)
    monkeypatch.setattr(store, "save_joints", save)
    write_synthetic_videos(out, num_train=2, num_test=1, **kw)
    listed = {line.split()[0] for n in ("train", "test") for line in (out / f"{n}.txt").open()}
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.mp4")} == listed
    assert len(listed) == 3


def test_preview_png(tmp_path):
    video, joints, _ = render_one(0, "train", 4, distractor=True, **KW)
    path = save_preview(tmp_path / "wave.png", video, joints, columns=4)
    assert path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("switch", "drawn"), [(None, True), ("", True), ("1", False), ("0", False)]
)
def test_progress_bar_obeys_tqdm_disable(switch, drawn, monkeypatch, capsys) -> None:
    """TQDM_DISABLE hides hpnet's bars too (tqdm reads it only when ``disable=`` is left out)."""
    if switch is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", switch)
    synthetic_splits.render_split(
        "train", num_videos=2, resolution=32, length=4, seed=0, distractor=False, progress=True
    )
    assert ("rendering synthetic train" in capsys.readouterr().err) == drawn


def test_joints_land_on_the_figures_pixels(monkeypatch) -> None:
    """On a black scene without lighting noise (the same random draws otherwise), nearly every
    visible joint falls on a pixel of the figure: a shifted, mirrored, transposed or
    time-reversed skeleton does not."""
    from hpnet.data import render
    from hpnet.data.motions import ACTIONS

    scene = render.render_background
    monkeypatch.setattr(render, "render_background", lambda rng, n, r: scene(rng, n, r) * 0)

    def unlit(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (np.clip(frames, 0, 1) * 255).astype(np.uint8).transpose(0, 3, 1, 2)

    monkeypatch.setattr(render, "apply_lighting", unlit)
    size, hits = 64, []
    for i, action in enumerate(ACTIONS):
        rng = synthetic_splits.clip_rng(0, "train", i)
        video, joints = render.render_clip(rng, action, None, resolution=size, length=12)
        figure = video.max(1) > 0  # (L, R, R)
        t, k = np.nonzero(joints[:, 0, :, 2] > 0)
        x = np.minimum((joints[t, 0, k, 0] * size).astype(int), size - 1)
        y = np.minimum((joints[t, 0, k, 1] * size).astype(int), size - 1)
        hits.append(figure[t, y, x])
    assert np.concatenate(hits).mean() > 0.98


def test_left_joints_are_the_figures_left() -> None:
    """COCO-17 left is the person's own left: facing the camera, the left eye, shoulder and hip
    are on the image's right."""
    from hpnet.data.motions import ACTION_SPECS, ACTIONS

    facing = [a for a in ACTIONS if ACTION_SPECS[a].yaw[1] <= 60]
    assert facing
    for action in facing:
        _, joints, _ = synthetic_splits.render_one(
            0, "train", ACTIONS.index(action), resolution=64, length=8, distractor=False
        )
        x = joints[:, 0, :, 0]  # (L, 17)
        assert (x[:, 1] > x[:, 2]).all() and (x[:, 5] > x[:, 6]).all(), action
        assert (x[:, 11] > x[:, 12]).all(), action


def test_a_subset_of_actions_is_written_and_checked(tmp_path, caplog):
    """--actions writes those classes only; a run asking for them reads the files without a
    warning, one asking for others is told the command that writes them."""
    from hpnet.config import load_config
    from hpnet.data.synthetic_files import main, synthetic_file_records

    out = tmp_path / "two"
    flags = ["--train", "2", "--test", "2", "--resolution", "32", "--length", "8"]
    assert main([str(out), *flags, "--actions", "wave,kick"]) == 0
    assert (out / "classes.txt").read_text().split() == ["wave", "kick"]
    assert (out / "train.txt").read_text().split()[::2] == [
        "wave/train_00000.mp4",
        "kick/train_00001.mp4",
    ]

    def settings(actions: str) -> list[str]:
        return [f"data.root={out}", "data.dataset=synthetic", f"data.synthetic.actions={actions}",
                "data.synthetic.train_videos=2", "data.synthetic.test_videos=2",
                "data.synthetic.resolution=32", "data.synthetic.length=8"]  # fmt: skip

    with caplog.at_level("WARNING", logger="hpnet.data.synthetic_files"):
        splits = synthetic_file_records(load_config(None, settings("[wave,kick]")), False)
    assert list(splits.classes) == ["wave", "kick"] and not caplog.text
    with caplog.at_level("WARNING", logger="hpnet.data.synthetic_files"):
        synthetic_file_records(load_config(None, settings("[wave,clap]")), False)
    assert "actions wave,kick (asked: wave,clap)" in caplog.text
    assert "--length 8 --fps 15.0 --seed 0 --actions wave,clap (then" in caplog.text
    assert "or describe these files: data.synthetic.actions=[wave,kick]" in caplog.text
    suggested = caplog.text.split("describe these files: ")[1].split()
    caplog.clear()
    described = [*settings("[wave,clap]"), *suggested]  # the run's, then the suggestion
    with caplog.at_level("WARNING", logger="hpnet.data.synthetic_files"):
        synthetic_file_records(load_config(None, described), False)
    said = [r for r in caplog.records if r.name == "hpnet.data.synthetic_files"]
    assert not said  # the described settings are the files'
    with pytest.raises(UserError, match=r"actions must be some of sit_down,"):
        main([str(tmp_path / "bad"), *flags, "--actions", "wave,fly"])
