"""The COCO-17 skeleton in Ultralytics keypoint order: names, bones, flip permutation, adjacency;
and joint geometry (mirror, crop, mask the missing).

Joint arrays everywhere in hpnet are ``float (..., K=17, 3)`` = x, y in [0, 1], confidence; a
missing joint is ``(0, 0, 0)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from hpnet.host_copy import to_device

KEYPOINTS: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_KEYPOINTS = len(KEYPOINTS)

# (child, parent) pairs: the tree rooted at the nose used for bone vectors (child - parent).
BONES: tuple[tuple[int, int], ...] = (
    (1, 0),  # left eye - nose
    (2, 0),  # right eye - nose
    (3, 1),  # left ear - left eye
    (4, 2),  # right ear - right eye
    (5, 0),  # left shoulder - nose
    (6, 0),  # right shoulder - nose
    (7, 5),  # left elbow - left shoulder
    (8, 6),  # right elbow - right shoulder
    (9, 7),  # left wrist - left elbow
    (10, 8),  # right wrist - right elbow
    (11, 5),  # left hip - left shoulder
    (12, 6),  # right hip - right shoulder
    (13, 11),  # left knee - left hip
    (14, 12),  # right knee - right hip
    (15, 13),  # left ankle - left knee
    (16, 14),  # right ankle - right knee
)

# Index k of a flipped skeleton holds what was joint FLIP_PERMUTATION[k] (left <-> right swapped).
FLIP_PERMUTATION: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)


def bone_parents() -> list[int]:
    """Parent index per joint (the nose is its own parent), for bone = joint - parent."""
    parents = list(range(NUM_KEYPOINTS))
    for child, parent in BONES:
        parents[child] = parent
    return parents


def adjacency(self_loops: bool = True, normalize: bool = True) -> torch.Tensor:
    """Symmetric COCO-17 adjacency ``(K, K)``, optionally with self loops and D^-1/2 A D^-1/2."""
    a = torch.zeros(NUM_KEYPOINTS, NUM_KEYPOINTS)
    for child, parent in BONES:
        a[child, parent] = a[parent, child] = 1.0
    # Hips and shoulders are linked across the body in most skeleton GCNs.
    for i, j in ((5, 6), (11, 12)):
        a[i, j] = a[j, i] = 1.0
    if self_loops:
        a += torch.eye(NUM_KEYPOINTS)
    if normalize:
        d = a.sum(1).rsqrt()
        a = d[:, None] * a * d[None, :]
    return a


def flip_joints(joints: torch.Tensor) -> torch.Tensor:
    """Mirror joints horizontally: ``(..., K, 3)`` -> ``(..., K, 3)``, x -> 1 - x, left <-> right.

    A missing joint stays exactly ``(0, 0, 0)``.
    """
    out = joints[..., list(FLIP_PERMUTATION), :].clone()
    out[..., 0] = torch.where(out[..., 2] > 0, 1.0 - out[..., 0], 0.0)
    return out


def mask_invalid_joints(joints: Tensor) -> Tensor:
    """``(..., K, 3)`` -> same, with every joint that has confidence <= 0 or x, y outside [0, 1]
    set to exactly ``(0, 0, 0)`` (missing joints are never points)."""
    x, y, conf = joints.unbind(-1)
    valid = (conf > 0) & (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
    return torch.where(valid.unsqueeze(-1), joints, 0.0)


def crop_joints(joints: Tensor, boxes: Tensor, flip: Tensor | None = None) -> Tensor:
    """Map joints into per-sample crops: ``x' = (x - x0) / (x1 - x0)``, same for y.

    joints: ``(B, ..., K, 3)`` normalised to the frame; boxes: ``(B, 4)`` = x0, y0, x1, y1 in
    [0, 1] of the frame; flip: ``(B,)`` bool, mirror the crop (x' -> 1 - x', left <-> right
    joints). Returns ``(B, ..., K, 3)``; joints outside the crop or missing are ``(0, 0, 0)``.
    """
    view = (joints.shape[0],) + (1,) * (joints.dim() - 2)
    corners = to_device(boxes, joints.device, joints.dtype).unbind(1)
    x0, y0, x1, y1 = (v.view(view) for v in corners)
    x = (joints[..., 0] - x0) / (x1 - x0)
    y = (joints[..., 1] - y0) / (y1 - y0)
    out = torch.stack([x, y, joints[..., 2]], dim=-1)
    if flip is not None:
        if out.shape[-2] != NUM_KEYPOINTS:
            raise ValueError(
                f"flipping needs COCO-17 joints (K={NUM_KEYPOINTS}), got K={out.shape[-2]}"
            )
        flip = to_device(flip, out.device).view(*view, 1)
        out = torch.where(flip, flip_joints(out), out)
    return mask_invalid_joints(out)


def check_joint_values(joints: np.ndarray | Tensor) -> None:
    """Refuse given joints ``(..., 17, 3)`` that a model would read wrongly, silently: NaN or
    inf; pixel coordinates (x, y must be in [0, 1] of the frame, YOLO's ``xyn``; a joint of
    a person at the edge may lie a little outside, so only half a frame past the edge counts);
    a confidence outside [0, 1]. Raises ValueError saying which."""
    joints = torch.as_tensor(joints).detach().float().cpu()
    if not torch.isfinite(joints).all():
        raise ValueError("joints hold NaN or inf: give a missing joint as 0, 0 with confidence 0")
    confidence = joints[..., 2]
    outside = (confidence < 0) | (confidence > 1)
    if outside.any():
        worst = float(confidence[outside][0])
        raise ValueError(
            f"joint confidences must be in [0, 1] (0: missing), got {worst:.4g}: the third "
            "value of a joint is YOLO's keypoint confidence (keypoints.conf)"
        )
    seen = confidence > 0
    if seen.any() and ((joints[..., :2][seen] - 0.5).abs() > 1.0).any():
        far = float(joints[..., :2][seen].abs().max())
        raise ValueError(
            f"joints reach {far:.4g}: x, y must be in [0, 1] of the frame (pixel coordinates "
            "divided by the frame's width and height; Ultralytics' keypoints.xyn)"
        )
