"""``model.arch`` -> the backbone, with ``model.pretrained`` loaded: the one place that knows
every backbone family (:func:`hpnet.models.hpnet.build_model` builds HP-Net on top of it).

A plain dict of builder functions (:data:`BACKBONES`), no registry. The backbone contract
(what :class:`~hpnet.models.hpnet.HPNet` reads): ``embed_dim`` (D), ``no_weight_decay()``,
``num_layers`` / ``layer_id(name)`` (layer-wise LR decay), optionally ``fmap_dim`` (Df, the
feature map's width when it is not D: C3D's conv5b map is 512 wide, its fc7 feature 4096) and

    fmap, pooled = backbone.forward_features(video)  # (B, T, 3, S, S) -> (B, T', h, w, Df), (B, D)

except LS-ViT, whose token path HPNet runs block by block so that joint tokens can re-enter
its last blocks (``model.feedback``, LS-ViT only: the other archs refuse it).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from hpnet.config import Config
from hpnet.models import c3d, cnn2d
from hpnet.models.c3d import C3D
from hpnet.models.cnn2d import IMAGENET_MEAN, IMAGENET_STD, FrameResNet
from hpnet.models.freeze import check_freeze
from hpnet.models.i3d import I3D_ARCHS, I3D_MIN_INPUT, build_i3d
from hpnet.models.lrcn import LRCN
from hpnet.models.lsvit import LSVIT_SIZES, LSViT, build_lsvit
from hpnet.models.lsvit_weights import (
    is_pretrain_checkpoint,
    load_pretrained,
    read_pretrain_checkpoint,
    read_saved_dict,
)
from hpnet.models.normalisation import warn_other_normalisation
from hpnet.models.run_weights import (
    check_pretrain_arch,
    check_run_path,
    load_run_backbone,
    run_checkpoint_of,
    with_run_hint,
)
from hpnet.models.tv_video import MIN_INPUT as TV_MIN_INPUT
from hpnet.models.tv_video import TV_ARCHS, build_tv_video
from hpnet.models.weights import PretrainedReport
from hpnet.text.weights import ClipSource

logger = logging.getLogger(__name__)


@dataclass
class BuiltBackbone:
    """A backbone and what loading ``model.pretrained`` into it did."""

    module: nn.Module
    report: PretrainedReport | None = None  # None: no weights loaded
    pretrained_names: set[str] = field(default_factory=set)  # its parameters filled by the file
    clip: ClipSource | None = None  # LS-ViT: the CLIP checkpoint the text tower may share


def build_backbone(cfg: Config, *, load_weights: bool = True) -> BuiltBackbone:
    """The backbone of ``model.arch``; ``model.pretrained`` loaded unless ``load_weights`` is
    False (the caller then loads a whole checkpoint). A ``python -m hpnet.train`` run's
    checkpoint gives its backbone to any arch (:mod:`hpnet.models.run_weights`); the other
    files go to the arch's own loader."""
    from hpnet.cli import UserError

    given = cfg.model.pretrained if load_weights else ""
    check_run_path(given)
    saved = read_saved_dict(given) if given else None  # (read once: what kind of file it is)
    run = run_checkpoint_of(saved)
    pretrain = saved if saved is not None and is_pretrain_checkpoint(saved) else None
    if pretrain is not None:  # a python -m hpnet.pretrain run's: for the arch its encoder is
        check_pretrain_arch(pretrain, given, cfg.model.arch)
    if run is None:
        try:
            built = BACKBONES[cfg.model.arch](cfg, load_weights)
        except UserError as err:
            raise with_run_hint(err, given) from None
        if built.report is not None and pretrain is not None:
            _warn_run_normalisation(cfg, pretrain)  # the pretraining run's encoder
        return built
    backbone = BACKBONES[cfg.model.arch](cfg, False).module  # another run's backbone, as trained
    report = load_run_backbone(backbone, cfg.model.pretrained, run, cfg.model)
    _warn_run_normalisation(cfg, run)
    return BuiltBackbone(backbone, report, set(report.loaded))


def _warn_run_normalisation(cfg: Config, ckpt: dict) -> None:
    """Warn when ``cfg`` normalises otherwise than the hpnet run of ``ckpt`` (a training or a
    pretraining run) did: its weights saw inputs of its own ``data.augment.mean/std``."""
    augment = ckpt.get("config", {}).get("data", {}).get("augment", {})
    if "mean" in augment and "std" in augment:
        warn_other_normalisation(cfg, (tuple(augment["mean"]), tuple(augment["std"])))


def _lsvit(cfg: Config, load_weights: bool) -> BuiltBackbone:
    m = cfg.model
    backbone = build_lsvit(
        m.size,
        img_size=cfg.data.size,
        patch_size=m.patch_size,
        num_frames=cfg.data.frames,
        smif=m.smif,
        smif_offsets=tuple(m.smif_offsets),
        lmi=m.lmi,
        lmi_every=m.lmi_every,
        drop_path_rate=m.drop_path,
        drop_rate=m.dropout,
        pool=m.pool,
    )
    if not (m.pretrained and load_weights):
        return BuiltBackbone(backbone)
    clip, report = load_backbone_weights(cfg, backbone)
    # only what the file filled is "pretrained": SMIF, LMI, the temporal embedding are new
    return BuiltBackbone(backbone, report, set(report.loaded), clip)


def _torchvision(cfg: Config, load_weights: bool) -> BuiltBackbone:
    return _with_weights(
        cfg, load_weights, build_tv_video(cfg.model.arch, drop_path=cfg.model.drop_path)
    )


def _with_weights(cfg: Config, load_weights: bool, backbone: nn.Module) -> BuiltBackbone:
    """A backbone wrapping a foreign ``backbone.model``, with ``model.pretrained`` loaded into
    that module (:mod:`hpnet.models.tv_video_weights`)."""
    from hpnet.models.tv_video_weights import load_tv_weights

    if not (cfg.model.pretrained and load_weights):
        return BuiltBackbone(backbone)
    report = load_tv_weights(backbone, cfg.model.pretrained)
    report.missing += _outside(backbone, "model.")  # LRCN's LSTM: new too
    warn_other_normalisation(cfg)
    return BuiltBackbone(backbone, report, {f"model.{name}" for name in report.loaded})


def _outside(backbone: nn.Module, prefix: str) -> list[str]:
    """The backbone's tensors around the module a file loads into (``prefix``): all new."""
    return [k for k in backbone.state_dict() if not k.startswith(prefix)]


def _i3d(cfg: Config, load_weights: bool) -> BuiltBackbone:
    from hpnet.models.i3d_weights import load_i3d_weights

    backbone = build_i3d(cfg.model.arch)
    if not (cfg.model.pretrained and load_weights):
        return BuiltBackbone(backbone)
    report = load_i3d_weights(backbone, cfg.model.pretrained)
    if report.inflated:  # an ImageNet 2D ResNet-50 (an hpnet run keeps its own mean/std)
        warn_other_normalisation(cfg, (IMAGENET_MEAN, IMAGENET_STD))
    return BuiltBackbone(backbone, report, set(report.loaded))


def _ssl_transformer(cfg: Config, load_weights: bool) -> BuiltBackbone:
    from hpnet.models.frame_encoder_weights import load_simsiam_weights
    from hpnet.models.ssl_transformer import build_ssl_transformer

    m = cfg.model
    backbone = build_ssl_transformer(
        m.depth,
        width=m.temporal_width,
        depth=m.temporal_depth,
        max_frames=max(64, cfg.data.frames),
        dropout=m.dropout,
        freeze=m.freeze_backbone,
    )
    if not (m.pretrained and load_weights):
        return BuiltBackbone(backbone)
    report = load_simsiam_weights(backbone, m.pretrained, m.depth)
    report.missing += _outside(backbone, "encoder.")  # the temporal Transformer: new
    if report.flavour == "torchvision":  # an ImageNet 2D ResNet (a SimSiam run: its own)
        warn_other_normalisation(cfg, (IMAGENET_MEAN, IMAGENET_STD))
    return BuiltBackbone(backbone, report, set(report.loaded))


BACKBONES: dict[str, Callable[[Config, bool], BuiltBackbone]] = {
    "lsvit": _lsvit,
    **{arch: _torchvision for arch in TV_ARCHS},
    "late_fusion": lambda cfg, load: _with_weights(cfg, load, FrameResNet(cfg.model.depth)),
    "lrcn": lambda cfg, load: _with_weights(cfg, load, LRCN(cfg.model.depth)),
    "c3d": lambda cfg, load: _with_weights(cfg, load, C3D()),
    **{arch: _i3d for arch in I3D_ARCHS},
    "ssl_transformer": _ssl_transformer,
}
# Smallest (frames, side) each arch's strides leave a feature map for (not lsvit); mvit_v2_s:
# exactly these.
MIN_INPUT = {**TV_MIN_INPUT, "late_fusion": cnn2d.MIN_INPUT, "lrcn": cnn2d.MIN_INPUT}
MIN_INPUT |= {"c3d": c3d.MIN_INPUT, **I3D_MIN_INPUT, "ssl_transformer": cnn2d.MIN_INPUT}


# Where cell i of each CNN's feature map sits on the frame: ``(stride, first)``, its receptive
# field centred at pixel ``first + stride * i`` (the FPM pools the joints there; lsvit, not
# listed: patches tile the frame). Padded strided convs and pools centre cell i at
# ``stride * i`` (first 0.5: the middle of pixel 0); C3D's unpadded 2x2 pools, S3D's last one
# and Swin's patch embedding + merging put it mid-cell. tests/test_backbones.py measures the
# convolutional ones (mvit_v2_s, swin3d_t: attention sees the whole frame; from their layers).
CELL_CENTRES: dict[str, tuple[float, float]] = {
    **dict.fromkeys(["r3d_18", "mc3_18", "r2plus1d_18"], (16, 0.5)),
    **dict.fromkeys(["late_fusion", "lrcn", "ssl_transformer", "i3d", "nonlocal"], (32, 0.5)),
    "c3d": (16, 8.0),
    "s3d": (32, 8.5),
    "mvit_v2_s": (32, 0.5),
    "swin3d_t": (32, 16.0),
}
# The same along time, frame j spanning [j, j + 1): step i of each map is centred at time
# ``first + stride * i`` (the FPM reads the joints of that frame). R3D's and R(2+1)D's padded
# strided convs, I3D's padded pools and MViT's patch conv centre step i on frame ``stride * i``;
# C3D's unpadded pools and Swin's patch embedding put it mid-step; S3D's last pool is unpadded.
# Per-frame 2D archs and mc3_18 (its later stages are 2D) keep every frame.
TIME_CELLS: dict[str, tuple[float, float]] = {
    **dict.fromkeys(["r3d_18", "r2plus1d_18"], (8, 0.5)),
    **dict.fromkeys(["mc3_18", "late_fusion", "lrcn", "ssl_transformer"], (1, 0.5)),
    **dict.fromkeys(["i3d", "nonlocal"], (4, 0.5)),
    "c3d": (8, 4.0),
    "s3d": (8, 2.5),
    "mvit_v2_s": (2, 0.5),
    "swin3d_t": (2, 1.0),
}


def load_backbone_weights(
    cfg: Config, backbone: LSViT
) -> tuple[ClipSource | None, PretrainedReport]:
    """Load ``model.pretrained`` into an LS-ViT: ``(its CLIP checkpoint or None, report)``.

    An ``hpnet.pretrain`` run's checkpoint gives its encoder (the decoder is dropped).

    A tag of ``text.model`` is resolved like ``text.pretrained`` (an error when it cannot be
    had); a file is read once. The checkpoint is returned for the text tower when
    ``text.pretrained`` names the same weights, so that neither downloads nor reads it again;
    then ``text.quick_gelu=auto`` is replaced in ``cfg`` by what was decided, so that the
    checkpoints' config encodes new labels the same way (the backbone records its activation in
    its own state dict). A file whose activation its provenance does not tell is judged by the
    open_clip architectures of the backbone's shape (not ``text.model``'s).
    """
    from hpnet.models.lsvit_weights import load_pretrain_encoder
    from hpnet.text.activation import vision_archs
    from hpnet.text.weights import parse_weights

    m, t = cfg.model, cfg.text
    pretrain = read_pretrain_checkpoint(m.pretrained)  # RUN/last.pt of python -m hpnet.pretrain
    if pretrain is not None:  # (a videomae run's: build_backbone refused the others)
        return None, load_pretrain_encoder(backbone, m.pretrained, pretrain, m)
    source = ClipSource.resolve(
        t.model, m.pretrained, quick_gelu=t.quick_gelu, key="model.pretrained", required=True,
        archs=vision_archs(backbone.embed_dim, backbone.patch_size, len(backbone.blocks)),
    )  # fmt: skip
    state = source.state_dict()
    report = load_pretrained(
        backbone, source.weights.source, state=state, clip_quick_gelu=lambda: source.quick_gelu
    )
    shared = (
        m.text
        and any(k.startswith("visual.") for k in state)
        and (m.pretrained == t.pretrained or parse_weights(t.pretrained) == source.weights)
    )
    if not shared:
        source.release()
        return None, report
    if t.quick_gelu == "auto":  # recorded: evaluate/predict encode new labels the same way
        t.quick_gelu = "true" if source.quick_gelu else "false"
    return source, report


@functools.cache  # (once per setting: a run checks its model config twice)
def _warn_long_offsets(offsets: tuple[int, ...], frames: int) -> None:
    """SMIF offsets of ``frames - 1`` or more: clamped at the clip's ends, every frame is
    differenced with the clip's first or last (as with any larger offset)."""
    fix = f"use offsets below {frames - 1}"
    if frames <= 2:  # (every offset, 1 and up, does)
        fix = "set model.smif=false, or data.frames of 3 or more"
    logger.warning(
        "model.smif_offsets=%s reach the ends of a clip of %d frames (data.frames): such an "
        "offset differences every frame with the clip's first or last; %s",
        list(offsets), frames, fix,
    )  # fmt: skip


def check_model_config(cfg: Config) -> None:
    """The model settings that only fail when the model is built, checked up front."""
    from hpnet.cli import UserError

    m, d = cfg.model, cfg.data
    check_freeze(cfg)
    if cfg.train.grad_checkpointing and m.arch != "lsvit":
        raise UserError(
            f"train.grad_checkpointing=true recomputes LS-ViT's blocks; model.arch={m.arch} "
            "does not support it: set train.grad_checkpointing=false"
        )
    if m.arch == "lsvit":
        if d.size % m.patch_size:
            raise UserError(
                f"data.size={d.size} is not a multiple of model.patch_size="
                f"{m.patch_size}: the crops are cut into patches of that size"
            )
        if m.smif and max(m.smif_offsets) >= d.frames - 1:
            _warn_long_offsets(tuple(m.smif_offsets), d.frames)
        depth = LSVIT_SIZES[m.size]["depth"]
        if m.pose and m.feedback and not -depth <= m.feedback_from < depth:
            raise UserError(
                f"model.feedback_from={m.feedback_from} names no block of model.size={m.size}'s "
                f"{depth}: give {-depth}..{depth - 1} (negative = from the end)"
            )
        return
    if m.pool != "cls":
        raise UserError(
            f"model.pool={m.pool} chooses LS-ViT's clip feature; model.arch={m.arch} pools as "
            "its paper does: leave model.pool=cls"
        )
    if m.feedback:
        raise UserError(
            f"model.feedback=true needs token blocks (model.arch=lsvit); model.arch={m.arch} "
            "has none: set model.feedback=false (pose pooling still works)"
        )
    frames, side = MIN_INPUT[m.arch]
    if m.arch == "mvit_v2_s" and (d.frames, d.size) != (frames, side):
        raise UserError(
            f"model.arch=mvit_v2_s takes clips of exactly {frames} frames of {side}x{side} "
            f"(its position embeddings are built for them): set data.frames={frames} "
            f"data.size={side} (got {d.frames}, {d.size})"
        )
    if m.arch == "s3d" and d.frames == 5:  # (torch 2.14; MIN_INPUT says 6)
        raise UserError(
            "model.arch=s3d on data.frames=5 kills the process: torch's CPU backward of its "
            "7-frame temporal convolution (stride 2) corrupts memory on 5 frames; use 6 or more"
        )
    if d.frames < frames or d.size < side:
        raise UserError(
            f"model.arch={m.arch} needs data.frames >= {frames} and data.size >= {side} "
            f"(its strides leave no feature map of smaller clips; got {d.frames}, {d.size})"
        )


def warn_unread_model_keys(cfg: Config) -> None:
    """One warning naming the ``model.*`` keys set (not at their defaults) that only other archs
    read (:data:`~hpnet.config_schema.ARCH_KEYS`): ``model.depth=18`` on LS-ViT trains the same
    model, and the config.yaml that records it would suggest otherwise."""
    from hpnet.config_schema import ARCH_KEYS, ModelConfig, arch_reads

    m, defaults = cfg.model, ModelConfig()
    unread = [
        f"model.{key}={getattr(m, key)} (read by {', '.join(archs)})"
        for key, archs in ARCH_KEYS.items()
        if not arch_reads(m.arch, key) and getattr(m, key) != getattr(defaults, key)
    ]
    if unread:
        logger.warning(
            "model.arch=%s ignores %s: only other archs read them",
            m.arch, "; ".join(unread),
        )  # fmt: skip
