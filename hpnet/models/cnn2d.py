"""Late fusion: a torchvision 2D ResNet on every frame, its features averaged over time.

The seed study's Late Fusion baseline (ResNet-152 on 5 uniform frames, scores averaged over
them). torchvision's ``resnet{depth}`` (random init) without its ``avgpool`` and ``fc``
(:class:`~hpnet.models.resnet_trunk.ResNetTrunk`, as ``ssl_transformer``'s frame encoder) runs on
the ``B * T`` frames of a clip; the backbone contract::

    fmap, pooled = backbone.forward_features(video)  # video (B, T, 3, S, S), normalised
    # fmap (B, T, S/32, S/32, D): each frame's layer4 map, channels last (T' = T)
    # pooled (B, D): each frame's avgpool feature (what torchvision's fc reads), mean over T

D = 512 (depth 18, 34) or 2048 (50, 101, 152). Averaging the features is averaging the scores
of a linear head (the seed's late fusion), up to the LayerNorm every hpnet head puts before its
classifier (:class:`~hpnet.fusion.head.Fuse`: the mean frame's feature is normalised, not each
frame's); the text head's cosine is taken of the averaged feature. :mod:`hpnet.models.lrcn`
puts an LSTM over the same per-frame features.

``model`` holds torchvision's layers under their own names, so torchvision (and timm: same key
names for ResNets) state dict files load into it unchanged
(:mod:`hpnet.models.tv_video_weights`). ImageNet weights expect ImageNet's normalisation
(:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`).
"""

from __future__ import annotations

import torch

from hpnet.models.resnet_trunk import STAGES, STEM, build_resnet_trunk
from hpnet.models.staged import StagedBackbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB mean of torchvision's ImageNet weights
IMAGENET_STD = (0.229, 0.224, 0.225)  # RGB std of torchvision's ImageNet weights
MIN_INPUT = (1, 8)  # (frames, side): any clip; the strides leave a 1x1 map of an 8x8 frame


class FrameResNet(StagedBackbone):
    """A torchvision 2D ResNet without its ``fc``, run on every frame (late fusion).

    ``state_dict()`` keys under ``model.`` are torchvision's; ``tv_builder`` names the
    torchvision builder whose weights (``IMAGENET1K_V1``, ...) ``model.pretrained`` may name.
    """

    arch = "late_fusion"
    stem = STEM  # layer 0; layers 1-4: layer1..layer4 (then LRCN's LSTM)
    stages = tuple((f"{name}.",) for name in STAGES)

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.tv_builder = f"resnet{depth}"
        # torchvision's resnet{depth} less avgpool and fc: its own layer names, so its keys
        self.model = build_resnet_trunk(depth, zero_init_residual=False)
        self.embed_dim = self.model.out_dim  # pooled width: 512 or 2048
        self.fmap_dim = self.embed_dim  # feature map width (LRCN's pooled one differs)

    def frame_features(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video ``(B, T, 3, S, S)`` -> each frame's map ``(B, T, h, w, D)`` and avgpool
        feature ``(B, T, D)``: torchvision's forward up to its ``fc``, on ``B * T`` images."""
        b, t = video.shape[:2]
        x, pooled = self.model.forward_maps(video.flatten(0, 1))  # (B*T, D, h, w), (B*T, D)
        return x.permute(0, 2, 3, 1).unflatten(0, (b, t)), pooled.unflatten(0, (b, t))

    def forward_features(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video ``(B, T, 3, S, S)`` -> fmap ``(B, T, h, w, D)``, mean frame feature ``(B, D)``."""
        fmap, frames = self.frame_features(video)
        return fmap, frames.mean(dim=1)
