"""LRCN (Donahue et al.): the 2D ResNet of late fusion on every frame, an LSTM over time.

The seed study's LRCN baseline (ResNet-152 + LSTM). The per-frame avgpool features
``(B, T, D)`` of :class:`~hpnet.models.cnn2d.FrameResNet` (D = 512 or 2048) go through a
one-layer LSTM of :data:`HIDDEN` units::

    fmap, pooled = backbone.forward_features(video)  # video (B, T, 3, S, S), normalised
    # fmap (B, T, S/32, S/32, D): each frame's layer4 map, as late fusion (fmap_dim D)
    # pooled (B, 512): the LSTM's outputs averaged over the T steps (embed_dim 512)

Donahue et al. average the per-step predictions over time; for a linear head that is the head
of the averaged outputs (up to the LayerNorm before hpnet's classifier, as in late fusion).
The CNN's tensors keep torchvision's names under ``model.``, so the same 2D weight files load;
the LSTM (``lstm.``) always starts from random weights.
"""

from __future__ import annotations

import torch
from torch import nn

from hpnet.models.cnn2d import FrameResNet

HIDDEN = 512  # LSTM units at every depth: a 2048-unit LSTM after ResNet-50/152 would add 34M
# parameters (more than ResNet-50 itself) for a few thousand training clips


class LRCN(FrameResNet):
    """FrameResNet + ``nn.LSTM(D, HIDDEN)`` over its per-frame features."""

    arch = "lrcn"

    def __init__(self, depth: int) -> None:
        super().__init__(depth)
        self.lstm = nn.LSTM(self.fmap_dim, HIDDEN, batch_first=True)
        self.embed_dim = HIDDEN

    def forward_features(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video ``(B, T, 3, S, S)`` -> fmap ``(B, T, h, w, D)``, mean LSTM output ``(B, 512)``."""
        fmap, frames = self.frame_features(video)  # (B, T, h, w, D), (B, T, D)
        steps, _ = self.lstm(frames)  # (B, T, D)
        return fmap, steps.mean(dim=1)
