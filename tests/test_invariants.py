"""Small invariants the module tests left open, one per module: each test kills a mutation
(a flipped comparison, a dropped term, an off-by-one) that survived the rest of the suite.

Motion modules and LS-ViT, FPM pooling on non-square maps, datasets and the epoch sampler,
class files, the pose cache, tracking, the skeleton, RNG state in checkpoints, VideoMAE's
decoder layout and reconstruction, SimSiam's views (the schedule's and the pose encoder's are in
test_optim.py and test_fpm.py).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from videos import write_video


# ---------------------------------------------------------------- motion / lsvit
def test_gate_sees_the_long_offset_difference():
    from hpnet.models.motion import MotionExcitation

    assert [MotionExcitation.long_offset(t) for t in (4, 8, 16)] == [2, 2, 4]
    torch.manual_seed(0)
    me = MotionExcitation(dim=8, hidden=8)
    me.init_weights()
    with torch.no_grad():
        me.temporal.weight.zero_()
        me.temporal.weight[:, 8:, 1] = torch.randn(8, 8)  # only the long-range channels, centre tap
    x = torch.zeros(1, 4, 3, 8)
    x[:, 2:] = torch.randn(8)  # frames 0, 1 equal; frames 2, 3 differ
    gate = me(x)
    assert not torch.allclose(gate[0, 0], torch.ones(1, 8), atol=1e-4)  # frame 0 sees frame 2


def test_lmi_masked_tokens_reach_no_other_token():
    from hpnet.models.motion import LongTermMotion

    torch.manual_seed(0)
    lmi = LongTermMotion(16)
    lmi.init_weights()
    with torch.no_grad():
        for p in lmi.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(2, 5, 6, 16)
    mask = torch.rand(2, 5, 6) > 0.3
    garbage = torch.where(mask.unsqueeze(-1), x, torch.randn_like(x) * 10)
    with torch.no_grad():
        torch.testing.assert_close(lmi(x, mask)[mask], lmi(garbage, mask)[mask])


def test_temporal_embedding_resize_values():
    from hpnet.models.lsvit import resize_temporal_embed

    pe = torch.arange(4.0).view(1, 4, 1, 1)
    out = resize_temporal_embed(pe, 8)[0, :, 0, 0]
    torch.testing.assert_close(out, torch.tensor([0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]))


# ---------------------------------------------------------------- fpm
def test_pool_reads_the_cell_on_a_non_square_frame():
    from hpnet.fusion.fpm import pool_at_joints

    gh, gw, stride, first, h, w = 4, 6, 32, 16.0, 128, 192
    ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    patches = torch.stack([xs, ys], -1).float().reshape(1, 1, gh * gw, 2)
    cells = [(1, 1), (2, 4), (1, 3)]  # (row, col)
    joints = torch.zeros(1, 1, 1, len(cells), 3)
    for n, (r, c) in enumerate(cells):
        joints[0, 0, 0, n] = torch.tensor([(first + stride * c) / w, (first + stride * r) / h, 1.0])
    pooled = pool_at_joints(patches, (gh, gw), joints, 1, cells=(stride, first), frame_hw=(h, w))
    torch.testing.assert_close(pooled[0, 0, 0], torch.tensor([[c, r] for r, c in cells]).float())


def test_window_samples_are_one_cell_apart_on_a_non_square_grid():
    from hpnet.fusion.fpm import pool_at_joints

    gh, gw = 4, 8
    for cell in [(1, 4), (2, 3)]:  # right and lower neighbours of cell (1, 3)
        fmap = torch.zeros(gh, gw)
        fmap[cell] = 1.0
        joints = torch.tensor([3.5 / gw, 1.5 / gh, 1.0]).view(1, 1, 1, 1, 3)
        pooled = pool_at_joints(fmap.reshape(1, 1, gh * gw, 1), (gh, gw), joints, window=3)
        torch.testing.assert_close(pooled.flatten(), torch.tensor([1 / 9]))


# ---------------------------------------------------------------- optim
# ---------------------------------------------------------------- data
def test_a_joint_source_of_the_wrong_frame_count_is_refused(tmp_path):
    from hpnet.data.datasets import VideoClipDataset
    from hpnet.data.records import VideoRecord

    path = write_video(tmp_path / "v.mp4", 20)

    def short(record, indices, info):
        return np.zeros((indices.shape[0], indices.shape[1] - 1, 1, 17, 3), np.float32)

    ds = VideoClipDataset(
        [VideoRecord(path, 0, "v.mp4")],
        frames=4,
        train=False,
        canvas_hw=(16, 20),
        joint_source=short,
    )
    with pytest.raises(ValueError, match="joint source returned shape"):
        ds[0]


def test_epoch_sampler_skips_in_its_own_permutation():
    from hpnet.data.loader import EpochSampler

    s = EpochSampler(list(range(10)), seed=3)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, skip=4)
    assert list(s) == full[4:]


def test_classes_file_skips_comments(tmp_path):
    from hpnet.data.list_files import read_classes_file

    f = tmp_path / "classes.txt"
    f.write_text("# my classes\nsit\n\nstand\n")
    assert read_classes_file(f) == ["sit", "stand"]


# ---------------------------------------------------------------- pose store / tracking / skeleton
def test_joint_cache_keeps_every_cached_person(tmp_path):
    from hpnet.data.records import VideoRecord
    from hpnet.pose.store import JointCache, cache_path, save_joints

    kp = np.zeros((2, 2, 17, 3), np.float32)
    kp[:, 0, :, 2], kp[:, 1, :, 2] = 1, 1
    kp[:, 1, :, 0] = 0.7
    save_joints(cache_path(tmp_path, "v.mp4"), kp, [0, 1], {})
    joints = JointCache(tmp_path, persons=2)(
        VideoRecord(Path("/v.mp4"), 0, "v.mp4"), np.array([[0, 1]])
    )
    np.testing.assert_array_equal(joints[0, :, 1], kp[:, 1])


def _det(boxes, scores):
    from hpnet.pose.tracking import FrameDetections

    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    kp = np.zeros((len(boxes), 17, 3), np.float32)
    kp[..., 0], kp[..., 1], kp[..., 2] = boxes[:, :1], 0.5, 1.0
    return FrameDetections(boxes, np.asarray(scores, np.float32), kp)


def test_a_slot_is_held_for_exactly_max_age_missed_frames():
    from hpnet.pose.tracking import FrameDetections, PersonTracker

    left, right = [0.1, 0.1, 0.3, 0.9], [0.6, 0.1, 0.9, 0.9]
    tracker = PersonTracker(persons=1, max_age=2)
    tracker.update(_det(left, [0.9]))
    for _ in range(2):
        tracker.update(FrameDetections.empty())
    assert (tracker.update(_det(right, [0.9])) == 0).all()  # missed max_age frames: still held


def test_a_box_that_is_not_the_other_slots_best_match_is_taken():
    from hpnet.pose.tracking import track_persons

    l0, l1 = [0.10, 0.40, 0.20, 0.60], [0.30, 0.40, 0.58, 0.60]
    big = [0.10, 0.40, 0.58, 0.60]  # IoU 0.21 with slot 0's box, 0.58 with slot 1's (its best: l1)
    joints = track_persons([_det([l0, l1], [0.9, 0.8]), _det([l1, big], [0.9, 0.8])], persons=2)
    assert joints[1, 0, 0, 0] == pytest.approx(0.10) and joints[1, 1, 0, 0] == pytest.approx(0.30)


def test_flip_permutation_swaps_left_and_right_names():
    from hpnet.pose.skeleton import FLIP_PERMUTATION, KEYPOINTS

    for k, j in enumerate(FLIP_PERMUTATION):
        swapped = KEYPOINTS[k].replace("left", "#").replace("right", "left").replace("#", "right")
        assert KEYPOINTS[j] == swapped


def test_adjacency_is_symmetrically_normalised():
    """The graph convolution's default adjacency is D^-1/2 (A + I) D^-1/2."""
    from hpnet.pose.skeleton import adjacency

    raw = adjacency(normalize=False)
    d = raw.sum(1)
    torch.testing.assert_close(adjacency(), raw / torch.sqrt(d[:, None] * d[None, :]))


def test_adjacency_links_shoulders_and_hips():
    from hpnet.pose.skeleton import adjacency

    a = adjacency(self_loops=False, normalize=False)
    assert a[5, 6] == a[6, 5] == a[11, 12] == a[12, 11] == 1 and a.sum() == 2 * (16 + 2)


# ---------------------------------------------------------------- checkpoint
def test_rng_state_round_trip():
    from hpnet.checkpoint import rng_state, set_rng_state

    state = rng_state()
    before = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == before


# ---------------------------------------------------------------- videomae
def _tiny_mae():
    from hpnet.models.lsvit import build_lsvit
    from hpnet.pretrain.videomae import VideoMAE

    torch.manual_seed(0)
    encoder = build_lsvit("tiny", img_size=32, patch_size=8, num_frames=4)
    return VideoMAE(encoder, mask_ratio=0.75, decoder_width=32, decoder_depth=1).eval()


def test_tube_mask_keeps_one_visible_at_high_ratios():
    from hpnet.pretrain.videomae import tube_mask

    assert (tube_mask(8, 16, 0.99).sum(1) == 15).all()


def test_the_decoder_puts_each_encoded_token_at_its_position():
    from hpnet.pretrain.videomae import tube_mask, visible_positions

    model = _tiny_mae()
    video = torch.randn(2, 4, 3, 32, 32)
    mask = tube_mask(2, 16, 0.75, torch.Generator().manual_seed(0))
    seen = {}
    model.decoder_blocks[0].register_forward_pre_hook(lambda m, a: seen.update(full=a[0]))
    with torch.no_grad():
        latent = model.encode(video, mask)
        model.decode(latent, mask)
        x = model.decoder_embed(latent)
        full = seen["full"] - model.decoder_pos_embed
    pos = visible_positions(mask)
    for b in range(2):
        torch.testing.assert_close(full[b, :, 0], x[b, :, 0])
        torch.testing.assert_close(full[b, :, 1 + pos[b]], x[b, :, 1:])


def test_reconstruct_of_a_perfect_prediction_is_the_clip():
    from hpnet.pretrain.videomae import pixel_targets, tube_mask

    model = _tiny_mae()
    video = torch.randn(2, 4, 3, 32, 32)
    mask = tube_mask(2, 16, 0.75, torch.Generator().manual_seed(0))
    out = model.reconstruct(video, {"pred": pixel_targets(video, 8, True), "mask": mask})
    torch.testing.assert_close(out, video, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- simsiam views
def test_jitter_and_grey_are_drawn_at_their_rates():
    from hpnet.data.simsiam_views import STRONG, sample_view_params

    p = sample_view_params(4000, (32, 32), STRONG, 32, torch.Generator().manual_seed(0))
    assert abs(float((p.brightness != 1).float().mean()) - 0.8) < 0.03
    assert abs(float((p.saturation == 0).float().mean()) - 0.2) < 0.03


def test_frames_mode_is_lightly_augmented():
    from hpnet.data.simsiam_views import LIGHT, STRONG, SimSiamViews

    mean = std = (0.5, 0.5, 0.5)
    assert SimSiamViews("frames", 32, mean, std).aug == LIGHT
    assert SimSiamViews("augment", 32, mean, std).aug == STRONG
