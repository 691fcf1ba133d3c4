"""The backbone contract's bookkeeping for a network wrapped as ``self.model`` in stages.

:class:`StagedBackbone` gives ``forward``, ``no_weight_decay()``, ``num_layers`` and
``layer_id(name)`` (layer-wise LR decay) from two class attributes: the parameter prefixes of
the stem (layer 0) and of each stage (layers 1..n) of ``self.model``. Subclasses
(:class:`~hpnet.models.cnn2d.FrameResNet`, :class:`~hpnet.models.c3d.C3D`) set ``model``,
``embed_dim`` and ``forward_features``.
"""

from __future__ import annotations

import torch
from torch import nn


class StagedBackbone(nn.Module):
    """A backbone whose network ``self.model`` runs a stem, then :attr:`stages` in order."""

    prefix: str = "model."  # where the staged network's parameters live ('' = on self)
    stem: tuple[str, ...] = ()  # parameter prefixes under ``prefix`` of layer 0
    stages: tuple[tuple[str, ...], ...] = ()  # parameter prefixes of layers 1..n, input first

    def forward_features(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video ``(B, T, 3, S, S)`` -> fmap ``(B, T', h, w, Df)``, pooled ``(B, D)``."""
        raise NotImplementedError

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video ``(B, T, 3, S, S)`` -> pooled clip feature ``(B, D)``."""
        return self.forward_features(video)[1]

    def no_weight_decay(self) -> set[str]:
        """None beyond norms and biases (the optimizer exempts those itself)."""
        return set()

    @property
    def num_layers(self) -> int:
        """The stages after the stem."""
        return len(self.stages)

    def layer_id(self, name: str) -> int:
        """Layer of parameter ``name`` for layer-wise LR decay: 0 = stem, i = stage i,
        ``num_layers + 1`` = anything outside ``model`` (e.g. LRCN's LSTM)."""
        if name.startswith(self.prefix):
            name = name.removeprefix(self.prefix)
            if name.startswith(self.stem):
                return 0
            for i, stage in enumerate(self.stages):
                if name.startswith(stage):
                    return i + 1
        return self.num_layers + 1
