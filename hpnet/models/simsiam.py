"""SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021).

The whole method: an encoder ``f`` (any ``(N, 3, S, S) -> (N, feat_dim)`` module, e.g. a
:class:`~hpnet.models.resnet_trunk.ResNetTrunk`), a projector ``g`` and a predictor ``h``::

    z1, z2 = g(f(x1)), g(f(x2))          # (N, proj_dim)
    p1, p2 = h(z1), h(z2)                # (N, proj_dim)
    loss = D(p1, z2) / 2 + D(p2, z1) / 2,  D(p, z) = -cos(p, stopgrad(z)), averaged over N

No negatives, no momentum encoder: the stop-gradient is what keeps it from collapsing.

Projector (as the reference ``simsiam/builder.py``): ``proj_layers`` = 3 is Linear -> BN ->
ReLU twice at width ``feat_dim``, then Linear -> BN without affine (the ImageNet setting);
``proj_layers`` = 2 drops one hidden layer (the paper's CIFAR / ResNet-18 setting). Predictor:
a bottleneck Linear(proj_dim, pred_dim) -> BN -> ReLU -> Linear(pred_dim, proj_dim).

The paper's collapse monitor is :func:`collapse_std`: the per-dimension std of the
L2-normalised ``z`` is about ``1 / sqrt(proj_dim)`` for spread-out outputs and 0 when every
input maps to the same vector.

A pretraining checkpoint keeps the encoder's tensors under ``encoder.``:
:func:`hpnet.models.ssl_transformer.load_simsiam_encoder` takes them out for the classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def projection_mlp(feat_dim: int, proj_dim: int, layers: int = 3) -> nn.Sequential:
    """``(N, feat_dim) -> (N, proj_dim)``: ``layers - 1`` hidden Linear-BN-ReLU of width
    ``feat_dim``, then Linear and a BN without affine parameters."""
    if layers < 2:
        raise ValueError(f"the projector needs 2 or more layers, got {layers}")
    hidden: list[nn.Module] = []
    for _ in range(layers - 1):
        hidden += [nn.Linear(feat_dim, feat_dim, bias=False), nn.BatchNorm1d(feat_dim)]
        hidden.append(nn.ReLU(inplace=True))
    # the output BN subtracts the mean anyway: the Linear's bias would do nothing
    out = [nn.Linear(feat_dim, proj_dim, bias=False), nn.BatchNorm1d(proj_dim, affine=False)]
    return nn.Sequential(*hidden, *out)


def prediction_mlp(proj_dim: int, pred_dim: int) -> nn.Sequential:
    """``(N, proj_dim) -> (N, proj_dim)`` through a ``pred_dim`` bottleneck."""
    return nn.Sequential(
        nn.Linear(proj_dim, pred_dim, bias=False),
        nn.BatchNorm1d(pred_dim),
        nn.ReLU(inplace=True),
        nn.Linear(pred_dim, proj_dim),
    )


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``D(p, z)``: minus the mean cosine of ``p`` and ``z`` ``(N, d)``, no gradient into z."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def collapse_std(z: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the per-dimension std of the L2-normalised ``z`` ``(N, d)``:
    about ``1 / sqrt(d)`` when outputs are spread out, 0 when they collapse. A scalar."""
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()


class SimSiam(nn.Module):
    """Encoder + projector + predictor; ``forward(x1, x2)`` gives the loss and the outputs.

    encoder: ``(N, 3, S, S) -> (N, feat_dim)``; ``proj_dim`` the projector's output, ``pred_dim``
    the predictor's bottleneck (paper: 2048 and 512), ``proj_layers`` 3 (paper, ImageNet) or 2.
    ``fix_pred_lr``: the predictor's lr is not decayed (paper; :mod:`hpnet.optim` reads
    ``constant_lr_prefixes``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        feat_dim: int,
        proj_dim: int = 2048,
        pred_dim: int = 512,
        proj_layers: int = 3,
        fix_pred_lr: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projection_mlp(feat_dim, proj_dim, proj_layers)
        self.predictor = prediction_mlp(proj_dim, pred_dim)
        # read by hpnet.optim: parameters whose lr is not decayed by the schedule
        self.constant_lr_prefixes = ("predictor.",) if fix_pred_lr else ()

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, torch.Tensor]:
        """Two views ``(N, 3, S, S)`` of the same N images -> ``loss`` (scalar in [-1, 1]),
        ``p1``, ``p2`` (predictions) and ``z1``, ``z2`` (projections, detached), ``(N, d)``."""
        z1 = self.projector(self.encoder(x1))  # (N, d)
        z2 = self.projector(self.encoder(x2))  # (N, d)
        p1, p2 = self.predictor(z1), self.predictor(z2)  # (N, d)
        loss = 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))
        return {"loss": loss, "p1": p1, "p2": p2, "z1": z1.detach(), "z2": z2.detach()}
