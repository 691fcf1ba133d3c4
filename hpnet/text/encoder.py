"""Frozen CLIP text tower that turns class names into L2-normalised embeddings, cached on disk.

The recipe is open_clip's zero-shot classifier: every class name is put into every prompt
template, each prompt is embedded and normalised, the template embeddings of a class are averaged
and the mean is normalised again. The result ``(C, D)`` is computed once per (model, weights,
prompts, open_clip version) and saved to ``<cache_dir>/<sha256 key>.pt``; a cache hit neither
builds nor loads the text tower::

    encoder = ClassTextEncoder("ViT-B-16", "openai", cache_dir="~/.cache/hpnet/text")
    E = encoder.encode_class_names(["brush_hair", "climb"], ["a video of a person {}."])  # (2, 512)

Only the text tower is built (open_clip 3.3 has no public text-only factory, so its
``_build_text_tower`` is used; the image tower of a CLIP checkpoint is never instantiated).
The tower is frozen: ``requires_grad=False``, eval mode. :class:`ClassTextEncoder` is a plain
object, not an ``nn.Module``, so a model can keep it as an attribute without its parameters
showing up in ``parameters()``, ``state_dict()``, the optimizer or DDP; keep the embeddings
as a buffer (``register_buffer("class_embeddings", E, persistent=False)``).

Weights (``text.pretrained``): an open_clip tag (``openai``), a local ``.pt``/``.bin``/
``.safetensors`` file (an open_clip or OpenAI CLIP checkpoint, or a text-tower state dict), or
``""`` for random init. A tag whose weights cannot be had (``HF_HUB_OFFLINE=1``, no network)
falls back to a random tower after one loud warning; a missing file is a :class:`UserError`.
Random towers are seeded, so their embeddings are the same in every process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from hpnet.atomic import write_atomic
from hpnet.cli import UserError
from hpnet.text.prompts import make_prompts

if TYPE_CHECKING:
    from hpnet.config import Config

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the embedding recipe changes: old cache files stop matching
RANDOM_INIT_SEED = 0  # seed of a randomly initialised text tower (same embeddings everywhere)
PROBE_TIMEOUT_S = 3.0  # how long to wait for the weights host before treating it as offline
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
_WARNED: set[tuple[str, str]] = set()  # (model, tag) pairs already warned about in this process


@dataclass(frozen=True)
class TextWeights:
    """Where the text tower's weights come from: an open_clip tag, a file, or random init."""

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


def parse_weights(pretrained: str) -> TextWeights:
    """Classify ``text.pretrained``; a path-like value must name an existing file."""
    if not pretrained:
        return TextWeights("random")
    path = Path(pretrained).expanduser()
    looks_like_path = (
        "/" in pretrained or os.sep in pretrained or pretrained.startswith(("~", "."))
    ) or pretrained.lower().endswith(_WEIGHT_SUFFIXES)
    if path.is_file():
        return TextWeights("file", str(path.resolve()))
    if looks_like_path:
        raise UserError(
            f"text weights file not found: {path} (text.pretrained); give an existing "
            "open_clip/CLIP checkpoint, an open_clip tag such as 'openai', or '' for random init"
        )
    return TextWeights("tag", pretrained)


def cache_key(model_name: str, weights: TextWeights, prompts: Sequence[Sequence[str]]) -> str:
    """sha256 over the model, the weights' identity, the exact prompts and open_clip's version."""
    record = {
        "format": CACHE_FORMAT,
        "model": model_name,
        "weights": weights.identity(),
        "prompts": [list(p) for p in prompts],
        "open_clip": metadata.version("open_clip_torch"),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


class ClassTextEncoder:
    """Frozen open_clip text tower with on-disk caching of class-name embeddings.

    Args:
        model_name: open_clip model name whose text tower is used (``text.model``).
        pretrained: tag, local weights file or ``""`` (``text.pretrained``).
        cache_dir: folder of cached embeddings (``text.cache_dir``); ``None`` = no caching.
        device: where the tower runs and the embeddings are returned.
        download_dir: where open_clip downloads/looks for tagged weights (``None`` = its default).
        batch_size: prompts per forward pass.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-16",
        pretrained: str = "openai",
        *,
        cache_dir: str | Path | None = "~/.cache/hpnet/text",
        device: str | torch.device = "cpu",
        download_dir: str | None = None,
        batch_size: int = 256,
    ) -> None:
        if ":" in model_name:
            raise UserError(
                f"text.model={model_name!r}: hf-hub:/local-dir: model names are not supported; "
                "use a built-in open_clip name (e.g. ViT-B-16) and text.pretrained=<file>"
            )
        self.model_name = model_name
        self.requested = parse_weights(pretrained)
        self.weights = self.requested  # becomes random init if a tag's weights cannot be had
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.device = torch.device(device)
        self.download_dir = download_dir
        self.batch_size = batch_size
        self._tower: nn.Module | None = None
        self._tokenizer: Any = None

    def __repr__(self) -> str:
        return f"ClassTextEncoder({self.model_name!r}, {self.weights}, device={self.device})"

    # ------------------------------------------------------------------------------ public API

    @property
    def width(self) -> int:
        """Embedding width D (512 for ViT-B-16), read from the model config without building."""
        return int(self._model_config()["embed_dim"])

    @property
    def tower(self) -> nn.Module:
        """The frozen text tower (built on first use): token ids ``(N, L)`` -> ``(N, D)``."""
        if self._tower is None:
            self._tower = self._build_tower().to(self.device)
        return self._tower

    def to(self, device: str | torch.device) -> ClassTextEncoder:
        """Run the tower and return embeddings on ``device`` from now on."""
        self.device = torch.device(device)
        if self._tower is not None:
            self._tower.to(self.device)
        return self

    def release(self) -> None:
        """Drop the tower and tokenizer (the embeddings stay cached on disk)."""
        self._tower = None
        self._tokenizer = None

    def encode_class_names(
        self, class_names: Sequence[str], templates: Sequence[str] = ("{}",)
    ) -> torch.Tensor:
        """Template-averaged class embeddings: float ``(C, D)``, rows L2-normalised."""
        return self.encode_prompts(make_prompts(class_names, templates))

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of arbitrary strings, used verbatim: float ``(N, D)``, rows L2-normalised."""
        return self.encode_prompts([[text] for text in texts])

    def encode_prompts(self, prompts: Sequence[Sequence[str]]) -> torch.Tensor:
        """``prompts[c]`` = the K prompts of class c -> float ``(C, D)``, rows L2-normalised.

        Each prompt embedding is normalised, the K of a class averaged, the mean normalised.
        Looked up in the cache first; on a miss the tower is built, run and the result saved.
        """
        prompts = [list(p) for p in prompts]
        if not prompts or len({len(p) for p in prompts}) != 1 or not prompts[0]:
            raise ValueError("prompts must be a non-empty list of equally long, non-empty lists")
        cached = self._load_cached(prompts)
        if cached is None and self.weights.kind == "tag":
            self._resolve_tag()  # a file, or random init (which has its own cache entry)
            cached = self._load_cached(prompts)
        if cached is not None:
            return cached.to(self.device)
        embeddings = self._compute(prompts)
        self._save_cached(prompts, embeddings)
        return embeddings

    # ------------------------------------------------------------------------------- computing

    def _compute(self, prompts: list[list[str]]) -> torch.Tensor:
        num_classes, num_templates = len(prompts), len(prompts[0])
        flat = [text for per_class in prompts for text in per_class]
        if self._tokenizer is None:
            import open_clip

            self._tokenizer = open_clip.get_tokenizer(self.model_name)
        tower = self.tower
        chunks = []
        with torch.no_grad():  # not inference_mode: callers may use the result in autograd
            for start in range(0, len(flat), self.batch_size):
                tokens = self._tokenizer(flat[start : start + self.batch_size]).to(self.device)
                chunks.append(F.normalize(tower(tokens).float(), dim=-1))  # (n, D)
        per_prompt = torch.cat(chunks).view(num_classes, num_templates, -1)  # (C, K, D)
        return F.normalize(per_prompt.mean(dim=1), dim=-1)  # (C, D)

    def _model_config(self) -> dict[str, Any]:
        from open_clip.factory import get_model_config, list_models

        config = get_model_config(self.model_name)
        if config is None:
            import difflib

            close = difflib.get_close_matches(self.model_name, list_models(), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UserError(
                f"unknown open_clip model {self.model_name!r} (text.model){hint}; "
                "see open_clip.list_models()"
            )
        if config["text_cfg"].get("hf_model_name"):
            raise UserError(
                f"text.model={self.model_name!r} has a Hugging Face text tower, which hpnet does "
                "not support; choose a CLIP text transformer such as ViT-B-16"
            )
        return config

    def _build_tower(self) -> nn.Module:
        """Build the text tower alone (seeded init), load its weights, freeze it; on the CPU."""
        from open_clip.model import _build_text_tower

        if self.weights.kind == "tag":
            self._resolve_tag()
        config = self._model_config()
        path = self.weights.source if self.weights.kind == "file" else ""
        quick_gelu = bool(config.get("quick_gelu", False)) or self._tag_quick_gelu()
        if path and is_torchscript_archive(path):
            quick_gelu = True  # OpenAI's original release (TorchScript) was trained with QuickGELU
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            tower = _build_text_tower(config["embed_dim"], config["text_cfg"], quick_gelu)
        if path:
            load_text_weights(tower, path, self.model_name)
        else:
            logger.info("text tower %s: random init (seed %d)", self.model_name, RANDOM_INIT_SEED)
        tower.requires_grad_(False)
        return tower.eval()

    def _tag_quick_gelu(self) -> bool:
        tag = self.requested.source if self.requested.kind == "tag" else ""
        if not tag:
            return False
        from open_clip.pretrained import get_pretrained_cfg

        return bool(get_pretrained_cfg(self.model_name, tag).get("quick_gelu", False))

    def _resolve_tag(self) -> None:
        """Find or download the tag's weights file; on failure switch to random init and warn."""
        from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

        self._model_config()  # a clear error for an unknown model before the tag's
        tag = self.requested.source
        pretrained_cfg = get_pretrained_cfg(self.model_name, tag)
        if not pretrained_cfg:
            tags = ", ".join(list_pretrained_tags_by_model(self.model_name)) or "none"
            raise UserError(
                f"text.pretrained={tag!r} is neither an open_clip tag of {self.model_name} "
                f"(tags: {tags}) nor an existing weights file"
            )
        path, reason = fetch_tag_weights(pretrained_cfg, self.download_dir)
        if path:
            self.weights = TextWeights("file", str(Path(path).resolve()))
            return
        self.weights = TextWeights("random", fallback_from=tag)
        warn_random_weights(self.model_name, tag, reason, pretrained_cfg)

    # ---------------------------------------------------------------------------------- cache

    def _cache_file(self, prompts: list[list[str]]) -> Path | None:
        if self.cache_dir is None:
            return None
        weights = self.weights
        if weights.kind == "file" and self.requested.kind == "tag":
            weights = self.requested  # a downloaded tag is keyed by its name: no network on a hit
        return self.cache_dir / f"{cache_key(self.model_name, weights, prompts)}.pt"

    def _load_cached(self, prompts: list[list[str]]) -> torch.Tensor | None:
        path = self._cache_file(prompts)
        if path is None or not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            embeddings = entry["embeddings"]
            if entry["prompts"] != prompts or embeddings.shape[0] != len(prompts):
                raise ValueError("stored prompts differ")
        except Exception as err:  # a corrupt or foreign file: recompute and overwrite it
            logger.warning("ignoring unreadable text embedding cache %s: %s", path, err)
            return None
        return embeddings

    def _save_cached(self, prompts: list[list[str]], embeddings: torch.Tensor) -> None:
        path = self._cache_file(prompts)
        if path is None:
            return
        entry = {
            "embeddings": embeddings.detach().cpu().contiguous(),
            "prompts": prompts,
            "model": self.model_name,
            "weights": json.dumps(self.weights.identity()),
        }
        try:
            write_atomic(path, lambda f: torch.save(entry, f))
        except OSError as err:  # a read-only cache must not stop a run
            logger.warning("could not write text embedding cache %s: %s", path, err)


# ------------------------------------------------------------------------------------ helpers


def build_text_encoder(cfg: Config, device: str | torch.device = "cpu") -> ClassTextEncoder:
    """The class-name encoder described by ``cfg.text`` (templates: ``cfg.text.templates``)."""
    return ClassTextEncoder(
        cfg.text.model, cfg.text.pretrained, cache_dir=cfg.text.cache_dir or None, device=device
    )


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (how OpenAI released its CLIP weights)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_text_weights(tower: nn.Module, path: str, model_name: str) -> None:
    """Load the text part of a CLIP checkpoint (or a text-tower state dict) into ``tower``."""
    from open_clip.factory import load_state_dict

    try:
        if is_torchscript_archive(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
                state = torch.jit.load(path, map_location="cpu").state_dict()
            for key in ("input_resolution", "context_length", "vocab_size"):
                state.pop(key, None)
        else:
            state = load_state_dict(path, device="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read text weights file {path} (text.pretrained): {err}") from err
    if any(key.startswith("text.") for key in state):  # CustomTextCLIP layout
        state = {key[5:]: value for key, value in state.items() if key.startswith("text.")}
    else:  # CLIP layout: text tower at the top level next to visual.* and logit_scale
        skip = ("logit_scale", "logit_bias", "attn_mask")
        state = {k: v for k, v in state.items() if not k.startswith("visual.") and k not in skip}
    try:
        missing, unexpected = tower.load_state_dict(state, strict=False)
        problem = f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        problem = problem if missing or unexpected else ""
    except RuntimeError as err:  # shape mismatch
        problem = str(err).strip().splitlines()[-1].strip()
    if problem:
        raise UserError(
            f"weights file {path} (text.pretrained) does not fit the text tower of open_clip model "
            f"{model_name!r} (text.model): {problem}; set text.model to the architecture the file "
            "was saved from"
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
