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
    pinned block alive until the copy has run, so the source may be dropped at once). An
    expanded tensor (stride 0: ``box.expand(N, 4)``) is made contiguous first: pinning copies
    into the source's strides, which a tensor whose elements share memory cannot take."""
    device = torch.device(device)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device, dtype)
    if dtype is not None:
        tensor = tensor.to(dtype)
    return tensor.contiguous().pin_memory().to(device, non_blocking=True)


_CONSTANTS: dict[tuple, torch.Tensor] = {}  # (values, device, dtype) -> tensor


def constant(
    values: Sequence[float] | Sequence[Sequence[float]], device: torch.device | str,
    dtype: torch.dtype,
) -> torch.Tensor:  # fmt: skip
    """``torch.tensor(values)`` of ``dtype`` on ``device``, made once per (values, device,
    dtype) and copied as :func:`to_device` does (``torch.as_tensor(values, device="cuda")`` is
    a synchronising copy). Later calls return the same tensor: read it, never write to it.
    Made outside inference mode, so a training step may use what a prediction made first."""
    device = torch.device(device)
    key = (_frozen(values), device, dtype)
    found = _CONSTANTS.get(key)
    if found is None:
        with torch.inference_mode(False):
            found = to_device(torch.tensor(values, dtype=dtype), device)
        _CONSTANTS[key] = found
    return found


def _frozen(values: object) -> object:
    """Nested sequences of numbers -> nested tuples (a dict key)."""
    if isinstance(values, (list, tuple)):
        return tuple(_frozen(v) for v in values)
    return float(values)  # type: ignore[arg-type]
