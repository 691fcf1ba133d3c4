"""The COCO-17 skeleton in Ultralytics keypoint order: names, bones, flip permutation, adjacency.

Joint arrays everywhere in hpnet are ``float (..., K=17, 3)`` = x, y in [0, 1], confidence.
"""

from __future__ import annotations

import torch

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

    Joints with confidence 0 stay at confidence 0 (their x is flipped like the others).
    """
    out = joints[..., list(FLIP_PERMUTATION), :].clone()
    out[..., 0] = 1.0 - out[..., 0]
    return out
