"""A torchvision 2D ResNet without its pooling and classifier: images -> conv map and pooled.

The frame encoder of SimSiam pretraining (:mod:`hpnet.models.simsiam`) and of
``model.arch=ssl_transformer`` (:mod:`hpnet.models.ssl_transformer`). torchvision's own layers
are registered under their own names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so
``state_dict()`` keys are torchvision's minus ``fc``: an ImageNet file or a SimSiam encoder
(keys under ``encoder.``, prefix stripped) loads unchanged.

    trunk = build_resnet_trunk(18)
    fmap, pooled = trunk.forward_maps(images)  # (N, 3, S, S) -> (N, 512, S/32, S/32), (N, 512)
    pooled = trunk(images)  # (N, 512): the encoder SimSiam takes

| depth | D (channels of the last stage) |
|---|---|
| 18, 34 | 512 |
| 50, 101, 152 | 2048 |
"""

from __future__ import annotations

import torch
from torch import nn

RESNET_DEPTHS = (18, 34, 50, 101, 152)
_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
STEM = ("conv1.", "bn1.")  # parameter prefixes of the stem (layer 0 for layer-wise LR decay)
STAGES = ("layer1", "layer2", "layer3", "layer4")  # the residual stages, input to output


class ResNetTrunk(nn.Module):
    """torchvision ``ResNet``'s layers up to ``layer4``; ``out_dim`` = D, the map's channels."""

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        for name in _LAYERS:
            self.add_module(name, getattr(resnet, name))
        self.out_dim = int(resnet.fc.in_features)

    def forward_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images ``(N, 3, S, S)`` -> last conv map ``(N, D, S/32, S/32)``, its mean ``(N, D)``
        (torchvision's ``avgpool``: sizes rounded up)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x, x.mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images ``(N, 3, S, S)`` -> pooled features ``(N, D)``."""
        return self.forward_maps(images)[1]


def build_resnet_trunk(depth: int, *, zero_init_residual: bool = True) -> ResNetTrunk:
    """torchvision ``resnet{depth}`` (random init) as a trunk. ``zero_init_residual``: the last
    BN of each residual block starts at 0 (each block starts as the identity), as SimSiam's
    reference code builds its encoder."""
    from torchvision import models

    if depth not in RESNET_DEPTHS:
        raise ValueError(f"no torchvision ResNet of depth {depth}; one of {RESNET_DEPTHS}")
    resnet = getattr(models, f"resnet{depth}")(weights=None, zero_init_residual=zero_init_residual)
    return ResNetTrunk(resnet)
