"""Interrupting a run at its n-th checkpoint write, and comparing two runs' weights."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import torch


def crash_after_saves(monkeypatch: pytest.MonkeyPatch, module: ModuleType, count: int) -> None:
    """``module.atomic_save`` writes as before, then raises ``KeyboardInterrupt`` after its
    ``count``-th write (a run killed just after a checkpoint); undo with ``monkeypatch.undo``."""
    real = module.atomic_save
    saves: list[Path] = []

    def crash(obj, path):
        real(obj, path)
        saves.append(path)
        if len(saves) == count:
            raise KeyboardInterrupt

    monkeypatch.setattr(module, "atomic_save", crash)


def assert_same_weights(a: Path, b: Path) -> tuple[dict, dict]:
    """The ``last.pt`` files ``a`` and ``b`` hold the same model tensors (to 1e-6); both."""
    first = torch.load(a, weights_only=True)
    second = torch.load(b, weights_only=True)
    for name, tensor in first["model"].items():
        torch.testing.assert_close(second["model"][name], tensor, rtol=0, atol=1e-6, msg=name)
    return first, second
