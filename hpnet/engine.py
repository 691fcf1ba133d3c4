"""The training and evaluation loops, free of set-up: they take built parts and return numbers.

A model here maps ``(video float (B,T,3,S,S), joints (B,T,P,K,3) | None)`` to a dict with
``"logits" (B,C)`` and optionally ``"aux_logits" (B,C)`` (the pose stream's own prediction).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from hpnet.cli import UserError
from hpnet.data.transforms import ClipTransform


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite; training stops instead of corrupting the weights."""


@dataclass
class LossConfig:
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    aux_weight: float = 0.0  # weight of the auxiliary pose-stream loss
    class_weights: torch.Tensor | None = None  # (C,) per-class loss weights (balance=loss)


def classification_loss(out: dict[str, torch.Tensor], labels: torch.Tensor, cfg: LossConfig):
    """Cross-entropy on ``logits`` plus ``aux_weight`` x cross-entropy on ``aux_logits``."""
    w = cfg.class_weights
    loss = F.cross_entropy(
        out["logits"].float(), labels, weight=w, label_smoothing=cfg.label_smoothing
    )
    if cfg.aux_weight > 0 and out.get("aux_logits") is not None:
        aux = F.cross_entropy(
            out["aux_logits"].float(), labels, weight=w, label_smoothing=cfg.label_smoothing
        )
        loss = loss + cfg.aux_weight * aux
    return loss


def _to_device(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, ...]:
    video = batch["video"].to(device, non_blocking=True)
    joints = batch["joints"].to(device, non_blocking=True)
    labels = batch["label"].to(device, non_blocking=True)
    return video, joints, labels


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    *,
    transform: ClipTransform,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    loss_cfg: LossConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    epoch: int,
    accum_steps: int = 1,
    clip_grad: float = 0.0,
    max_steps: int = 0,
    generator: torch.Generator | None = None,
    use_pose: bool = True,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns mean loss, accuracy, clips/s and skipped videos."""
    model.train()
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    if max_steps:
        total = min(total or max_steps, max_steps)
    bar = tqdm(loader, total=total, desc=f"epoch {epoch}", disable=not progress, mininterval=1.0)
    loss_sum = correct = seen = skipped = 0.0
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    micro = steps = 0
    for micro, batch in enumerate(bar):
        if max_steps and micro >= max_steps:
            break
        skipped += batch.get("skipped", 0)
        if batch["label"].numel() == 0:
            continue  # every clip in this batch failed to decode (counted above)
        video, joints, labels = _to_device(batch, device)
        video, joints = transform.train(video, joints if use_pose else None, generator)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)):
            out = model(video, joints)
        loss = classification_loss(out, labels, loss_cfg)
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"loss is {value} at epoch {epoch}, step {micro}: stopping before the weights "
                "are corrupted (lower train.lr, raise train.warmup_epochs, or use train.amp=bf16; "
                "resume from last.pt with train.resume=auto)"
            )
        scaled = loss / accum_steps
        (scaler.scale(scaled) if scaler else scaled).backward()
        if (micro + 1) % accum_steps == 0:
            _optimizer_step(model, optimizer, scaler, clip_grad)
            scheduler.step()
            steps += 1
            if on_step:
                on_step(steps)
        n = labels.numel()
        loss_sum += value * n
        correct += (out["logits"].argmax(1) == labels).sum().item()
        seen += n
        if progress and micro % 5 == 0:
            elapsed = time.perf_counter() - start
            bar.set_postfix(
                loss=f"{loss_sum / seen:.3f}",
                lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                clips_s=f"{seen / elapsed:.1f}",
            )
    if (micro + 1) % accum_steps != 0 and seen:  # flush a partial accumulation at epoch end
        _optimizer_step(model, optimizer, scaler, clip_grad)
        scheduler.step()
        steps += 1
    bar.close()
    elapsed = time.perf_counter() - start
    return {
        "loss": loss_sum / max(seen, 1),
        "acc": correct / max(seen, 1),
        "clips": seen,
        "steps": steps,
        "clips_per_s": seen / max(elapsed, 1e-9),
        "skipped": skipped,
        "time_s": elapsed,
    }


def _optimizer_step(model, optimizer, scaler, clip_grad: float) -> None:
    if scaler is not None:
        scaler.unscale_(optimizer)
    if clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def view_probs(
    model: nn.Module,
    video: torch.Tensor,
    joints: torch.Tensor | None,
    *,
    transform: ClipTransform,
    amp_dtype: torch.dtype | None,
    crops: int = 1,
) -> torch.Tensor:
    """Test crops + model on uint8 ``video (B,V,T,3,H,W)``, joints ``(B,V,T,P,K,3)`` | None:
    class probabilities ``(B, C)``, the softmax averaged over V x ``crops`` views."""
    video, joints = transform.test(video, joints, crops=crops)
    b, v = video.shape[:2]
    flat_joints = joints.flatten(0, 1) if joints is not None else None
    device_type = video.device.type
    with torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)):
        out = model(video.flatten(0, 1), flat_joints)
    return out["logits"].float().softmax(-1).view(b, v, -1).mean(1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    *,
    transform: ClipTransform,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    crops: int = 1,
    use_pose: bool = True,
    progress: bool = True,
    max_steps: int = 0,
) -> dict[str, Any]:
    """Multi-view test: softmax averaged over temporal views x spatial crops per video.

    The loader yields test batches with ``video (B,V,T,3,H,W)`` and ``joints (B,V,T,P,K,3)``.
    Returns ``probs (N,C)``, ``labels (N,)``, ``indices (N,)`` (dataset indices, for merging
    across processes), ``views`` (V x crops) and ``skipped``.
    """
    model.eval()
    probs, labels, indices = [], [], []
    skipped = 0
    views = 0
    bar = tqdm(loader, desc="eval", disable=not progress, mininterval=1.0, leave=False)
    for step, batch in enumerate(bar):
        if max_steps and step >= max_steps:
            break
        skipped += batch.get("skipped", 0)
        if batch["label"].numel() == 0:
            continue
        video, joints, y = _to_device(batch, device)
        p = view_probs(
            model,
            video,
            joints if use_pose else None,
            transform=transform,
            amp_dtype=amp_dtype,
            crops=crops,
        )
        views = video.shape[1] * crops
        probs.append(p.cpu())
        labels.append(y.cpu())
        indices.append(batch["index"].cpu())
    bar.close()
    if not probs:
        return {
            "probs": torch.zeros(0, 0),
            "labels": torch.zeros(0, dtype=torch.long),
            "indices": torch.zeros(0, dtype=torch.long),
            "views": views,
            "skipped": skipped,
        }
    return {
        "probs": torch.cat(probs),
        "labels": torch.cat(labels),
        "indices": torch.cat(indices),
        "views": views,
        "skipped": skipped,
    }
