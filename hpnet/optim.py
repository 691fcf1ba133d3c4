"""The optimizer (AdamW, Adam or SGD) over parameter groups, and the per-step lr schedule
(cosine, exponential or step decay after a linear warm-up): ``build_optimizer(model, cfg.train)``,
``build_scheduler(optimizer, cfg.train, steps_per_epoch)``.

Groups: (new | pretrained) x (decay | no decay), and with layer-wise learning-rate decay one
pretrained group per depth. No weight decay on norms, biases, embeddings, tokens and anything the
model lists in ``no_weight_decay()``. Pretrained parameters are the names the model lists in
``pretrained_names`` (what its weight file filled), else those starting with one of its
``pretrained_prefixes``; they peak at ``backbone_lr`` times ``layer_decay ** (depth + 1 -
layer)`` (BEiT / VideoMAE fine-tuning; the decayed schedules end at ``min_lr`` times that same
scale), where the model's ``layer_id(name)`` gives a parameter's layer
(0 = embeddings, i + 1 = block i) and ``num_layers`` its depth; parts new to the weights (heads,
FPM, SMIF, LMI) peak at ``lr``. Parameters under one of the model's ``constant_lr_prefixes``
(SimSiam's predictor) form groups of their own that stay at their peak after the warm-up.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from hpnet.config import TrainConfig

logger = logging.getLogger(__name__)


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
    decay_all: bool = False,
) -> list[dict]:
    """Optimizer parameter groups; each group carries its peak ``lr`` and a ``name`` for logging.
    Norms, biases, embeddings and the model's ``no_weight_decay()`` names get no weight decay
    unless ``decay_all``."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    is_pretrained = _pretrained_test(model)
    scale_of = layer_scales(model, layer_decay)
    constant = tuple(getattr(model, "constant_lr_prefixes", ()))
    groups: dict[tuple[bool, bool, bool, int], tuple[float, list[nn.Parameter]]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name in skip or name.endswith(".bias") or "pos_embed" in name
        no_decay = no_decay and not decay_all
        pretrained = is_pretrained(name)
        layer, scale = scale_of(name) if pretrained else (-1, 1.0)
        fixed = bool(constant) and name.startswith(constant)
        groups.setdefault((fixed, pretrained, no_decay, layer), (scale, []))[1].append(p)
    out = []
    for (fixed, pretrained, no_decay, layer), (scale, params) in sorted(groups.items()):
        name = ("pretrained" if pretrained else "new") + ("/no_decay" if no_decay else "/decay")
        name += f"/layer{layer}" if pretrained and layer_decay < 1.0 else ""
        out.append(
            {
                "params": params,
                "lr": (backbone_lr or lr) * scale if pretrained else lr,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": name + ("/constant_lr" if fixed else ""),
                "constant_lr": fixed,
                "lr_scale": scale,  # its layer's share of the base lr (1 for new parts)
            }
        )
    return out


def batch_scaled(train: TrainConfig, processes: int = 1) -> TrainConfig:
    """``train`` with ``lr`` and ``backbone_lr`` scaled by the run's global batch
    (``batch_size x accum_steps x processes``) over ``train.base_batch``; as it is when that
    is 0."""
    if not train.base_batch:
        return train
    factor = train.batch_size * train.accum_steps * processes / train.base_batch
    return dataclasses.replace(train, lr=train.lr * factor, backbone_lr=train.backbone_lr * factor)


def build_optimizer(
    model: nn.Module, train: TrainConfig | None = None, *, fused: bool = False, **settings: Any
) -> torch.optim.Optimizer:
    """``train.optimizer`` (adamw, adam or sgd) over :func:`param_groups`, each group at its
    peak lr. ``settings`` replace fields of ``train`` (default: :class:`TrainConfig`'s), e.g.
    ``build_optimizer(model, lr=1e-4, weight_decay=0.05)``; ``fused``: the fused CUDA kernels."""
    t = dataclasses.replace(train or TrainConfig(), **settings)
    groups = param_groups(
        model, lr=t.lr, backbone_lr=t.backbone_lr, weight_decay=t.weight_decay,
        layer_decay=t.layer_decay, decay_all=t.decay_all,
    )  # fmt: skip
    pretrained = any(g["name"].startswith("pretrained") for g in groups)
    if (t.backbone_lr or t.layer_decay < 1.0) and not pretrained:
        is_pretrained = _pretrained_test(model)  # (every group "new/...": none trains)
        frozen = any(is_pretrained(name) for name, _ in model.named_parameters())
        logger.warning(
            "train.backbone_lr and train.layer_decay set the pretrained parts' learning rates; "
            "%s, so they change nothing",
            "this model's are frozen (model.freeze_backbone)" if frozen
            else "this model has none (model.pretrained loaded nothing)",
        )  # fmt: skip
    kwargs = {"fused": True} if fused else {}
    if t.optimizer == "adamw":  # decoupled weight decay: p -= lr * wd * p, apart from the step
        return torch.optim.AdamW(groups, betas=tuple(t.betas), **kwargs)
    if t.optimizer == "adam":  # L2: wd * p joins the gradient, so Adam's normaliser scales it
        return torch.optim.Adam(groups, betas=tuple(t.betas), **kwargs)
    if t.optimizer == "sgd":  # heavy ball, torch's form: v = m v + g (+ wd p as L2); p -= lr v
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, **kwargs)
    raise ValueError(f"unknown optimizer {t.optimizer!r} (adamw, adam or sgd)")


DEFAULT_GAMMA = {"exponential": 0.95, "step": 0.1}  # train.lr_gamma=0 means these


def lr_factor(
    step: int,
    *,
    schedule: str,
    steps_per_epoch: int,
    total_steps: int,
    warmup_steps: int,
    floor: float,
    gamma: float,
    step_epochs: int,
) -> float:
    """The multiple of a group's peak lr at optimizer step ``step`` (0-based): linear warm-up
    ``(step + 1) / (warmup_steps + 1)``, then the decay, counted from the end of warm-up and
    never below ``floor`` (min_lr x the group's layer scale / peak): cosine reaching ``floor``
    at ``total_steps``, exponential ``gamma ** (steps since warm-up / steps_per_epoch)``, step
    ``gamma ** k`` after k whole periods of ``step_epochs`` epochs."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    done = step - warmup_steps  # optimizer steps since the peak
    if schedule == "cosine":
        progress = min(done / max(1, total_steps - warmup_steps), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "exponential":
        return max(floor, gamma ** (done / steps_per_epoch))
    if schedule == "step":
        return max(floor, gamma ** (done // (step_epochs * steps_per_epoch)))
    raise ValueError(f"unknown schedule {schedule!r} (cosine, exponential or step)")


def build_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-optimizer-step schedule ``train.schedule`` with ``train.warmup_epochs`` of linear
    warm-up, each group scaled from its own peak (:func:`lr_factor`); call ``step()`` after
    every optimizer step. ``steps_per_epoch``: loader batches per epoch (after train.max_steps);
    a partial accumulation at the end of an epoch steps too, so an epoch has
    ``ceil(steps_per_epoch / train.accum_steps)`` optimizer steps. A group marked
    ``constant_lr`` (:func:`param_groups`) warms up and then stays at its peak. The state is
    just the step count: a resumed scheduler (``load_state_dict``) continues exactly."""
    per_epoch = max(1, -(-steps_per_epoch // train.accum_steps))
    shared = {
        "schedule": train.schedule,
        "steps_per_epoch": per_epoch,
        "total_steps": per_epoch * train.epochs,
        "warmup_steps": round(per_epoch * train.warmup_epochs),
        "gamma": train.lr_gamma or DEFAULT_GAMMA.get(train.schedule, 1.0),
        "step_epochs": train.step_epochs,
    }

    def factor(group: dict) -> Callable[[int], float]:
        peak = group["lr"]  # (the floor: min_lr scaled as the group's layer scales its peak)
        floor = min(train.min_lr * group.get("lr_scale", 1.0) / peak, 1.0) if peak > 0 else 0.0
        if group.get("constant_lr"):
            floor = 1.0  # no decay below the peak; the warm-up still applies
        return lambda step: lr_factor(step, floor=floor, **shared)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(g) for g in optimizer.param_groups])


def clip_in_float64(params: list[nn.Parameter], max_norm: float) -> float:
    """Clip the gradients of ``params`` to norm ``max_norm`` with their norm taken in float64,
    one tensor at a time; returns that norm (inf or nan: gradients not finite themselves, left
    as they are). For finite gradients whose fp32 norm overflows (~1e20 each: BatchNorm over
    the 1x1 map of a tiny clip), which ``clip_grad_norm_`` zeroes (its inf norm)."""
    norms = [torch.linalg.vector_norm(p.grad, dtype=torch.float64) for p in params]
    value = torch.linalg.vector_norm(torch.stack(norms)).item() if norms else 0.0
    if math.isfinite(value):
        scale = min(1.0, max_norm / (value + 1e-6))
        for p in params:
            p.grad.copy_(p.grad.double() * scale)
    return value
