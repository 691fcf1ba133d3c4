"""``model.pretrained`` for torchvision's video models: a local state dict file or a weights name.

- a file: a torchvision state dict of that arch (``torch.save(model.state_dict())``, also
  wrapped in ``state_dict``/``model`` or with ``module.`` prefixes, or .safetensors);
- a weights name of the arch's enum (``KINETICS400_V1``, ``DEFAULT``, or the full
  ``R3D_18_Weights.KINETICS400_V1``): read from torch hub's cache, else downloaded through
  torchvision's own weights API (``Weights.get_state_dict``); when the host cannot be reached
  it is a :class:`~hpnet.cli.UserError` naming the file to download and the key to set.

The tensors are loaded into the wrapped torchvision module; its classifier (``fc``, ``head``,
``classifier``) is not part of the backbone, so those tensors are reported unused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from hpnet.cli import UserError
from hpnet.models.tv_video import TorchvisionVideo
from hpnet.models.weights import PretrainedReport
from hpnet.text.weights import probe_host, read_weights_file

KEY = "model.pretrained"
_NAME = re.compile(r"([A-Za-z0-9]+_Weights\.)?[A-Z][A-Z0-9_]*")  # KINETICS400_V1, DEFAULT


def load_tv_weights(backbone: TorchvisionVideo, pretrained: str) -> PretrainedReport:
    """Load ``pretrained`` (a file or a weights name, see the module) into ``backbone``."""
    path = Path(pretrained).expanduser()
    if path.is_file():
        state, _ = read_weights_file(path, KEY, what="torchvision weights")
        return load_tv_state(backbone, state, str(path))
    if _NAME.fullmatch(pretrained):
        weights = weights_entry(backbone.arch, pretrained)
        return load_tv_state(backbone, fetch_state_dict(backbone.arch, weights), weights.url)
    raise UserError(
        f"torchvision weights not found: {path} ({KEY}; set it to a state dict file of "
        f"model.arch={backbone.arch}, a weights name such as KINETICS400_V1, or '' for random)"
    )


def weights_entry(arch: str, name: str) -> Any:
    """The ``torchvision.models.WeightsEnum`` member ``name`` (short or full) of ``arch``."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    prefix, _, short = name.rpartition(".")
    if prefix and prefix != enum.__name__:
        raise UserError(f"{KEY}={name} is not one of model.arch={arch}'s {enum.__name__}")
    try:
        return enum[short]
    except KeyError:
        names = ", ".join(["DEFAULT", *(w.name for w in enum)])
        raise UserError(
            f"{KEY}={name}: torchvision has no such weights for model.arch={arch}; "
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
    backbone: TorchvisionVideo, state: dict[str, torch.Tensor], path: str
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
    if mismatched or not loaded:
        problem = "; ".join(mismatched[:3]) or "none of its tensors is one of the model's"
        raise UserError(
            f"weights {path} ({KEY}) do not fit torchvision's {backbone.arch}: {problem} "
            f"(set model.arch to the model the file was saved from)"
        )
    result = backbone.model.load_state_dict(state, strict=False)
    return PretrainedReport(
        path,
        "torchvision",
        loaded=loaded,
        missing=list(result.missing_keys),
        unexpected=list(result.unexpected_keys),
    )
