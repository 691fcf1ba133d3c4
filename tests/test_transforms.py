"""Batched device transforms: shapes, normalisation, frame/joint geometry, masking, determinism."""

from __future__ import annotations

import pytest
import torch

from hpnet.config import UserError, load_config
from hpnet.data.colour import hue_rotation_matrix
from hpnet.data.eval_crops import short_side_crop_layout, short_side_crops
from hpnet.data.transforms import (
    ClipTransform,
    TrainParams,
    apply_train_params,
    color_jitter_normalize,
    crop_joints,
    gaussian_blur,
    normalize,
    sample_crop_boxes,
    sample_train_params,
)
from hpnet.pose.skeleton import FLIP_PERMUTATION
from hpnet.runtime import build_transform

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
S = 32


def _transform(**kw) -> ClipTransform:
    settings = dict(flip=True, scale_min=0.3, ratio_max=1.5, jitter=0.0, blur_prob=0.0) | kw
    return ClipTransform(S, MEAN, STD, **settings)


def _random_batch(b=2, t=3, h=40, w=56, p=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (b, t, 3, h, w), dtype=torch.uint8, generator=g)
    joints = torch.rand(b, t, p, 17, 3, generator=g)
    return video, joints


def _dot_frame(h: int, w: int, points: list[tuple[float, float]]) -> torch.Tensor:
    """uint8 (3, H, W) black frame with a Gaussian dot at each normalised (x, y)."""
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    img = torch.zeros(h, w)
    for x, y in points:
        img = torch.maximum(img, torch.exp(-((xs - x * w) ** 2 + (ys - y * h) ** 2) / (2 * 2.0**2)))
    return (img * 255).round().to(torch.uint8).expand(3, h, w).clone()


def _dot_centre(image: torch.Tensor) -> tuple[float, float]:
    """(x, y) of the bright dot in a (C, H, W) image, normalised: the centroid of the pixels
    above half the brightest (sub-pixel, so the tests can demand half a pixel)."""
    gray = image.mean(0)
    gray = gray - gray.min()
    weight = torch.where(gray > 0.5 * gray.max(), gray, 0.0)
    h, w = gray.shape
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    total = weight.sum()
    return float((weight * xs).sum() / total / w), float((weight * ys).sum() / total / h)


def test_shapes_and_dtypes_train_and_test():
    video, joints = _random_batch()
    out, j = _transform(jitter=0.3, blur_prob=0.5).train(video, joints, torch.Generator())
    assert out.shape == (2, 3, 3, S, S) and out.dtype == torch.float32
    assert j.shape == joints.shape and j.dtype == joints.dtype
    tf = _transform()
    test_video = torch.stack([video, video], 1)  # (B, V=2, T, 3, H, W)
    test_joints = torch.stack([joints, joints], 1)
    for crops in (1, 3):
        out, j = tf.test(test_video, test_joints, crops=crops)
        assert out.shape == (2, 2 * crops, 3, 3, S, S) and out.dtype == torch.float32
        assert j.shape == (2, 2 * crops, 3, 2, 17, 3)
    out, j = tf.test(test_video, None)
    assert j is None
    out, j = tf.train(video.double() / 255, None)
    assert out.dtype == torch.float64 and j is None
    with pytest.raises(ValueError, match="joints"):
        tf.train(video, joints[:1])


def test_constant_grey_normalises_exactly_after_any_crop():
    g = 90
    video = torch.full((3, 2, 3, 30, 50), g, dtype=torch.uint8)
    expected = ((g / 255 - torch.tensor(MEAN)) / torch.tensor(STD)).view(3, 1, 1)
    tf = _transform(blur_prob=1.0)  # blur with a normalised kernel keeps a constant
    out, _ = tf.train(video, None, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, expected.expand_as(out), atol=1e-5, rtol=0)
    out, _ = tf.test(video[:, None], None, crops=3)
    torch.testing.assert_close(out, expected.expand_as(out), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalize(video, MEAN, STD), expected.expand(3, 2, 3, 30, 50))
    torch.testing.assert_close(
        normalize(video.float() / 255, MEAN, STD), normalize(video, MEAN, STD)
    )


@pytest.mark.parametrize("flip", [False, True])
def test_dot_follows_its_joint_through_crop_and_flip(flip):
    h, w = 48, 64
    points = [(0.35, 0.4), (0.6, 0.7)]  # left_shoulder, right_shoulder
    video = _dot_frame(h, w, points[:1])[None, None].repeat(1, 2, 1, 1, 1)  # (1, 2, 3, H, W)
    joints = torch.zeros(1, 2, 1, 17, 3)
    joints[..., 5, :] = torch.tensor([*points[0], 0.9])
    joints[..., 6, :] = torch.tensor([*points[1], 0.8])
    boxes = torch.tensor([[0.1, 0.15, 0.8, 0.95]])
    params = TrainParams.identity(1, boxes=boxes, flip=flip)
    out, mapped = apply_train_params(video, joints, params, size=S, mean=MEAN, std=STD)
    x = (points[0][0] - 0.1) / 0.7
    x = 1 - x if flip else x
    y = (points[0][1] - 0.15) / 0.8
    where = 6 if flip else 5  # a flipped left shoulder is the right shoulder
    torch.testing.assert_close(mapped[0, :, 0, where], torch.tensor([[x, y, 0.9]] * 2))
    for t in range(2):
        bx, by = _dot_centre(out[0, t])
        assert abs(bx - x) * S <= 0.5 and abs(by - y) * S <= 0.5, (bx, by, x, y)


def test_flip_swaps_left_and_right_joints():
    joints = torch.rand(2, 1, 1, 17, 3) * 0.8 + 0.1
    whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2)
    flipped = crop_joints(joints, whole, flip=torch.tensor([True, False]))
    expected = joints[0, ..., list(FLIP_PERMUTATION), :].clone()
    expected[..., 0] = 1 - expected[..., 0]
    torch.testing.assert_close(flipped[0], expected)
    torch.testing.assert_close(flipped[1], joints[1])


def test_missing_and_cropped_out_joints_are_exactly_zero():
    joints = torch.tensor([[0.5, 0.5, 0.0], [0.3, 0.6, 0.0], [0.05, 0.5, 0.9], [0.5, 0.5, 0.7]])
    full = torch.zeros(1, 1, 1, 17, 3)
    full[..., :4, :] = joints
    box = torch.tensor([[0.2, 0.0, 1.0, 1.0]])
    for flip in (None, torch.tensor([True])):
        out = crop_joints(full, box, flip)
        nonzero = (out != 0).any(-1).flatten().nonzero().flatten().tolist()
        assert len(nonzero) == 1  # only the joint at (0.5, 0.5, 0.7) survives
        assert torch.equal(out[..., nonzero[0], 2], torch.tensor([[[0.7]]]))
    # through the whole random pipeline, with flips and jitter: missing joints never become points
    video, joints = _random_batch(b=4)
    missing = [0, 5, 6, 9, 10]  # closed under the left/right swap of a flip
    joints[..., missing, :] = 0
    _, out = _transform(jitter=0.3).train(video, joints, torch.Generator().manual_seed(3))
    zero_conf = out[..., 2] == 0
    assert zero_conf[..., missing].all()
    assert (out[zero_conf] == 0).all()
    visible = out[~zero_conf]
    assert ((visible[:, :2] >= 0) & (visible[:, :2] <= 1)).all()


def test_same_generator_same_result_other_seed_other_crop():
    video, joints = _random_batch(b=4)
    tf = _transform(jitter=0.4, blur_prob=0.5)
    a = tf.train(video, joints, torch.Generator().manual_seed(7))
    b = tf.train(video, joints, torch.Generator().manual_seed(7))
    c = tf.train(video, joints, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    boxes_7 = sample_crop_boxes(
        4, 40, 56, scale_min=0.3, ratio_max=1.5, generator=torch.Generator().manual_seed(7)
    )
    boxes_8 = sample_crop_boxes(
        4, 40, 56, scale_min=0.3, ratio_max=1.5, generator=torch.Generator().manual_seed(8)
    )
    assert not torch.equal(boxes_7, boxes_8)


def test_crop_boxes_respect_area_and_aspect_limits():
    h, w = 60, 80
    boxes = sample_crop_boxes(
        500, h, w, scale_min=0.3, ratio_max=1.5, generator=torch.Generator().manual_seed(0)
    )
    bw, bh = (boxes[:, 2] - boxes[:, 0]) * w, (boxes[:, 3] - boxes[:, 1]) * h
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert ((bw * bh) / (h * w) >= 0.3 - 1e-4).all()
    assert ((bw / bh) <= 1.5 + 1e-4).all() and ((bw / bh) >= 1 / 1.5 - 1e-4).all()
    assert (bw * bh / (h * w)).std() > 0.1  # boxes really vary


def test_three_test_crops_are_left_centre_right_and_follow_joints():
    h, w = 32, 64  # resized to 32 x 64 -> crops start at x = 0, 16, 32
    assert short_side_crop_layout(h, w, S, 3) == ((32, 64), [(0, 0), (0, 16), (0, 32)])
    assert short_side_crop_layout(64, 32, S, 3) == ((64, 32), [(0, 0), (16, 0), (32, 0)])
    points = [(0.25, 0.5), (0.5, 0.3), (0.75, 0.7)]  # each the centre column of one crop
    video = torch.stack([_dot_frame(h, w, [p]) for p in points])  # (V=3, 3, H, W): T = 1
    video = video[None, :, None]  # (1, 3, 1, 3, H, W)
    joints = torch.zeros(1, 3, 1, 1, 17, 3)
    for v, p in enumerate(points):
        joints[0, v, 0, 0, 0] = torch.tensor([*p, 1.0])
    out, mapped = _transform().test(video, joints, crops=3)
    for v, p in enumerate(points):
        crop = v * 3 + v  # view v's dot sits in the centre of its own crop v
        torch.testing.assert_close(mapped[0, crop, 0, 0, 0], torch.tensor([0.5, p[1], 1.0]))
        bx, by = _dot_centre(out[0, crop, 0])
        assert abs(bx - 0.5) * S <= 0.5 and abs(by - p[1]) * S <= 0.5, (bx, by, p)
    # the dot at x = 0.25 lies outside the right crop [0.5, 1]: zeroed there
    assert (mapped[0, 2, 0, 0, 0] == 0).all()


def test_colour_jitter_matches_torchvision_when_nothing_clips():
    tvf = pytest.importorskip("torchvision.transforms.v2.functional")
    g = torch.Generator().manual_seed(0)
    video = 0.3 + 0.4 * torch.rand(3, 1, 3, 8, 8, generator=g)  # T = 1: per-frame = per-clip
    b, c, s = (
        torch.tensor([0.9, 1.1, 1.2]),
        torch.tensor([1.2, 0.8, 1.0]),
        torch.tensor([0.7, 1.3, 1.1]),
    )
    out = color_jitter_normalize(video, b, c, s, mean=MEAN, std=STD, max_value=1.0)
    for i in range(3):
        ref = tvf.adjust_brightness(video[i], float(b[i]))
        ref = tvf.adjust_contrast(ref, float(c[i]))
        ref = tvf.adjust_saturation(ref, float(s[i]))
        torch.testing.assert_close(out[i], normalize(ref, MEAN, STD), atol=2e-3, rtol=0)
    ones = torch.ones(3)
    bright = color_jitter_normalize(video, 4 * ones, ones, ones, mean=MEAN, std=STD, max_value=1.0)
    # 4 x brightness: every pixel saturates to white, clamped to the valid range
    torch.testing.assert_close(bright, normalize(torch.ones_like(video), MEAN, STD))


def test_hue_rotation_keeps_grey_and_luma_turns_colours_and_composes():
    turns = torch.tensor([0.0, 0.1, -0.25, 0.5, 1.0])
    m = hue_rotation_matrix(turns)
    assert m.shape == (5, 3, 3)
    eye = torch.eye(3, dtype=m.dtype).expand(2, 3, 3)
    torch.testing.assert_close(m[[0, 4]], eye)  # no shift, a whole turn
    ones, luma = torch.ones(3, dtype=m.dtype), torch.tensor([0.299, 0.587, 0.114], dtype=m.dtype)
    torch.testing.assert_close(m @ ones, ones.expand(5, 3))  # grey stays grey
    torch.testing.assert_close(luma @ m, luma.expand(5, 3))  # luma is kept
    torch.testing.assert_close(m[1] @ m[2], hue_rotation_matrix(torch.tensor([-0.15]))[0])
    red = m[3] @ torch.tensor([1.0, 0.0, 0.0], dtype=m.dtype)  # half a turn: red -> cyan
    assert red[0] < 0 < red[1] and abs(float(red[1] - red[2])) < 1e-6


def test_hue_jitter_is_drawn_last_and_moves_only_chroma():
    kw = dict(scale_min=0.5, ratio_max=1.3, flip_prob=0.5, jitter=0.3, blur_prob=0.5)
    plain = sample_train_params(64, (40, 56), **kw, generator=torch.Generator().manual_seed(3))
    hued = sample_train_params(
        64, (40, 56), **kw, hue=0.2, generator=torch.Generator().manual_seed(3)
    )
    assert plain.hue is None and hued.hue is not None
    assert hued.hue.abs().max() <= 0.2 and hued.hue.std() > 0.05
    for name in ("boxes", "flip", "brightness", "contrast", "saturation", "blur_sigma"):
        assert torch.equal(getattr(plain, name), getattr(hued, name)), name  # the same stream
    g = torch.Generator().manual_seed(0)
    video = 0.3 + 0.4 * torch.rand(2, 2, 3, 8, 8, generator=g)  # nothing clips
    ones = torch.ones(2)
    args = dict(mean=(0.0,) * 3, std=(1.0,) * 3, max_value=1.0)
    base = color_jitter_normalize(video, ones, ones, ones, **args)
    turned = color_jitter_normalize(video, ones, ones, ones, hue=torch.tensor([0.0, 0.3]), **args)
    torch.testing.assert_close(turned[0], base[0])
    assert (turned[1] - base[1]).abs().mean() > 0.02
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    torch.testing.assert_close((turned * luma).sum(2), (base * luma).sum(2), atol=1e-5, rtol=0)


def test_train_augmentation_hue_is_configured_and_keeps_crops_and_luma():
    cfg = load_config(None, ["data.augment.hue=0.25", "data.size=32"])
    assert build_transform(cfg).hue == 0.25
    assert build_transform(load_config(None, [])).hue == 0.0  # off by default
    with pytest.raises(UserError, match=r"data\.augment\.hue"):
        load_config(None, ["data.augment.hue=0.6"])
    with pytest.raises(ValueError, match="hue"):
        _transform(hue=-0.1)
    g = torch.Generator().manual_seed(5)
    video = (60 + 120 * torch.rand(4, 2, 3, 40, 56, generator=g)).to(torch.uint8)  # nothing clips
    joints = torch.rand(4, 2, 1, 17, 3, generator=g)
    plain, j_plain = _transform().train(video, joints, torch.Generator().manual_seed(1))
    hued, j_hued = _transform(hue=0.25).train(video, joints, torch.Generator().manual_seed(1))
    torch.testing.assert_close(j_hued, j_plain)  # the same crops and flips
    assert (hued - plain).abs().mean() > 0.02  # the colours turned
    std, mean = torch.tensor(STD).view(3, 1, 1), torch.tensor(MEAN).view(3, 1, 1)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)

    def brightness(x: torch.Tensor) -> torch.Tensor:
        return ((x * std + mean) * luma).sum(-3)

    torch.testing.assert_close(brightness(hued), brightness(plain), atol=1e-3, rtol=0)  # (clipping)


def test_blur_smooths_and_keeps_the_mean():
    img = torch.zeros(1, 1, 3, 16, 16)
    img[..., 8, 8] = 1.0
    out = gaussian_blur(img, torch.tensor([1.5]))
    assert out.max() < 0.2 and abs(float(out.sum()) - 3.0) < 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    video, joints = _random_batch(b=3)
    tf = _transform(jitter=0.3, blur_prob=0.5)
    cpu = tf.train(video, joints, torch.Generator().manual_seed(5))
    gpu = tf.train(video.cuda(), joints.cuda(), torch.Generator().manual_seed(5))
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(gpu[1].cpu(), cpu[1])


def test_flip_probability_and_bad_settings():
    gen = torch.Generator().manual_seed(0)
    assert not _transform(flip=False).sample_params(200, (40, 56), gen).flip.any()
    share = _transform(flip=True).sample_params(400, (40, 56), gen).flip.float().mean()
    assert 0.4 < share < 0.6
    with pytest.raises(ValueError, match="scale_min"):
        _transform(scale_min=0.0)
    with pytest.raises(ValueError, match="COCO-17"):
        crop_joints(
            torch.zeros(1, 5, 3), torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([True])
        )


def test_train_draws_follow_their_settings():
    """Over many clips: the blurred share is blur_prob, sigmas spread over blur_sigma, jitter
    factors spread over [1 - jitter, 1 + jitter] both ways, hue over [-hue, hue] turns."""
    gen = torch.Generator().manual_seed(0)
    n = 4000
    params = sample_train_params(
        n, (40, 56), scale_min=0.3, ratio_max=1.5, flip_prob=0.5, jitter=0.4, blur_prob=0.1,
        blur_sigma=(0.5, 1.5), hue=0.1, generator=gen,
    )  # fmt: skip
    blurred = params.blur_sigma > 0
    assert 0.08 < blurred.float().mean() < 0.12
    sigma = params.blur_sigma[blurred]
    assert sigma.min() >= 0.5 and sigma.max() <= 1.5 and sigma.std() > 0.25  # ~U(0.5, 1.5)
    for factors in (params.brightness, params.contrast, params.saturation):
        assert factors.min() >= 0.6 and factors.max() <= 1.4
        assert abs(float(factors.mean()) - 1.0) < 0.02 and (factors < 0.8).float().mean() > 0.2
    assert params.hue is not None and params.hue.abs().max() <= 0.1 and params.hue.min() < -0.09
    assert sample_train_params(n, (40, 56), scale_min=0.3, ratio_max=1.5, flip_prob=0.5,
                               jitter=0.4, blur_prob=0.0).blur_sigma.eq(0).all()  # fmt: skip


def test_crop_boxes_fall_back_to_the_centred_largest_box():
    """No draw fits (the whole area at an aspect far from the frame's): the centred box of the
    frame with its aspect clamped to ratio_max, as torchvision's RandomResizedCrop."""
    wide = sample_crop_boxes(3, 40, 160, scale_min=1.0, ratio_max=1.0)  # H=40, W=160
    torch.testing.assert_close(wide, torch.tensor([[0.375, 0.0, 0.625, 1.0]] * 3))
    tall = sample_crop_boxes(2, 160, 40, scale_min=1.0, ratio_max=2.0)  # aspect 1/4 -> 1/2
    torch.testing.assert_close(tall, torch.tensor([[0.0, 0.25, 1.0, 0.75]] * 2))


def test_the_test_crop_is_torchvisions_resize_and_centre_crop():
    """Antialiased bilinear resize of the short side, then the centre square (float frames)."""
    from torchvision.transforms import v2 as tv

    torch.manual_seed(0)
    video = torch.randint(0, 256, (1, 2, 3, 96, 128), dtype=torch.uint8)
    ours = short_side_crops(video, 40, 1)[:, 0]  # (1, 2, 3, 40, 40)
    reference = tv.Compose([tv.Resize(40, antialias=True), tv.CenterCrop(40)])(video[0].float())
    torch.testing.assert_close(ours[0], reference, atol=1e-3, rtol=0)
