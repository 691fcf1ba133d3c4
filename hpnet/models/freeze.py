"""Freezing ``model.arch=ssl_transformer``'s frame encoder: ``model.freeze_backbone`` (the whole
run) or ``model.freeze_backbone_epochs`` (the first N epochs, then fine-tuned): which settings
can work, and the switch between epochs."""

from __future__ import annotations

import logging

from torch import nn

from hpnet.cli import UserError
from hpnet.config import Config

logger = logging.getLogger(__name__)


def check_freeze(cfg: Config) -> None:
    """``model.freeze_backbone`` / ``freeze_backbone_epochs``: ssl_transformer's, one of them."""
    m = cfg.model
    if (m.freeze_backbone or m.freeze_backbone_epochs) and m.arch != "ssl_transformer":
        raise UserError(
            "model.freeze_backbone and model.freeze_backbone_epochs freeze the frame encoder of "
            f"model.arch=ssl_transformer; model.arch={m.arch} has none: leave them unset"
        )
    if m.freeze_backbone and m.freeze_backbone_epochs:
        raise UserError(
            f"model.freeze_backbone=true freezes the frame encoder for the whole run and "
            f"model.freeze_backbone_epochs={m.freeze_backbone_epochs} for the first epochs "
            "only: set one of them"
        )
    if m.freeze_backbone_epochs >= cfg.train.epochs:
        raise UserError(
            f"model.freeze_backbone_epochs={m.freeze_backbone_epochs} covers all "
            f"train.epochs={cfg.train.epochs}: set model.freeze_backbone=true to keep the frame "
            "encoder frozen, or fewer epochs to fine-tune it afterwards"
        )


def warn_frozen_random_encoder(cfg: Config) -> None:
    """A training run that freezes a frame encoder without ``model.pretrained``: the Transformer
    then learns from random features (it was silent)."""
    m = cfg.model
    if (m.freeze_backbone or m.freeze_backbone_epochs) and not m.pretrained:
        logger.warning(
            "model.freeze_backbone%s with model.pretrained='' freezes a randomly initialised "
            "frame encoder: the Transformer learns from random features; set model.pretrained="
            "RUN/last.pt (python -m hpnet.pretrain, pretrain.method=simsiam)",
            "_epochs" if m.freeze_backbone_epochs else "",
        )  # fmt: skip


def set_backbone_frozen(model: nn.Module, cfg: Config, epoch: int) -> None:
    """Apply ``model.freeze_backbone_epochs`` to ``model`` (an HP-Net) for ``epoch`` (0-based):
    its frame encoder is frozen before that epoch, fine-tuned from it on (no schedule: as built)."""
    if cfg.model.freeze_backbone_epochs:
        model.backbone.set_frozen(epoch < cfg.model.freeze_backbone_epochs)
