"""Which MLP activation a CLIP checkpoint was trained with: QuickGELU (OpenAI) or GELU.

OpenAI trained CLIP with QuickGELU (``x * sigmoid(1.702 x)``); most later CLIPs (LAION,
DataComp, ...) use exact GELU. A tower built with the wrong one computes other features (open_clip
documents the accuracy drop), and the weights themselves do not say which one they need. open_clip
knows it for its tags (``quick_gelu`` in its pretrained configs, ``-quickgelu`` model names);
for a file, hpnet looks at where the file comes from. ``text.quick_gelu`` decides:

- ``true`` / ``false``: QuickGELU / GELU, whatever the weights (open_clip's ``force_quick_gelu``);
- ``auto``: a ``-quickgelu`` model name; else the tag's flag; else the file's provenance
  (an OpenAI TorchScript archive or an OpenAI state dict, an ``open_clip_config.json`` next to it
  that says ``quick_gelu``, or a download folder of a known open_clip tag: Hugging Face cache
  ``models--timm--vit_base_patch16_clip_224.openai/...``, ``--local-dir`` folders, open_clip's
  URL file names); a plain file of a model that has QuickGELU tags is ambiguous and refused with
  a :class:`~hpnet.cli.UserError` naming the fix, any other file is GELU.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

from hpnet.cli import UserError

QUICK_GELU_KEY = "text.quick_gelu"
QUICK_GELU_SETTINGS = ("auto", "true", "false")
OPENAI_RELEASE_KEYS = ("input_resolution", "context_length", "vocab_size")  # only OpenAI's files


def base_model_name(model_name: str) -> str:
    """``ViT-B-16-quickgelu`` -> ``ViT-B-16`` (the name open_clip files its tags under)."""
    return model_name.removesuffix("-quickgelu")


def model_forces_quick_gelu(model_name: str) -> bool:
    """Whether open_clip's config of ``model_name`` itself says QuickGELU (``-quickgelu`` names)."""
    from open_clip.factory import get_model_config

    return bool((get_model_config(model_name) or {}).get("quick_gelu", False))


def has_quick_gelu_tags(model_name: str) -> bool:
    """Whether some open_clip tag of this architecture used QuickGELU (e.g. OpenAI's)."""
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    name = base_model_name(model_name)
    return any(
        get_pretrained_cfg(name, tag).get("quick_gelu", False)
        for tag in list_pretrained_tags_by_model(name)
    )


def vision_archs(width: int, patch_size: int, layers: int) -> list[str]:
    """open_clip's architectures whose image tower has this shape (``-quickgelu`` names folded
    into their base): the models a CLIP file loaded into such a backbone can come from."""
    import open_clip
    from open_clip.factory import get_model_config

    found = []
    for name in open_clip.list_models():
        vision = (get_model_config(name) or {}).get("vision_cfg", {})
        shape = (vision.get("width"), vision.get("patch_size"), vision.get("layers"))
        if shape == (width, patch_size, layers) and base_model_name(name) not in found:
            found.append(base_model_name(name))
    return found


def _quick_gelu_flag(pretrained_cfg: dict[str, Any]) -> bool:
    return bool(pretrained_cfg.get("quick_gelu", False))


def _known_sources(read: Callable[[dict[str, Any]], Hashable]) -> dict[str, Hashable]:
    """Folder and file names of open_clip's tags -> ``read(pretrained_cfg)`` of their tags.

    Keys: ``org--repo`` and ``repo`` of each Hugging Face hub id, and the file name of each URL.
    A name used by tags that disagree is left out (it would decide nothing).
    """
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained

    values: dict[str, set[Hashable]] = {}
    for model, tag in list_pretrained():
        cfg = get_pretrained_cfg(model, tag)
        value = read(cfg)
        names = []
        hub = cfg.get("hf_hub", "").strip("/")
        if hub:
            org, _, rest = hub.partition("/")
            repo = rest.split("/")[0]
            names += [f"{org}--{repo}".lower(), repo.lower()]
        url = cfg.get("url", "")
        if url:
            names.append(url.rsplit("/", 1)[-1].lower())
        for name in names:
            values.setdefault(name, set()).add(value)
    return {name: next(iter(v)) for name, v in values.items() if len(v) == 1}


def from_known_source(path: str, read: Callable[[dict[str, Any]], Hashable]) -> Any:
    """``read(pretrained_cfg)`` of the open_clip tag a weights file was downloaded as, judged
    by its file name or a folder above it (``None``: not a known download)."""
    file = Path(path)
    known = _known_sources(read)
    if file.name.lower() in known:
        return known[file.name.lower()]
    for folder in file.parents:
        name = folder.name.lower().removeprefix("models--")
        if name in known:
            return known[name]
    return None


def open_clip_config_next_to(path: str) -> dict[str, Any]:
    """The ``open_clip_config.json`` beside a weights file (``{}``: none, or unreadable)."""
    config = Path(path).parent / "open_clip_config.json"
    if not config.is_file():
        return {}
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def quick_gelu_from_provenance(path: str) -> bool | None:
    """QuickGELU flag of a weights file judged by where it lies (``None``: cannot tell)."""
    model_cfg = open_clip_config_next_to(path).get("model_cfg", {})
    if isinstance(model_cfg, dict) and model_cfg.get("quick_gelu") is True:
        return True
    return from_known_source(path, _quick_gelu_flag)


def resolve_quick_gelu(
    setting: str,
    model_name: str,
    *,
    tag: str = "",
    path: str = "",
    openai_release: bool = False,
    key: str = "text.pretrained",
    archs: Sequence[str] | None = None,
) -> bool:
    """Whether towers loading these weights must use QuickGELU (see the module docstring).

    ``tag``: the open_clip tag the weights were asked for; ``path``: their local file;
    ``openai_release``: the file is OpenAI's own (TorchScript archive, or its state dict with
    ``input_resolution``/``context_length``/``vocab_size``); ``key``: the setting naming them;
    ``archs``: the architectures a file may be (default ``[model_name]``; a backbone's file is
    judged by its own shape, :func:`vision_archs`, not by ``text.model``).
    """
    if setting not in QUICK_GELU_SETTINGS:
        raise UserError(f"{QUICK_GELU_KEY}={setting!r}; it must be one of auto, true, false")
    if setting != "auto":
        return setting == "true"
    if model_forces_quick_gelu(model_name):
        return True
    if tag:
        from open_clip.pretrained import get_pretrained_cfg

        return bool(get_pretrained_cfg(model_name, tag).get("quick_gelu", False))
    if openai_release:
        return True
    if not path:
        return False  # random init: either is right
    known = quick_gelu_from_provenance(path)
    if known is not None:
        return known
    for arch in [model_name] if archs is None else archs:
        if has_quick_gelu_tags(arch):
            raise ambiguous_activation_error(path, key, arch)
    return False


def ambiguous_activation_error(path: str, key: str, model_name: str = "ViT-B-16") -> UserError:
    """The refusal of a CLIP file whose activation cannot be told, naming the fixes."""
    base = base_model_name(model_name)
    return UserError(
        f"cannot tell whether {path} ({key}) holds OpenAI's CLIP weights, trained with "
        f"QuickGELU, or GELU-trained ones (the file does not say, and {base} has both): set "
        f"{QUICK_GELU_KEY}=true for OpenAI's weights (e.g. timm/vit_base_patch16_clip_224.openai), "
        f"{QUICK_GELU_KEY}=false for others (LAION, DataComp), or text.model={base}-quickgelu"
    )
