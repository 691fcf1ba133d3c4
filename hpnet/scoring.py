"""The test loop: clips -> class probabilities averaged over temporal views x spatial crops.

:func:`view_probs` scores a batch of clips of ``V`` views (the test crops applied here);
:func:`evaluate` runs it over a test loader (``hpnet.evaluate``, the epoch-end tests of
``hpnet.train``); ``predict`` and the timeline call :func:`view_probs` on decoded videos.
A model maps ``(video float (B,T,3,S,S), joints (B,T,P,K,3) | None)`` to ``{"logits": (B,C)}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from hpnet.cli import progress_enabled
from hpnet.data.eval_crops import distinct_crop_count
from hpnet.data.transforms import ClipTransform


def batch_to_device(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, ...]:
    """A loader batch's ``video``, ``joints`` and ``label`` on ``device`` (non-blocking)."""
    video = batch["video"].to(device, non_blocking=True)
    joints = batch["joints"].to(device, non_blocking=True)
    labels = batch["label"].to(device, non_blocking=True)
    return video, joints, labels


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
    class probabilities ``(B, C)``, the softmax averaged over V x the distinct crops (``crops``,
    or 1 on a square canvas)."""
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
    bar = tqdm(
        loader, desc="eval", disable=not progress_enabled(progress), mininterval=1.0, leave=False
    )
    for step, batch in enumerate(bar):
        if max_steps and step >= max_steps:
            break
        skipped += batch.get("skipped", 0)
        if batch["label"].numel() == 0:
            continue
        video, joints, _ = batch_to_device(batch, device)  # (labels: the host copy, below)
        p = view_probs(
            model,
            video,
            joints if use_pose else None,
            transform=transform,
            amp_dtype=amp_dtype,
            crops=crops,
        )
        views = video.shape[1] * distinct_crop_count(*video.shape[-2:], transform.size, crops)
        probs.append(p)  # on the device: read once at the end, not a sync per batch
        labels.append(batch["label"])  # (the host copy the batch came with)
        indices.append(batch["index"])
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
        "probs": torch.cat(probs).cpu(),
        "labels": torch.cat(labels).cpu(),
        "indices": torch.cat(indices).cpu(),
        "views": views,
        "skipped": skipped,
    }
