"""Mixup and CutMix of a training batch (``train.mixup``, ``train.cutmix``), as timm's ``Mixup``
does for VideoMAE's fine-tuning, and repeated augmentation (``train.repeat_aug``). Each clip is
mixed with its partner, the clip ``repeats`` places before it (:func:`partners`: the batch
rolled, so never a clip itself or a copy of its own video; timm flips the batch, which pairs
the middle clip of an odd batch with itself), and the loss is ``lam`` x the loss on its own
label plus ``1 - lam`` x the loss on its partner's.

Mixup blends the two clips' pixels with ``lam ~ Beta(a, a)``; CutMix pastes a box of the
partner, the same box in every frame, whose area is ``1 - lam`` of the frame (``lam`` is then
the share actually left). With both on, a mixed batch uses CutMix with probability
``train.mix_switch``. Draws come from the step's augmentation generator (on the CPU), so a
resumed epoch mixes exactly as the uninterrupted one did. Joints cannot be mixed: training
refuses mixing with the pose stream (RGB only, as VideoMAE fine-tunes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Mixing", "mix_clips", "partners", "repeat_clips"]


@dataclass(frozen=True)
class Mixing:
    """How a training batch is mixed (the ``train.mixup`` ... ``train.mix_switch`` keys)."""

    mixup: float = 0.0  # Beta(a, a) of mixup's lam (0 = no mixup)
    cutmix: float = 0.0  # Beta(a, a) of cutmix's lam (0 = no cutmix)
    prob: float = 1.0  # share of batches mixed
    switch: float = 0.5  # with both on: share of the mixed batches that use cutmix

    @property
    def enabled(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


def partners(x: torch.Tensor, repeats: int = 1) -> torch.Tensor:
    """``x`` (clips first) as each clip's mixing partner sees it: rolled by ``repeats``, the
    copies of one video (:func:`repeat_clips`)."""
    return x.roll(repeats, 0)


def mix_clips(
    video: torch.Tensor, mixing: Mixing, generator: torch.Generator | None, repeats: int = 1
) -> tuple[torch.Tensor, float] | None:
    """Mix ``video (B, T, 3, S, S)`` (normalised; ``repeats`` copies of each video in a row)
    with its :func:`partners`; returns it (a new tensor) and ``lam``, the weight of each clip's
    own label, or None when this batch is not mixed (mixing off, the draw said no, or fewer
    than 2 videos)."""
    if not mixing.enabled or video.shape[0] < 2 * repeats:
        return None
    draws = torch.rand(2, generator=generator).tolist()  # (a CPU generator: no device sync)
    if draws[0] >= mixing.prob:
        return None
    use_cutmix = mixing.cutmix > 0 and (mixing.mixup <= 0 or draws[1] < mixing.switch)
    alpha = mixing.cutmix if use_cutmix else mixing.mixup
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    lam = float(rng.beta(alpha, alpha))
    partner = partners(video, repeats)
    if not use_cutmix:
        return video * lam + partner * (1.0 - lam), lam
    s_h, s_w = video.shape[-2:]
    top, bottom, left, right = _box(s_h, s_w, lam, rng)
    mixed = video.clone()
    mixed[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
    return mixed, 1.0 - (bottom - top) * (right - left) / (s_h * s_w)


def repeat_clips(times: int, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Repeated augmentation (``train.repeat_aug``): each tensor's clips (dim 0) ``times`` times
    in a row, ``a a b b`` (each copy then gets its own crops, flips and colours); as they are
    for ``times`` 1."""
    if times == 1:
        return tensors
    return tuple(t.repeat_interleave(times, 0) for t in tensors)


def _box(
    height: int, width: int, lam: float, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """CutMix's box (top, bottom, left, right): sides ``sqrt(1 - lam)`` of the frame's, its
    centre uniform over the frame, clipped to it (as timm's ``rand_bbox``)."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right
