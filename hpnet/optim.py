"""AdamW with parameter groups and a per-step cosine schedule with linear warm-up.

Groups: (new | pretrained) x (decay | no decay), and with layer-wise learning-rate decay one
pretrained group per depth. No weight decay on norms, biases, embeddings, tokens and anything the
model lists in ``no_weight_decay()``. Pretrained parameters are the names the model lists in
``pretrained_names`` (what its weight file filled), else those starting with one of its
``pretrained_prefixes``; they peak at ``backbone_lr`` times ``layer_decay ** (depth - layer)``
(BEiT / VideoMAE fine-tuning), where the model's ``layer_id(name)`` gives a parameter's layer
(0 = embeddings, i + 1 = block i) and ``num_layers`` its depth; parts new to the weights (heads,
FPM, SMIF, LMI) peak at ``lr``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def _pretrained_test(model: nn.Module) -> Callable[[str], bool]:
    names = getattr(model, "pretrained_names", None)
    if names:
        return set(names).__contains__
    prefixes = tuple(getattr(model, "pretrained_prefixes", ()))
    return lambda name: bool(prefixes) and name.startswith(prefixes)


def layer_scales(model: nn.Module, layer_decay: float) -> Callable[[str], tuple[int, float]]:
    """``name -> (layer, lr scale)`` for pretrained parameters; scale 1 without a decay."""
    depth = int(getattr(model, "num_layers", 0))
    layer_id = getattr(model, "layer_id", None)
    if layer_decay >= 1.0 or layer_id is None or depth == 0:
        return lambda name: (depth + 1, 1.0)

    def scale(name: str) -> tuple[int, float]:
        layer = min(int(layer_id(name)), depth + 1)
        return layer, layer_decay ** (depth + 1 - layer)

    return scale


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    backbone_lr: float,
    weight_decay: float,
    layer_decay: float = 1.0,
) -> list[dict]:
    """AdamW parameter groups; each group carries its peak ``lr`` and a ``name`` for logging."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    is_pretrained = _pretrained_test(model)
    scale_of = layer_scales(model, layer_decay)
    groups: dict[tuple[bool, bool, int], tuple[float, list[nn.Parameter]]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name in skip or name.endswith(".bias") or "pos_embed" in name
        pretrained = is_pretrained(name)
        layer, scale = scale_of(name) if pretrained else (-1, 1.0)
        groups.setdefault((pretrained, no_decay, layer), (scale, []))[1].append(p)
    out = []
    for (pretrained, no_decay, layer), (scale, params) in sorted(groups.items()):
        name = ("pretrained" if pretrained else "new") + ("/no_decay" if no_decay else "/decay")
        out.append(
            {
                "params": params,
                "lr": (backbone_lr or lr) * scale if pretrained else lr,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": name + (f"/layer{layer}" if pretrained and layer_decay < 1.0 else ""),
            }
        )
    return out


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    backbone_lr: float,
    weight_decay: float,
    layer_decay: float = 1.0,
    fused: bool = False,
) -> torch.optim.AdamW:
    groups = param_groups(
        model, lr=lr, backbone_lr=backbone_lr, weight_decay=weight_decay, layer_decay=layer_decay
    )
    kwargs = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, betas=(0.9, 0.999), **kwargs)


def cosine_schedule(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int, min_lr: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: linear warm-up from ~0 to each group's peak, then cosine to ``min_lr``."""
    peaks = [g["lr"] for g in optimizer.param_groups]

    def factor(peak: float):
        floor = min(min_lr / peak, 1.0) if peak > 0 else 0.0

        def f(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / (warmup_steps + 1)
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            progress = min(progress, 1.0)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return f

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(p) for p in peaks])
