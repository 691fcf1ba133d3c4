"""I3D: ResNet-50 inflated to 3D, and its Non-local variant, as hpnet backbones.

The layout is Wang et al.'s I3D-ResNet-50 baseline ("Non-local Neural Networks", CVPR 2018,
Table 1 with the I3D 3x1x1 inflation of their released video-nonlocal-net models; Carreira &
Zisserman's inflation applied to ResNet-50)::

    stage  layer                                        output of a (T, S) clip
    stem   conv1 5x7x7, 64, stride (1, 2, 2); bn1, relu  T,    S/2
           maxpool 3x3x3, stride 2                       T/2,  S/4
    res2   layer1: 3 bottlenecks, 256                    T/2,  S/4
           pool2 3x1x1 max, stride (2, 1, 1)             T/4,  S/4
    res3   layer2: 4 bottlenecks, 512                    T/4,  S/8
    res4   layer3: 6 bottlenecks, 1024                   T/4,  S/16
    res5   layer4: 3 bottlenecks, 2048                   T/4,  S/32

(divisions rounded up.) Time is divided by 4, not by Table 1's 8 (its conv1 and pool1 each
stride 2 in time; the released 8-frame models by 2: pool1 1x3x3): conv1 here strides 1 in time,
as in those released models, and pool1 and pool2 stride 2 as in Table 1, so a 16-frame clip
reaches res5 with 4 time steps.

A bottleneck is torchvision's (stride on the 3x3): ``conv1`` 1x1x1, or 3x1x1 in the inflated
blocks (:data:`INFLATE`: res2 all, res3 blocks 0 and 2, res4 0, 2, 4, res5
1), ``conv2`` 1x3x3, ``conv3`` 1x1x1, ``downsample`` 1x1x1. Temporal padding is zeros, as in the
paper. ``nonlocal`` adds five embedded-Gaussian non-local blocks (:class:`NonLocal3d`) after
every other bottleneck of res3 (blocks 1, 3) and res4 (blocks 1, 3, 5), the paper's
"5 blocks" placement (:data:`NON_LOCAL`).

Parameter names are torchvision's ``resnet50`` names (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ...; no ``fc``), so a 2D ResNet-50 file inflates name for name
(:mod:`hpnet.models.i3d_weights`); a block's non-local sits at ``layerN.i.non_local``.

Backbone contract (:mod:`hpnet.models.backbones`)::

    fmap, pooled = backbone.forward_features(video)  # video (B, T, 3, S, S), normalised
    # fmap (B, T/4, S/32, S/32, 2048) channels last; pooled (B, 2048) its global average
"""

from __future__ import annotations

import torch
from torch import nn

from hpnet.models.staged import StagedBackbone

I3D_ARCHS = ("i3d", "nonlocal")
DEPTHS = (3, 4, 6, 3)  # bottlenecks of res2..res5 (ResNet-50)
WIDTHS = (64, 128, 256, 512)  # bottleneck widths; outputs are 4x these
# 1 = the block's conv1 is 3x1x1 (inflated in time), 0 = 1x1x1
INFLATE = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
# 1 = a non-local block follows the bottleneck (arch nonlocal only)
NON_LOCAL = ((0, 0, 0), (0, 1, 0, 1), (0, 1, 0, 1, 0, 1), (0, 0, 0))
# Smallest (frames, side) each arch takes: every stride pads, so any clip leaves a map (the
# side is data.size's own floor).
I3D_MIN_INPUT: dict[str, tuple[int, int]] = {"i3d": (1, 8), "nonlocal": (1, 8)}
STEM = ("conv1.", "bn1.")  # parameter prefixes of layer 0 (layer-wise LR decay)


class NonLocal3d(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al. 2018), residual: ``x + BN(W y)``.

    ``theta``, ``phi``, ``g``: 1x1x1 convolutions to ``C/2``; ``phi`` and ``g`` are max-pooled
    1x2x2 after them, as the paper words it (``subsample``, ceil mode so that odd and 1x1 maps
    work; the released code pools ``x`` before the two convolutions, a quarter of their cost
    and not the same function); ``y_i = sum_j
    softmax_j(theta_i . phi_j / sqrt(C/2)) g_j`` over all ``T'hw`` positions; ``out`` back to
    ``C``, then ``bn`` whose scale starts at zero, so the block starts as the identity. As in
    the authors' released models: the scores scaled by ``sqrt(C/2)``, the four convolutions
    initialised N(0, 0.01), so the softmax starts spread rather than one-hot (where ``theta``
    and ``phi`` get no gradient). Only ``theta`` has a bias: the softmax cancels ``phi``'s and
    the batch norm cancels ``g``'s and ``out``'s.
    """

    def __init__(self, channels: int, subsample: bool = True) -> None:
        super().__init__()
        inner = channels // 2
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Conv3d(channels, inner, 1, bias=False)
        self.g = nn.Conv3d(channels, inner, 1, bias=False)
        pool = nn.MaxPool3d((1, 2, 2), (1, 2, 2), ceil_mode=True)
        self.pool: nn.Module = pool if subsample else nn.Identity()
        self.out = nn.Conv3d(inner, channels, 1, bias=False)
        self.bn = nn.BatchNorm3d(channels)
        self.scale = inner**-0.5
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.01) convolutions, a zero ``theta`` bias, the batch norm's scale at zero."""
        for conv in (self.theta, self.phi, self.g, self.out):
            nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(self.theta.bias)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``(B, C, T, h, w)`` -> attention ``(B, N, M)`` (rows sum to 1) and values
        ``g (B, M, C/2)``, ``N = T h w`` queries, ``M`` the (subsampled) keys."""
        q = self.theta(x).flatten(2).transpose(1, 2) * self.scale  # (B, N, C/2)
        k = self.pool(self.phi(x)).flatten(2)  # (B, C/2, M)
        v = self.pool(self.g(x)).flatten(2).transpose(1, 2)  # (B, M, C/2)
        return torch.softmax(q @ k, dim=-1), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``(B, C, T, h, w)`` -> same shape."""
        attn, v = self.attention(x)
        y = (attn @ v).transpose(1, 2).reshape(x.shape[0], -1, *x.shape[2:])  # (B, C/2, T, h, w)
        return x + self.bn(self.out(y))


class Bottleneck3d(nn.Module):
    """torchvision's ResNet bottleneck in 3D: ``conv1`` 1x1x1 or 3x1x1 (``inflate``),
    ``conv2`` 1x3x3 (spatial ``stride``), ``conv3`` 1x1x1 to ``4 * width``; then the optional
    non-local block. ``(B, C, T, H, W) -> (B, 4 width, T, H/stride, W/stride)``."""

    expansion = 4

    def __init__(
        self, inplanes: int, width: int, stride: int, inflate: bool, non_local: bool
    ) -> None:
        super().__init__()
        out = width * self.expansion
        t = 3 if inflate else 1
        self.conv1 = nn.Conv3d(inplanes, width, (t, 1, 1), padding=(t // 2, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(
            width, width, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
        )
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, out, 1, stride=(1, stride, stride), bias=False),
                nn.BatchNorm3d(out),
            )
        self.non_local = NonLocal3d(out) if non_local else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.relu(self.bn3(self.conv3(y)) + identity)
        return y if self.non_local is None else self.non_local(y)


class I3D(StagedBackbone):
    """I3D ResNet-50 (``non_local``: with the five non-local blocks) without classifier; its
    parameters keep torchvision's resnet50 names on the module itself (``prefix`` '')."""

    prefix = ""
    stem = STEM
    stages = tuple((f"layer{i}.",) for i in range(1, len(DEPTHS) + 1))  # res2..res5 (+ non-local)

    def __init__(self, arch: str = "i3d") -> None:
        super().__init__()
        if arch not in I3D_ARCHS:
            raise ValueError(f"unknown I3D arch {arch!r}; one of {I3D_ARCHS}")
        self.arch = arch
        self.conv1 = nn.Conv3d(3, 64, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        self.pool2 = nn.MaxPool3d((3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0))
        inplanes = 64
        for i, (depth, width) in enumerate(zip(DEPTHS, WIDTHS, strict=True)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                non_local = arch == "nonlocal" and bool(NON_LOCAL[i][j])
                blocks.append(Bottleneck3d(inplanes, width, stride, bool(INFLATE[i][j]), non_local))
                inplanes = width * Bottleneck3d.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.embed_dim = inplanes  # 2048
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's ResNet init: Kaiming (fan out) convolutions, unit batch norms; the
        non-local blocks keep their own (:meth:`NonLocal3d.reset_parameters`)."""
        for name, m in self.named_modules():
            if ".non_local." in f".{name}.":
                continue
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video ``(B, T, 3, S, S)`` -> fmap ``(B, T', h, w, 2048)``, pooled ``(B, 2048)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(video.transpose(1, 2)))))  # (B,64,T',.)
        x = self.pool2(self.layer1(x))
        x = self.layer4(self.layer3(self.layer2(x)))  # (B, 2048, T', h, w)
        return x.permute(0, 2, 3, 4, 1), x.mean(dim=(2, 3, 4))


def build_i3d(arch: str) -> I3D:
    """``i3d`` or ``nonlocal``, random init (torchvision's ResNet init)."""
    return I3D(arch)
