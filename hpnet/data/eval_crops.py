"""Test-time crops of the evaluation views: the frame resized so its short side is the crop
side, then one centred square or three along the long side; the joints mapped into each."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hpnet.data.canvas import place
from hpnet.pose.skeleton import crop_joints

__all__ = [
    "distinct_crop_count",
    "short_side_crop_joints",
    "short_side_crop_layout",
    "short_side_crops",
]


def short_side_crop_layout(
    height: int, width: int, size: int, crops: int
) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """Test-time crops: the frame resized so its short side is ``size`` (aspect kept, sizes as
    torchvision's ``Resize``), then squares of ``size``: ``crops`` = 1: the centre (offsets as
    torchvision's ``CenterCrop``); 3: left, centre, right along a wide frame (top, centre,
    bottom along a tall one). Crops that would be identical (a square frame) are given once, so
    a square canvas gets one crop whatever ``crops`` says. Returns ``(resized_h, resized_w)``
    and the distinct (top, left) offsets."""
    if crops not in (1, 3):
        raise ValueError(f"crops must be 1 or 3, got {crops} (eval.crops)")
    placed = place((height, width), (size, size), "crop")
    (rh, rw), centre = placed.scaled_hw, (-placed.top, -placed.left)
    room = max(rh, rw) - size
    if crops == 1 or room == 0:
        return (rh, rw), [centre]
    if rw >= rh:
        return (rh, rw), [(centre[0], 0), centre, (centre[0], room)]
    return (rh, rw), [(0, centre[1]), centre, (room, centre[1])]


def distinct_crop_count(height: int, width: int, size: int, crops: int) -> int:
    """How many distinct test crops an ``height x width`` canvas gives (1 when square)."""
    return len(short_side_crop_layout(height, width, size, crops)[1])


def short_side_crops(video: Tensor, size: int, crops: int) -> Tensor:
    """``(N, T, C, H, W)`` -> float ``(N, K, T, C, size, size)``: antialiased bilinear resize,
    then the K distinct :func:`short_side_crop_layout` crops (input value range kept)."""
    n, t, c, h, w = video.shape
    (rh, rw), offsets = short_side_crop_layout(h, w, size, crops)
    dtype = video.dtype if video.is_floating_point() else torch.float32
    frames = video.reshape(n, t * c, h, w).to(dtype)
    if (rh, rw) != (h, w):
        if frames.device.type == "cpu" and frames.element_size() < 4:  # no CPU half antialias
            frames = frames.float()
        frames = F.interpolate(
            frames, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False
        ).to(dtype)
    out = [frames[:, :, y : y + size, x : x + size] for y, x in offsets]
    return torch.stack(out, dim=1).view(n, len(offsets), t, c, size, size)


def short_side_crop_joints(
    joints: Tensor, frame_hw: tuple[int, int], size: int, crops: int
) -> Tensor:
    """``(N, ..., K, 3)`` joints of an ``frame_hw`` frame -> ``(N, C, ..., K, 3)`` in [0, 1] of
    each of the C distinct :func:`short_side_crop_layout` crops (outside or missing: zeros)."""
    (rh, rw), offsets = short_side_crop_layout(*frame_hw, size, crops)
    mapped = []
    for y, x in offsets:
        box = torch.tensor([x / rw, y / rh, (x + size) / rw, (y + size) / rh], dtype=torch.float64)
        mapped.append(crop_joints(joints, box.expand(joints.shape[0], 4)))
    return torch.stack(mapped, dim=1)
