"""The built-in synthetic dataset: determinism, reversal pairs, joints, distractor, disk cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpnet.data import synthetic
from hpnet.data.synthetic import (
    ACTIONS,
    REVERSAL_PAIRS,
    SyntheticActions,
    render_one,
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


def test_distractor_is_smaller_and_does_something_else():
    for i in range(6):
        _, joints, _ = render_one(0, "train", i, resolution=64, length=16, distractor=True)
        actor, other = _bbox_area(joints[:, 0]), _bbox_area(joints[:, 1])
        assert (other > 0).any()
        assert np.median(actor) > np.median(other[other > 0])


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
    first = SyntheticActions("train", root=tmp_path, **args)
    assert list(tmp_path.glob("synthetic-*/train.npz"))

    def no_render(*a, **k):
        raise AssertionError("rendered again instead of reusing the cache")

    monkeypatch.setattr(synthetic, "render_split", no_render)
    again = SyntheticActions("train", root=tmp_path, **args)
    assert torch.equal(first.video, again.video)
    with pytest.raises(AssertionError, match="rendered again"):
        SyntheticActions("train", root=tmp_path, **{**args, "seed": 1})  # other settings


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
    cached = load_joints(cache_path(out / "pose_cache", rel))
    assert cached.keypoints.shape == (10, 2, 17, 3)
    _, joints, _ = render_one(0, "train", 0, resolution=32, length=10, distractor=False)
    np.testing.assert_allclose(cached.keypoints, joints)
