"""``pretrain.method=simsiam``: the model, its two views and its training step.

The encoder is a torchvision 2D ResNet of ``model.depth`` (:func:`build_resnet_trunk`), the
frame encoder that ``model.arch=ssl_transformer`` fine-tunes; the projector and predictor are
:class:`~hpnet.models.simsiam.SimSiam`'s (``pretrain.proj_dim``, ``pretrain.pred_dim``; the
predictor's lr is not decayed unless ``pretrain.fix_pred_lr=false``). Each step draws two
views of every clip on the clips' device (:class:`SimSiamViews`: ``pretrain.simsiam_views`` =
augment, frames or foreground), from the step's generator, so a run resumed mid-epoch draws the
same views; the epoch's metrics add ``collapse_std`` (:func:`~hpnet.models.simsiam.collapse_std`
of ``z1``: about ``1 / sqrt(proj_dim)`` while the outputs are spread out, 0 when they collapse).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from hpnet.config import Config
from hpnet.data.simsiam_views import STRONG, SimSiamViews
from hpnet.engine import EpochProgress, backward_and_record
from hpnet.models.resnet_trunk import build_resnet_trunk
from hpnet.models.simsiam import SimSiam, collapse_std


def build_simsiam(cfg: Config) -> SimSiam:
    """SimSiam over a random ResNet of ``model.depth``; ``class_names`` is empty (no labels:
    what resuming checks the run's labels against)."""
    trunk = build_resnet_trunk(cfg.model.depth)
    p = cfg.pretrain
    model = SimSiam(
        trunk, trunk.out_dim, proj_dim=p.proj_dim, pred_dim=p.pred_dim, fix_pred_lr=p.fix_pred_lr
    )
    model.class_names = []
    return model


def build_views(cfg: Config) -> SimSiamViews:
    """The run's two-view sampler: ``data.size`` views normalised by ``data.augment``; the
    strong augmentation's hue jitter ``pretrain.hue``, smallest crop ``pretrain.crop_scale_min``."""
    a, p = cfg.data.augment, cfg.pretrain
    strong = replace(STRONG, hue=p.hue, scale_min=p.crop_scale_min)
    return SimSiamViews(
        p.simsiam_views, cfg.data.size, a.mean, a.std,
        frame_gap=p.frame_gap, strong=strong, motion_threshold=p.motion_threshold,
    )  # fmt: skip


def simsiam_batch(
    model: torch.nn.Module,
    batch: dict[str, Any],
    state: EpochProgress,
    *,
    views: SimSiamViews,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    generator: torch.Generator | None,
    scaler: torch.amp.GradScaler | None,
    loss_divisor: int,
    where: str,
    weight: float = 1.0,
    **_: Any,  # the classification step's transform, loss_cfg and use_pose: unused
) -> None:
    """Forward + backward of one batch's clips ``(B, T, 3, H, W)`` (labels never read): two
    views ``(B, 3, S, S)`` each, drawn from ``generator``; adds ``collapse_std`` to ``state``.

    A batch left with one clip (its other videos failed to decode; a DDP stand-in) cannot go
    through the BatchNorms in training mode: its clip runs twice with weight 0, so the
    processes' gradient exchange still happens and the weights do not move."""
    video = batch["video"].to(device, non_blocking=True)
    clips = video.shape[0]
    if clips < 2:
        video, weight, clips = video.repeat(2, *[1] * (video.dim() - 1)), 0.0, 0
    x1, x2 = views(video, generator)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)):
        out = model(x1, x2)
    backward_and_record(
        out["loss"], state, clips=clips, correct=None, scaler=scaler, weight=weight,
        loss_divisor=loss_divisor, where=where, extra={"collapse_std": collapse_std(out["z1"])},
    )  # fmt: skip
