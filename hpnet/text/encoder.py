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
Random towers are seeded, so their embeddings are the same in every process. The activation
(QuickGELU for OpenAI's weights) follows ``text.quick_gelu`` (:mod:`hpnet.text.activation`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from hpnet.atomic import WriteError, torch_save, write_atomic
from hpnet.cli import UserError
from hpnet.text.activation import quick_gelu_from_provenance
from hpnet.text.prompts import make_prompts
from hpnet.text.weights import (
    RANDOM_INIT_SEED,
    ClipSource,
    ClipWeights,
    clip_model_config,
    load_tower_state,
    parse_weights,
    resolve_tag,
)

TextWeights = ClipWeights  # the name the text cache keys were built with

if TYPE_CHECKING:
    from hpnet.config import Config

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the embedding recipe changes: old cache files stop matching
CACHE_DIR_OPTION = "text.cache_dir=DIR"
_UNWRITABLE_WARNED: set[Path] = set()  # cache folders already warned about in this process


def cache_key(
    model_name: str,
    weights: TextWeights,
    prompts: Sequence[Sequence[str]],
    quick_gelu: str = "auto",
) -> str:
    """sha256 over the model, the weights' identity, the activation setting (``text.quick_gelu``;
    for ``auto`` and a file also what the file's surroundings say, which can change while the
    file does not: :func:`~hpnet.text.activation.quick_gelu_from_provenance`), the exact prompts
    and open_clip's version."""
    record = {
        "format": CACHE_FORMAT,
        "model": model_name,
        "weights": weights.identity(),
        "quick_gelu": quick_gelu,
        "prompts": [list(p) for p in prompts],
        "open_clip": metadata.version("open_clip_torch"),
    }
    if quick_gelu == "auto" and weights.kind == "file":
        record["provenance"] = quick_gelu_from_provenance(weights.source)
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
        quick_gelu: ``text.quick_gelu`` (auto, true, false; see :mod:`hpnet.text.activation`).
        source: the already resolved checkpoint of ``pretrained`` when another tower loads it
            too (the LS-ViT backbone, the zero-shot image tower): no second download or read.
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
        quick_gelu: str = "auto",
        source: ClipSource | None = None,
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
        self.quick_gelu = quick_gelu
        self._source = source
        if source is not None:
            self.weights = source.weights
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
        """Drop the tower, the tokenizer and the checkpoint (the embeddings stay cached on disk)."""
        self._tower = None
        self._tokenizer = None
        if self._source is not None:
            self._source.release()

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
                tokens = self._tokenizer(flat[start : start + self.batch_size])  # (n, L)
                _warn_if_cut(tokens, flat[start : start + self.batch_size])
                chunks.append(F.normalize(tower(tokens.to(self.device)).float(), dim=-1))
        per_prompt = torch.cat(chunks).view(num_classes, num_templates, -1)  # (C, K, D)
        return F.normalize(per_prompt.mean(dim=1), dim=-1)  # (C, D)

    def _model_config(self) -> dict[str, Any]:
        config = clip_model_config(self.model_name)
        if config["text_cfg"].get("hf_model_name"):
            raise UserError(
                f"text.model={self.model_name!r} has a Hugging Face text tower, which hpnet does "
                "not support; choose a CLIP text transformer such as ViT-B-16"
            )
        return config

    def _build_tower(self) -> nn.Module:
        """Build the text tower alone (seeded init), load its weights, freeze it; on the CPU."""
        from open_clip.model import _build_text_tower

        source = self._resolved_source()
        config = self._model_config()
        state = source.state_dict() if source.weights.kind == "file" else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            tower = _build_text_tower(config["embed_dim"], config["text_cfg"], source.quick_gelu)
        if state is not None:
            text = text_part(state)
            if not text:  # only visual.* keys
                raise UserError(
                    f"weights file {source.weights.source} (text.pretrained) holds no text "
                    "tower (an image tower alone): give a whole CLIP checkpoint, or '' for a "
                    "random text tower"
                )
            load_tower_state(tower, text, source.weights.source, self.model_name)
        else:
            logger.info("text tower %s: random init (seed %d)", self.model_name, RANDOM_INIT_SEED)
        tower.requires_grad_(False)
        return tower.eval()

    def _resolve_tag(self) -> None:
        """Find or download the tag's weights file; on failure switch to random init and warn."""
        self._resolved_source()

    def _resolved_source(self) -> ClipSource:
        """The checkpoint: the shared one, or resolved here once (a tag may become random)."""
        if self._source is None:
            self._model_config()
            weights = self.requested
            if weights.kind == "tag":
                weights = resolve_tag(self.model_name, weights.source, self.download_dir)
            self._source = ClipSource(
                self.model_name, self.requested, weights, quick_gelu=self.quick_gelu
            )
        self.weights = self._source.weights
        return self._source

    # ---------------------------------------------------------------------------------- cache

    def _cache_file(self, prompts: list[list[str]]) -> Path | None:
        if self.cache_dir is None:
            return None
        weights = self.weights
        if weights.kind == "file" and self.requested.kind == "tag":
            weights = self.requested  # a downloaded tag is keyed by its name: no network on a hit
        key = cache_key(self.model_name, weights, prompts, self.quick_gelu)
        return self.cache_dir / f"{key}.pt"

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
            write_atomic(
                path,
                lambda f: torch_save(entry, f),
                what="text embedding cache file",
                folder_option=CACHE_DIR_OPTION,
            )
        except WriteError as err:
            # Warn and go on: the embeddings are already computed and correct, and a missing
            # cache only costs recomputing them next time (seconds), while stopping would throw
            # away a run (a training, a prediction) over a file it does not need. Once per folder,
            # so a run that encodes several label sets does not repeat it.
            _warn_cache_unwritable(err, path.parent)


def _warn_if_cut(tokens: torch.Tensor, texts: Sequence[str]) -> None:
    """Warn when prompts fill the tower's context (``tokens (n, L)``: no padding left), as the
    tokenizer cuts longer ones: two labels that differ only after the cut embed the same."""
    full = (tokens[:, -1] != 0).nonzero().flatten().tolist()
    if full:
        logger.warning(
            "%d prompt(s) reach the text tower's %d-token limit and are cut there, e.g. %r: "
            "words past it are not seen; shorten the labels or templates",
            len(full), tokens.shape[1], texts[full[0]][:80],
        )  # fmt: skip


def _warn_cache_unwritable(err: WriteError, cache_dir: Path) -> None:
    """Say once per process and folder that text embeddings cannot be cached there."""
    if cache_dir in _UNWRITABLE_WARNED:
        return
    _UNWRITABLE_WARNED.add(cache_dir)
    logger.warning(
        "%s; going on without caching text embeddings (set text.cache_dir= to turn the cache off)",
        err,
    )


# ------------------------------------------------------------------------------------ helpers


def build_text_encoder(
    cfg: Config, device: str | torch.device = "cpu", *, source: ClipSource | None = None
) -> ClassTextEncoder:
    """The class-name encoder described by ``cfg.text`` (templates: ``cfg.text.templates``).

    ``source``: the checkpoint of ``cfg.text.pretrained`` when the caller already resolved it.
    """
    return ClassTextEncoder(
        cfg.text.model,
        cfg.text.pretrained,
        cache_dir=cfg.text.cache_dir or None,
        device=device,
        quick_gelu=cfg.text.quick_gelu,
        source=source,
    )


def text_part(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The text tower's tensors of a CLIP state dict (or of a text-tower state dict)."""
    if any(key.startswith("text.") for key in state):  # CustomTextCLIP layout
        return {key[5:]: value for key, value in state.items() if key.startswith("text.")}
    skip = ("logit_scale", "logit_bias", "attn_mask")  # CLIP layout: next to visual.*
    return {k: v for k, v in state.items() if not k.startswith("visual.") and k not in skip}
