"""Pose encoder of the FPM: pooled joint features -> pose feature ``s`` and auxiliary logits' input.

Three streams are formed per person, frame and joint from the pooled features and coordinates:
joint (the feature itself), bone (joint minus its parent in the COCO-17 tree) and motion (next
frame minus this one). They are fused and encoded by either

- ``gcn``: two spatial-temporal graph convolution layers over the COCO-17 skeleton (default:
  the skeleton's structure is a strong prior, it is cheap — linear in joints — and it is what
  the HP-Net reference code uses), or
- ``transformer``: a small transformer over all joint tokens of a person (no structural prior,
  quadratic in T x K).

Frames, joints and persons that are missing (confidence 0) are masked in every pooling step.
Persons are then combined by attention with a rank embedding and a learnable rank prior that
starts on the first-ranked person (the largest, most confident detection: usually the actor),
so the network focuses on the main actor and can learn to ignore bystanders.
"""

from __future__ import annotations

import torch
from torch import nn

from hpnet.pose.skeleton import NUM_KEYPOINTS, adjacency, bone_parents


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | tuple[int, ...]) -> torch.Tensor:
    """Mean of ``x (..., C)`` over ``dim`` counting only entries where ``mask (...)`` is true."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)


def body_coordinates(joints: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Joints ``(B,T,P,K,3)`` -> ``(B,T,P,K,3)``: x, y relative to each person's centre over the
    clip, divided by the person's size (so position and scale in the frame do not matter, but
    movement within the clip does), and the confidence. Missing joints stay zero."""
    m = mask.unsqueeze(-1).to(joints.dtype)  # (B, T, P, K, 1)
    xy = joints[..., :2]
    count = m.sum(dim=(1, 3), keepdim=True).clamp(min=1.0)
    centre = (xy * m).sum(dim=(1, 3), keepdim=True) / count  # (B, 1, P, 1, 2)
    spread = (((xy - centre) ** 2) * m).sum(dim=(1, 3), keepdim=True) / count
    scale = spread.sum(-1, keepdim=True).sqrt().clamp(min=1e-3)  # (B, 1, P, 1, 1)
    rel = (xy - centre) / scale * m
    return torch.cat([rel, joints[..., 2:]], dim=-1)


class GraphLayer(nn.Module):
    """Spatial graph convolution over joints, then a depthwise temporal convolution; residual.
    Both read missing joints (mask 0) as zeros, whatever their slots hold."""

    def __init__(self, dim: int, kernel_t: int = 3) -> None:
        super().__init__()
        self.register_buffer("adj", adjacency(), persistent=False)
        self.spatial = nn.Linear(dim, dim)
        self.temporal = nn.Conv1d(dim, dim, kernel_t, padding=kernel_t // 2, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x ``(B, P, T, K, C)``, mask ``(B, P, T, K)`` -> ``(B, P, T, K, C)``."""
        m = mask.unsqueeze(-1).to(x.dtype)
        h = torch.einsum("jk,bptkc->bptjc", self.adj.to(x.dtype), self.norm1(x) * m)
        x = x + self.act(self.spatial(h)) * m
        b, p, t, k, c = x.shape
        h = (self.norm2(x) * m).permute(0, 1, 3, 4, 2).reshape(b * p * k, c, t)  # time last
        h = self.temporal(h).reshape(b, p, k, c, t).permute(0, 1, 4, 2, 3)
        return x + self.act(h) * m


class PoseEncoder(nn.Module):
    """Pooled joint features ``(B,T,P,K,D)`` + joints -> pose feature ``s (B, dim)``."""

    def __init__(
        self,
        in_dim: int,
        dim: int = 128,
        *,
        kind: str = "gcn",
        depth: int = 2,
        max_persons: int = 2,
        max_frames: int = 64,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.register_buffer("parents", torch.tensor(bone_parents()), persistent=False)
        self.feat = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, dim))
        self.coord = nn.Linear(3, dim)
        self.streams = nn.Linear(3 * dim, dim)  # joint | bone | motion -> dim
        if kind == "gcn":
            self.layers = nn.ModuleList(GraphLayer(dim) for _ in range(depth))
        elif kind == "transformer":
            self.joint_embed = nn.Parameter(torch.zeros(NUM_KEYPOINTS, dim))
            self.time_embed = nn.Parameter(torch.zeros(max_frames, dim))
            nn.init.trunc_normal_(self.joint_embed, std=0.02)
            nn.init.trunc_normal_(self.time_embed, std=0.02)
            layer = nn.TransformerEncoderLayer(
                dim,
                nhead=4,
                dim_feedforward=2 * dim,
                batch_first=True,
                norm_first=True,
                dropout=0.0,
            )
            self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        else:
            raise ValueError(f"unknown pose encoder {kind!r} (gcn or transformer)")
        self.temporal_order = nn.Linear(dim, dim)  # weights frames by position: keeps time order
        self.person_embed = nn.Parameter(torch.zeros(max_persons, dim))
        self.person_score = nn.Linear(dim, 1, bias=False)  # softmax ignores a shared bias
        # Prior: persons come ranked by detection score x box area, and the actor is usually
        # the first; the attention starts at ~95 % on rank 0 and learns from there.
        self.rank_bias = nn.Parameter(
            torch.cat([torch.zeros(1), torch.full((max_persons - 1,), -3.0)])
        )
        self.out_norm = nn.LayerNorm(dim)
        self.dim = dim

    def forward(self, pooled: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        """pooled ``(B,T,P,K,D)``, joints ``(B,T,P,K,3)`` -> ``s (B, dim)``."""
        mask = joints[..., 2] > 0  # (B, T, P, K)
        x = self.feat(pooled) + self.coord(body_coordinates(joints, mask).to(pooled.dtype))
        x = x * mask.unsqueeze(-1).to(x.dtype)
        bone = x - x[..., self.parents, :]
        bone = bone * (mask & mask[..., self.parents]).unsqueeze(-1).to(x.dtype)
        motion = torch.zeros_like(x)
        motion[:, :-1] = x[:, 1:] - x[:, :-1]
        both = mask[:, 1:] & mask[:, :-1]
        motion[:, :-1] *= both.unsqueeze(-1).to(x.dtype)
        x = self.streams(torch.cat([x, bone, motion], -1))  # (B, T, P, K, C)
        x = x.permute(0, 2, 1, 3, 4)  # (B, P, T, K, C)
        m = mask.permute(0, 2, 1, 3)  # (B, P, T, K)
        if self.kind == "gcn":
            for layer in self.layers:
                x = layer(x, m)
        else:
            x = self._transformer(x, m)
        frame = _masked_mean(x, m, dim=3)  # (B, P, T, C)
        present_t = m.any(-1)  # (B, P, T)
        t = frame.shape[2]
        pos = torch.linspace(-1, 1, t, device=x.device, dtype=x.dtype).view(1, 1, t, 1)
        frame = frame + self.temporal_order(frame) * pos  # early vs late frames differ
        person = _masked_mean(frame, present_t, dim=2)  # (B, P, C)
        p = person.shape[1]
        person = person + self.person_embed[:p]
        present = present_t.any(-1)  # (B, P)
        score = self.person_score(person).squeeze(-1) + self.rank_bias[:p]
        score = score.masked_fill(~present, float("-inf"))
        weight = torch.nan_to_num(score.softmax(-1), nan=0.0)  # nobody: all-zero weights
        return self.out_norm((weight.unsqueeze(-1) * person).sum(1))

    def _transformer(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        b, p, t, k, c = x.shape
        if t > self.time_embed.shape[0]:
            raise ValueError(
                f"clip of {t} frames; the transformer pose encoder takes at most "
                f"{self.time_embed.shape[0]}"
            )
        x = x + self.joint_embed.view(1, 1, 1, k, c) + self.time_embed[:t].view(1, 1, t, 1, c)
        tokens = x.reshape(b * p, t * k, c)
        pad = ~m.reshape(b * p, t * k)
        empty = pad.all(-1)
        pad[empty] = False  # a person with no joints at all: attend freely (masked later)
        out = self.encoder(tokens, src_key_padding_mask=pad)
        return out.reshape(b, p, t, k, c)
