"""What a pretraining run is made of: the settings it refuses, its videos, its model.

:func:`check_pretrain_config` and :func:`check_pretrain_resumable` refuse what a run cannot use
before anything is built; :func:`pretrain_datasets` gives the training videos without labels or
joints; :func:`build_pretrain_model` the method's model (VideoMAE around LS-ViT, or SimSiam over
a ResNet). The command (:mod:`hpnet.pretrain.run`) and ``--preview``
(:mod:`hpnet.pretrain.preview`) both build from here.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from hpnet.cli import UserError
from hpnet.config import Config, changed_keys
from hpnet.models.backbones import build_backbone, check_model_config, warn_unread_model_keys
from hpnet.pretrain.simsiam import build_simsiam
from hpnet.pretrain.videomae import VideoMAE
from hpnet.runtime import RunDataset

logger = logging.getLogger(__name__)


def check_pretrain_config(cfg: Config) -> None:
    """The settings pretraining cannot use, refused before anything is built."""
    if cfg.pretrain.method == "videomae":
        _check_videomae(cfg)
    t = cfg.train
    if t.mixup or t.cutmix or t.repeat_aug != 1:
        raise UserError(
            f"train.mixup={t.mixup:g} train.cutmix={t.cutmix:g} train.repeat_aug={t.repeat_aug}: "
            "read by python -m hpnet.train only (pretraining has no labels to mix or batches "
            "to repeat; a fine-tuning config? fine-tune with python -m hpnet.train): set them to "
            "0, 0 and 1"
        )
    a = cfg.data.augment
    if a.erase_prob > 0 or a.randaug_n > 0:
        raise UserError(
            f"data.augment.erase_prob={a.erase_prob:g} data.augment.randaug_n={a.randaug_n}: "
            "pretraining neither erases nor RandAugments frames (VideoMAE would reconstruct the "
            "noise; SimSiam's views are its own): set both to 0"
        )
    if cfg.pretrain.method == "simsiam":
        _check_simsiam(cfg)
    if cfg.data.joint:
        raise UserError(
            "pretraining reads one dataset's videos: drop data.joint (set data.dataset and "
            "data.root, or data.dataset=unlabeled data.root=DIR for a folder of videos)"
        )
    check_model_config(cfg)
    warn_unread_model_keys(cfg)
    _warn_training_only_keys(cfg)
    if cfg.data.val_fraction > 0:
        logger.warning(
            "data.val_fraction=%g: pretraining leaves those validation videos out, as fine-tuning "
            "with it does (they stay unseen), and scores nothing on them: set "
            "data.val_fraction=0 to pretrain on every training video", cfg.data.val_fraction,
        )  # fmt: skip
    if cfg.pretrain.method == "videomae":
        _warn_wide_decoder(cfg)


def _check_videomae(cfg: Config) -> None:
    if cfg.model.arch != "lsvit":
        raise UserError(
            f"pretrain.method=videomae pretrains LS-ViT; model.arch={cfg.model.arch} has no "
            "token path to mask: set model.arch=lsvit"
        )
    if cfg.data.augment.blur_prob > 0:
        raise UserError(
            f"pretrain.method=videomae with data.augment.blur_prob={cfg.data.augment.blur_prob:g}:"
            " a blur spreads the hidden patches' pixels into the visible ones the encoder sees "
            "(configs/videomae_demo.yaml has it off): set data.augment.blur_prob=0"
        )
    side = cfg.data.size // cfg.model.patch_size
    if side * side < 2:  # (one position: none can be hidden while one stays visible)
        raise UserError(
            f"pretrain.method=videomae hides patch positions and shows the rest: data.size="
            f"{cfg.data.size} with model.patch_size={cfg.model.patch_size} makes {side * side} "
            f"position(s) a frame: give data.size >= {2 * cfg.model.patch_size} (or a smaller "
            "model.patch_size)"
        )


def _check_simsiam(cfg: Config) -> None:
    if cfg.model.arch != "ssl_transformer":
        raise UserError(
            f"pretrain.method=simsiam pretrains the 2D ResNet of model.arch=ssl_transformer "
            f"(model.depth); model.arch={cfg.model.arch}: set model.arch=ssl_transformer"
        )
    if cfg.model.pretrained:
        raise UserError(
            "pretrain.method=simsiam starts from a random ResNet: set model.pretrained='' "
            "(continue a run with train.resume=auto instead)"
        )
    if cfg.train.batch_size < 2:
        raise UserError(
            "pretrain.method=simsiam normalises its projections over the batch (BatchNorm): "
            f"train.batch_size must be 2 or more, got {cfg.train.batch_size}"
        )
    one_frame = cfg.pretrain.simsiam_views == "augment"
    if one_frame and cfg.data.frames > 1 and cfg.data.dataset != "synthetic":
        logger.warning(  # (rendered clips cost no decoding)
            "pretrain.simsiam_views=augment makes both views of one frame per clip, but "
            "data.frames=%d decodes %d: set data.frames=1 (one random frame of the whole "
            "video, as now, for a fraction of the decoding)", cfg.data.frames, cfg.data.frames,
        )  # fmt: skip
    if cfg.pretrain.simsiam_views == "frames" and cfg.data.frames < 2:
        raise UserError(
            "pretrain.simsiam_views=frames pairs two frames of a clip at most "
            "pretrain.frame_gap apart: it needs data.frames >= 2 (e.g. 8), got "
            f"{cfg.data.frames}"
        )
    if cfg.pretrain.simsiam_views == "foreground" and cfg.data.frames < 3:
        raise UserError(
            "pretrain.simsiam_views=foreground takes each clip's background as the median of "
            "its frames and pastes the moving part on another clip's: it needs data.frames >= "
            f"3, got {cfg.data.frames}"
        )


def _warn_wide_decoder(cfg: Config) -> None:
    """A VideoMAE decoder wider than its encoder (the base recipe's 384 on a tiny LS-ViT) holds
    most of the weights and compute of a step: said, with VideoMAE's proportion (half)."""
    from hpnet.models.lsvit import LSVIT_SIZES

    width = LSVIT_SIZES[cfg.model.size]["embed_dim"]
    if cfg.pretrain.decoder_width > width:
        logger.warning(
            "pretrain.decoder_width=%d is wider than the model.size=%s encoder (%d): the "
            "decoder holds most of the weights (VideoMAE's is half its encoder's width: "
            "pretrain.decoder_width=%d)", cfg.pretrain.decoder_width, cfg.model.size, width,
            width // 2,
        )  # fmt: skip


# the keys only python -m hpnet.train reads: labels, mixing, evaluation, the classifier's head
TRAINING_ONLY = ("train.label_smoothing", "train.mix_prob", "train.mix_switch", "train.eval_every")
TRAINING_ONLY += ("model.dropout", "model.head_init_scale", "model.aux_weight", "model.pool")


def _warn_training_only_keys(cfg: Config) -> None:
    """One warning naming the keys set (not at their defaults) that only ``python -m
    hpnet.train`` reads: a fine-tuning config given to pretraining changes nothing by them,
    and the config.yaml that records them would suggest otherwise."""
    from hpnet.config import config_to_dict

    defaults = config_to_dict(type(cfg)())
    set_keys = [f"{key}={now}" for key, _, now in changed_keys(defaults, cfg, TRAINING_ONLY)]
    if set_keys:
        logger.warning(
            "%s: read by python -m hpnet.train only (pretraining has no labels or classifier "
            "and evaluates nothing; a fine-tuning config? fine-tune with python -m hpnet.train)",
            "; ".join(set_keys),
        )  # fmt: skip


def check_pretrain_resumable(path: Path, cfg: Config) -> None:
    """``path`` is a pretraining checkpoint of this method and decoder (the rest is checked
    like a training run's by :func:`~hpnet.resume.resume_run`)."""
    from hpnet.checkpoint import load_checkpoint
    from hpnet.models.lsvit_weights import read_pretrain_checkpoint
    from hpnet.resume_from import is_own_checkpoint

    ckpt = read_pretrain_checkpoint(path)
    if ckpt is None:
        load_checkpoint(path)  # a file torch cannot read: refused with its reason
        fix = (  # the folder holds another run; or another folder's file was given
            "pretrain into another train.out_dir"
            if is_own_checkpoint(Path(cfg.train.out_dir), path)
            else f"drop train.resume (model.pretrained={path} starts from its weights)"
        )
        raise UserError(
            f"cannot resume {path}: it is not a pretraining checkpoint (python -m hpnet.train "
            f"wrote it?); {fix}"
        )
    keys: tuple[str, ...] = ("pretrain.method", "pretrain.decoder_width", "pretrain.decoder_depth")
    saved = ckpt.get("config", {})
    if cfg.pretrain.method == "simsiam":  # these shape the model or its optimizer's groups
        keys = ("pretrain.method", "model.depth", "pretrain.proj_dim", "pretrain.pred_dim")
        keys += ("pretrain.fix_pred_lr",)
        # runs from before the option decayed the predictor's lr like the rest
        saved = {**saved, "pretrain": {"fix_pred_lr": False, **saved.get("pretrain", {})}}
    changed = changed_keys(saved, cfg, keys)
    if changed:
        key, then, now = changed[0]
        raise UserError(
            f"cannot resume {path}: it used {key}={then}, this run has {now} (set {key}={then}, "
            "or start a new run in another train.out_dir)"
        )


def pretrain_datasets(cfg: Config) -> list[RunDataset]:
    """The training videos of ``data.dataset`` as a one-dataset run without classes or joints
    (pose settings and class balancing play no part: nothing reads labels or joints)."""
    from hpnet.data.datasets import build_datasets

    data = dataclasses.replace(cfg.data, balance="none")
    plain = dataclasses.replace(cfg, data=data, pose=dataclasses.replace(cfg.pose, source="none"))
    train_ds, test_ds, _ = build_datasets(plain, test_views=1)
    if len(train_ds) == 0:
        raise UserError(f"{cfg.data.dataset} at {cfg.data.root} has no training videos")
    return [RunDataset("", plain, train_ds, test_ds, [])]


def build_pretrain_model(cfg: Config) -> torch.nn.Module:
    """The method's model: VideoMAE around the backbone of ``model.*`` (``model.pretrained``,
    if set, is where the encoder starts), or SimSiam over a ResNet of ``model.depth``."""
    if cfg.pretrain.method == "simsiam":
        model = build_simsiam(cfg)
        model.pretrained_report = ""
        return model
    built = build_backbone(cfg)
    encoder = built.module
    encoder.pretrained_names = built.pretrained_names  # (pretrained groups get backbone_lr)
    p = cfg.pretrain
    model = VideoMAE(
        encoder,
        mask_ratio=p.mask_ratio,
        decoder_width=p.decoder_width,
        decoder_depth=p.decoder_depth,
        norm_pix_loss=p.norm_pix_loss,
    )
    model.pretrained_report = str(built.report) if built.report else ""
    return model
