"""RandAugment for clips (``data.augment.randaug_n``), as VideoMAE fine-tunes: timm's
``rand-m7-n4-mstd0.5-inc1`` in the clip form of SlowFast's ``rand_augment.py``, which VideoMAE
copies. Each clip gets ``n`` operations drawn uniformly, with replacement, from the 15 of timm's
"increasing" set; each is applied with probability 0.5, at a magnitude drawn from
N(``m``, ``mstd``) clipped to [0, 10], with a random sign where the operation has one. One
operation acts the same way on every frame of its clip (the frame-wise ones, autocontrast,
equalize and contrast, read each frame's own histogram, as PIL does frame by frame there).

=================  ===============================================  at magnitude 7
operation          what magnitude ``v`` in [0, 10] does              (VideoMAE's m)
=================  ===============================================  ==================
AutoContrast       stretch each channel to [0, 255]                 -
Equalize           equalise each channel's histogram                -
Invert             255 - x                                          -
Rotate             +-3v degrees about the centre                    +-21 deg
Posterize          keep 4 - int(0.4 v) bits                         2 bits
Solarize           invert pixels >= 256 - int(25.6 v)               >= 77
SolarizeAdd        add int(11 v) to pixels < 128                    +77
Color              saturation factor 1 +- 0.09 v                    0.37 or 1.63
Contrast           contrast factor 1 +- 0.09 v                      0.37 or 1.63
Brightness         brightness factor 1 +- 0.09 v                    0.37 or 1.63
Sharpness          sharpness factor 1 +- 0.09 v                     0.37 or 1.63
ShearX, ShearY     shear +-0.03 v about the top-left corner         +-0.21
TranslateX, Y      shift +-0.045 v of the frame side                +-31 % of 224 px
=================  ===============================================  ==================

Geometric operations fill with grey 128, as timm does without an ``img_mean``, and move the
joints with the pixels (a joint pushed out of the frame becomes missing). Differences from
VideoMAE: it runs on the training crop (after the random resized crop and flip) instead of
the whole frame before it, so a shift is a share of the crop; resampling is bilinear (VideoMAE:
bicubic). Clips are ``uint8`` between operations, as PIL images are. One clip and operation at
a time (a few small kernels each): on a CPU about 2x the time of the rest of the augmentation
(``bench/transforms.py``).

All draws come from the step's CPU generator (:func:`sample_randaugment`), so a resumed epoch
augments as the uninterrupted one did; the operations run on the clips' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hpnet.host_copy import to_device
from hpnet.pose.skeleton import mask_invalid_joints

__all__ = ["OPS", "RandAugmentParams", "rand_augment", "sample_randaugment"]

OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
)
MAX_LEVEL = 10.0
APPLY_PROB = 0.5  # timm's rand_augment_ops(prob=0.5)
FILL = 128.0  # timm's _FILL (grey) where a warp leaves the frame


@dataclass
class RandAugmentParams:
    """Per-clip draws for ``n`` operations: ``op (B, n)`` int64 index into :data:`OPS`,
    ``applied (B, n)`` bool, ``magnitude (B, n)`` in [0, 10], ``sign (B, n)`` +-1; on the CPU."""

    op: Tensor
    applied: Tensor
    magnitude: Tensor
    sign: Tensor


def sample_randaugment(
    clips: int, n: int, m: float, mstd: float, generator: torch.Generator | None = None
) -> RandAugmentParams:
    """Draw :class:`RandAugmentParams` for ``clips`` clips, every value every time, in a fixed
    order (on the CPU)."""
    op = torch.randint(len(OPS), (clips, n), generator=generator)
    applied = torch.rand(clips, n, generator=generator) < APPLY_PROB
    noise = torch.randn(clips, n, generator=generator)
    magnitude = (m + mstd * noise).clamp(0.0, MAX_LEVEL)
    negative = torch.rand(clips, n, generator=generator) < 0.5
    return RandAugmentParams(op, applied, magnitude, torch.where(negative, -1.0, 1.0))


def rand_augment(
    video: Tensor, joints: Tensor | None, params: RandAugmentParams, max_value: float
) -> tuple[Tensor, Tensor | None]:
    """``video (B, T, 3, H, W)`` in [0, ``max_value``] (float, or uint8 with 255) -> the same,
    each clip through its applied operations; ``joints (B, T, P, K, 3)`` (x, y in [0, 1] of the
    frame) move with the geometric ones, or stay None."""
    scale = 255.0 / max_value
    clips = (video * scale).round_().clamp_(0, 255).to(torch.uint8)
    moved = None if joints is None else joints.clone()
    for i, steps in enumerate(params.applied.tolist()):
        for k, applied in enumerate(steps):
            if not applied:
                continue
            name = OPS[int(params.op[i, k])]
            level = float(params.magnitude[i, k]) * float(params.sign[i, k])
            matrix = _warp_matrix(name, level, clips.shape[-2:])
            if matrix is None:
                clips[i] = _pixel_op(name, level, clips[i])
                continue
            clips[i] = _warp(clips[i], matrix)
            if moved is not None:
                moved[i] = _move_joints(moved[i], matrix, clips.shape[-2:])
    if not video.is_floating_point():
        return clips.to(video.dtype), moved
    return clips.to(video.dtype).div_(scale), moved


def _pixel_op(name: str, level: float, frames: Tensor) -> Tensor:
    """One colour / tone operation at signed ``level`` on ``frames (T, 3, H, W)`` uint8."""
    from torchvision.transforms.v2 import functional as TF  # (~1.5 s to import: when used)

    v = abs(level)
    if name == "AutoContrast":
        return TF.autocontrast(frames)
    if name == "Equalize":
        return TF.equalize(frames)
    if name == "Invert":
        return 255 - frames
    if name == "Posterize":
        return TF.posterize(frames, 4 - int(v / MAX_LEVEL * 4))
    if name == "Solarize":
        threshold = 256 - int(v / MAX_LEVEL * 256)  # 256: nothing (uint8 would wrap it to 0)
        return frames if threshold > 255 else torch.where(frames >= threshold, 255 - frames, frames)
    if name == "SolarizeAdd":
        added = (frames.to(torch.int16) + int(v / MAX_LEVEL * 110)).clamp_(max=255)
        return torch.where(frames < 128, added.to(torch.uint8), frames)
    factor = 1.0 + level / MAX_LEVEL * 0.9  # the sign is the level's
    enhance = {
        "Color": TF.adjust_saturation,
        "Contrast": TF.adjust_contrast,
        "Brightness": TF.adjust_brightness,
        "Sharpness": _sharpness,
    }[name]
    return enhance(frames, factor)


def _sharpness(frames: Tensor, factor: float) -> Tensor:
    """PIL's ``ImageEnhance.Sharpness`` on ``frames (T, 3, H, W)`` uint8, as torchvision's
    ``adjust_sharpness`` computes it: a blend with PIL's SMOOTH filter (weights 1, centre 5,
    over 13), the 1-pixel border kept. The filter is a 3x3 mean plus 4 centres (no constant
    to copy: torchvision's kernel is a synchronising copy every call; 4x faster on a CPU than
    its depthwise conv)."""
    h, w = frames.shape[-2:]
    if h <= 2 or w <= 2:
        return frames
    out = frames.float()
    inner = out[..., 1:-1, 1:-1]
    smooth = (F.avg_pool2d(out, 3, 1) * 9).add_(inner, alpha=4).div_(13).round_()
    inner.add_(smooth.sub_(inner), alpha=1.0 - factor)
    return out.clamp_(0, 255).to(torch.uint8)


def _warp_matrix(name: str, level: float, hw: tuple[int, int]) -> Tensor | None:
    """PIL's inverse affine map of a geometric operation (output pixel -> input pixel, pixel
    centres at +0.5) as ``(3, 3)`` float64, or None for a pixel operation."""
    h, w = hw
    if name == "Rotate":  # PIL's Image.rotate: counter-clockwise about the centre
        a = -math.radians(level * 3.0)
        cos, sin = math.cos(a), math.sin(a)
        cx, cy = w / 2.0, h / 2.0
        rows = [[cos, sin, cx - cos * cx - sin * cy], [-sin, cos, cy + sin * cx - cos * cy]]
    elif name == "ShearX":
        rows = [[1.0, level * 0.03, 0.0], [0.0, 1.0, 0.0]]
    elif name == "ShearY":
        rows = [[1.0, 0.0, 0.0], [level * 0.03, 1.0, 0.0]]
    elif name == "TranslateX":
        rows = [[1.0, 0.0, level * 0.045 * w], [0.0, 1.0, 0.0]]
    elif name == "TranslateY":
        rows = [[1.0, 0.0, 0.0], [0.0, 1.0, level * 0.045 * h]]
    else:
        return None
    return torch.tensor([*rows, [0.0, 0.0, 1.0]], dtype=torch.float64)


def _warp(frames: Tensor, inverse: Tensor) -> Tensor:
    """``frames (T, 3, H, W)`` uint8 resampled (bilinear) through the pixel-coordinate map
    ``inverse (3, 3)``; what falls outside the input is :data:`FILL`."""
    t, c, h, w = frames.shape
    to_unit = torch.tensor([[2.0 / w, 0.0, -1.0], [0.0, 2.0 / h, -1.0], [0.0, 0.0, 1.0]])
    to_unit = to_unit.double()
    theta = (to_unit @ inverse @ torch.linalg.inv(to_unit))[:2].float()
    theta = to_device(theta, frames.device).expand(t, 2, 3)
    grid = F.affine_grid(theta, [t, c, h, w], align_corners=False)
    shifted = frames.float() - FILL  # zero padding = the fill
    out = F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (out + FILL).round_().clamp_(0, 255).to(torch.uint8)


def _move_joints(joints: Tensor, inverse: Tensor, hw: tuple[int, int]) -> Tensor:
    """``joints (T, P, K, 3)`` (x, y in [0, 1] of the frame) to where :func:`_warp` moves
    their pixels; those that leave the frame become missing."""
    h, w = hw
    forward = torch.linalg.inv(inverse).to(joints.dtype)
    forward = to_device(forward, joints.device)
    px = joints[..., 0] * w
    py = joints[..., 1] * h
    x = (forward[0, 0] * px + forward[0, 1] * py + forward[0, 2]) / w
    y = (forward[1, 0] * px + forward[1, 1] * py + forward[1, 2]) / h
    return mask_invalid_joints(torch.stack([x, y, joints[..., 2]], dim=-1))
