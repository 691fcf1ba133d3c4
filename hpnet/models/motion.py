"""LS-ViT motion modules: short-term motion before patch embedding, long-term motion in blocks.

* :class:`ShortTermMotion` (SMIF): absolute differences of each frame with its neighbours at a few
  temporal offsets, forwards and backwards, embedded by a patch-embedding conv of their own that
  is added to the RGB patch embedding, so every patch "sees what changed" around it.
* :class:`LongTermMotion` (LMI): signed differences of frame-pooled token features over a short
  and a long temporal offset drive a channel gate on all tokens (motion excitation), followed by a
  depthwise temporal conv over every token (temporal mixing), linking the whole clip.

Both start as the identity, so a pretrained image ViT starts unchanged, and every parameter gets
a non-zero gradient in the first step: the zero-initialised layer is always the *first* learnable
layer of its branch (nothing learnable sits behind a zero), and where another layer follows it,
a non-zero bias keeps that layer's input alive while the output bias cancels the constant.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def shifted_in_time(x: torch.Tensor, offset: int, dim: int = 1) -> torch.Tensor:
    """Frame ``t + offset`` for every frame ``t``, clamped to the clip (replicate padding).

    x: (..., T, ...) with time at ``dim``; offset may be negative. Returns the same shape.
    """
    length = x.shape[dim]
    index = (torch.arange(length, device=x.device) + offset).clamp_(0, length - 1)
    return x.index_select(dim, index)


def frame_differences(frames: torch.Tensor, offsets: Sequence[int]) -> torch.Tensor:
    """Absolute frame differences forwards and backwards in time at each offset.

    frames: (B, T, C, H, W). Returns (B, T, 2 * len(offsets) * C, H, W): for each offset o the
    channels ``|x[t+o] - x[t]|`` then ``|x[t] - x[t-o]|``, frames clamped at the clip edges
    (so T = 1 gives zeros). The two directions differ under time reversal, which keeps the
    motion map order-aware.
    """
    maps = []
    for offset in offsets:
        maps.append((shifted_in_time(frames, offset) - frames).abs())
        maps.append((frames - shifted_in_time(frames, -offset)).abs())
    return torch.cat(maps, dim=2)


class ShortTermMotion(nn.Module):
    """SMIF: a motion patch embedding of multi-offset frame differences.

    Its output is added to the RGB patch embedding. The conv is zero-initialised, so the model
    starts as a plain image ViT; its weights are the learned weighting of the differences (one
    per offset, direction, colour channel and pixel of the patch) - a separate scalar weight per
    offset would factor into the conv and would receive no gradient behind the zero weights.
    """

    def __init__(
        self,
        offsets: Sequence[int],
        embed_dim: int,
        patch_size: int,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if not offsets or any(int(o) < 1 for o in offsets):
            raise ValueError(f"SMIF offsets must be positive frame offsets, got {list(offsets)}")
        self.offsets = tuple(int(o) for o in offsets)
        motion_chans = 2 * len(self.offsets) * in_chans
        self.proj = nn.Conv2d(motion_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def init_weights(self) -> None:
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, C, H, W) normalised -> motion embedding (B, T, N, D), N = H/p * W/p."""
        b, t = frames.shape[:2]
        motion = frame_differences(frames, self.offsets)  # (B, T, 2KC, H, W)
        x = self.proj(motion.flatten(0, 1))  # (B*T, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2).reshape(b, t, -1, x.shape[1])


class MotionExcitation(nn.Module):
    """Channel gate (B, T, 1, D) driven by short- and long-range differences of pooled tokens.

    p_t = LayerNorm(mean over the L tokens of frame t); the signed differences
    ``p[t+1] - p[t]`` and ``p[t+s] - p[t]`` (s = max(2, T // 4), clamped at the clip end) pass
    through a temporal conv (kernel 3), GELU and a linear expansion to the gate
    ``2 * sigmoid(z)``, which is exactly 1 where z = 0. Signed forward differences and the
    temporal conv make the gate differ between a clip and its time reversal.

    Init: the temporal conv's weights are zero (gate = 1 for any input); its bias is non-zero
    so the expansion sees a constant input and gets gradient, and the expansion's bias cancels
    that constant.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)  # parameter-free: nothing
        self.temporal = nn.Conv1d(2 * dim, hidden, kernel_size=3, padding=1)  # behind the zero
        self.act = nn.GELU()
        self.expand = nn.Linear(hidden, dim)

    @staticmethod
    def long_offset(num_frames: int) -> int:
        """The long-range offset s for a clip of ``num_frames`` frames."""
        return max(2, num_frames // 4)

    @torch.no_grad()
    def init_weights(self) -> None:
        nn.init.zeros_(self.temporal.weight)
        nn.init.uniform_(self.temporal.bias, 0.5, 1.5)
        nn.init.trunc_normal_(self.expand.weight, std=0.02)
        constant = self.act(self.temporal.bias)  # hidden response to a motionless clip
        self.expand.bias.copy_(-F.linear(constant, self.expand.weight))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T, L, D) -> gate (B, T, 1, D) in (0, 2); ``mask`` (B, T, L) bool: pool
        only the tokens marked True (missing joints take no part)."""
        if mask is None:
            pooled = x.mean(dim=2)
        else:
            weight = mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * weight).sum(dim=2) / weight.sum(dim=2).clamp(min=1.0)
        p = self.norm(pooled)  # (B, T, D)
        short = shifted_in_time(p, 1) - p
        long = shifted_in_time(p, self.long_offset(p.shape[1])) - p
        d = torch.cat([short, long], dim=-1).transpose(1, 2)  # (B, 2D, T)
        h = self.act(self.temporal(d)).transpose(1, 2)  # (B, T, hidden)
        return 2.0 * torch.sigmoid(self.expand(h)).unsqueeze(2)  # (B, T, 1, D)


class TemporalMix(nn.Module):
    """Residual depthwise temporal conv over every token position: x + conv_t(LN(x)).

    Token l of frame t mixes with token l of frames t-1 and t+1 (patch tokens at the same place,
    appended joint tokens of the same joint). Zero-initialised, so it starts as the identity.
    """

    def __init__(self, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def init_weights(self) -> None:
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, L, D) -> (B, T, L, D)."""
        b, t, l, d = x.shape
        y = self.norm(x).permute(0, 2, 3, 1).reshape(b * l, d, t)  # (B*L, D, T)
        y = self.conv(y).reshape(b, l, d, t).permute(0, 3, 1, 2)  # (B, T, L, D)
        return x + y


class LongTermMotion(nn.Module):
    """LMI: motion-excitation gate then temporal mixing, on tokens (B, T, L, D) for any L.

    With a token mask (the fed-back joint tokens: False = a missing joint), masked tokens are
    zeroed first and left out of the gate's pooling, so nothing of theirs reaches another token
    (a zero token adds nothing to its neighbours in time: LayerNorm maps it to 0).
    """

    def __init__(self, dim: int, reduction: int = 8) -> None:
        super().__init__()
        self.excite = MotionExcitation(dim, max(8, dim // reduction))
        self.mix = TemporalMix(dim)

    def init_weights(self) -> None:
        self.excite.init_weights()
        self.mix.init_weights()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T, L, D), mask (B, T, L) bool or None -> (B, T, L, D); the identity at
        initialisation (on the unmasked tokens)."""
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)
        return self.mix(x * self.excite(x, mask))
