"""RandAugment (data.augment.randaug_*): each operation matches the PIL code of timm's
rand_augment that VideoMAE runs, one clip's frames get the same operations, joints move with
the pixels, draws are reproducible and a run without RandAugment draws what it drew before."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps

from hpnet.config import UserError, load_config
from hpnet.data.randaugment import OPS, RandAugmentParams, rand_augment, sample_randaugment
from hpnet.data.transforms import ClipTransform

GREY = (128, 128, 128)
WARPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")


def _frame() -> torch.Tensor:
    """A smooth (3, 48, 64) uint8 picture in [40, 190] with a bright square at rows 10-13,
    columns 20-23 (so autocontrast and the warps all change it)."""
    small = 40 + torch.rand(1, 3, 6, 8, generator=torch.Generator().manual_seed(0)) * 150
    img = F.interpolate(small, size=(48, 64), mode="bicubic", align_corners=False)
    img = img.clamp(0, 255).round()
    img[..., 10:14, 20:24] = 250
    return img[0].to(torch.uint8)


def _one(name: str, v: float, sign: float, clips: int = 1) -> RandAugmentParams:
    """One applied operation ``name`` at magnitude ``v`` and ``sign`` for every clip."""
    full = (clips, 1)
    return RandAugmentParams(
        torch.full(full, OPS.index(name)),
        torch.ones(full, dtype=torch.bool),
        torch.full(full, v),
        torch.full(full, sign),
    )


def _pil_reference(pil: Image.Image, name: str, v: float, sign: float) -> Image.Image:
    """timm's rand_augment op (SlowFast / VideoMAE's copy) with its increasing level maps."""
    w, h = pil.size
    factor = 1 + sign * v / 10 * 0.9
    affine = {
        "ShearX": (1, sign * v / 10 * 0.3, 0, 0, 1, 0),
        "ShearY": (1, 0, 0, sign * v / 10 * 0.3, 1, 0),
        "TranslateX": (1, 0, sign * v / 10 * 0.45 * w, 0, 1, 0),
        "TranslateY": (1, 0, 0, 0, 1, sign * v / 10 * 0.45 * h),
    }
    if name in affine:
        return pil.transform(pil.size, Image.AFFINE, affine[name], Image.BILINEAR, fillcolor=GREY)
    add = int(v / 10 * 110)
    lut = [min(255, i + add) if i < 128 else i for i in range(256)] * 3  # solarize_add
    ops = {
        "AutoContrast": lambda: ImageOps.autocontrast(pil),
        "Equalize": lambda: ImageOps.equalize(pil),
        "Invert": lambda: ImageOps.invert(pil),
        "Rotate": lambda: pil.rotate(sign * v / 10 * 30, Image.BILINEAR, fillcolor=GREY),
        "Posterize": lambda: ImageOps.posterize(pil, 4 - int(v / 10 * 4)),
        "Solarize": lambda: ImageOps.solarize(pil, 256 - int(v / 10 * 256)),
        "SolarizeAdd": lambda: pil.point(lut),
        "Color": lambda: ImageEnhance.Color(pil).enhance(factor),
        "Contrast": lambda: ImageEnhance.Contrast(pil).enhance(factor),
        "Brightness": lambda: ImageEnhance.Brightness(pil).enhance(factor),
        "Sharpness": lambda: ImageEnhance.Sharpness(pil).enhance(factor),
    }
    return ops[name]()


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize(("v", "sign"), [(7.0, 1.0), (7.6, -1.0)])
def test_each_operation_matches_timm_on_pil(name: str, v: float, sign: float) -> None:
    frame = _frame()
    out, _ = rand_augment(frame[None, None].float(), None, _one(name, v, sign), 255.0)
    ours = out[0, 0].round().int()
    pil = Image.fromarray(frame.permute(1, 2, 0).numpy())
    ref = torch.from_numpy(np.array(_pil_reference(pil, name, v, sign))).permute(2, 0, 1).int()
    diff = (ours - ref).abs().float()
    assert not torch.equal(ours, frame.int())  # the operation did something
    if name in WARPS:  # bilinear sampling differs from PIL's at the fill's edge only
        assert diff.mean() < 1.5 and (diff > 8).float().mean() < 0.03
    else:
        assert diff.max() <= 1


def test_a_magnitude_near_0_leaves_the_magnitude_operations_as_identities() -> None:
    """timm at level 0: no turn, shear or shift, factor 1, solarize threshold 256 (nothing;
    a uint8 comparison with 256 would invert every pixel), as up to level 0.039."""
    frame = _frame()
    for name in set(OPS) - {"AutoContrast", "Equalize", "Invert", "Posterize"}:
        out, _ = rand_augment(frame[None, None], None, _one(name, 0.0, -1.0), 255.0)
        assert torch.equal(out[0, 0], frame), name
    for name in ("Solarize", "SolarizeAdd"):
        out, _ = rand_augment(frame[None, None], None, _one(name, 0.03, 1.0), 255.0)
        assert torch.equal(out[0, 0], frame), name


def test_float_and_uint8_clips_take_the_same_path() -> None:
    """A float clip in [0, 1] is rounded (not truncated) to the uint8 values PIL works on."""
    frame = _frame()
    nudged = (frame.double() - 0.4) / 255  # rounds back to frame, truncates to frame - 1
    for params in (_one("Invert", 0.0, 1.0), _one("Rotate", 8.0, 1.0)):
        as_uint8, _ = rand_augment(frame[None, None], None, params, 255.0)
        as_float, _ = rand_augment(nudged[None, None], None, params, 1.0)
        assert as_uint8.dtype == torch.uint8 and as_float.dtype == torch.float64
        assert torch.equal((as_float * 255).round().to(torch.uint8), as_uint8)


def test_a_clip_s_frames_get_the_same_operations_and_clips_their_own() -> None:
    frame = _frame()
    video = frame.expand(3, 4, 3, 48, 64).float() / 255  # float in [0, 1], 4 equal frames
    params = sample_randaugment(3, 4, 9.0, 0.5, torch.Generator().manual_seed(5))
    params.applied[:] = True
    params.op[:, 0] = torch.tensor([OPS.index("Invert"), OPS.index("Rotate"), 0])
    out, _ = rand_augment(video, None, params, 1.0)
    assert out.dtype == video.dtype and out.min() >= 0 and out.max() <= 1
    for clip in out:
        assert all(torch.equal(clip[0], f) for f in clip[1:])
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])


@pytest.mark.parametrize("name", WARPS)
def test_joints_move_with_the_pixels(name: str) -> None:
    frame = torch.full((3, 48, 64), 128, dtype=torch.uint8)  # grey, as the fill
    frame[:, 20:23, 30:33] = 255  # a dot whose centre is pixel (31, 21)
    video = frame[None, None].float()
    joints = torch.zeros(1, 1, 1, 3, 3)  # joint 2 missing: (0, 0, 0), and it stays that
    joints[..., 0, :] = torch.tensor([31.5 / 64, 21.5 / 48, 0.9])  # on the dot
    joints[..., 1, :] = torch.tensor([63.5 / 64, 47.5 / 48, 0.8])  # a corner: pushed out
    params = _one(name, 9.0, -1.0)
    out, moved = rand_augment(video, joints, params, 255.0)
    weight = (out[0, 0, 0] - 128).clamp(min=0)  # the dot's light, wherever it went
    rows, cols = torch.meshgrid(torch.arange(48) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    x, y = float((weight * cols).sum() / weight.sum()), float((weight * rows).sum() / weight.sum())
    assert abs(float(moved[0, 0, 0, 0, 0]) * 64 - x) < 0.25
    assert abs(float(moved[0, 0, 0, 0, 1]) * 48 - y) < 0.25
    assert float(moved[0, 0, 0, 0, 2]) == pytest.approx(0.9)
    assert torch.equal(moved[0, 0, 0, 1], torch.zeros(3))  # left the frame: missing
    assert torch.equal(moved[0, 0, 0, 2], torch.zeros(3))


def test_colour_operations_leave_joints_and_draws_are_reproducible() -> None:
    video = _frame().expand(4, 2, 3, 48, 64).float()
    joints = torch.rand(4, 2, 1, 17, 3)
    params = _one("Equalize", 7.0, 1.0, clips=4)
    assert torch.equal(rand_augment(video, joints, params, 255.0)[1], joints)
    a = sample_randaugment(6, 4, 7.0, 0.5, torch.Generator().manual_seed(1))
    b = sample_randaugment(6, 4, 7.0, 0.5, torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(vars(a).values(), vars(b).values(), strict=True))
    many = sample_randaugment(4000, 4, 7.0, 0.5, torch.Generator().manual_seed(2))
    assert set(many.op.unique().tolist()) == set(range(len(OPS)))
    repeats = torch.tensor([len(set(row)) < 4 for row in many.op.tolist()]).float().mean()
    assert 0.3 < repeats < 0.42  # with replacement: 1 - 15 * 14 * 13 * 12 / 15**4 = 0.353
    assert 0.47 < many.applied.float().mean() < 0.53
    assert many.magnitude.min() >= 0 and many.magnitude.max() <= 10
    assert abs(float(many.magnitude.mean()) - 7.0) < 0.05
    assert 0.45 < float(many.magnitude.std()) < 0.55
    assert set(many.sign.unique().tolist()) == {-1.0, 1.0}


def test_the_training_transform_draws_randaugment_after_its_crops() -> None:
    kw = {"size": 24, "mean": [0.5] * 3, "std": [0.25] * 3, "jitter": 0.0, "blur_prob": 0.0}
    video = _frame().expand(5, 3, 3, 48, 64).contiguous()
    joints = torch.rand(5, 3, 1, 17, 3)
    plain = ClipTransform(**kw).train(video, joints, torch.Generator().manual_seed(4))
    # magnitude 0 moves nothing: the crops and flips (hence joints) must be the draws before
    still = ClipTransform(**kw, randaug_n=3, randaug_m=0.0, randaug_mstd=0.0)
    out, moved = still.train(video, joints, torch.Generator().manual_seed(4))
    assert torch.allclose(moved, plain[1], atol=1e-6)
    strong = ClipTransform(**kw, randaug_n=4, randaug_m=9.0)
    out, moved = strong.train(video, joints, torch.Generator().manual_seed(4))
    assert out.shape == plain[0].shape and not torch.equal(out, plain[0])
    assert not torch.equal(moved, plain[1])  # some clip was warped
    again = strong.train(video, joints, torch.Generator().manual_seed(4))
    assert torch.equal(again[0], out) and torch.equal(again[1], moved)
    assert torch.equal(strong.test(video[:, None])[0], ClipTransform(**kw).test(video[:, None])[0])


def test_randaugment_settings_are_checked_and_not_for_pretraining() -> None:
    from hpnet.pretrain.setup import check_pretrain_config

    with pytest.raises(UserError, match=r"data\.augment\.randaug_m"):
        load_config(None, ["data.augment.randaug_m=11"])
    for bad in ("-1", "31", "1.5"):
        with pytest.raises(UserError, match=r"data\.augment\.randaug_n"):
            load_config(None, [f"data.augment.randaug_n={bad}"])
    with pytest.raises(ValueError, match="randaug_n an int in"):
        ClipTransform(8, [0.5] * 3, [0.25] * 3, randaug_n=2.0)
    cfg = load_config(None, ["data.augment.randaug_n=4", "data.augment.blur_prob=0"])
    with pytest.raises(UserError, match=r"randaug_n=4: pretraining neither erases nor"):
        check_pretrain_config(cfg)


def test_a_pose_run_trains_with_randaugment_moving_its_joints(tiny_args, tmp_path, monkeypatch):
    from hpnet.data import transforms
    from hpnet.train import main

    calls = []

    def recorded(video, joints, params, max_value):
        calls.append((params.op.shape, joints is not None))
        return rand_augment(video, joints, params, max_value)

    monkeypatch.setattr(transforms, "rand_augment", recorded)
    args = [*tiny_args, "data.augment.randaug_n=2", "data.augment.randaug_m=9"]
    assert main([*args, f"train.out_dir={tmp_path}", "train.epochs=1", "train.max_steps=2"]) == 0
    assert calls == [((4, 2), True)] * 2  # each step's batch of 4, joints along
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["config"]["data"]["augment"]
    assert (saved["randaug_n"], saved["randaug_m"]) == (2, 9.0)


def test_the_commands_import_no_torchvision_until_randaugment_runs() -> None:
    """torchvision.transforms.v2 costs ~1.5 s to import: only a RandAugment run pays it."""
    import subprocess
    import sys

    code = (
        "import sys\nimport hpnet.train, hpnet.evaluate, hpnet.predict\n"
        "print('torchvision' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
