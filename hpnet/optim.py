"""AdamW with parameter groups and a per-step cosine schedule with linear warm-up.

Groups: (new | pretrained) x (decay | no decay). No weight decay on norms, biases, embeddings,
tokens and anything the model lists in ``no_weight_decay()``; pretrained parameters (those whose
names start with one of the model's ``pretrained_prefixes``) get their own learning rate.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    backbone_lr: float,
    weight_decay: float,
) -> list[dict]:
    """AdamW parameter groups; each group carries its peak ``lr`` and a ``name`` for logging."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    pretrained = tuple(getattr(model, "pretrained_prefixes", ()))
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name in skip or name.endswith(".bias") or "pos_embed" in name
        is_pretrained = bool(pretrained) and name.startswith(pretrained)
        groups.setdefault((is_pretrained, no_decay), []).append(p)
    out = []
    for (is_pretrained, no_decay), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "lr": (backbone_lr or lr) if is_pretrained else lr,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": ("pretrained" if is_pretrained else "new")
                + ("/no_decay" if no_decay else "/decay"),
            }
        )
    return out


def build_optimizer(
    model: nn.Module, *, lr: float, backbone_lr: float, weight_decay: float, fused: bool = False
) -> torch.optim.AdamW:
    groups = param_groups(model, lr=lr, backbone_lr=backbone_lr, weight_decay=weight_decay)
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
