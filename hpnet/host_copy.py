"""Host-to-device copies that never make the host wait for the device.

A plain ``cpu_tensor.to("cuda")`` copies from pageable memory and then synchronises the stream:
the host stops until every kernel queued before it has run, so the queue the host builds ahead
of the GPU drains, and a step made of small kernels then runs at the host's issuing pace. The
training step's small CPU-drawn tensors (crop boxes, flips, colour factors, blur kernels,
VideoMAE's masks) go through :func:`to_device` instead: pinned memory and ``non_blocking``.

    boxes = to_device(params.boxes, video.device, torch.float32)  # (B, 4), no host wait
    std = constant([0.26, 0.26, 0.27], video.device, video.dtype)  # (3,)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["constant", "to_device"]


def to_device(
    tensor: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``tensor.to(device, dtype)`` (same shape); a CPU tensor bound for CUDA is cast on the
    CPU, pinned and copied with ``non_blocking=True`` (the caching host allocator keeps the
    pinned block alive until the copy has run, so the source may be dropped at once)."""
    device = torch.device(device)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device, dtype)
    if dtype is not None:
        tensor = tensor.to(dtype)
    return tensor.pin_memory().to(device, non_blocking=True)


def constant(
    values: Sequence[float], device: torch.device | str, dtype: torch.dtype
) -> torch.Tensor:
    """``torch.tensor(values)`` of ``dtype`` on ``device``, copied as :func:`to_device` does
    (``torch.as_tensor(values, device="cuda")`` is a synchronising copy)."""
    return to_device(torch.tensor(values, dtype=dtype), device)
