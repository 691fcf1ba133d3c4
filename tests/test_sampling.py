"""sample_frame_indices: TSN segments, shapes, ranges, determinism, padding, test views."""

from __future__ import annotations

import numpy as np
import pytest

from hpnet.data.sampling import sample_frame_indices, segment_bounds


def _check_valid(indices: np.ndarray, num_frames: int, clip_len: int, views: int) -> None:
    assert indices.shape == (views, clip_len)
    assert indices.dtype == np.int64
    assert indices.min() >= 0 and indices.max() < num_frames
    assert (np.diff(indices, axis=1) >= 0).all()  # sorted within each view


@pytest.mark.parametrize("num_frames", [1, 5, 15, 16, 17, 31, 90, 409, 10_000])
@pytest.mark.parametrize("clip_len", [1, 8, 16])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("views", [1, 3])
def test_shape_range_sorted(num_frames: int, clip_len: int, train: bool, views: int) -> None:
    rng = np.random.default_rng(0)
    indices = sample_frame_indices(num_frames, clip_len, train=train, views=views, rng=rng)
    _check_valid(indices, num_frames, clip_len, views)
    if num_frames >= clip_len:
        assert (np.diff(indices, axis=1) > 0).all()  # distinct frames when there are enough


@pytest.mark.parametrize("train", [True, False])
def test_one_frame_per_segment(train: bool) -> None:
    num_frames, clip_len = 100, 16
    bounds = segment_bounds(num_frames, clip_len)
    assert bounds[0] == 0 and bounds[-1] == num_frames and (np.diff(bounds) >= 1).all()
    rng = np.random.default_rng(1)
    for _ in range(20):
        indices = sample_frame_indices(num_frames, clip_len, train=train, views=2, rng=rng)
        segment = np.searchsorted(bounds, indices, side="right") - 1  # segment of each index
        assert (segment == np.arange(clip_len)).all()


def test_test_mode_centres_and_spread_views() -> None:
    centres = sample_frame_indices(160, 16, train=False)  # segments of 10 frames
    assert centres.tolist() == [list(range(5, 160, 10))]
    views = sample_frame_indices(160, 16, train=False, views=2)  # offsets at 1/4 and 3/4
    assert views[0].tolist() == list(range(2, 160, 10))
    assert views[1].tolist() == list(range(7, 160, 10))
    five = sample_frame_indices(1000, 4, train=False, views=5)  # segments of 250 frames
    assert (np.diff(five[:, 0]) == 50).all()  # views evenly spread inside the segment


def test_test_mode_ignores_rng() -> None:
    a = sample_frame_indices(300, 16, train=False, views=3)
    b = sample_frame_indices(300, 16, train=False, views=3, rng=np.random.default_rng(5))
    assert np.array_equal(a, b)


def test_train_deterministic_for_a_seed_and_random_across_seeds() -> None:
    def draw(seed: int) -> np.ndarray:
        return sample_frame_indices(300, 16, train=True, rng=np.random.default_rng(seed))

    assert np.array_equal(draw(3), draw(3))
    assert len({draw(seed).tobytes() for seed in range(10)}) == 10
    rng = np.random.default_rng(0)
    first = sample_frame_indices(300, 16, train=True, rng=rng)
    second = sample_frame_indices(300, 16, train=True, rng=rng)  # the state moved on
    assert not np.array_equal(first, second)


def test_train_offsets_cover_each_segment() -> None:
    rng = np.random.default_rng(0)
    draws = np.concatenate([sample_frame_indices(64, 16, train=True, rng=rng) for _ in range(200)])
    for i in range(16):  # segments of 4 frames: every frame gets drawn
        assert set(draws[:, i].tolist()) == {4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3}


@pytest.mark.parametrize("train", [True, False])
def test_short_video_pads_with_last_frame(train: bool) -> None:
    rng = np.random.default_rng(0)
    indices = sample_frame_indices(5, 8, train=train, views=2, rng=rng)
    assert indices.tolist() == [[0, 1, 2, 3, 4, 4, 4, 4]] * 2
    single = sample_frame_indices(1, 16, train=train, rng=rng)
    assert single.tolist() == [[0] * 16]


def test_exactly_clip_len_frames_is_identity() -> None:
    rng = np.random.default_rng(0)
    for train in (True, False):
        indices = sample_frame_indices(16, 16, train=train, rng=rng)
        assert indices.tolist() == [list(range(16))]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_frames"):
        sample_frame_indices(0, 16, train=False)
    with pytest.raises(ValueError, match="clip_len"):
        sample_frame_indices(10, 0, train=False)
    with pytest.raises(ValueError, match="views"):
        sample_frame_indices(10, 4, train=False, views=0)
    with pytest.raises(ValueError, match="rng"):
        sample_frame_indices(10, 4, train=True)


def test_train_views_are_independent_draws():
    idx = sample_frame_indices(300, 16, train=True, views=4, rng=np.random.default_rng(0))
    assert len({row.tobytes() for row in idx}) == 4
