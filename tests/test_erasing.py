"""Random erasing (data.augment.erase_prob): per clip, one noise rectangle of 2-33 % of the frame
at the same place in every frame (a tube, fresh noise per frame), drawn from the step's
generator; off at 0; only in training; refused in pretraining."""

from __future__ import annotations

import pytest
import torch

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.data.erasing import erase_clips
from hpnet.data.transforms import ClipTransform


def _video(clips: int = 6) -> torch.Tensor:
    return torch.full((clips, 8, 3, 24, 32), 5.0)  # (B, T, 3, S_h, S_w): noise is never 5


def test_every_clip_gets_one_tube_of_the_allowed_size_at_probability_one():
    out = erase_clips(_video(), 1.0, torch.Generator().manual_seed(0))
    erased = out != 5.0
    places = set()
    for clip, values in zip(erased, out, strict=True):
        assert torch.equal(clip, clip[:1, :1].expand_as(clip))  # every frame and channel
        box = clip[0, 0]
        rows, cols = box.any(1).nonzero()[:, 0], box.any(0).nonzero()[:, 0]
        h, w = len(rows), len(cols)
        assert h and w and int(box.sum()) == h * w  # one filled rectangle
        assert rows.max() - rows.min() + 1 == h and cols.max() - cols.min() + 1 == w
        tol = (h + w) / 2 + 1  # (each side rounded to whole pixels)
        assert 0.02 * 24 * 32 - tol <= h * w <= 24 * 32 / 3 + tol
        noise = values[:, :, box]
        assert not torch.equal(noise[0], noise[1])  # fresh noise in each frame
        places.add((int(rows.min()), int(cols.min()), h, w))
    assert len(places) > 1  # each clip its own box


def test_erasing_is_off_at_zero_partial_at_a_share_and_follows_the_generator():
    video, g = _video(40), torch.Generator().manual_seed(0)
    state = g.get_state()
    assert erase_clips(video, 0.0, g) is video
    assert torch.equal(g.get_state(), state)  # off: no draw, runs without it draw as before
    hit = (erase_clips(video, 0.5, torch.Generator().manual_seed(1)) != 5.0).flatten(1).any(1)
    assert 0 < int(hit.sum()) < len(hit)
    a = erase_clips(video, 0.5, torch.Generator().manual_seed(2))
    assert torch.equal(a, erase_clips(video, 0.5, torch.Generator().manual_seed(2)))


def test_the_training_transform_erases_and_leaves_joints_and_tests_alone():
    kw = {"size": 16, "mean": [0.5] * 3, "std": [0.25] * 3, "flip": False, "scale_min": 1.0}
    kw |= {"jitter": 0.0, "blur_prob": 0.0}
    erasing, plain = ClipTransform(**kw, erase_prob=1.0), ClipTransform(**kw)
    video = torch.full((2, 4, 3, 16, 16), 128, dtype=torch.uint8)
    joints = torch.rand(2, 4, 1, 17, 3)
    out, mapped = erasing.train(video, joints, torch.Generator().manual_seed(0))
    clean, same = plain.train(video, joints, torch.Generator().manual_seed(0))
    assert torch.equal(mapped, same)
    assert (out != clean).flatten(2).any(2).all()  # every frame of every clip
    assert torch.equal(erasing.test(video[:, None])[0], plain.test(video[:, None])[0])


def test_erasing_is_a_fraction_and_not_for_pretraining():
    from hpnet.pretrain.setup import check_pretrain_config

    with pytest.raises(UserError, match=r"data\.augment\.erase_prob"):
        load_config(None, ["data.augment.erase_prob=1.5"])
    cfg = load_config(None, ["data.augment.erase_prob=0.25", "data.augment.blur_prob=0"])
    with pytest.raises(UserError, match=r"erase_prob=0\.25 .*pretraining neither erases"):
        check_pretrain_config(cfg)
    cfg = load_config(None, ["train.repeat_aug=2", "data.augment.blur_prob=0"])
    with pytest.raises(UserError, match=r"repeat_aug=2: read by python -m hpnet\.train only"):
        check_pretrain_config(cfg)
