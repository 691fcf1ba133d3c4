"""Feedback Pooling Module: backbone features pooled at the joints, and joint tokens fed back.

``pool_at_joints`` samples the patch-token map (or any backbone's feature map) bilinearly at
every joint of every person and frame (averaging a small neighbourhood window), masking joints
with confidence 0 so they are never read at (0, 0); ``resample_joints`` first brings the joints
to the map's frames when the backbone strides in time (each step reads the frame it is centred
on). ``sample_coords`` places a joint on the map: a ViT's patches tile the frame, a CNN's cell i
is centred where its padded strided convs put it (pixel ``first + stride * i``), and its map
may cover more or less than the frame.
``JointTokens`` turns pooled features into tokens that re-enter the backbone's later blocks
(the feedback), so patch tokens can attend to the body.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def joint_mask(joints: torch.Tensor) -> torch.Tensor:
    """``(..., K, 3)`` joints -> ``(..., K)`` bool: the joint was detected (confidence > 0)."""
    return joints[..., 2] > 0


def resample_joints(
    joints: torch.Tensor, frames: int, cells: tuple[float, float] | None = None
) -> torch.Tensor:
    """Joints ``(B, T, P, K, 3)`` -> ``(B, frames, P, K, 3)`` for a feature map of ``frames``
    time steps (a backbone that strides in time): map step i takes the joints of the frame its
    receptive field is centred on (nearest; confidences come along, so a missing joint stays
    masked). ``frames == T``: the joints themselves.

    ``cells = (stride, first)``: step i is centred at time ``first + stride * i``, frame j
    spanning [j, j + 1) (padded strided convs: ``(stride, 0.5)``, frame ``stride * i``; an
    unpadded pool or patch embedding: mid-cell). None: the clip cut into ``frames`` equal
    segments, each read at its centre.
    """
    t = joints.shape[1]
    if frames == t:
        return joints
    stride, first = cells if cells is not None else (t / frames, t / frames / 2)
    centre = first + stride * torch.arange(frames, device=joints.device, dtype=torch.float64)
    return joints[:, centre.floor().long().clamp(0, t - 1)]


def sample_coords(
    joints: torch.Tensor,
    grid: tuple[int, int],
    cells: tuple[float, float] | None = None,
    frame_hw: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Joints ``(..., 3)`` (x, y in [0, 1] of the frame) -> ``(..., 2)`` ``grid_sample``
    coordinates (``align_corners=False``) on a ``grid = (gh, gw)`` feature map.

    ``cells`` None: the map tiles the frame (ViT patches: cell i of gw spans [i, i + 1) / gw).
    ``cells = (stride, first)`` with ``frame_hw = (H, W)`` of the frame: cell i is centred at
    pixel ``first + stride * i`` on both axes, where the map may cover more of the frame or
    less (a CNN's padded strided convs centre cell i at ``stride * i``, and round the map's
    size up or down when the frame is not a multiple of the stride).
    """
    xy = joints[..., :2]
    if cells is None:
        return xy * 2 - 1
    stride, first = cells
    pixels = xy * xy.new_tensor([frame_hw[1], frame_hw[0]])  # (x, y) in pixels
    cell = (pixels - first) / stride  # in cells: cell i's centre at i
    return (2 * cell + 1) / xy.new_tensor([grid[1], grid[0]]) - 1


def pool_at_joints(
    patches: torch.Tensor,
    grid: tuple[int, int],
    joints: torch.Tensor,
    window: int = 3,
    *,
    cells: tuple[float, float] | None = None,
    frame_hw: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Bilinear pooling of patch tokens around each joint.

    patches: ``(B, T, N, D)`` patch tokens of a ``grid = (gh, gw)`` map of the frame;
    joints: ``(B, T, P, K, 3)`` with x, y in [0, 1] of that frame; ``cells`` / ``frame_hw``:
    where the map's cells sit on the frame (:func:`sample_coords`; default: they tile it).
    Returns ``(B, T, P, K, D)``: the mean of ``window x window`` bilinear samples spaced one
    cell apart, centred on the joint (window=1: the joint alone); zeros where the joint's
    confidence is 0.
    """
    b, t, _, d = patches.shape
    gh, gw = grid
    p, k = joints.shape[2:4]
    fmap = patches.reshape(b * t, gh, gw, d).permute(0, 3, 1, 2)  # (BT, D, gh, gw)
    xy = sample_coords(joints, grid, cells, frame_hw).reshape(b * t, p * k, 1, 2)
    if window > 1:
        r = torch.arange(window, device=joints.device, dtype=joints.dtype) - (window - 1) / 2
        dy, dx = torch.meshgrid(r * 2 / gh, r * 2 / gw, indexing="ij")
        offsets = torch.stack([dx.flatten(), dy.flatten()], -1)  # (S, 2) in grid units
        xy = xy + offsets.view(1, 1, -1, 2)  # (BT, PK, S, 2)
    sampled = F.grid_sample(
        fmap, xy.to(fmap.dtype), mode="bilinear", padding_mode="border", align_corners=False
    )  # (BT, D, PK, S)
    pooled = sampled.mean(-1).transpose(1, 2).reshape(b, t, p, k, d)
    return pooled * joint_mask(joints).unsqueeze(-1).to(pooled.dtype)


class JointTokens(nn.Module):
    """Pooled joint features -> tokens appended to each frame's sequence for the later blocks.

    token = Linear(LN(pooled)) + joint-type embedding + person-rank embedding + coordinate
    embedding; missing joints give zero tokens and a key mask so attention ignores them.
    """

    def __init__(self, dim: int, num_joints: int = 17, max_persons: int = 2) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)
        self.coord = nn.Linear(3, dim)
        self.joint_embed = nn.Parameter(torch.zeros(num_joints, dim))
        self.person_embed = nn.Parameter(torch.zeros(max_persons, dim))
        nn.init.trunc_normal_(self.joint_embed, std=0.02)
        nn.init.trunc_normal_(self.person_embed, std=0.02)

    def forward(
        self, pooled: torch.Tensor, joints: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """pooled ``(B,T,P,K,D)``, joints ``(B,T,P,K,3)``
        -> tokens ``(B,T,P*K,D)``, mask ``(B,T,P*K)``.

        Missing joints give zero tokens and a False in the mask.
        """
        b, t, p, k, d = pooled.shape
        if p > self.person_embed.shape[0]:
            raise ValueError(
                f"{p} persons per frame but the model was built for {self.person_embed.shape[0]}"
            )
        mask = joint_mask(joints)
        tok = self.proj(self.norm(pooled)) + self.coord(joints.to(pooled.dtype))
        tok = tok + self.joint_embed[None, None, None] + self.person_embed[:p][None, None, :, None]
        tok = tok * mask.unsqueeze(-1).to(tok.dtype)
        return tok.reshape(b, t, p * k, d), mask.reshape(b, t, p * k)
