"""torchvision's video classifiers as hpnet backbones: wrapped, not rewritten.

Each arch is torchvision's own module (``torchvision.models.video.<arch>()``, random init) with
its classifier replaced by ``nn.Identity``; :meth:`TorchvisionVideo.forward_features` runs
torchvision's layers up to that classifier and returns the backbone contract that
:class:`~hpnet.models.hpnet.HPNet` builds on::

    fmap, pooled = backbone.forward_features(video)  # video (B, T, 3, S, S), normalised
    # fmap (B, T', h, w, D): the last feature map, channels last; pooled (B, D): what
    # torchvision's classifier reads (its own average pool, or MViT's class token)

| arch | T', h, w of a (T, S) clip | D | pooled |
|---|---|---|---|
| r3d_18, r2plus1d_18 | T/8, S/16, S/16 | 512 | ``avgpool`` |
| mc3_18 | T, S/16, S/16 | 512 | ``avgpool`` |
| s3d | T/8, S/32, S/32 | 1024 | ``avgpool`` (2x7x7) then the mean, as its forward |
| mvit_v2_s | 8, 7, 7 (T=16, S=224 only) | 768 | class token after ``norm`` |
| swin3d_t | T/2, S/32, S/32 | 768 | ``avgpool`` after ``norm`` |

(divisions rounded up, but s3d's last 2x2x2 pool rounds down: 16 x 112 gives 2 x 3 x 3; the
smallest clips each arch takes are :data:`MIN_INPUT`)

torchvision's models take ``(B, 3, T, H, W)``: the clip is only permuted. Their Kinetics weights
expect their own normalisation (:data:`WEIGHTS_MEAN_STD`), not CLIP's (``data.augment.mean/std``).
Weights are loaded by :mod:`hpnet.models.tv_video_weights`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

TV_ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t")
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)  # RGB mean of torchvision's video ResNets, S3D
KINETICS_STD = (0.22803, 0.22145, 0.216989)  # RGB std of torchvision's video ResNets, S3D
# (mean, std) the KINETICS400_V1 weights of each arch were trained with (their transforms())
WEIGHTS_MEAN_STD = {
    **dict.fromkeys(("r3d_18", "mc3_18", "r2plus1d_18", "s3d"), (KINETICS_MEAN, KINETICS_STD)),
    "mvit_v2_s": ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),
    "swin3d_t": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

Features = Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _resnet_features(m: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VideoResNet: stem, layer1..4 -> ``(B, C, T', h, w)``; pooled by its ``avgpool``."""
    x = m.layer4(m.layer3(m.layer2(m.layer1(m.stem(x)))))
    return x.permute(0, 2, 3, 4, 1), m.avgpool(x).flatten(1)


def _s3d_features(m: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """S3D: ``features`` -> ``(B, 1024, T', h, w)``. Its forward is avgpool (2x7x7, stride 1),
    a 1x1 convolution, then the mean: the mean commutes with the convolution, so the pooled
    feature is the mean of the avgpool; a map smaller than that kernel is averaged whole."""
    x = m.features(x)
    kernel = m.avgpool.kernel_size
    if all(n >= k for n, k in zip(x.shape[2:], kernel, strict=True)):
        pooled = m.avgpool(x).mean(dim=(2, 3, 4))
    else:
        pooled = x.mean(dim=(2, 3, 4))
    return x.permute(0, 2, 3, 4, 1), pooled


def _mvit_features(m: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MViT: its forward up to ``norm``; tokens ``(B, 1 + T'hw, D)`` -> map and class token."""
    x = m.conv_proj(x).flatten(2).transpose(1, 2)  # (B, T'hw, C)
    x = m.pos_encoding(x)  # class token prepended
    thw = (m.pos_encoding.temporal_size, *m.pos_encoding.spatial_size)
    for block in m.blocks:
        x, thw = block(x, thw)
    x = m.norm(x)
    return x[:, 1:].reshape(x.shape[0], *thw, x.shape[-1]), x[:, 0]


def _swin_features(m: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Swin3D: patch embedding, stages, ``norm`` -> ``(B, T', h, w, C)``; its ``avgpool``."""
    x = m.norm(m.features(m.pos_drop(m.patch_embed(x))))
    return x, m.avgpool(x.permute(0, 4, 1, 2, 3)).flatten(1)


@dataclass(frozen=True)
class Family:
    """How hpnet reads one torchvision family: its features, classifier and layers."""

    features: Features  # (module, (B, 3, T, H, W)) -> fmap (B, T', h, w, D), pooled (B, D)
    classifier: str  # attribute replaced by nn.Identity
    stem: tuple[str, ...]  # parameter prefixes of layer 0 (layer-wise LR decay)
    stages: Callable[[nn.Module], list[str]]  # module names of layers 1..n, input to output
    dim: int  # D


_RESNET = Family(
    _resnet_features, "fc", ("stem.",), lambda m: [f"layer{i}" for i in range(1, 5)], 512
)
FAMILIES: dict[str, Family] = {
    "r3d_18": _RESNET,
    "mc3_18": _RESNET,
    "r2plus1d_18": _RESNET,
    "s3d": Family(
        _s3d_features,
        "classifier",
        ("features.0.",),
        lambda m: [f"features.{i}" for i in range(1, len(m.features))],
        1024,
    ),
    "mvit_v2_s": Family(
        _mvit_features,
        "head",
        ("conv_proj.", "pos_encoding."),
        lambda m: [f"blocks.{i}" for i in range(len(m.blocks))],
        768,
    ),
    "swin3d_t": Family(
        _swin_features,
        "head",
        ("patch_embed.",),
        lambda m: [f"features.{i}" for i in range(len(m.features))],
        768,
    ),
}

# Smallest (frames, side) each arch's strides leave a feature map for; mvit_v2_s: exactly these.
MIN_INPUT: dict[str, tuple[int, int]] = {
    "r3d_18": (1, 8),
    "mc3_18": (1, 8),
    "r2plus1d_18": (1, 8),
    "s3d": (6, 24),  # (5 leave a map, but torch's CPU backward corrupts memory on them)
    "mvit_v2_s": (16, 224),
    "swin3d_t": (1, 8),
}


class TorchvisionVideo(nn.Module):
    """A torchvision video classifier without its classifier, as an hpnet backbone.

    ``model`` is torchvision's module itself (``state_dict()`` keys under ``model.`` are
    torchvision's), so torchvision weight files load into it unchanged.
    """

    def __init__(self, arch: str, model: nn.Module) -> None:
        super().__init__()
        if arch not in FAMILIES:
            raise ValueError(f"unknown torchvision video arch {arch!r}; one of {TV_ARCHS}")
        self.arch = arch
        self.tv_builder = arch  # whose torchvision weights names model.pretrained may give
        self.family = FAMILIES[arch]
        setattr(model, self.family.classifier, nn.Identity())
        self.model = model
        self.embed_dim = self.family.dim
        self.stages = self.family.stages(model)

    def forward_features(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video ``(B, T, 3, S, S)`` -> fmap ``(B, T', h, w, D)``, pooled ``(B, D)``."""
        return self.family.features(self.model, video.transpose(1, 2))  # (B, 3, T, S, S)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video ``(B, T, 3, S, S)`` -> pooled clip feature ``(B, D)``."""
        return self.forward_features(video)[1]

    def no_weight_decay(self) -> set[str]:
        """Position embeddings, class token and relative-position tables (MViT, Swin3D)."""
        keys = ("pos", "class_token", "relative_position_bias_table")
        return {n for n, _ in self.named_parameters() if any(k in n for k in keys)}

    @property
    def num_layers(self) -> int:
        """Stages between the stem and the output (4 residual stages, MViT's 16 blocks, ...)."""
        return len(self.stages)

    def layer_id(self, name: str) -> int:
        """Layer of parameter ``name`` for layer-wise LR decay: 0 = stem / patch embedding,
        i + 1 = stage i, ``num_layers + 1`` = what follows the last stage (final norm)."""
        name = name.removeprefix("model.")
        if name.startswith(self.family.stem):
            return 0
        for i, stage in enumerate(self.stages):
            if name.startswith(stage + "."):
                return i + 1
        return self.num_layers + 1


def build_tv_video(arch: str, *, drop_path: float = 0.0) -> TorchvisionVideo:
    """torchvision's ``arch`` builder (random init), wrapped.

    drop_path: stochastic depth of the last block; the transformers' ``StochasticDepth``
    layers (mvit_v2_s, swin3d_t; the CNNs have none) are rescaled so that their largest rate
    is this one, keeping the builder's schedule over the blocks.
    """
    from torchvision.models import video
    from torchvision.ops import StochasticDepth

    if arch not in FAMILIES:
        raise ValueError(f"unknown torchvision video arch {arch!r}; one of {TV_ARCHS}")
    model = getattr(video, arch)(weights=None)
    layers = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    top = max((m.p for m in layers), default=0.0)
    for layer in layers:
        layer.p = drop_path * layer.p / top if top > 0 else 0.0
    return TorchvisionVideo(arch, model)
