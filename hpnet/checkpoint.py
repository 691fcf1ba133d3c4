"""Checkpoints: atomic writes, plain-value contents, and safe loading.

A checkpoint is a dict of tensors and plain Python values only, so it loads with
``torch.load(weights_only=True)``: hpnet never unpickles arbitrary objects.

    {"format": 1, "model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ... | None,
     "epoch": int (epochs completed), "step": int (optimizer steps), "best_top1": float,
     "rng": {...}, "config": plain dict, "classes": [str, ...],
     "label_sets": [[name, [str, ...]], ...] | None, "progress": {...} | None}

``classes`` are the (first) dataset's class names; ``label_sets`` name every dataset of a joint
run (``data.joint``) with its class names, in order (None for one dataset): what evaluate and
predict need to score any of them (:func:`hpnet.models.from_checkpoint.model_from_checkpoint`).
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpnet.atomic import write_atomic
from hpnet.cli import UserError

FORMAT_VERSION = 1
OUT_DIR_OPTION = "train.out_dir=DIR"  # how a user puts a run's files elsewhere (in messages)


def atomic_save(obj: Any, path: str | Path, *, folder_option: str = OUT_DIR_OPTION) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, then rename over ``path``.

    A crash or a failed write leaves the previous file untouched and no temp file; a failed
    write raises :class:`hpnet.atomic.WriteError` (a ``UserError``) naming the file, the OS
    reason and the fix (``folder_option``: how to choose another folder).
    """
    write_atomic(path, lambda f: torch.save(obj, f), what="checkpoint", folder_option=folder_option)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by hpnet, with ``weights_only=True`` (no arbitrary unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused an object: never unpickle it
        if not _looks_like_torch_save(path):  # a text file, an image, ...
            raise UserError(
                f"cannot load checkpoint {path}: not a PyTorch checkpoint file "
                "(use the last.pt or best.pt that hpnet.train wrote)"
            ) from err
        raise UserError(
            f"cannot load checkpoint {path}: it holds Python objects other than tensors and "
            "plain values, which hpnet never unpickles (is it a checkpoint hpnet wrote?)"
        ) from err
    except Exception as err:  # torch raises several types for corrupt or foreign files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise UserError(f"cannot load checkpoint {path}: {type(err).__name__}: {reason}") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UserError(f"{path} is not an hpnet checkpoint (no 'model' entry)")
    fmt = ckpt.get("format")
    if isinstance(fmt, int) and fmt > FORMAT_VERSION:  # its layout may mean something else
        raise UserError(
            f"{path} was written by a newer hpnet (checkpoint format {fmt}; this one reads "
            f"format {FORMAT_VERSION}): upgrade hpnet (pip install -U hpnet) to load it"
        )
    return ckpt


def _looks_like_torch_save(path: Path) -> bool:
    """A zip archive (torch.save's format) or a pickle stream (its legacy format)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as tensors and plain values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s states; CUDA: the current device's only (the run may have
    fewer GPUs now, and each rank owns one; training reseeds every batch anyway)."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    keys = n["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and torch.cuda.current_device() < len(cuda):
        torch.cuda.set_rng_state(cuda[torch.cuda.current_device()].cpu())


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x
