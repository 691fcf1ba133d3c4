"""A clip's moving foreground pasted on another clip's background (FAME, Ding et al. 2022).

For SimSiam's ``foreground`` views: a view that keeps what moves in a frame (the person's
moving limbs, a ball) and swaps everything static for another clip's scene, so two views of a
frame no longer agree on the background they share. Static camera assumed: the background of a
clip is its per-pixel temporal median, a pixel moves where the frame differs from it::

    background = median_t video                        (B, 3, H, W)
    mask = dilate(max_c |frame - background| > threshold)   (B, 1, H, W), in {0, 1}
    composite = mask * frame + (1 - mask) * background of clip (b - 1) mod B

The other clip's median still holds whatever stood still in it (a faint figure, a parked
shape); FAME accepts the same. Works batched on any device; no randomness (which frame and
which other clip are the caller's choice, and the batch order is already random).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def moving_mask(frame: Tensor, background: Tensor, threshold: float, dilate: int) -> Tensor:
    """``(B, 1, H, W)`` float 0/1: pixels of ``frame`` ``(B, 3, H, W)`` that differ from
    ``background`` (same shape, same value range) by more than ``threshold`` in any channel,
    grown by a ``dilate`` x ``dilate`` max-pool (odd; 1 = not grown) to close small holes."""
    moving = ((frame - background).abs().amax(dim=1, keepdim=True) > threshold).to(frame.dtype)
    if dilate > 1:
        moving = F.max_pool2d(moving, dilate, stride=1, padding=dilate // 2)
    return moving


def paste_foreground(
    video: Tensor, index: Tensor, *, threshold: float = 0.08, dilate: int = 0
) -> tuple[Tensor, Tensor]:
    """Frame ``index[b]`` of each clip of float ``video`` ``(B, T, 3, H, W)`` in [0, 1], with
    its moving pixels kept and the rest taken from the previous clip's median background.

    threshold: in [0, 1] pixel units; dilate: the mask's max-pool size (0 = about H / 16, odd).
    Returns the composites ``(B, 3, H, W)`` and the masks ``(B, 1, H, W)``. Needs T >= 3 (a
    median of fewer frames is one of them) and B >= 2 (another clip to take a scene from).
    """
    b, t = video.shape[:2]
    if t < 3 or b < 2:
        raise ValueError(
            f"foreground views need clips of >= 3 frames in batches of >= 2 clips, got "
            f"{t} frames and {b} clips: raise data.frames or train.batch_size"
        )
    dilate = dilate or (max(3, video.shape[-2] // 16) | 1)
    background = video.median(dim=1).values  # (B, 3, H, W)
    frame = video[torch.arange(b, device=video.device), index.to(video.device)]
    mask = moving_mask(frame, background, threshold, dilate)
    other = background.roll(1, dims=0)  # clip b gets the scene of clip b - 1
    return mask * frame + (1 - mask) * other, mask
