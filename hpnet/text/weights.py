"""Where the weights of a CLIP tower come from: an open_clip tag, a local file, or random init.

Shared by the frozen text tower (:mod:`hpnet.text.encoder`) and the image tower of zero-shot
classification (:mod:`hpnet.models.clip_video`). ``text.pretrained`` (or ``--pretrained``) is
one of

- an open_clip tag (``openai``): found in open_clip's download caches, else downloaded when the
  host answers; when it cannot be had (``HF_HUB_OFFLINE=1``, no network) the tower is randomly
  initialised after one loud warning (:func:`warn_random_weights`);
- a local ``.pt``/``.bin``/``.safetensors`` file (an open_clip or OpenAI CLIP checkpoint, also
  OpenAI's TorchScript archives); a missing file is a :class:`~hpnet.cli.UserError`;
- ``""``: random init (seed :data:`RANDOM_INIT_SEED`, the same weights in every process).
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from hpnet.cli import UserError

logger = logging.getLogger(__name__)

RANDOM_INIT_SEED = 0  # seed of a randomly initialised tower (same weights everywhere)
PROBE_TIMEOUT_S = 3.0  # how long to wait for the weights host before treating it as offline
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
_WARNED: set[tuple[str, str]] = set()  # (model, tag) pairs already warned about in this process


@dataclass(frozen=True)
class ClipWeights:
    """Where a CLIP tower's weights come from: an open_clip tag, a file, or random init."""

    kind: str  # "tag", "file" or "random"
    source: str = ""  # tag name or absolute file path ("" for random)
    fallback_from: str = ""  # random init only: the tag whose weights could not be had

    def identity(self) -> dict[str, Any]:
        """What the cache key records about the weights (a file by path, size and mtime)."""
        if self.kind == "file":
            stat = os.stat(self.source)
            return {"file": self.source, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        if self.kind == "tag":
            return {"tag": self.source}
        return {"random_seed": RANDOM_INIT_SEED, "tag": self.fallback_from}


def parse_weights(pretrained: str) -> ClipWeights:
    """Classify ``text.pretrained``; a path-like value must name an existing file."""
    if not pretrained:
        return ClipWeights("random")
    path = Path(pretrained).expanduser()
    looks_like_path = (
        "/" in pretrained or os.sep in pretrained or pretrained.startswith(("~", "."))
    ) or pretrained.lower().endswith(_WEIGHT_SUFFIXES)
    if path.is_file():
        return ClipWeights("file", str(path.resolve()))
    if looks_like_path:
        raise UserError(
            f"CLIP weights file not found: {path} (text.pretrained); give an existing "
            "open_clip/CLIP checkpoint, an open_clip tag such as 'openai', or '' for random init"
        )
    return ClipWeights("tag", pretrained)


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (how OpenAI released its CLIP weights)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def clip_model_config(model_name: str) -> dict[str, Any]:
    """open_clip's config of ``model_name`` (``embed_dim``, ``vision_cfg``, ``text_cfg``, ...)."""
    from open_clip.factory import get_model_config, list_models

    config = get_model_config(model_name)
    if config is None:
        import difflib

        close = difflib.get_close_matches(model_name, list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(
            f"unknown open_clip model {model_name!r} (text.model){hint}; "
            "see open_clip.list_models()"
        )
    return config


def resolve_tag(model_name: str, tag: str, download_dir: str | None) -> ClipWeights:
    """The local file of open_clip tag ``tag``; random init (after a warning) when unavailable."""
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    clip_model_config(model_name)  # a clear error for an unknown model before the tag's
    pretrained_cfg = get_pretrained_cfg(model_name, tag)
    if not pretrained_cfg:
        tags = ", ".join(list_pretrained_tags_by_model(model_name)) or "none"
        raise UserError(
            f"text.pretrained={tag!r} is neither an open_clip tag of {model_name} "
            f"(tags: {tags}) nor an existing weights file"
        )
    path, reason = fetch_tag_weights(pretrained_cfg, download_dir)
    if path:
        return ClipWeights("file", str(Path(path).resolve()))
    warn_random_weights(model_name, tag, reason, pretrained_cfg)
    return ClipWeights("random", fallback_from=tag)


def uses_quick_gelu(model_name: str, requested: ClipWeights, weights: ClipWeights) -> bool:
    """Whether the towers were trained with QuickGELU (the model, the tag or OpenAI's archive)."""
    if clip_model_config(model_name).get("quick_gelu", False):
        return True
    if weights.kind == "file" and is_torchscript_archive(weights.source):
        return True  # OpenAI's original release (TorchScript) was trained with QuickGELU
    if requested.kind != "tag":
        return False
    from open_clip.pretrained import get_pretrained_cfg

    return bool(get_pretrained_cfg(model_name, requested.source).get("quick_gelu", False))


def read_clip_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The state dict of a CLIP checkpoint file: open_clip/OpenAI layout, or TorchScript."""
    from open_clip.factory import load_state_dict

    try:
        if is_torchscript_archive(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
                state = torch.jit.load(path, map_location="cpu").state_dict()
            for key in ("input_resolution", "context_length", "vocab_size"):
                state.pop(key, None)
            return state
        return load_state_dict(path, device="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read CLIP weights file {path} (text.pretrained): {err}") from err


def load_tower_state(tower: torch.nn.Module, state: dict[str, Any], path: str, model: str) -> None:
    """``tower.load_state_dict(state)`` with an error naming the file and the keys that differ."""
    try:
        missing, unexpected = tower.load_state_dict(state, strict=False)
        problem = f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        problem = problem if missing or unexpected else ""
    except RuntimeError as err:  # shape mismatch
        problem = str(err).strip().splitlines()[-1].strip()
    if problem:
        raise UserError(
            f"weights file {path} (text.pretrained) does not fit the {type(tower).__name__} of "
            f"open_clip model {model!r} (text.model): {problem}; set text.model to the "
            "architecture the file was saved from"
        )


def fetch_tag_weights(pretrained_cfg: dict[str, Any], download_dir: str | None) -> tuple[str, str]:
    """The local file of an open_clip pretrained config: ``(path, "")`` or ``("", reason)``.

    Looks in the download caches first, then checks the host answers within a few seconds
    before letting open_clip download (its Hugging Face client retries for ~50 s otherwise).
    """
    from open_clip.pretrained import download_pretrained

    if pretrained_cfg.get("file"):
        return pretrained_cfg["file"], ""
    local = _cached_tag_file(pretrained_cfg, download_dir)
    if local:
        return local, ""
    reason = _offline_reason(pretrained_cfg)
    if reason:
        return "", reason
    try:
        path = download_pretrained(pretrained_cfg, cache_dir=download_dir)
    except Exception as err:
        return "", f"download failed: {err}"
    return (path, "") if path else ("", "open_clip knows no download source for it")


def _hub_route(pretrained_cfg: dict[str, Any]) -> bool:
    """Whether open_clip downloads this config from the Hugging Face hub (else from its url)."""
    from open_clip.pretrained import has_hf_hub

    return bool(pretrained_cfg.get("hf_hub")) and has_hf_hub()


def _cached_tag_file(pretrained_cfg: dict[str, Any], download_dir: str | None) -> str:
    if _hub_route(pretrained_cfg):
        from huggingface_hub import hf_hub_download
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo_id, filename = os.path.split(pretrained_cfg["hf_hub"])
        names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        for name in names:
            try:
                return hf_hub_download(repo_id, name, cache_dir=download_dir, local_files_only=True)
            except Exception:
                continue
    url = pretrained_cfg.get("url", "")
    if url:
        folder = Path(download_dir or "~/.cache/clip").expanduser()
        candidate = folder / os.path.basename(url)
        if candidate.is_file():
            return str(candidate)
    return ""


def _offline_reason(pretrained_cfg: dict[str, Any]) -> str:
    """Why a download cannot work now ('' when it may): offline mode or an unreachable host."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_HUB_OFFLINE is set"
    if _hub_route(pretrained_cfg):
        from huggingface_hub import constants

        if constants.is_offline_mode():
            return "Hugging Face offline mode is on"
        host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    else:
        host = urlparse(pretrained_cfg.get("url", "")).hostname or ""
    if not host or any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")):
        return ""  # behind a proxy a direct probe proves nothing: let the download try
    try:
        socket.create_connection((host, 443), timeout=PROBE_TIMEOUT_S).close()
    except OSError as err:
        return f"cannot reach {host}: {err}"
    return ""


def warn_random_weights(model: str, tag: str, reason: str, pretrained_cfg: dict[str, Any]) -> None:
    """Say once per process that the class embeddings come from a random text tower."""
    if (model, tag) in _WARNED:
        return
    _WARNED.add((model, tag))
    hub = pretrained_cfg.get("hf_hub", "")
    where = f"https://huggingface.co/{hub.rstrip('/')}" if hub else pretrained_cfg.get("url", "")
    message = (
        f"open_clip weights {model}/{tag} are not available ({reason}). The text tower is "
        "RANDOMLY INITIALISED, so the class-name embeddings are meaningless and accuracy will not "
        "reflect CLIP. Fix: run once with internet access so open_clip downloads them, or "
        f"download the weights file (from {where}) and set text.pretrained=/path/to/that/file."
    )
    logger.warning(message)
    warnings.warn(message, UserWarning, stacklevel=3)
