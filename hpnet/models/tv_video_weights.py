"""``model.pretrained`` for backbones that wrap a foreign module as ``backbone.model``.

torchvision's video models (:mod:`hpnet.models.tv_video`), late fusion and LRCN (a torchvision
2D ResNet, :mod:`hpnet.models.cnn2d`) and C3D (c3d-pytorch's layout, :mod:`hpnet.models.c3d`):

- a file: a state dict of ``backbone.model`` (``torch.save(model.state_dict())``, also wrapped
  in ``state_dict``/``model`` or with ``module.`` prefixes, or .safetensors); timm's ResNet files
  use torchvision's key names and load as they are;
- a weights name of the torchvision builder ``backbone.tv_builder`` (``KINETICS400_V1`` for
  r3d_18, ``IMAGENET1K_V2`` for resnet50, ``DEFAULT``, or the full
  ``R3D_18_Weights.KINETICS400_V1``): read from torch hub's cache, else downloaded through
  torchvision's own weights API (``Weights.get_state_dict``); when the host cannot be reached
  it is a :class:`~hpnet.cli.UserError` naming the file to download and the key to set. A
  backbone without torchvision weights (``tv_builder`` None: C3D) takes files only.

The tensors are loaded into ``backbone.model``; its classifier (``fc``, ``head``,
``classifier``, C3D's ``fc8``) is not part of the backbone, so those tensors are reported unused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from hpnet.cli import UserError, missing
from hpnet.models.weights import PretrainedReport, refuse_few, refuse_other_depth
from hpnet.text.download import probe_host
from hpnet.text.weights import read_weights_file

KEY = "model.pretrained"
# KINETICS400_V1, DEFAULT, R3D_18_Weights.KINETICS400_V1, MViT_V2_S_Weights.DEFAULT
WEIGHTS_NAME = re.compile(r"([A-Za-z0-9_]+_Weights\.)?[A-Z][A-Z0-9_]*")


def load_tv_weights(backbone: nn.Module, pretrained: str) -> PretrainedReport:
    """Load ``pretrained`` (a file or a weights name, see the module) into ``backbone.model``."""
    path = Path(pretrained).expanduser()
    builder = backbone.tv_builder
    if path.is_file():
        state, _ = read_weights_file(path, KEY, what=f"{_flavour(backbone)} weights")
        return load_tv_state(backbone, state, str(path))
    if builder and WEIGHTS_NAME.fullmatch(pretrained):
        weights = weights_entry(backbone.arch, pretrained, builder)
        return load_tv_state(backbone, fetch_state_dict(backbone.arch, weights), weights.url)
    if builder:
        from torchvision.models import get_model_weights

        name = f", a weights name such as {next(iter(get_model_weights(builder))).name}"
    else:  # (C3D: the c3d-pytorch port's Sports-1M file)
        name = (
            " (torchvision has no weights for it: c3d-pytorch's Sports-1M c3d.pickle, "
            "github.com/DavideA/c3d-pytorch)"
        )
    raise UserError(
        f"{_flavour(backbone)} weights {missing(path)}: {path} ({KEY}; set it to a state dict file "
        f"of model.arch={backbone.arch}{name}, or '' for random)"
    )


def _flavour(backbone: nn.Module) -> str:
    """Where the backbone's layout comes from: ``torchvision`` or its arch (``c3d``)."""
    return "torchvision" if backbone.tv_builder else backbone.arch


def _model_name(backbone: nn.Module) -> str:
    """The model a file must come from, for messages: ``torchvision's r3d_18``,
    ``torchvision's resnet50 (model.arch=late_fusion model.depth=50)``, ``c3d``."""
    builder, arch = backbone.tv_builder, backbone.arch
    if builder == arch:
        return f"torchvision's {arch}"
    depth = getattr(backbone, "depth", None)
    setting = f"model.arch={arch}" + (f" model.depth={depth}" if depth else "")
    return f"torchvision's {builder} ({setting})" if builder else setting


def weights_entry(arch: str, name: str, builder: str = "") -> Any:
    """The ``torchvision.models.WeightsEnum`` member ``name`` (short or full) of torchvision's
    ``builder`` (default: ``arch`` itself), for ``model.arch=arch``."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(builder or arch)
    prefix, _, short = name.rpartition(".")
    if prefix and prefix != enum.__name__:
        raise UserError(f"{KEY}={name} is not one of model.arch={arch}'s {enum.__name__}")
    try:
        return enum[short]
    except KeyError:
        names = ", ".join(["DEFAULT", *(w.name for w in enum)])
        model = f"model.arch={arch}" + (f" ({builder})" if builder and builder != arch else "")
        raise UserError(
            f"{KEY}={name}: torchvision has no such weights for {model}; "
            f"one of {names}, or a local state dict file"
        ) from None


def cached_weights_file(url: str) -> Path:
    """Where torchvision's downloader keeps ``url`` (``<torch hub dir>/checkpoints/<file>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def fetch_state_dict(arch: str, weights: Any) -> dict[str, torch.Tensor]:
    """The state dict of torchvision ``weights``: cached, else downloaded by torchvision.

    A host that cannot be reached, or a download that fails, is one UserError naming the file
    to download and ``model.pretrained`` to set to it.
    """
    cached = cached_weights_file(weights.url)
    reason = "" if cached.is_file() else probe_host(urlparse(weights.url).hostname or "")
    if not reason:
        try:
            return weights.get_state_dict(progress=True, check_hash=True)
        except Exception as err:  # URLError, hash mismatch, disk full, ...
            reason = f"download failed: {err}"
    name = f"{type(weights).__name__}.{weights.name}"
    raise UserError(
        f"torchvision weights {name} of model.arch={arch} cannot be had ({reason}); download "
        f"{weights.url} and set {KEY}=/path/to/{cached.name} (or put it in {cached.parent})"
    )


def load_tv_state(
    backbone: nn.Module, state: dict[str, torch.Tensor], path: str
) -> PretrainedReport:
    """Load a torchvision state dict into ``backbone.model``; a report of what was used.

    Tensors of the removed classifier are unused; a shape that differs, or a file that fills
    nothing, is a UserError naming the file and ``model.arch``.
    """
    own = backbone.model.state_dict()
    mismatched = [
        f"{k} is {tuple(v.shape)} there, {tuple(own[k].shape)} here"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    loaded = [k for k in state if k in own]
    keys = "model.arch, model.depth" if hasattr(backbone, "depth") else "model.arch"
    saved_from = f"set {keys} to the model the file was saved from"
    if mismatched or not loaded:
        problem = "; ".join(mismatched[:3]) or "none of its tensors is one of the model's"
        raise UserError(
            f"weights {path} ({KEY}) do not fit {_model_name(backbone)}: {problem} ({saved_from})"
        )
    refuse_few(loaded, own, path, _model_name(backbone), saved_from)
    if hasattr(backbone, "depth"):  # a 2D ResNet of model.depth
        fix = f"set model.depth to the file's, or use a ResNet-{backbone.depth} file"
    else:
        fix = f"use a file of {_model_name(backbone)}"
    refuse_other_depth(own, state, path, fix)  # same shapes, other block counts
    result = backbone.model.load_state_dict(state, strict=False)
    return PretrainedReport(
        path,
        _flavour(backbone),
        loaded=loaded,
        missing=list(result.missing_keys),
        unexpected=list(result.unexpected_keys),
    )
