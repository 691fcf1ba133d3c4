"""Random erasing (data.augment.erase_prob): one noise rectangle of 2-33 % of a frame, each frame
on its own, drawn from the step's generator; off at 0; refused in pretraining."""

from __future__ import annotations

import pytest
import torch

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.data.erasing import erase_frames
from hpnet.data.transforms import ClipTransform


def _video() -> torch.Tensor:
    return torch.full((3, 8, 3, 24, 32), 5.0)  # (B, T, 3, S_h, S_w): noise is never exactly 5


def test_every_frame_gets_one_rectangle_of_the_allowed_size_at_probability_one():
    erased = erase_frames(_video(), 1.0, torch.Generator().manual_seed(0)) != 5.0
    boxes = erased.flatten(0, 1)  # (frames, 3, h, w)
    for frame in boxes:
        assert torch.equal(frame[0], frame[1]) and torch.equal(frame[0], frame[2])  # all channels
        rows, cols = frame[0].any(1).nonzero()[:, 0], frame[0].any(0).nonzero()[:, 0]
        h, w = len(rows), len(cols)
        assert h and w and int(frame[0].sum()) == h * w  # one filled rectangle
        assert rows.max() - rows.min() + 1 == h and cols.max() - cols.min() + 1 == w
        tol = (h + w) / 2 + 1  # (each side rounded to whole pixels)
        assert 0.02 * 24 * 32 - tol <= h * w <= 24 * 32 / 3 + tol
    shapes = {tuple(frame[0].nonzero().amin(0).tolist()) for frame in boxes}
    assert len(shapes) > 1  # each frame its own place


def test_erasing_is_off_at_zero_partial_at_a_share_and_follows_the_generator():
    video = _video()
    assert erase_frames(video, 0.0) is video
    frames = (erase_frames(video, 0.5, torch.Generator().manual_seed(1)) != 5.0).flatten(0, 1)
    hit = frames.flatten(1).any(1)
    assert 0 < int(hit.sum()) < len(hit)
    a = erase_frames(video, 0.5, torch.Generator().manual_seed(2))
    assert torch.equal(a, erase_frames(video, 0.5, torch.Generator().manual_seed(2)))


def test_the_training_transform_erases_and_leaves_joints_alone():
    tf = ClipTransform(size=16, mean=[0.5] * 3, std=[0.25] * 3, flip=False, scale_min=1.0,
                       jitter=0.0, blur_prob=0.0, erase_prob=1.0)  # fmt: skip
    video = torch.full((2, 4, 3, 16, 16), 128, dtype=torch.uint8)
    joints = torch.rand(2, 4, 1, 17, 3)
    out, mapped = tf.train(video, joints, torch.Generator().manual_seed(0))
    plain, same = ClipTransform(size=16, mean=[0.5] * 3, std=[0.25] * 3, flip=False,
                                scale_min=1.0, jitter=0.0, blur_prob=0.0).train(
        video, joints, torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(mapped, same)
    assert (out != plain).flatten(2).any(2).all()  # every frame has its box


def test_erasing_is_a_fraction_and_not_for_pretraining():
    from hpnet.pretrain.setup import check_pretrain_config

    with pytest.raises(UserError, match=r"data\.augment\.erase_prob"):
        load_config(None, ["data.augment.erase_prob=1.5"])
    cfg = load_config(None, ["data.augment.erase_prob=0.25", "data.augment.blur_prob=0"])
    with pytest.raises(UserError, match=r"erase_prob=0\.25: pretraining erases no frames"):
        check_pretrain_config(cfg)
