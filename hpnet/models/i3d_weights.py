"""``model.pretrained`` for ``i3d`` / ``nonlocal``: a 2D ResNet-50 file inflated, or a 3D file.

- a 2D torchvision or timm ResNet-50 state dict (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
  ``fc``; also wrapped in ``state_dict``/``model``, with ``module.`` prefixes, or .safetensors):
  each 2D kernel ``(O, I, kh, kw)`` becomes ``(O, I, t, kh, kw)``, repeated over the model's
  temporal kernel length ``t`` and divided by ``t`` (Carreira & Zisserman's inflation: a video
  of one repeated frame then gives the 2D network's features of that frame, away from the
  clip's first and last frames, where the temporal zero padding shows); batch norms are
  copied; ``fc`` is reported unused and the non-local blocks new;
- torchvision's ResNet-50 weights by name (``IMAGENET1K_V2``, ``IMAGENET1K_V1``, ``DEFAULT``),
  from torch hub's cache or downloaded (:func:`~hpnet.models.tv_video_weights.fetch_state_dict`),
  inflated as a file;
- a state dict of this module (an ``i3d`` or ``nonlocal`` backbone), loaded as it is; in an
  hpnet checkpoint (``RUN/last.pt`` of such an arch) its ``backbone.`` tensors.

A file whose tensors have other shapes, that fills nothing, or that is a ResNet of another
depth (a ResNet-101's first blocks fit a ResNet-50's), is a UserError naming the file and
``model.arch``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hpnet.cli import UserError, missing
from hpnet.models.i3d import I3D
from hpnet.models.tv_video_weights import WEIGHTS_NAME, fetch_state_dict, weights_entry
from hpnet.models.weights import PretrainedReport, refuse_few, refuse_other_depth
from hpnet.text.weights import read_weights_file

KEY = "model.pretrained"


def inflate_kernel(kernel: torch.Tensor, frames: int) -> torch.Tensor:
    """A 2D kernel ``(O, I, kh, kw)`` -> ``(O, I, frames, kh, kw)``, repeated / ``frames``."""
    return kernel.unsqueeze(2).repeat(1, 1, frames, 1, 1) / frames


def fit_state(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """``(tensors to load, names inflated, shape mismatches)`` of a file ``state`` for a model
    whose state dict is ``own``: same shape as is, a 2D kernel of a 3D one inflated."""
    fitted: dict[str, torch.Tensor] = {}
    inflated: list[str] = []
    mismatched: list[str] = []
    for name, value in state.items():
        if name not in own:
            continue
        target = own[name].shape
        if value.shape == target:
            fitted[name] = value
        elif value.ndim == 4 and len(target) == 5 and value.shape == target[:2] + target[3:]:
            fitted[name] = inflate_kernel(value, target[2])
            inflated.append(name)
        else:
            mismatched.append(f"{name} is {tuple(value.shape)} there, {tuple(target)} here")
    return fitted, inflated, mismatched


def load_i3d_weights(backbone: I3D, pretrained: str) -> PretrainedReport:
    """Load the file ``pretrained`` (see the module) into ``backbone``; what was used."""
    path = Path(pretrained).expanduser()
    source = str(path)  # (the file, or the URL of torchvision's weights)
    if path.is_file():
        state, _ = read_weights_file(path, KEY, what="ResNet weights")
    elif WEIGHTS_NAME.fullmatch(pretrained):  # torchvision's ResNet-50 weights, inflated
        weights = weights_entry(backbone.arch, pretrained, "resnet50")
        state, source = fetch_state_dict(backbone.arch, weights), weights.url
    else:
        from torchvision.models import ResNet50_Weights

        url = ResNet50_Weights.IMAGENET1K_V1.url  # (the baseline configs' file)
        raise UserError(
            f"model.arch={backbone.arch} weights {missing(path)}: {path} ({KEY}; download "
            f"{url} and set {KEY}=/path/to/{url.rsplit('/', 1)[1]}, or set it to "
            "torchvision's name IMAGENET1K_V1 / IMAGENET1K_V2 (fetched into torch's cache), "
            f"to a state dict file of model.arch={backbone.arch}, or '' for random)"
        )
    if any(k.startswith("backbone.") for k in state):  # an hpnet checkpoint: its backbone
        state = {
            k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
        }
    own = backbone.state_dict()
    fitted, inflated, mismatched = fit_state(own, state)
    if mismatched or not fitted:
        problem = "; ".join(mismatched[:3]) or "none of its tensors is one of the model's"
        raise UserError(
            f"weights {source} ({KEY}) do not fit model.arch={backbone.arch} (ResNet-50 inflated "
            f"to 3D): {problem} (set {KEY} to a 2D ResNet-50 or {backbone.arch} state dict)"
        )
    fix = f"model.arch={backbone.arch} inflates a ResNet-50"
    refuse_few(list(fitted), own, source, f"model.arch={backbone.arch}", fix)
    refuse_other_depth(own, state, source, fix)  # same shapes, other block counts
    result = backbone.load_state_dict(fitted, strict=False)
    return PretrainedReport(
        source,
        "2D ResNet-50" if inflated else backbone.arch,
        loaded=list(fitted),
        missing=list(result.missing_keys),
        unexpected=[k for k in state if k not in own],
        inflated=inflated,
    )
