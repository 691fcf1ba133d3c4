"""Colour on batched clips: jitter (one affine colour map per clip, normalisation folded in)
and Gaussian blur (one sigma per clip); :mod:`hpnet.data.transforms` draws their parameters.

Hue jitter is a rotation of RGB about the grey axis in YIQ space (the linear hue shift of
image editors' hue-rotate filters): grey stays grey and luma is kept exactly, so it folds into
the same 3 x 3 colour map as brightness, contrast and saturation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hpnet.host_copy import constant, to_device

_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
_RGB_TO_YIQ = (_GRAY_WEIGHTS, (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))  # rows: Y, I, Q
_YIQ_TO_RGB = torch.linalg.inv(torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)).tolist()


def hue_rotation_matrix(turns: Tensor) -> Tensor:
    """Hue shifts ``(B,)`` in turns (0.5 = half the colour wheel, 0 = unchanged) as colour maps
    ``(B, 3, 3)`` on ``turns``' device: RGB -> YIQ, rotate (I, Q) by ``2 pi turns``, back to
    RGB. Grey and luma are kept exactly (I and Q of grey are 0: each of their rows sums to 0)."""
    dtype = torch.float64 if turns.device.type in ("cpu", "cuda") else torch.float32
    angle = 2.0 * math.pi * turns.to(dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = ((one, zero, zero), (zero, cos, -sin), (zero, sin, cos))
    rotation = torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)  # (B, 3, 3)
    to_yiq = constant(_RGB_TO_YIQ, turns.device, dtype)
    return constant(_YIQ_TO_RGB, turns.device, dtype) @ rotation @ to_yiq


def color_jitter_matrix(
    brightness: Tensor,
    contrast: Tensor,
    saturation: Tensor,
    channel_mean: Tensor,
    hue: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Brightness, contrast, saturation (and hue) as one affine colour map per clip: ``x -> A x
    + o``.

    Factors ``(B,)`` (1 = unchanged); ``channel_mean``: ``(B, 3)`` mean RGB of each clip;
    ``hue``: ``(B,)`` shifts in turns (:func:`hue_rotation_matrix`) or None (none).
    Brightness scales, contrast blends with the clip's mean grey (one mean for all T frames, so
    a clip does not flicker), saturation blends with each pixel's grey (ITU-R 601 luma), then
    the hue turns, in that order, as torchvision but clamped once at the end instead of after
    each step. Returns ``A (B, 3, 3)`` and ``o (B, 3)``.
    """
    device, dtype = channel_mean.device, channel_mean.dtype
    luma = constant(_GRAY_WEIGHTS, device, dtype)
    factors = (brightness, contrast, saturation)
    b, c, s = (to_device(f, device, dtype).view(-1, 1, 1) for f in factors)
    eye = torch.eye(3, dtype=luma.dtype, device=luma.device)
    matrix = c * b * (s * eye + (1 - s) * luma.expand(3, 3))  # rows: s * e_i + (1 - s) * luma
    mean_gray = channel_mean @ luma  # (B,)
    offset = ((1 - c) * b).view(-1, 1) * mean_gray.view(-1, 1)  # (B, 1), the same for R, G, B
    if hue is not None:  # the offset is grey, which the rotation keeps
        matrix = to_device(hue_rotation_matrix(hue), device, dtype) @ matrix
    return matrix, offset.expand(-1, 3)


def color_jitter_normalize(
    video: Tensor,
    brightness: Tensor,
    contrast: Tensor,
    saturation: Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    max_value: float,
    hue: Tensor | None = None,
) -> Tensor:
    """Colour jitter (:func:`color_jitter_matrix`), clamp to the valid range and normalise, as
    one batched matrix product. video: float ``(B, T, 3, H, W)`` in [0, max_value]; factors
    and ``hue`` (turns, or None) ``(B,)``. Returns a new normalised ``(B, T, 3, H, W)``."""
    b, t, c, h, w = video.shape
    pixels = video.reshape(b * t, c, h * w)
    channel_mean = pixels.mean(dim=2).view(b, t, c).mean(dim=1)  # (B, 3)
    matrix, offset = color_jitter_matrix(brightness, contrast, saturation, channel_mean, hue)
    std_t = constant(std, video.device, video.dtype)
    mean_t = constant(mean, video.device, video.dtype)
    scale = 1.0 / (max_value * std_t)  # normalisation folded in: y = scale * (A x + o) - m / s
    matrix = (scale[:, None] * matrix).repeat_interleave(t, dim=0)  # (B*T, 3, 3)
    offset = (scale * offset - mean_t / std_t).repeat_interleave(t, dim=0)[:, :, None]
    out = torch.baddbmm(offset, matrix, pixels)  # (B*T, 3, H*W)
    low, high = (-mean_t / std_t).view(3, 1), ((1 - mean_t) / std_t).view(3, 1)
    return out.clamp_(low, high).view(b, t, c, h, w)


def gaussian_blur(video: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur, one sigma (pixels, > 0) per clip, reflect padding.

    video: float ``(B, T, C, H, W)``; sigma: ``(B,)``. Returns a new ``(B, T, C, H, W)``; the
    kernel radius is ``ceil(3 * max(sigma))`` (at most H - 1, W - 1).
    """
    b, t, c, h, w = video.shape
    sigma = sigma.to(torch.float64)
    radius = max(1, min(math.ceil(3.0 * float(sigma.max())), h - 1, w - 1))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64, device=sigma.device)
    kernel = torch.exp(-0.5 * (offsets / sigma[:, None]) ** 2)
    kernel = to_device(kernel / kernel.sum(dim=1, keepdim=True), video.device, video.dtype)
    kernel = kernel.repeat_interleave(t * c, dim=0)  # (B*T*C, 2r+1): one depthwise filter each
    x = video.reshape(1, b * t * c, h, w)
    x = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, kernel[:, None, None, :], groups=b * t * c)
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel[:, None, :, None], groups=b * t * c)
    return x.view(b, t, c, h, w)
