"""Where the weights of a CLIP tower come from: an open_clip tag, a local file, or random init.

Shared by the frozen text tower (:mod:`hpnet.text.encoder`) and the image tower of zero-shot
classification (:mod:`hpnet.models.clip_video`). ``text.pretrained`` (or ``--pretrained``) is
one of

- an open_clip tag (``openai``): found in open_clip's download caches, else downloaded when the
  host answers (:mod:`hpnet.text.download`); when it cannot be had (``HF_HUB_OFFLINE=1``, no
  network) the tower is randomly initialised after one loud warning (:func:`warn_random_weights`);
- a local ``.pt``/``.bin``/``.safetensors`` file (an open_clip or OpenAI CLIP checkpoint, also
  OpenAI's TorchScript archives); a missing file is a :class:`~hpnet.cli.UserError`;
- ``""``: random init (seed :data:`RANDOM_INIT_SEED`, the same weights in every process).

``model.pretrained`` takes the same tags and files for the LS-ViT backbone, except that a tag
that cannot be had is an error there (never a silent random backbone). :class:`ClipSource` is
one resolved checkpoint that every tower loading it shares: one download, one file read. The
activation the weights need (QuickGELU or GELU) is decided in :mod:`hpnet.text.activation`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpnet.checkpoint import is_exported_model, is_torchscript_archive, load_error_reason
from hpnet.cli import HpnetWarning, UserError, missing
from hpnet.text.activation import OPENAI_RELEASE_KEYS, QUICK_GELU_KEY, resolve_quick_gelu
from hpnet.text.download import download_location, fetch_tag_weights

RANDOM_INIT_SEED = 0  # seed of a randomly initialised tower (same weights everywhere)
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


def looks_like_path(value: str) -> bool:
    """Whether a ``*.pretrained`` value names a file (a folder in it, ``~``/``.``, or a weights
    suffix) rather than a tag, whether or not the file is there."""
    return (
        "/" in value or os.sep in value or value.startswith(("~", "."))
    ) or value.lower().endswith(_WEIGHT_SUFFIXES)


def parse_weights(pretrained: str, key: str = "text.pretrained") -> ClipWeights:
    """Classify a ``text.pretrained``-like value (setting ``key``); a path must be a file."""
    if not pretrained:
        return ClipWeights("random")
    path = Path(pretrained).expanduser()
    if path.is_file():
        return ClipWeights("file", str(path.resolve()))
    if looks_like_path(pretrained):
        raise UserError(
            f"CLIP weights file {missing(path)}: {path} ({key}); give an existing "
            "open_clip/CLIP checkpoint, an open_clip tag such as 'openai', or '' for random init"
        )
    return ClipWeights("tag", pretrained)


def clip_image_size(model_name: str) -> int:
    """The input side S of open_clip ``model_name``'s image tower (224 when it does not say)."""
    size = clip_model_config(model_name)["vision_cfg"].get("image_size", 224)
    return size if isinstance(size, int) else int(size[0])


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


def resolve_tag(
    model_name: str,
    tag: str,
    download_dir: str | None,
    *,
    key: str = "text.pretrained",
    towers: str = "text tower",
    required: bool = False,
) -> ClipWeights:
    """The local file of open_clip tag ``tag`` of ``model_name`` (found, or downloaded).

    When it cannot be had: a :class:`UserError` naming the file to download if ``required``
    (the backbone), else random init after one warning saying which ``towers`` are random.
    """
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    clip_model_config(model_name)  # a clear error for an unknown model before the tag's
    pretrained_cfg = get_pretrained_cfg(model_name, tag)
    if not pretrained_cfg:
        tags = ", ".join(list_pretrained_tags_by_model(model_name)) or "none"
        folder = f" ({tag} is a folder: give the weights file in it)" if Path(tag).is_dir() else ""
        raise UserError(
            f"{key}={tag!r} is neither an open_clip tag of {model_name} (text.model; "
            f"tags: {tags}) nor an existing weights file{folder}"
        )
    path, reason = fetch_tag_weights(pretrained_cfg, download_dir)
    if path:
        return ClipWeights("file", str(Path(path).resolve()))
    if required:
        url, name = download_location(pretrained_cfg)
        raise UserError(
            f"{key}={tag!r}: open_clip weights {model_name}/{tag} are not available ({reason}); "
            f"download {url} and set {key}=/path/to/{name} {_activation_fix(pretrained_cfg)}"
            "(use the same file for text.pretrained to share it with the text tower)"
        )
    warn_random_weights(model_name, tag, reason, pretrained_cfg, towers)
    return ClipWeights("random", fallback_from=tag)


def read_weights_file(
    path: str | Path, key: str, what: str = "CLIP weights file"
) -> tuple[dict[str, torch.Tensor], bool]:
    """``(state dict, openai_release)`` of a checkpoint file, read once, on the CPU.

    Reads torch.save files (plain or wrapped in ``state_dict``/``model``/``module``, ``module.``
    prefixes), .safetensors and TorchScript archives (OpenAI's CLIP release). ``openai_release``:
    the file is OpenAI's own CLIP (an archive, or its state dict: ``input_resolution``,
    ``context_length``, ``vocab_size`` entries, which are dropped from the state dict).
    """
    if is_exported_model(path):
        raise UserError(
            f"cannot read {what} {path} ({key}): it is an exported model (python -m "
            "hpnet.export), not a weights file: give a torch.save, .safetensors or TorchScript file"
        )
    openai, safetensors = False, str(path).endswith(".safetensors")
    try:
        if safetensors:
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        elif is_torchscript_archive(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
                obj = torch.jit.load(str(path), map_location="cpu").state_dict()
            openai = True
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = load_error_reason(err, None if safetensors else path)
        raise UserError(f"cannot read {what} {path} ({key}): {reason}") from err
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise UserError(
            f"cannot read {what} {path} ({key}): it holds a {type(obj).__name__}, not a state dict"
        )
    state = {k.removeprefix("module."): v for k, v in obj.items() if torch.is_tensor(v)}
    openai = openai or all(k in state for k in OPENAI_RELEASE_KEYS)
    for k in OPENAI_RELEASE_KEYS:
        state.pop(k, None)
    return state, openai


def load_tower_state(
    tower: torch.nn.Module,
    state: dict[str, Any],
    path: str,
    model: str,
    key: str = "text.pretrained",
) -> None:
    """``tower.load_state_dict(state)`` with an error naming the file and the keys that differ."""
    try:
        missing, unexpected = tower.load_state_dict(state, strict=False)
        problem = f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        problem = problem if missing or unexpected else ""
    except RuntimeError as err:  # shape mismatch
        problem = str(err).strip().splitlines()[-1].strip()
    if problem:
        raise UserError(
            f"weights file {path} ({key}) does not fit the {type(tower).__name__} of "
            f"open_clip model {model!r} (text.model): {problem}; set text.model to the "
            "architecture the file was saved from"
        )


def _activation_fix(pretrained_cfg: dict[str, Any]) -> str:
    """The ``text.quick_gelu=`` setting that a downloaded copy of these weights needs."""
    return f"{QUICK_GELU_KEY}={str(bool(pretrained_cfg.get('quick_gelu'))).lower()} "


def warn_random_weights(
    model: str, tag: str, reason: str, pretrained_cfg: dict[str, Any], towers: str = "text tower"
) -> None:
    """Say once per process (a UserWarning; a command shows it as a WARNING line) that ``towers``
    are randomly initialised."""
    if (model, tag) in _WARNED:
        return
    _WARNED.add((model, tag))
    url, name = download_location(pretrained_cfg)
    many = towers.endswith("s")
    message = (
        f"open_clip weights {model}/{tag} are not available ({reason}). The {towers} "
        f"{'are' if many else 'is'} RANDOMLY INITIALISED, so {'their' if many else 'its'} "
        "outputs are meaningless and accuracy will not reflect CLIP. Fix: run once with internet "
        f"access so open_clip downloads them, or download {url} and set "
        f"text.pretrained=/path/to/{name} {_activation_fix(pretrained_cfg).strip()}."
    )
    warnings.warn(message, HpnetWarning, stacklevel=3)


class ClipSource:
    """One CLIP checkpoint shared by the towers that load it: resolved once, read at most once.

    Args:
        model_name: open_clip model name (``text.model``): its tags and its activation.
        requested: what the setting asked for (a tag, a file or random init).
        weights: where the weights are (a tag resolved to its file, or random init).
        quick_gelu: ``text.quick_gelu`` (auto, true, false).
        key: the setting that named the weights, for messages.
    """

    def __init__(
        self,
        model_name: str,
        requested: ClipWeights,
        weights: ClipWeights,
        *,
        quick_gelu: str = "auto",
        key: str = "text.pretrained",
        archs: Sequence[str] | None = None,
    ) -> None:
        self.model_name = model_name
        self.archs = archs  # the architectures a file may be (None: model_name)
        self.requested = requested
        self.weights = weights
        self.quick_gelu_setting = quick_gelu
        self.key = key
        self._state: dict[str, torch.Tensor] | None = None
        self._openai_release = False

    @classmethod
    def resolve(
        cls,
        model_name: str,
        pretrained: str,
        *,
        quick_gelu: str = "auto",
        download_dir: str | None = None,
        key: str = "text.pretrained",
        towers: str = "text tower",
        required: bool = False,
        archs: Sequence[str] | None = None,
    ) -> ClipSource:
        """Classify ``pretrained`` and find (or download) a tag's file; see :func:`resolve_tag`.
        ``archs``: the open_clip architectures a file may be, when not ``model_name`` (a
        backbone's file: those of its shape), for telling its activation."""
        requested = parse_weights(pretrained, key)
        weights = requested
        if requested.kind == "tag":
            weights = resolve_tag(
                model_name, requested.source, download_dir, key=key, towers=towers,
                required=required,
            )  # fmt: skip
        return cls(model_name, requested, weights, quick_gelu=quick_gelu, key=key, archs=archs)

    def __repr__(self) -> str:
        return f"ClipSource({self.model_name!r}, {self.weights}, quick_gelu={self.quick_gelu})"

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The file's full state dict (all towers), read on the first call only."""
        if self.weights.kind != "file":
            raise ValueError(f"{self.weights} has no weights file")
        if self._state is None:
            self._state, self._openai_release = read_weights_file(self.weights.source, self.key)
        return self._state

    @property
    def quick_gelu(self) -> bool:
        """Whether the towers need QuickGELU (:func:`~hpnet.text.activation.resolve_quick_gelu`)."""
        path = self.weights.source if self.weights.kind == "file" else ""
        if path and self.quick_gelu_setting == "auto":
            self.state_dict()  # an OpenAI state dict says so by its keys
        return resolve_quick_gelu(
            self.quick_gelu_setting,
            self.model_name,
            tag=self.requested.source if self.requested.kind == "tag" else "",
            path=path,
            openai_release=self._openai_release,
            key=self.key,
            archs=self.archs,
        )

    def release(self) -> None:
        """Drop the state dict (the towers hold their own copies)."""
        self._state = None
