"""Getting an open_clip tag's weights file: the download caches, the host, the download.

open_clip downloads a tag's weights from the Hugging Face hub or from a URL. Before letting it
(its hub client retries for ~50 s when offline), :func:`fetch_tag_weights` looks in the caches,
then asks whether a download can work now (offline mode, or the host not answering on port 443
within :data:`PROBE_TIMEOUT_S`); :func:`download_location` says where a user can fetch the file
by hand. Used by :mod:`hpnet.text.weights` (CLIP towers) and for torchvision's weights.

    path, reason = fetch_tag_weights(get_pretrained_cfg("ViT-B-16", "openai"), None)
    # ("/root/.cache/.../open_clip_model.safetensors", "") or ("", "HF_HUB_OFFLINE is set")
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

__all__ = ["PROBE_TIMEOUT_S", "download_location", "fetch_tag_weights", "probe_host"]

PROBE_TIMEOUT_S = 3.0  # how long to wait for the weights host before treating it as offline


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
    return probe_host(host)


def probe_host(host: str) -> str:
    """Why ``host`` cannot serve a download now ('' when it answers on port 443 within
    :data:`PROBE_TIMEOUT_S`, or when a proxy makes a direct probe meaningless)."""
    if not host or any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")):
        return ""  # behind a proxy a direct probe proves nothing: let the download try
    try:
        socket.create_connection((host, 443), timeout=PROBE_TIMEOUT_S).close()
    except OSError as err:
        return f"cannot reach {host}: {err}"
    return ""


def download_location(pretrained_cfg: dict[str, Any]) -> tuple[str, str]:
    """``(url, file name)`` of the file open_clip would download for a pretrained config."""
    hub = pretrained_cfg.get("hf_hub", "")
    if hub:
        from open_clip.constants import HF_WEIGHTS_NAME

        repo_id, filename = os.path.split(hub)
        filename = filename or HF_WEIGHTS_NAME
        return f"https://huggingface.co/{repo_id}/resolve/main/{filename}", filename
    url = pretrained_cfg.get("url", "")
    return url, os.path.basename(url) or "weights.pt"
