"""Which torch device a setting names: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

import torch

from hpnet.cli import UserError


def pick_device(name: str, option: str = "train.device") -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` / ``cuda:N`` without that GPU is a
    one-line :class:`UserError` naming ``option``, the setting that asked for it (e.g.
    ``train.device``, ``pose.device``, the API's ``device``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"{option}={name} is not a device: auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            seen = f"only {count} CUDA GPUs are visible" if count else "no CUDA GPU is visible"
            raise UserError(f"{option}={name} but {seen} (use {option}=auto or cpu)")
    return device
