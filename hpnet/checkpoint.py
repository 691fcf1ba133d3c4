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
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpnet.atomic import torch_save, write_atomic
from hpnet.cli import UserError, error_reason

FORMAT_VERSION = 1
OUT_DIR_OPTION = "train.out_dir=DIR"  # how a user puts a run's files elsewhere (in messages)
REQUIRED_ENTRIES = ("config", "model")  # what every run writes (hpnet.train and hpnet.pretrain)
USE_RUN_CHECKPOINT = "use the last.pt or best.pt that hpnet.train wrote"
# hpnet.export's file suffixes (its FORMATS; not imported: hpnet.export imports hpnet.config)
EXPORTED_SUFFIXES = (".pt2", ".onnx")
NOT_A_TORCH_FILE = "empty, truncated or not a PyTorch checkpoint file"
NEWER_TORCH = "written by a newer PyTorch than this one: upgrade torch to read it"
HOLDS_OBJECTS = (
    "it holds Python objects other than tensors and plain values, which hpnet never unpickles"
)
# What torch.load raises on an empty, truncated or foreign file (a text file: KeyError, ...)
UNREADABLE_ERRORS = (EOFError, KeyError, IndexError, pickle.UnpicklingError, zipfile.BadZipFile)


def atomic_save(obj: Any, path: str | Path, *, folder_option: str = OUT_DIR_OPTION) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, then rename over ``path``.

    A crash or a failed write leaves the previous file untouched and no temp file; a failed
    write raises :class:`hpnet.atomic.WriteError` (a ``UserError``) naming the file, the OS
    reason and the fix (``folder_option``: how to choose another folder). torch's own save
    (:func:`hpnet.atomic.torch_save`), whatever another library made of ``torch.save``.
    """
    write_atomic(path, lambda f: torch_save(obj, f), what="checkpoint", folder_option=folder_option)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by hpnet, with ``weights_only=True`` (no arbitrary unpickling).

    Anything else (a folder, an exported model, a file torch cannot read, another program's
    checkpoint or state dict) is a :class:`UserError` that names the file and the fix.
    """
    path = Path(path)
    if path.is_dir():  # a run folder
        raise UserError(f"{path} is a folder: pass {path / 'best.pt'} or {path / 'last.pt'}")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if is_exported_model(path):
        raise UserError(
            f"{path} is an exported model: this command needs the last.pt/best.pt it was "
            "exported from"
        )
    if is_torchscript_archive(path):  # (torch.load would warn, then advise weights_only=False)
        raise UserError(
            f"{path} is a TorchScript archive (as OpenAI released CLIP), not a checkpoint "
            f"written by hpnet.train: give it as model.pretrained or text.pretrained, or "
            f"{USE_RUN_CHECKPOINT}"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        reason = load_error_reason(err, path)
        fix = "" if reason == NEWER_TORCH else f" ({USE_RUN_CHECKPOINT})"  # (it may be one)
        raise UserError(f"cannot load checkpoint {path}: {reason}{fix}") from err
    if not isinstance(ckpt, dict):  # a tensor, a list, ... saved with torch.save
        raise UserError(
            f"{path} is not a checkpoint written by hpnet.train (it holds a "
            f"{type(ckpt).__name__}, not a dict): {USE_RUN_CHECKPOINT}"
        )
    fmt = ckpt.get("format")
    if isinstance(fmt, int) and fmt > FORMAT_VERSION:  # its layout may mean something else
        raise UserError(
            f"{path} was written by a newer hpnet (checkpoint format {fmt}; this one reads "
            f"format {FORMAT_VERSION}): upgrade hpnet (pip install -U hpnet) to load it"
        )
    for entry in REQUIRED_ENTRIES:  # a bare state dict, or another program's checkpoint
        if not isinstance(ckpt.get(entry), dict):
            raise UserError(
                f"{path} is not a checkpoint written by hpnet.train (no {entry!r} entry): "
                f"{USE_RUN_CHECKPOINT}"
            )
    return ckpt


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (how OpenAI released its CLIP weights)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def is_exported_model(path: str | Path) -> bool:
    """``path`` is named as a file of ``python -m hpnet.export`` (``.pt2``/``.onnx``, any case)."""
    return Path(path).suffix.lower() in EXPORTED_SUFFIXES


def load_error_reason(err: BaseException, path: str | Path | None = None) -> str:
    """A short, one-line reason for ``err``, raised by ``torch.load`` (or another weights
    reader) on a file: :data:`NOT_A_TORCH_FILE` for an unreadable file, :data:`HOLDS_OBJECTS`
    when ``weights_only`` refused it, else ``Type: first line``. ``path``: the file, when it
    was given to ``torch.load`` (any error on what is neither a zip archive nor a pickle
    stream means it is no torch.save file)."""
    text = str(err)
    torch_file = path is None or _looks_like_torch_save(Path(path))  # a text file may unpickle
    if isinstance(err, pickle.UnpicklingError) and "weights only" in text.lower() and torch_file:
        return HOLDS_OBJECTS
    if "maximum supported version" in text:  # the archive's format version is newer
        return NEWER_TORCH
    if (
        not torch_file
        or isinstance(err, UNREADABLE_ERRORS)
        or "PytorchStreamReader" in text  # torch's zip reader: a truncated or foreign archive
    ):
        return NOT_A_TORCH_FILE
    return error_reason(err)


def _looks_like_torch_save(path: Path) -> bool:
    """A zip archive (torch.save's format) or a pickle stream (its legacy format); True when
    the file cannot be read (the error itself says more)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return True
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
