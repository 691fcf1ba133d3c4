"""The frame encoder of ``model.arch=ssl_transformer`` from ``model.pretrained``: a
``pretrain.method=simsiam`` run's ``last.pt`` (its ``encoder.*``; the projector and predictor
dropped), or a torchvision 2D ResNet file or weights name (``IMAGENET1K_V1``)::

    report = load_simsiam_weights(backbone, "runs/simsiam/last.pt", depth=18)
"""

from __future__ import annotations

from types import SimpleNamespace

from torch import nn

from hpnet.cli import UserError
from hpnet.models.lsvit_weights import read_pretrain_checkpoint
from hpnet.models.ssl_transformer import load_frame_encoder
from hpnet.models.tv_video_weights import load_tv_weights
from hpnet.models.weights import PretrainedReport


def load_simsiam_weights(backbone: nn.Module, path: str, depth: int) -> PretrainedReport:
    """Load the frame encoder of a ``pretrain.method=simsiam`` run's checkpoint at ``path``
    into an :class:`~hpnet.models.ssl_transformer.SSLTransformer` of ResNet ``depth``; any
    other ``path`` is a torchvision 2D ResNet file or weights name (:func:`_tv_frame_encoder`)."""
    ckpt = read_pretrain_checkpoint(path)
    if ckpt is None:  # a torchvision / timm 2D ResNet file, or a torchvision weights name
        return _tv_frame_encoder(backbone, path, depth)
    # (a simsiam run's: hpnet.models.backbones.build_backbone refused the other methods')
    then = ckpt.get("config", {}).get("model", {}).get("depth")
    if then is not None and then != depth:
        raise UserError(
            f"model.pretrained={path} is a ResNet-{then} (SimSiam), this run builds "
            f"model.depth={depth}: set model.depth={then}"
        )
    try:
        report = load_frame_encoder(backbone, ckpt, str(path))
    except ValueError as err:
        raise UserError(f"model.pretrained={path} does not fit model.depth={depth}: {err}") from err
    if not report.loaded:
        raise UserError(f"model.pretrained={path}: none of its encoder tensors fits this one")
    epoch = ckpt.get("epoch")
    report.flavour = (
        f"hpnet simsiam pretraining (epoch {epoch}: encoder; projector, predictor dropped)"
    )
    report.unexpected = [k for k in ckpt["model"] if not k.startswith("encoder.")]
    return report


def _tv_frame_encoder(backbone: nn.Module, path: str, depth: int) -> PretrainedReport:
    """A torchvision ``resnet{depth}`` state dict file (or weights name) into the frame encoder
    (:mod:`hpnet.models.tv_video_weights`: same keys, ``fc`` unused); names get ``encoder.``."""
    view = SimpleNamespace(
        model=backbone.encoder, tv_builder=f"resnet{depth}", arch="ssl_transformer", depth=depth
    )
    report = load_tv_weights(view, path)
    report.loaded = [f"encoder.{k}" for k in report.loaded]
    report.missing = [f"encoder.{k}" for k in report.missing]
    return report
