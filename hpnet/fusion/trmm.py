"""Text Refinement Modulation Module: class-name embeddings modulated by the pose feature.

    E_b = E + FiLM(E | s) + refine(E),   FiLM(E | s) = gamma(s) * E + beta(s)

E ``(C, Dt)`` are the frozen CLIP text embeddings of the class names (as the text head gives
them: centred on their mean and renormalised, ``centre_class_embeddings`` in
:mod:`hpnet.fusion.head`), s ``(B, Ds)`` the pose feature of each clip; E_b ``(B, C, Dt)`` are
per-clip class embeddings. ``refine`` is a residual
MLP applied to each class embedding (so it works for any label set, also unseen ones); gamma,
beta and refine start near zero (tiny random weights, so that every parameter learns from the
first step), so an untrained TRMM is close to the identity on E.
"""

from __future__ import annotations

import torch
from torch import nn


class TRMM(nn.Module):
    def __init__(self, text_dim: int, pose_dim: int | None, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or text_dim
        self.refine = nn.Sequential(
            nn.LayerNorm(text_dim),
            nn.Linear(text_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, text_dim),
        )
        nn.init.normal_(self.refine[-1].weight, std=1e-4)
        nn.init.zeros_(self.refine[-1].bias)
        self.film = nn.Linear(pose_dim, 2 * text_dim) if pose_dim else None
        if self.film is not None:
            nn.init.normal_(self.film.weight, std=1e-4)  # near-identity, but every weight learns
            nn.init.zeros_(self.film.bias)

    def forward(self, text: torch.Tensor, pose: torch.Tensor | None, batch: int) -> torch.Tensor:
        """text ``(C, Dt)``, pose ``(B, Ds)`` or None -> class embeddings per clip ``(B,C,Dt)``."""
        e = text + self.refine(text)  # (C, Dt)
        e = e.unsqueeze(0).expand(batch, -1, -1)
        if self.film is None or pose is None:
            return e
        gamma, beta = self.film(pose).chunk(2, dim=-1)  # (B, Dt) each
        return e + gamma.unsqueeze(1) * text.unsqueeze(0) + beta.unsqueeze(1)
