"""C3D (Tran et al. 2015): eight 3x3x3 convolutions, VGG-style, and two fully connected layers.

The seed study's C3D baseline (16 x 112 x 112 clips, Sports-1M weights)::

    conv1 64, pool1 1x2x2 | conv2 128, pool2 | conv3a/b 256, pool3 | conv4a/b 512, pool4 |
    conv5a/b 512, pool5 (2x2x2, padded 0x1x1) | fc6 8192 -> 4096 | fc7 4096 -> 4096
    (ReLU after each; pools 2x2x2 with stride 2 unless said; dropout 0.5 after fc6 and fc7:
    fc7's is the classifier head's, ``model.dropout``, as in every hpnet arch)

:class:`C3DNet` names its layers as the widely used c3d-pytorch port does (``conv1``,
``conv2``, ``conv3a``, ``conv3b``, ..., ``fc6``, ``fc7``), so its Sports-1M ``c3d.pickle`` state
dict loads into it (``fc8``, the Sports-1M classifier, is not part of the backbone and is
reported unused). :class:`C3D` wraps it as an hpnet backbone::

    fmap, pooled = backbone.forward_features(video)  # video (B, T, 3, S, S), normalised
    # fmap (B, T/8, S/16, S/16, 512): conv5b after its ReLU, channels last (fmap_dim 512)
    # pooled (B, 4096): fc7's feature (embed_dim 4096)

At the seed's 16 x 112 x 112 pool5 leaves 1 x 4 x 4 x 512 = fc6's 8192 inputs. Other clips
(from 8 frames of 16 x 16, :data:`MIN_INPUT`) get pool5 (its 1x2x2 spatial part, padded the
same, where one time step is left: 8 x 112 x 112 gives fc6 the cells 16 frames do), then an
adaptive max pool to 1 x 4 x 4 (identity at the seed's size; a smaller map is repeated), so fc6
and its Sports-1M weights fit every clip. The port takes RGB 0-255 values without mean
subtraction: with its weights set ``data.augment.mean=[0,0,0]`` and
``data.augment.std=[0.00392157,0.00392157,0.00392157]`` (1/255).

Random init: Kaiming normal (fan in, ReLU) for every layer, zero biases: without batch norm,
PyTorch's default init shrinks the signal through the ten layers and training stalls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hpnet.models.staged import StagedBackbone

MIN_INPUT = (8, 16)  # (frames, side): pool1..pool4 leave a 1x1x1 map of 8 frames of 16x16
POOL5_SHAPE = (1, 4, 4)  # pool5's output at 16 x 112 x 112: fc6 reads 512 * 16 = 8192 values
_CONVS = (  # (name, in, out): c3d-pytorch's names
    ("conv1", 3, 64),
    ("conv2", 64, 128),
    ("conv3a", 128, 256),
    ("conv3b", 256, 256),
    ("conv4a", 256, 512),
    ("conv4b", 512, 512),
    ("conv5a", 512, 512),
    ("conv5b", 512, 512),
)
_POOLED_AFTER = ("conv1", "conv2", "conv3b", "conv4b")  # pool1..pool4; pool5 is apart


class C3DNet(nn.Module):
    """The C3D network up to fc7, with c3d-pytorch's parameter names."""

    def __init__(self, dropout: float = 0.5) -> None:
        super().__init__()
        for name, cin, cout in _CONVS:
            self.add_module(name, nn.Conv3d(cin, cout, kernel_size=3, padding=1))
        self.pool1 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.pool = nn.MaxPool3d(kernel_size=2, stride=2)  # pool2, pool3, pool4
        self.pool5 = nn.MaxPool3d(kernel_size=2, stride=2, padding=(0, 1, 1))
        self.fc6 = nn.Linear(512 * POOL5_SHAPE[0] * POOL5_SHAPE[1] * POOL5_SHAPE[2], 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.dropout = nn.Dropout(dropout)
        self.relu = nn.ReLU()  # a module, not F.relu: guided backpropagation hooks it
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, S, S)`` -> conv5b after its ReLU ``(B, 512, T/8, S/16, S/16)``."""
        for name, _, _ in _CONVS:
            x = self.relu(getattr(self, name)(x))
            if name == "conv1":
                x = self.pool1(x)
            elif name in _POOLED_AFTER:
                x = self.pool(x)
        return x

    def clip_feature(self, conv5b: torch.Tensor) -> torch.Tensor:
        """conv5b ``(B, 512, T', h, w)`` -> pool5 -> fc6 -> fc7 feature ``(B, 4096)`` (after
        its ReLU; the head's dropout follows)."""
        if conv5b.shape[2] >= 2:
            x = self.pool5(conv5b)
        else:  # pool5's spatial windows: Sports-1M's fc6 reads those cells
            x = F.max_pool3d(conv5b, kernel_size=(1, 2, 2), stride=(1, 2, 2), padding=(0, 1, 1))
        x = adaptive_max_pool3d(x, POOL5_SHAPE).flatten(1)  # (B, 8192)
        x = self.dropout(self.relu(self.fc6(x)))
        return self.relu(self.fc7(x))


def adaptive_max_pool3d(x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """``F.adaptive_max_pool3d(x, size)`` of ``x (B, C, T, H, W)`` made of slices and maxima,
    one axis at a time (a box's maximum is its axes' in turn): ONNX has no function for torch's
    own, so a C3D on clips other than 16 x 112 did not export. Bin ``i`` of ``n`` over ``L``
    spans ``[floor(i L / n), ceil((i + 1) L / n))``, as torch's; an axis of length ``n`` is
    left as it is (the seed's clip: nothing to do)."""
    for dim, n in zip((2, 3, 4), size, strict=True):
        length = x.shape[dim]
        if length != n:
            bins = [(i * length // n, -(-(i + 1) * length // n)) for i in range(n)]
            x = torch.cat([x[(slice(None),) * dim + (slice(a, b),)].amax(dim, keepdim=True)
                           for a, b in bins], dim)  # fmt: skip
    return x


class C3D(StagedBackbone):
    """C3D as an hpnet backbone; ``model`` holds the network (keys under ``model.`` are
    c3d-pytorch's). No torchvision weights exist for it: ``tv_builder`` is None."""

    arch = "c3d"
    tv_builder = None
    stem = ("conv1.",)  # layer 0; layers 1-6: conv2, conv3, conv4, conv5, fc6, fc7
    stages = (
        ("conv2.",),
        ("conv3a.", "conv3b."),
        ("conv4a.", "conv4b."),
        ("conv5a.", "conv5b."),
        ("fc6.",),
        ("fc7.",),
    )

    def __init__(self) -> None:
        super().__init__()
        self.model = C3DNet()
        self.embed_dim = self.model.fc7.out_features  # 4096
        self.fmap_dim = self.model.conv5b.out_channels  # 512

    def forward_features(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video ``(B, T, 3, S, S)`` -> fmap ``(B, T', h, w, 512)``, fc7 feature ``(B, 4096)``."""
        conv5b = self.model.conv_features(video.transpose(1, 2))  # (B, 512, T', h, w)
        return conv5b.permute(0, 2, 3, 4, 1), self.model.clip_feature(conv5b)
