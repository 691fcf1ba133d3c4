"""The layers of :mod:`hpnet.models.lsvit` (timm's vision_transformer.py names and shapes).

A pre-norm ViT :class:`Block` attends within each frame of ``(B, T, L, D)`` tokens and, with
``lmi=True``, mixes them across frames (:class:`~hpnet.models.motion.LongTermMotion`); around
it: multi-head :class:`Attention` with an optional key mask (VideoMAE's visible tokens),
:class:`Mlp`, :class:`LayerScale`, stochastic depth (:class:`DropPath`), :class:`PatchEmbed` and
the activations (:data:`ACTIVATIONS`: GELU, CLIP's :class:`QuickGELU`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hpnet.models.motion import LongTermMotion


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the activation OpenAI's CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "quick_gelu": QuickGELU}


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the residual branch of whole samples (dim 0) with ``drop_prob``."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act_layer: type[nn.Module]) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention over the last-but-one axis: (..., L, D) -> (..., L, D)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x ``(..., L, D)``; key_mask ``(..., L)`` bool, False = no token attends to it."""
        *lead, l, d = x.shape
        qkv = self.qkv(x.reshape(-1, l, d)).reshape(-1, l, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (N, heads, L, head_dim)
        mask = None if key_mask is None else key_mask.reshape(-1, 1, 1, l)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(x.transpose(1, 2).reshape(*lead, l, d))


class Block(nn.Module):
    """Pre-norm ViT block attending within each frame, then (optionally) LMI across frames.

    tokens (B, T, L, D) -> (B, T, L, D) for any L >= 1 (extra tokens may follow the patches).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        layer_scale_init: float | None = None,
        drop_path: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        lmi: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer)
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path2 = DropPath(drop_path)
        self.lmi = LongTermMotion(dim) if lmi else None

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x ``(B, T, L, D)``; key_mask ``(B, T, L)`` bool marks tokens that may be attended to."""
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), key_mask)))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        if self.lmi is not None:
            x = self.lmi(x, key_mask)  # masked tokens: out of its pooling and mixing
        return x


class PatchEmbed(nn.Module):
    """Non-overlapping patches: images (N, C, H, W) -> tokens (N, H/p * W/p, D)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)
