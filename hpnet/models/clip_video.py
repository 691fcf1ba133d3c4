"""Zero-shot video classification with a frozen CLIP: image tower over frames + class prompts.

The frozen-CLIP video baseline of the literature (X-CLIP, ViFi-CLIP, Open-VCLIP report it):
every sampled frame goes through the CLIP image tower, the unit frame embeddings are averaged
over time and normalised again, and the clip is scored against the prompt-ensembled class
embeddings of the same CLIP's text tower (:class:`~hpnet.text.encoder.ClassTextEncoder`)::

    logits = logit_scale * <mean_t(f_t / |f_t|) / |.|, E_c>      (E_c: unit rows)

Mean pooling is the baseline's pooling: frame order carries little for a model that never saw
video, and ViFi-CLIP showed that averaged frame features are enough once CLIP is tuned on
video. Only the image tower is built here (the text embeddings come from the cached text
encoder); weights resolve like the text tower's (:mod:`hpnet.text.weights`): an open_clip tag,
a local CLIP checkpoint file, or random init with a loud warning when a tag cannot be had.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hpnet.cli import UserError
from hpnet.fusion.head import fp32_region
from hpnet.text.activation import base_model_name, from_known_source, open_clip_config_next_to
from hpnet.text.weights import (
    RANDOM_INIT_SEED,
    ClipSource,
    ClipWeights,
    clip_image_size,
    clip_model_config,
    load_tower_state,
)

logger = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_LOGIT_SCALE = 100.0  # CLIP's learned temperature converges to (and is clamped at) 100


@dataclass
class ImageTower:
    """A frozen CLIP image tower and how its input must look."""

    visual: nn.Module  # images (N, 3, S, S) normalised -> embeddings (N, D)
    image_size: int  # S
    mean: tuple[float, float, float]  # RGB normalisation in [0, 1]
    std: tuple[float, float, float]
    logit_scale: float  # exp(CLIP's logit_scale) from the checkpoint, else 100
    weights: ClipWeights  # where the weights came from (kind "random" = meaningless features)


def build_image_tower(
    model_name: str,
    pretrained: str | ClipSource,
    *,
    download_dir: str | None = None,
    quick_gelu: str = "auto",
) -> ImageTower:
    """Build the image tower of open_clip ``model_name`` alone, load ``pretrained``, freeze it.

    ``pretrained``: an open_clip tag, a local checkpoint (open_clip or OpenAI layout, also
    TorchScript), ``""`` (random init, seeded), or a :class:`ClipSource` already resolved (and
    shared with the text tower). ``quick_gelu``: ``text.quick_gelu`` (auto, true, false).
    """
    from open_clip.model import _build_vision_tower

    config = clip_model_config(model_name)
    vision_cfg = config["vision_cfg"]
    if vision_cfg.get("timm_model_name"):
        raise UserError(
            f"text.model={model_name!r} has a timm image tower, which hpnet's zero-shot does not "
            "support; choose a CLIP ViT such as ViT-B-16"
        )
    source = pretrained
    if not isinstance(source, ClipSource):
        source = ClipSource.resolve(
            model_name, source, quick_gelu=quick_gelu, download_dir=download_dir,
            towers="image tower",
        )  # fmt: skip
    mean, std = _normalisation(source)
    state = source.state_dict() if source.weights.kind == "file" else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        visual = _build_vision_tower(config["embed_dim"], vision_cfg, source.quick_gelu)
    logit_scale = DEFAULT_LOGIT_SCALE
    if state is not None:
        path = source.weights.source
        if "logit_scale" in state:
            logit_scale = float(state["logit_scale"].float().exp().clamp(max=100))
        image_state = {k[7:]: v for k, v in state.items() if k.startswith("visual.")}
        if not image_state:
            raise UserError(
                f"weights file {path} (text.pretrained) holds no image tower "
                "(no 'visual.*' keys): zero-shot needs a full CLIP checkpoint"
            )
        load_tower_state(visual, image_state, path, model_name)
    else:
        logger.info("image tower %s: random init (seed %d)", model_name, RANDOM_INIT_SEED)
    visual.requires_grad_(False)
    size = clip_image_size(model_name)
    return ImageTower(visual.eval(), size, mean, std, logit_scale, source.weights)  # type: ignore[arg-type]


def _normalisation(source: ClipSource) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The RGB mean and std the weights were trained with: the tag's; for a file, the
    ``preprocess_cfg`` of an ``open_clip_config.json`` beside it, else the tag it was downloaded
    as (its file or folder name, as for the activation); else OpenAI's."""
    from open_clip.pretrained import get_pretrained_cfg

    if source.requested.kind == "tag":
        tag_cfg = get_pretrained_cfg(source.model_name, source.requested.source)
        _warn_other_resize(tag_cfg, f"{source.model_name} {source.requested.source}")
        return _mean_std(tag_cfg)
    if source.weights.kind != "file":
        return _mean_std({})
    path = source.weights.source
    preprocess = open_clip_config_next_to(path).get("preprocess_cfg")
    if isinstance(preprocess, dict):
        _warn_other_resize(preprocess, str(path))
    if isinstance(preprocess, dict) and "mean" in preprocess and "std" in preprocess:
        return _mean_std(preprocess)
    known = from_known_source(path, _mean_std)
    if known is not None:
        return known
    others = _other_mean_std_tags(source.model_name)
    if others:
        logger.warning(
            "%s: using OpenAI's image mean/std, as the file does not say which it was trained "
            "with; %s weights of tag(s) %s used others. If it is one of those, put the "
            "open_clip_config.json of its download beside it (its preprocess_cfg is read)",
            path, source.model_name, ", ".join(others),
        )  # fmt: skip
    return _mean_std({})


def _warn_other_resize(cfg: dict, weights: str) -> None:
    """Zero-shot prepares frames as OpenAI's CLIP (short side, centre crop, bicubic): say so
    for weights whose preprocessing resized otherwise (DFN5B, CLIPA, MetaCLIP 2 tags squash)."""
    mode, interpolation = cfg.get("resize_mode", "shortest"), cfg.get("interpolation", "bicubic")
    if (mode, interpolation) != ("shortest", "bicubic"):
        logger.warning(
            "%s was trained on images resized with resize_mode=%s, interpolation=%s; hpnet's "
            "zero-shot resizes the short side (bicubic) and centre-crops, as OpenAI's CLIP: "
            "its scores may be lower than open_clip's own preprocessing gives",
            weights, mode, interpolation,
        )  # fmt: skip


def _other_mean_std_tags(model_name: str) -> list[str]:
    """open_clip tags of ``model_name`` trained with another mean/std than OpenAI's."""
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    name = base_model_name(model_name)
    return [
        tag
        for tag in list_pretrained_tags_by_model(name)
        if _mean_std(get_pretrained_cfg(name, tag)) != _mean_std({})
    ]


def _mean_std(cfg: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` of an open_clip pretrained or preprocess config (OpenAI's if unset)."""
    return tuple(cfg.get("mean", OPENAI_MEAN)), tuple(cfg.get("std", OPENAI_STD))


class ClipVideoClassifier(nn.Module):
    """Frozen CLIP image tower + class embeddings -> zero-shot logits over any label set.

    Args:
        visual: the image tower, images ``(N, 3, S, S)`` -> ``(N, D)``.
        class_embeddings: float ``(C, D)`` unit rows from the same CLIP's text tower.
        class_names: the C labels, in row order.
        logit_scale: temperature of the cosine logits (CLIP's is 100).
    """

    def __init__(
        self,
        visual: nn.Module,
        class_embeddings: torch.Tensor,
        class_names: Sequence[str],
        logit_scale: float = DEFAULT_LOGIT_SCALE,
    ) -> None:
        super().__init__()
        if class_embeddings.ndim != 2 or class_embeddings.shape[0] != len(class_names):
            raise ValueError(
                f"class_embeddings {tuple(class_embeddings.shape)} do not match "
                f"{len(class_names)} class names"
            )
        self.visual = visual.requires_grad_(False).eval()
        self.register_buffer("class_embeddings", F.normalize(class_embeddings.float(), dim=-1))
        self.class_names = list(class_names)
        self.logit_scale = logit_scale

    def train(self, mode: bool = True) -> ClipVideoClassifier:
        """The tower stays in eval mode: it is frozen."""
        super().train(mode)
        self.visual.eval()
        return self

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """video ``(B, T, 3, S, S)`` normalised -> unit clip embeddings ``(B, D)``."""
        b, t = video.shape[:2]
        frames = self.visual(video.flatten(0, 1)).float()  # (B*T, D)
        frames = F.normalize(frames, dim=-1).view(b, t, -1)
        return F.normalize(frames.mean(dim=1), dim=-1)

    def forward(
        self, video: torch.Tensor, joints: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """video ``(B, T, 3, S, S)`` (joints are ignored) -> ``{"logits": (B, C)}``."""
        clip = self.encode_video(video)
        with fp32_region(video.device.type):  # fp32: scale 100 magnifies bf16
            return {"logits": self.logit_scale * clip @ self.class_embeddings.float().t()}


def zero_shot_classifier(
    model_name: str,
    pretrained: str,
    class_names: Sequence[str],
    templates: Sequence[str],
    *,
    text_cache_dir: str | None,
    download_dir: str | None = None,
    quick_gelu: str = "auto",
) -> tuple[ClipVideoClassifier, ImageTower]:
    """The zero-shot classifier over ``class_names`` (prompts: ``templates``) and its tower."""
    from hpnet.text.encoder import ClassTextEncoder

    source = ClipSource.resolve(
        model_name, pretrained, quick_gelu=quick_gelu, download_dir=download_dir,
        towers="image and text towers",
    )  # fmt: skip
    tower = build_image_tower(model_name, source)  # one resolution, one file read for both
    text = ClassTextEncoder(
        model_name, pretrained, cache_dir=text_cache_dir, quick_gelu=quick_gelu, source=source
    )
    try:
        embeddings = text.encode_class_names(list(class_names), list(templates))  # (C, D)
    finally:
        text.release()
    model = ClipVideoClassifier(tower.visual, embeddings, class_names, tower.logit_scale)
    return model, tower


def describe(tower: ImageTower) -> str:
    """One line about the tower's weights, for the command's output."""
    w = tower.weights
    source = w.source or "random init"
    if w.fallback_from:
        source = f"RANDOM init (weights {w.fallback_from!r} unavailable: predictions are noise)"
    return f"CLIP image tower: {source}, {tower.image_size} px, logit scale {tower.logit_scale:.1f}"
