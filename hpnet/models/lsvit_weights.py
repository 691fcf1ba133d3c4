"""Load a local CLIP (open_clip / OpenAI) or timm ViT checkpoint into an :class:`LSViT`.

The weight filters of :mod:`hpnet.models.lsvit` (timm keeps them in vision_transformer.py; the
loader depends on the model, the model never on the loader): read
the file (torch.save, OpenAI's TorchScript archives, .safetensors), unwrap it and strip the
``module.`` / ``visual.`` prefixes, rename CLIP's visual-tower keys to LSViT's, resize the position
embedding to the model's grid, and report what was loaded (:class:`PretrainedReport`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hpnet.checkpoint import is_torchscript_archive
from hpnet.cli import UserError, missing
from hpnet.models.lsvit import Activation, LSViT, resize_temporal_embed
from hpnet.models.weights import PretrainedReport
from hpnet.text.activation import ambiguous_activation_error, quick_gelu_from_provenance
from hpnet.text.weights import read_weights_file

_CLIP_SWAPS = (  # open_clip visual tower -> LSViT's names (order matters), as in timm
    ("conv1", "patch_embed.proj"),
    ("class_embedding", "cls_token"),
    ("positional_embedding", "pos_embed"),
    ("transformer.resblocks.", "blocks."),
    ("ln_pre", "norm_pre"),
    ("ln_post", "norm"),
    ("ln_", "norm"),
    ("in_proj_", "qkv."),
    ("out_proj", "proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
)


def _convert_openai_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip visual-tower keys (``visual.`` prefix stripped) -> LSViT keys."""
    out = {}
    for key, value in state.items():
        for old, new in _CLIP_SWAPS:
            key = key.replace(old, new)
        if key == "proj":  # (D, E) image projection -> a linear head without bias
            out["head.weight"] = value.t()
            out["head.bias"] = value.new_zeros(value.shape[1])
            continue
        if key == "cls_token":
            value = value.reshape(1, 1, -1)
        elif key == "pos_embed":
            value = value.unsqueeze(0)
        elif key == "patch_embed.proj.weight":  # CLIP's conv1 has no bias
            out["patch_embed.proj.bias"] = value.new_zeros(value.shape[0])
        out[key] = value
    return out


def _read(path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    if not path.is_file():
        raise UserError(f"pretrained backbone weights {missing(path)}: {path} ({_FIX})")
    return read_weights_file(path, "model.pretrained", what="pretrained backbone weights")


_FIX = "set model.pretrained to an open_clip tag, a CLIP or timm ViT checkpoint, or '' for random"


def convert_backbone_state(
    state: dict[str, torch.Tensor], path: str | Path
) -> tuple[dict[str, torch.Tensor], str]:
    """A checkpoint's state dict (all towers) -> (LSViT's tensors, "clip" | "timm")."""
    if any(k.startswith("visual.") for k in state):  # full CLIP: keep the image tower
        visual = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
        return _convert_openai_clip(visual), "clip"
    if "conv1.weight" in state and "class_embedding" in state:  # a bare CLIP visual tower
        return _convert_openai_clip(state), "clip"
    if "patch_embed.proj.weight" in state:
        out = dict(state)
        if "patch_embed.proj.bias" not in out:  # timm's CLIP ViTs (pre-norm): no bias, as CLIP
            out["patch_embed.proj.bias"] = out["patch_embed.proj.weight"].new_zeros(
                out["patch_embed.proj.weight"].shape[0]
            )
        return out, "timm"
    raise UserError(
        f"{path} is not a CLIP or timm ViT checkpoint: expected 'visual.conv1.weight' "
        f"or 'patch_embed.proj.weight' among its keys ({_FIX})"
    )


def resize_pos_embed(pos_embed: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """(1, 1 + n*n, D) square-grid position embedding -> (1, 1 + gh*gw, D), bicubic (as timm)."""
    prefix, grid = pos_embed[:, :1], pos_embed[:, 1:]
    side = math.isqrt(grid.shape[1])
    grid = grid.float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=grid_size, mode="bicubic", antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, pos_embed.shape[-1]).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


def _clip_activation(
    path: str, openai: bool, clip_quick_gelu: Callable[[], bool] | None
) -> Activation:
    """QuickGELU or GELU for CLIP weights: asked of ``clip_quick_gelu`` when given, else
    OpenAI's files are QuickGELU and others tell by their provenance; refused if unknown."""
    if clip_quick_gelu is not None:
        known: bool | None = clip_quick_gelu()
    else:
        known = True if openai else quick_gelu_from_provenance(path)
    if known is None:
        raise ambiguous_activation_error(path, "model.pretrained")
    return "quick_gelu" if known else "gelu"


def _fit_shapes(
    state: dict[str, torch.Tensor],
    own: dict[str, torch.Tensor],
    grid_size: tuple[int, int],
    report: PretrainedReport,
) -> None:
    """Make ``state`` loadable into a model whose state dict is ``own``, in place: the position
    embedding resized to ``grid_size``, a classifier of another shape dropped (both noted in
    ``report``); any other shape that differs is a :class:`UserError` naming the fix."""
    mismatched = []
    for key, value in list(state.items()):
        there = tuple(value.shape)  # (as the file has it: said when it does not fit)
        if key == "pos_embed" and key in own and value.shape != own[key].shape:
            state[key] = value = resize_pos_embed(value, grid_size)
            report.resized.append(key)
        if key not in own or value.shape == own[key].shape:
            continue
        if key.startswith("head."):  # a classifier for other classes: not used
            del state[key]
            report.unexpected.append(key)
        else:
            mismatched.append(f"{key} is {there} there, {tuple(own[key].shape)} here")
    if mismatched:
        raise UserError(
            f"pretrained weights {report.path} do not fit the backbone: "
            f"{'; '.join(mismatched[:3])} (set model.size and model.patch_size "
            f"to the checkpoint's, e.g. model.size=base model.patch_size=16)"
        )


def load_pretrained(
    model: LSViT,
    path: str | Path,
    act: Activation | None = None,
    *,
    state: dict[str, torch.Tensor] | None = None,
    clip_quick_gelu: Callable[[], bool] | None = None,
) -> PretrainedReport:
    """Load a local CLIP ViT (open_clip / OpenAI) or timm ViT checkpoint into ``model``.

    The checkpoint decides the parameter-free choices (pre-norm, LayerNorm eps, and the
    activation unless ``act`` is given), so call it before building the optimizer. A CLIP
    (also a timm CLIP ViT, recognised by its pre-norm) gets eps 1e-5 and QuickGELU when the file
    is OpenAI's (``clip_quick_gelu()``, called for CLIP weights only; by default
    :func:`~hpnet.text.activation.quick_gelu_from_provenance`, and a file that does not tell is
    refused: pass ``act``); other timm ViTs get GELU, eps 1e-6. ``state``: the file's state dict
    when the caller already read it (one read for the backbone and the text tower).
    Position embeddings are resized to the model's grid; a CLIP image projection becomes the
    head when ``num_classes`` equals its width (else it is unused). SMIF, LMI and the temporal
    embedding stay at their identity init.
    """
    openai = False
    if state is None:
        state, openai = _read(Path(path).expanduser())
    state, flavour = convert_backbone_state(state, path)
    clip_like = flavour == "clip" or "norm_pre.weight" in state
    if act is None and clip_like:
        act = _clip_activation(str(path), openai, clip_quick_gelu)
    model.set_architecture(
        pre_norm="norm_pre.weight" in state,
        act=act or "gelu",
        norm_eps=1e-5 if clip_like else 1e-6,
    )
    own = model.state_dict()
    report = PretrainedReport(str(path), flavour, activation=model.act)
    _fit_shapes(state, own, model.grid_size, report)
    architecture = {"_extra_state": model.get_extra_state()}  # as set above, not inferred
    result = model.load_state_dict({**state, **architecture}, strict=False)
    report.missing = list(result.missing_keys)
    report.unexpected += list(result.unexpected_keys)
    report.loaded = [k for k in state if k in own]
    return report


# ------------------------------------------------------------- hpnet pretraining checkpoints

PRETRAIN_ENTRY = "pretrain"  # the checkpoint entry that marks a `python -m hpnet.pretrain` run


def read_pretrain_checkpoint(path: str | Path) -> dict | None:
    """The checkpoint at ``path`` when it is an hpnet pretraining run's (``last.pt`` of
    ``python -m hpnet.pretrain``), else None (a tag, a CLIP or timm file, anything else).
    Tensors are memory-mapped: telling costs no read of the weights."""
    ckpt = read_saved_dict(path)
    return ckpt if ckpt is not None and is_pretrain_checkpoint(ckpt) else None


def is_pretrain_checkpoint(ckpt: dict[str, Any]) -> bool:
    """Whether a checkpoint dict is a pretraining run's (its :data:`PRETRAIN_ENTRY`)."""
    return isinstance(ckpt.get(PRETRAIN_ENTRY), dict)


def read_saved_dict(path: str | Path) -> dict[str, Any] | None:
    """The dict that ``torch.save`` wrote at ``path``, tensors memory-mapped (telling what a
    file is costs no read of its weights); None for anything else (no such file, a tag, a
    TorchScript archive, another format)."""
    path = Path(path).expanduser()
    if not path.is_file() or is_torchscript_archive(path):  # (torch.load would warn on one)
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip-format torch.save file
        return None
    return ckpt if isinstance(ckpt, dict) else None


def fit_embeddings(model: nn.Module, state: dict[str, Any], report: PretrainedReport) -> list[str]:
    """Resize in ``state`` (another run's tensors for ``model``) an LS-ViT's position embeddings
    to its grid and its temporal embedding to its frames, as at run time (listed in
    ``report.resized``); returns the tensors of another shape that cannot be (none fit)."""
    own = model.state_dict()
    mismatched = []
    for key, value in list(state.items()):
        if key not in own or not torch.is_tensor(value) or value.shape == own[key].shape:
            continue
        if isinstance(model, LSViT) and key == "pos_embed":
            state[key] = resize_pos_embed(value, model.grid_size)
        elif isinstance(model, LSViT) and key == "temporal_pos_embed":  # (1, T, 1, D)
            state[key] = resize_temporal_embed(value, own[key].shape[1])
        else:
            mismatched.append(f"{key} is {tuple(value.shape)} there, {tuple(own[key].shape)} here")
            continue
        report.resized.append(key)
    return mismatched


LSVIT_SHAPE_KEYS = ("size", "patch_size", "smif_offsets")  # the model keys that shape LS-ViT


def load_pretrain_encoder(
    model: LSViT, path: str | Path, ckpt: dict, model_cfg: Any
) -> PretrainedReport:
    """Load the encoder (``encoder.*``) of a pretraining checkpoint into ``model`` (built for
    ``model_cfg``, the ``model`` config section); the rest (the decoder) is dropped and listed
    as unused. Position embeddings are resized to the model's grid and frames; other
    :data:`LSVIT_SHAPE_KEYS` than the pretraining's are refused."""
    method = ckpt[PRETRAIN_ENTRY].get("method", "?")
    flavour = f"hpnet {method} pretraining (epoch {ckpt.get('epoch')}: encoder; decoder dropped)"
    return load_checkpoint_part(
        model, path, ckpt, prefix="encoder.", flavour=flavour, shape_keys=LSVIT_SHAPE_KEYS,
        said="its encoder does not fit this backbone", had="it was pretrained with",
        model_cfg=model_cfg,
    )  # fmt: skip


def load_checkpoint_part(
    model: nn.Module,
    path: str | Path,
    ckpt: dict[str, Any],
    *,
    prefix: str,
    flavour: str,
    shape_keys: Sequence[str],
    said: str,
    had: str,
    model_cfg: Any,
) -> PretrainedReport:
    """Load the ``prefix`` tensors of hpnet checkpoint ``ckpt`` (a pretraining run's
    ``encoder.``, a training run's ``backbone.``) into ``model``, built for ``model_cfg`` (the
    ``model`` config section), embeddings resized (:func:`fit_embeddings`); the checkpoint's
    other tensors (a decoder, heads) are listed as unused. Refused: other ``shape_keys`` than
    the checkpoint's model config records (``model.smif_offsets=[2,1]`` fits ``[1,2]``'s
    tensors, trained for other frames), a tensor of another shape (``said``, and ``had`` the
    checkpoint's ``shape_keys``), and a checkpoint of which no tensor fits."""
    check_shape_keys(ckpt, model_cfg, shape_keys, path, had)
    weights = ckpt["model"]
    state = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
    report = PretrainedReport(str(path), flavour)
    mismatched = fit_embeddings(model, state, report)
    if mismatched:
        saved = ckpt.get("config", {}).get("model", {})
        shown = " ".join(f"model.{k}={saved[k]}".replace(" ", "") for k in shape_keys if k in saved)
        raise UserError(
            f"model.pretrained={path}: {said}: {'; '.join(mismatched[:3])} ({had} {shown}: set "
            "the same)"
        )
    result = model.load_state_dict(state, strict=False)
    report.missing = list(result.missing_keys)
    # tensors this model has no place for first: the rest of the checkpoint's are expected
    report.unexpected = [*result.unexpected_keys, *(k for k in weights if not k.startswith(prefix))]
    loaded = model.state_dict()  # (with what the architecture loaded made: CLIP's norm_pre)
    report.loaded = [k for k in state if k in loaded and k != "_extra_state"]
    if not report.loaded:
        raise UserError(f"model.pretrained={path}: none of its {prefix[:-1]} tensors fits this one")
    return report


def check_shape_keys(
    ckpt: dict[str, Any], model_cfg: Any, keys: Sequence[str], path: str | Path, had: str
) -> None:
    """Refuse a checkpoint whose model config sets one of ``keys`` (those that shape the
    backbone) otherwise than ``model_cfg`` does, naming both (``had``: "the run had")."""
    saved = ckpt.get("config", {}).get("model", {})
    other = [k for k in keys if k in saved and saved[k] != getattr(model_cfg, k)]
    if not (saved.get("smif", True) and getattr(model_cfg, "smif", True)):
        other = [k for k in other if k != "smif_offsets"]  # (no SMIF weights read or given)
    if other:
        then = " ".join(f"model.{k}={saved[k]}".replace(" ", "") for k in other)
        now = " ".join(f"model.{k}={getattr(model_cfg, k)}".replace(" ", "") for k in other)
        raise UserError(
            f"model.pretrained={path}: its backbone is another shape: {had} {then} (this one "
            f"{now}); set the same"
        )
