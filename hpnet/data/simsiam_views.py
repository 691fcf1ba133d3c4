"""Two views per clip for SimSiam: two augmentations of one frame (the second maybe on another
scene), or two nearby frames.

Input is a clip batch as hpnet's loaders give it, ``(B, T, 3, H, W)`` uint8 (or float in
[0, 1]), on any device; output two normalised ``(B, 3, S, S)`` float tensors. Everything runs
batched through :mod:`hpnet.data.transforms` (one ``grid_sample`` crop, one colour matrix, a
depthwise blur), with per-sample parameters drawn on the generator's device, so one seed gives
the same views on a CPU and a GPU.

- ``augment``: one random frame per clip, two strong augmentations of it (SimSiam's recipe):
  random resized crop (area ``[scale_min, 1]``), flip, colour jitter (brightness, contrast,
  saturation and hue, :mod:`hpnet.data.colour`) with probability ``jitter_prob``, greyscale
  (saturation 0) with probability ``gray_prob``, Gaussian blur with probability ``blur_prob``.
  Hue jitter keeps two crops of one frame from agreeing on their colour histogram alone (SimCLR's
  finding; the synthetic clips' backgrounds differ in colour from clip to clip):
  ``STRONG.hue`` = 0.1 turn as SimSiam's ImageNet recipe (``pretrain.hue`` sets it).
- ``foreground``: as ``augment``, but the second view's frame keeps only what moves in it and
  takes the rest from another clip of the batch (:mod:`hpnet.data.foreground`; FAME, Ding et al.
  2022): the two views share the moving person, not the scene. ``motion_threshold`` (pixel
  units in [0, 1]) decides what moves; static camera assumed.
- ``frames``: two frames of one clip at most ``frame_gap`` clip frames apart (never the same
  frame when T > 1), each lightly augmented (``light`` settings: mild crop, flip, mild jitter, no
  greyscale or blur). The gap counts frames of the sampled clip, not of the video: with
  ``data.frames`` spread over a long video, neighbours are further apart in time.

    views = SimSiamViews("augment", size=64, mean=cfg.data.augment.mean, std=...)
    x1, x2 = views(batch["video"].to(device), generator)  # (B, 3, 64, 64) each
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from hpnet.data.foreground import paste_foreground
from hpnet.data.transforms import TrainParams, apply_train_params, sample_train_params

ViewMode = Literal["augment", "frames", "foreground"]
VIEW_MODES: tuple[str, ...] = ("augment", "frames", "foreground")


@dataclass(frozen=True)
class ViewAugment:
    """The random augmentation of one view (probabilities per sample)."""

    scale_min: float = 0.2  # random resized crop: smallest fraction of the frame area kept
    ratio_max: float = 4 / 3  # crop aspect ratios in [1 / ratio_max, ratio_max]
    flip_prob: float = 0.5  # horizontal flip
    jitter: float = 0.4  # brightness / contrast / saturation factors in [1 - j, 1 + j]
    hue: float = 0.0  # hue shifts in [-hue, hue] turns (0.5 = any hue)
    jitter_prob: float = 0.8  # share of views that get the colour jitter (hue included)
    gray_prob: float = 0.2  # share of views turned grey (saturation 0)
    blur_prob: float = 0.5  # share of views blurred
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # blur sigma range, pixels of a 224 view


STRONG = ViewAugment(hue=0.1)  # SimSiam's ImageNet recipe
LIGHT = ViewAugment(scale_min=0.6, jitter=0.2, gray_prob=0.0, blur_prob=0.0)  # frames mode


def sample_view_params(
    batch: int,
    frame_hw: tuple[int, int],
    aug: ViewAugment,
    size: int,
    generator: torch.Generator | None = None,
) -> TrainParams:
    """Per-sample :class:`~hpnet.data.transforms.TrainParams` of one view: the transforms'
    crop, flip, jitter and blur, then jitter kept with ``jitter_prob`` and greyscale with
    ``gray_prob``. The blur sigma scales with ``size`` / 224."""
    scale = size / 224.0
    params = sample_train_params(
        batch,
        frame_hw,
        scale_min=aug.scale_min,
        ratio_max=aug.ratio_max,
        flip_prob=aug.flip_prob,
        jitter=aug.jitter,
        blur_prob=aug.blur_prob,
        blur_sigma=(aug.blur_sigma[0] * scale, aug.blur_sigma[1] * scale),
        hue=aug.hue,
        generator=generator,
    )
    u = torch.rand(2, batch, generator=generator, device=params.boxes.device)
    keep = u[0] < aug.jitter_prob
    saturation = torch.where(keep, params.saturation, 1.0)
    return replace(
        params,
        brightness=torch.where(keep, params.brightness, 1.0),
        contrast=torch.where(keep, params.contrast, 1.0),
        saturation=torch.where(u[1] < aug.gray_prob, 0.0, saturation),
        hue=None if params.hue is None else torch.where(keep, params.hue, 0.0),
    )


def sample_frame_pairs(
    batch: int,
    frames: int,
    mode: ViewMode,
    frame_gap: int = 4,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Frame indices ``(B,)``, ``(B,)`` of the two views: ``augment`` and ``foreground``: the
    same random frame twice; ``frames``: a random frame and another drawn uniformly from those
    inside the clip at most ``frame_gap`` frames before or after it (the same frame only when
    T = 1)."""
    if mode not in VIEW_MODES:
        raise ValueError(f"unknown view mode {mode!r}; one of {VIEW_MODES}")
    device = generator.device if generator is not None else torch.device("cpu")
    first = torch.randint(frames, (batch,), generator=generator, device=device)
    if mode != "frames" or frames == 1:
        return first, first
    gap = max(1, frame_gap)
    low = (first - gap).clamp(min=0)
    count = (first + gap).clamp(max=frames - 1) - low  # frames in reach, the first one left out
    pick = (torch.rand(batch, generator=generator, device=device) * count).long()
    second = low + pick.minimum(count - 1)
    return first, second + (second >= first).long()  # skip over the first frame


class SimSiamViews:
    """Two normalised views ``(B, 3, S, S)`` of each clip of a ``(B, T, 3, H, W)`` batch.

    mode: ``augment``, ``frames`` or ``foreground`` (module docstring); ``mean``/``std``: RGB
    in [0, 1] (the run's ``data.augment.mean/std``); ``strong``/``light``: the augmentations
    (``light`` for ``frames``); ``motion_threshold``: ``foreground``'s moving-pixel threshold.
    """

    def __init__(
        self,
        mode: ViewMode,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        frame_gap: int = 4,
        strong: ViewAugment = STRONG,
        light: ViewAugment = LIGHT,
        motion_threshold: float = 0.08,
    ) -> None:
        if mode not in VIEW_MODES:
            raise ValueError(f"unknown view mode {mode!r}; one of {VIEW_MODES}")
        if frame_gap < 1:
            raise ValueError(f"frame_gap must be >= 1, got {frame_gap}")
        self.mode, self.size, self.frame_gap = mode, size, frame_gap
        self.mean, self.std = tuple(mean), tuple(std)
        self.aug = light if mode == "frames" else strong
        self.motion_threshold = motion_threshold

    def __call__(
        self, video: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """uint8 / float ``(B, T, 3, H, W)`` -> two float ``(B, 3, S, S)``, normalised."""
        if video.dim() != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (B, T, 3, H, W), got {tuple(video.shape)}")
        b, t = video.shape[:2]
        first, second = sample_frame_pairs(b, t, self.mode, self.frame_gap, generator)
        rows = torch.arange(b, device=video.device)
        frames = [video[rows, first.to(video.device)]]
        if self.mode == "foreground":  # the same frame, its scene swapped for another clip's
            clips = video if video.is_floating_point() else video.float() / 255.0
            frames.append(paste_foreground(clips, second, threshold=self.motion_threshold)[0])
        else:
            frames.append(video[rows, second.to(video.device)])
        views = []
        for frame in frames:
            frame = frame.unsqueeze(1)  # (B, 1, 3, H, W)
            params = sample_view_params(b, tuple(video.shape[-2:]), self.aug, self.size, generator)
            out, _ = apply_train_params(
                frame, None, params, size=self.size, mean=self.mean, std=self.std
            )
            views.append(out[:, 0])  # (B, 3, S, S)
        return views[0], views[1]
