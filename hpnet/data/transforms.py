"""Batched clip augmentation on the device: crops, flips, colour, blur, normalisation, joints too.

The DataLoader moves ``uint8`` clips; everything here runs on whatever device the batch is on,
for the whole batch at once, with per-sample random parameters. Frames and joints always go
through the same geometry, so a joint keeps pointing at the same pixel. Joints are
``(..., K, 3)`` = x, y in [0, 1] of the frame, confidence; a missing joint is ``(0, 0, 0)`` and
stays exactly that, and a joint that a crop pushes out of the picture becomes missing.

Pure tensor functions first (colour and blur in :mod:`hpnet.data.colour`), then
:class:`ClipTransform`, a thin holder of the settings::

    tf = ClipTransform(size=224, **dataclasses.asdict(cfg.data.augment))
    video, joints = tf.train(batch["video"].cuda(), batch["joints"].cuda(), generator)
    video, joints = tf.test(batch["video"].cuda(), batch["joints"].cuda(), crops=3)

Random parameters are drawn on the generator's device (the CPU by default; they are a few
numbers per clip) and then moved to the batch, so one seed gives the same augmentation on a CPU
and a GPU. The random resized crop is one affine ``grid_sample`` per batch with the T frames
folded into channels (measured faster on the CPU than ``torchvision.ops.roi_align``:
bench/transforms.py); it is bilinear without antialiasing, which is fine for the mild
down-scaling from the loader canvas (at most ~1.5x at the default 8/7 canvas). Colour jitter and
normalisation are one per-clip 3x3 colour matrix (one ``baddbmm``); blur is a depthwise conv.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hpnet.data.colour import color_jitter_normalize, gaussian_blur
from hpnet.data.erasing import erase_clips
from hpnet.data.eval_crops import short_side_crop_joints, short_side_crops
from hpnet.data.randaugment import RandAugmentParams, rand_augment, sample_randaugment
from hpnet.host_copy import constant, to_device
from hpnet.pose.skeleton import crop_joints

__all__ = [  # colour: hpnet.data.colour; joints: hpnet.pose.skeleton
    "ClipTransform",
    "color_jitter_normalize",
    "crop_joints",
    "gaussian_blur",
]


# ------------------------------------------------------------------------------- normalisation


def _value_range(video: Tensor) -> float:
    """Largest pixel value: 255 for integer clips, 1 for float clips (float means [0, 1])."""
    return 1.0 if video.is_floating_point() else 255.0


def _compute_dtype(video: Tensor) -> torch.dtype:
    return video.dtype if video.is_floating_point() else torch.float32


def _normalize_(
    video: Tensor, mean: Sequence[float], std: Sequence[float], max_value: float
) -> Tensor:
    """In place on float ``(..., 3, H, W)`` in [0, max_value]: ``(x / max_value - mean) / std``."""
    shape = (3, 1, 1)
    std_t = constant(std, video.device, video.dtype).view(shape)
    mean_t = constant(mean, video.device, video.dtype).view(shape)
    return video.mul_(1.0 / (max_value * std_t)).sub_(mean_t / std_t)


def normalize(
    video: Tensor, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32
) -> Tensor:
    """``(..., 3, H, W)`` uint8 in [0, 255] or float in [0, 1] -> float ``(x - mean) / std``.

    ``mean``/``std`` are per RGB channel in [0, 1] units. Integer input becomes ``dtype``;
    float input keeps its dtype. Returns a new tensor.
    """
    out = video.to(video.dtype if video.is_floating_point() else dtype, copy=True)
    return _normalize_(out, mean, std, _value_range(video))


# ------------------------------------------------------------------------------------- geometry


def sample_crop_boxes(
    batch: int,
    height: int,
    width: int,
    *,
    scale_min: float,
    ratio_max: float,
    generator: torch.Generator | None = None,
    attempts: int = 10,
) -> Tensor:
    """Random resized crop boxes, one per clip: ``(B, 4)`` = x0, y0, x1, y1 in [0, 1].

    As torchvision's RandomResizedCrop, batched: a box covers an area fraction in
    ``[scale_min, 1]`` of the ``height x width`` frame with aspect (width / height, in pixels)
    log-uniform in ``[1 / ratio_max, ratio_max]``; the first of ``attempts`` draws that fits
    wins, otherwise the centred largest box with a clamped aspect. Drawn on the generator's
    device (CPU when None, from torch's global generator).
    """
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(2, batch, attempts, generator=generator, device=device, dtype=torch.float64)
    pos = torch.rand(2, batch, generator=generator, device=device, dtype=torch.float64)
    area = (scale_min + (1.0 - scale_min) * u[0]) * (height * width)
    ratio = torch.exp((2.0 * u[1] - 1.0) * math.log(ratio_max))
    w, h = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
    fits = (w <= width) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first attempt that fits
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    in_ratio = width / height  # fallback, as torchvision: the whole frame, aspect clamped
    fw, fh = float(width), float(height)
    if in_ratio < 1.0 / ratio_max:
        fh = width * ratio_max
    elif in_ratio > ratio_max:
        fw = height * ratio_max
    found = fits.any(dim=1)
    w = torch.where(found, w, fw).clamp(max=width)
    h = torch.where(found, h, fh).clamp(max=height)
    x0 = torch.where(found, pos[0] * (width - w), (width - w) / 2)
    y0 = torch.where(found, pos[1] * (height - h), (height - h) / 2)
    boxes = torch.stack([x0 / width, y0 / height, (x0 + w) / width, (y0 + h) / height], dim=1)
    return boxes.clamp(0.0, 1.0).float()


def resized_crop(video: Tensor, boxes: Tensor, size: int, flip: Tensor | None = None) -> Tensor:
    """Crop a box per clip (the same for its T frames), resize to ``size``, optionally mirror.

    video: ``(B, T, C, H, W)`` uint8 or float; boxes: ``(B, 4)`` x0, y0, x1, y1 in [0, 1];
    flip: ``(B,)`` bool. Returns float ``(B, T, C, size, size)`` in the input's value range
    (float32 for integer input). One bilinear ``grid_sample`` for the whole batch.
    """
    b, t, c, h, w = video.shape
    dtype = _compute_dtype(video)
    frames = video.reshape(b, t * c, h, w).to(dtype)  # T folded into channels: one grid a clip
    x0, y0, x1, y1 = to_device(boxes, video.device, dtype).unbind(1)
    sign = 1.0 - 2.0 * to_device(flip, video.device, dtype) if flip is not None else 1.0
    theta = torch.zeros(b, 2, 3, dtype=dtype, device=video.device)
    theta[:, 0, 0] = (x1 - x0) * sign  # output u in [0, 1] samples input x0 + u * (x1 - x0)
    theta[:, 0, 2] = x0 + x1 - 1.0
    theta[:, 1, 1] = y1 - y0
    theta[:, 1, 2] = y0 + y1 - 1.0
    grid = F.affine_grid(theta, [b, t * c, size, size], align_corners=False)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.view(b, t, c, size, size)


# ------------------------------------------------------------------------- train-time pipeline


@dataclass
class TrainParams:
    """Per-clip random augmentation parameters (build them by hand to force a crop or flip)."""

    boxes: Tensor  # (B, 4) crop x0, y0, x1, y1 in [0, 1] of the frame
    flip: Tensor  # (B,) bool: mirror horizontally
    brightness: Tensor  # (B,) factor, 1 = unchanged
    contrast: Tensor  # (B,) factor, 1 = unchanged
    saturation: Tensor  # (B,) factor, 1 = unchanged
    blur_sigma: Tensor  # (B,) Gaussian sigma in output pixels, 0 = no blur
    hue: Tensor | None = None  # (B,) hue shift in turns (0.5 = half the colour wheel); None = 0

    @classmethod
    def identity(cls, batch: int, boxes: Tensor | None = None, flip: bool = False) -> TrainParams:
        """No colour change, no blur; whole frame unless ``boxes`` ``(B, 4)`` are given."""
        whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(batch, 1)
        ones = [torch.ones(batch) for _ in range(3)]
        flips = torch.full((batch,), flip)
        return cls(whole if boxes is None else boxes, flips, *ones, torch.zeros(batch))


def sample_train_params(
    batch: int,
    frame_hw: tuple[int, int],
    *,
    scale_min: float,
    ratio_max: float,
    flip_prob: float,
    jitter: float,
    blur_prob: float,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    hue: float = 0.0,
    generator: torch.Generator | None = None,
) -> TrainParams:
    """Draw :class:`TrainParams` for ``batch`` clips of ``frame_hw`` = (H, W) pixels.

    Every parameter is drawn every time, in a fixed order, so e.g. switching jitter off does not
    change the crops a seed gives. Jitter factors are uniform in ``[1 - jitter, 1 + jitter]``;
    hue shifts uniform in ``[-hue, hue]`` turns, drawn last and only when ``hue > 0`` (so a run
    without hue jitter draws what it drew before hue existed).
    """
    boxes = sample_crop_boxes(
        batch, *frame_hw, scale_min=scale_min, ratio_max=ratio_max, generator=generator
    )
    device = boxes.device
    u = torch.rand(6, batch, generator=generator, device=device)
    jitter_factors = (1.0 + jitter * (2.0 * u[1:4] - 1.0)).clamp(min=0.0)
    sigma = blur_sigma[0] + (blur_sigma[1] - blur_sigma[0]) * u[5]
    return TrainParams(
        boxes=boxes,
        flip=u[0] < flip_prob,
        brightness=jitter_factors[0],
        contrast=jitter_factors[1],
        saturation=jitter_factors[2],
        blur_sigma=torch.where(u[4] < blur_prob, sigma, 0.0),
        hue=hue * (2.0 * torch.rand(batch, generator=generator, device=device) - 1.0)
        if hue > 0
        else None,
    )


def apply_train_params(
    video: Tensor,
    joints: Tensor | None,
    params: TrainParams,
    *,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    rand: RandAugmentParams | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Crop + flip (+ RandAugment ``rand``) + colour + blur + normalise ``(B, T, 3, H, W)`` ->
    float ``(B, T, 3, S, S)``; joints ``(B, T, P, K, 3)`` go through the same crop, flip and
    warps (or stay None)."""
    max_value = _value_range(video)
    out = resized_crop(video, params.boxes, size, flip=params.flip)
    if joints is not None:
        joints = crop_joints(joints, params.boxes, params.flip)
    if rand is not None:
        out, joints = rand_augment(out, joints, rand, max_value)
    factors = torch.stack([params.brightness, params.contrast, params.saturation])
    if params.hue is not None or bool((factors != 1).any()):
        out = color_jitter_normalize(
            out, *factors, mean=mean, std=std, max_value=max_value, hue=params.hue
        )
    else:
        _normalize_(out, mean, std, max_value)
    blurred = torch.nonzero(params.blur_sigma > 0).flatten()  # blur commutes with normalising
    if blurred.numel() > 0:
        index = to_device(blurred, out.device)
        out[index] = gaussian_blur(out[index], params.blur_sigma[blurred])
    return out, joints


# ------------------------------------------------------------------------------ the settings


def _check_shapes(video: Tensor, joints: Tensor | None, ndim: int, layout: str) -> None:
    if video.dim() != ndim or video.shape[-3] != 3:
        raise ValueError(f"video must be {layout} with 3 channels, got {tuple(video.shape)}")
    lead = video.shape[: ndim - 3]
    if joints is not None and (joints.shape[: ndim - 3] != lead or joints.shape[-1] != 3):
        raise ValueError(
            f"joints {tuple(joints.shape)} do not match video {tuple(video.shape)}: "
            f"expected {tuple(lead)} + (P, K, 3)"
        )


class ClipTransform:
    """Train augmentation and test crops with fixed settings (names of ``AugmentConfig``).

    ``flip`` enables a horizontal flip with probability 0.5; ``mean``/``std`` are RGB in [0, 1];
    ``hue`` > 0 rotates each clip's hue by up to that many turns (:mod:`hpnet.data.colour`);
    ``randaug_n`` > 0 runs that many RandAugment operations of magnitude ``randaug_m`` (noise
    ``randaug_mstd``) on each crop (:mod:`hpnet.data.randaugment`); ``erase_prob`` > 0 erases
    clips after all that (:mod:`hpnet.data.erasing`).
    Build it with ``ClipTransform(size=cfg.data.size, **dataclasses.asdict(cfg.data.augment))``.
    """

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        flip: bool = True,
        scale_min: float = 0.4,
        ratio_max: float = 1.333,
        jitter: float = 0.3,
        blur_prob: float = 0.1,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        hue: float = 0.0,
        erase_prob: float = 0.0,
        randaug_n: int = 0,
        randaug_m: float = 7.0,
        randaug_mstd: float = 0.5,
    ) -> None:
        ok = len(mean) == len(std) == 3 and min(std) > 0 and 0 < scale_min <= 1 <= ratio_max
        ok = ok and 0 <= erase_prob <= 1 and isinstance(randaug_n, int) and 0 <= randaug_n <= 30
        ok = ok and 0 <= randaug_m <= 10 and randaug_mstd >= 0
        if not (ok and 0 <= jitter <= 1 and 0 <= blur_prob <= 1 and 0 <= hue <= 0.5):
            raise ValueError(
                "need 3 means, 3 stds > 0, 0 < scale_min <= 1 <= ratio_max, jitter, blur_prob "
                "and erase_prob in [0, 1], hue in [0, 0.5], randaug_n an int in [0, 30], "
                f"randaug_m in [0, 10], randaug_mstd >= 0; got {mean}, {std}, {scale_min}, "
                f"{ratio_max}, {jitter}, {blur_prob}, {erase_prob}, {hue}, {randaug_n}, "
                f"{randaug_m}, {randaug_mstd}"
            )
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)
        self.flip, self.scale_min, self.ratio_max = flip, scale_min, ratio_max
        self.jitter, self.blur_prob, self.blur_sigma = jitter, blur_prob, blur_sigma
        self.hue, self.erase_prob = hue, erase_prob
        self.randaug = (randaug_n, randaug_m, randaug_mstd)

    def sample_params(
        self, batch: int, frame_hw: tuple[int, int], generator: torch.Generator | None = None
    ) -> TrainParams:
        """Random :class:`TrainParams` for ``batch`` clips of ``frame_hw`` = (H, W)."""
        return sample_train_params(
            batch,
            frame_hw,
            scale_min=self.scale_min,
            ratio_max=self.ratio_max,
            flip_prob=0.5 if self.flip else 0.0,
            jitter=self.jitter,
            blur_prob=self.blur_prob,
            blur_sigma=self.blur_sigma,
            hue=self.hue,
            generator=generator,
        )

    def train(
        self, video: Tensor, joints: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """uint8 ``(B, T, 3, H, W)``, joints ``(B, T, P, K, 3)`` -> float ``(B, T, 3, S, S)``
        normalised, joints mapped. Deterministic given ``generator``."""
        _check_shapes(video, joints, 5, "(B, T, 3, H, W)")
        params = self.sample_params(video.shape[0], tuple(video.shape[-2:]), generator)
        rand = None  # drawn after the rest: a run without RandAugment draws what it drew before
        if self.randaug[0] > 0:
            rand = sample_randaugment(video.shape[0], *self.randaug, generator=generator)
        out, joints = apply_train_params(
            video, joints, params, size=self.size, mean=self.mean, std=self.std, rand=rand
        )
        return erase_clips(out, self.erase_prob, generator), joints

    def test(
        self, video: Tensor, joints: Tensor | None = None, crops: int = 1
    ) -> tuple[Tensor, Tensor | None]:
        """uint8 ``(B, V, T, 3, H, W)``, joints ``(B, V, T, P, K, 3)`` -> float
        ``(B, V * C, T, 3, S, S)`` normalised and joints ``(B, V * C, T, P, K, 3)``; view-major
        order (index ``v * C + c``); C = ``crops`` distinct test crops
        (:mod:`hpnet.data.eval_crops`; 1 on a square canvas)."""
        _check_shapes(video, joints, 6, "(B, V, T, 3, H, W)")
        b, v, t, c, h, w = video.shape
        out = short_side_crops(video.reshape(b * v, t, c, h, w), self.size, crops)
        crops = out.shape[1]
        out = out.view(b, v * crops, t, c, self.size, self.size)
        _normalize_(out, self.mean, self.std, _value_range(video))
        if joints is None:
            return out, None
        flat = joints.reshape(b * v, *joints.shape[2:])
        mapped = short_side_crop_joints(flat, (h, w), self.size, crops)
        return out, mapped.view(b, v * crops, *joints.shape[2:])
