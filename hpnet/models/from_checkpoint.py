"""A trained model back from its checkpoint, classifying its own labels or any others.

``model_from_checkpoint(ckpt, cfg, labels)`` rebuilds the model of ``ckpt`` (what
:func:`hpnet.checkpoint.load_checkpoint` returns) with ``cfg`` (its own config plus overrides,
or another file); ``cfg`` must describe the same trained model (:func:`model_keys_changed`).

Labels: the trained classes (or a joint run's dataset) keep the class embeddings the run trained
with, stored in the checkpoint. Other labels, or other prompt templates (``text.templates``),
go through the text head with new embeddings ``(C', Dt)`` from ``cfg.text``; those are only
comparable with what the head learnt when they come from the same text tower, so the trained
classes are re-encoded first and must give back their stored rows (:func:`check_text_space`):
a tag that was random offline in training and resolves to real weights now, or another
``text.pretrained``, is refused rather than scored in another embedding space.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from hpnet.cli import UserError
from hpnet.config import Config
from hpnet.config_schema import arch_reads
from hpnet.models.hpnet import HPNet, build_model
from hpnet.text.encoder import ClassTextEncoder
from hpnet.text.prompts import check_labels, class_name_to_phrase

# model.* keys that only act in training: a trained model is the same model without them.
TRAINING_ONLY = ("drop_path", "dropout", "aux_weight", "pretrained", "freeze_backbone")
TRAINING_ONLY += ("freeze_backbone_epochs", "head_init_scale")
SAME_SPACE = 0.999  # least cosine between a trained class's stored and re-encoded embedding
logger = logging.getLogger(__name__)


def model_keys_changed(saved: dict, cfg: Config) -> list[str]:
    """``key=then -> now`` for the settings that define the trained model (its weights' shapes,
    and what its forward does with them: ``model.pool``, ``data.frames`` of a CNN, ...) and
    differ from ``saved``."""
    from hpnet.config import changed_keys

    arch = (saved.get("model") or {}).get("arch", cfg.model.arch)  # (a change is said as such)
    names = [f.name for f in dataclasses.fields(cfg.model) if f.name not in TRAINING_ONLY]
    keys = [f"model.{n}" for n in names if arch_reads(arch, n)]
    keys += ["data.frames", "data.size", "pose.persons"]
    return [f"{key}={then} -> {now}" for key, then, now in changed_keys(saved, cfg, keys)]


def model_from_checkpoint(
    ckpt: dict, cfg: Config, labels: Sequence[str] | None = None, *, source: str = "checkpoint"
) -> HPNet:
    """The trained model of a checkpoint, over ``labels`` (None: the trained classes).

    Labels other than a trained label set, or templates other than the trained ones, are
    embedded by ``cfg.text`` for the text head (open vocabulary); a linear head cannot, a
    :class:`~hpnet.cli.UserError` naming ``source`` says so.
    """
    if ckpt.get("pretrain"):  # hpnet.pretrain's encoder (and decoder): no classifier yet
        raise UserError(
            f"{source} is a pretraining checkpoint (python -m hpnet.pretrain): it has no "
            f"classifier; fine-tune it first with python -m hpnet.train ... model.pretrained=PATH"
        )
    classes = list(ckpt.get("classes", []))
    if not classes:
        raise UserError(f"{source} records no class names: was it written by hpnet.train?")
    if labels is not None:
        labels = check_labels(labels)
    model = _rebuild(ckpt, cfg, classes, source)
    if model.class_embeddings is None or not _templates_changed(ckpt, cfg):
        wanted = classes if labels is None else list(labels)
        trained = [i for i, (_, names) in enumerate(model.label_sets) if names == wanted]
        if wanted == classes:
            return model
        if trained:  # the labels of another dataset of a joint run: its own embeddings or head
            model.select_label_set(trained[0])
            return model
    if model.class_embeddings is None:
        sets = [f"{name}'s {len(names)}" for name, names in model.label_sets]  # (joint: each)
        fixed = f"its {' or '.join(sets) if sets else len(classes)} labels are fixed"
        raise UserError(
            f"{source} has a linear head (model.text=false): {fixed}; other labels need a "
            "model trained with the text head"
        )
    labels = classes if labels is None else labels
    trained = [*classes, *(n for _, names in model.label_sets for n in names)]
    phrases = {class_name_to_phrase(t): t for t in trained}  # (Sit Down embeds as sit_down)
    _warn_near_misses(labels, phrases, source)
    if not cfg.text.pretrained and any(class_name_to_phrase(x) not in phrases for x in labels):
        logger.warning(
            "text.pretrained='' (a random text tower, as %s was trained with): new labels get "
            "embeddings unrelated to their words and their scores mean nothing; a text head "
            "trained with CLIP's weights scores new labels", source,
        )  # fmt: skip
    _embed_labels(model, ckpt, cfg, labels, source)
    return model


def _warn_near_misses(labels: Sequence[str], phrases: dict[str, str], source: str) -> None:
    """One warning naming the labels that are not trained ones but read as a trained one with
    a typo (:func:`_typo_of`: ``brush hiar`` for ``brush_hair``; ``Brush-Hair`` is the same
    words, not a miss): the text head embeds them anew, right for a new class (``PlayingSitar``
    beside a trained ``PlayingGuitar``), a quiet loss for a misspelt trained one.
    ``phrases``: the trained labels by the words the text encoder reads."""
    misses = []
    for label in labels:
        phrase = class_name_to_phrase(label)
        if phrase in phrases:
            continue
        typo = next((p for p in phrases if _typo_of(phrase, p)), None)
        if typo is not None:
            misses.append(f"'{label}' (trained: '{phrases[typo]}')")
    if misses:
        logger.warning(
            "%s: %s not among the labels %s was trained on: embedded anew by the text encoder "
            "(open vocabulary); to score the trained classes, spell them as trained",
            ", ".join(misses[:5]) + (f" and {len(misses) - 5} more" if len(misses) > 5 else ""),
            "is" if len(misses) == 1 else "are", source,
        )  # fmt: skip


def _typo_of(phrase: str, trained: str) -> bool:
    """Whether ``phrase`` is ``trained`` with one word one typo off: two neighbouring letters
    swapped or a letter added or dropped (``sit dwon``, ``brush hiar``, ``climb stair``), or,
    in a word of 6+ letters, one letter changed. Not ``talk`` for ``walk`` (both real words: a
    short word's changed letter is another word more often than a typo), nor ``playing sitar``
    for ``playing guitar`` (two edits), nor ``push ups`` for ``pushup`` (other words)."""
    ours, theirs = phrase.split(), trained.split()
    if len(ours) != len(theirs):
        return False
    differ = [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b]
    return len(differ) == 1 and _one_typo(*differ[0])


def _one_typo(a: str, b: str) -> bool:
    """``a`` and ``b`` (different words) are one typo apart, as :func:`_typo_of` counts."""
    if max(len(a), len(b)) < 3 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) != len(b):  # a letter added or dropped
        short, long = sorted((a, b), key=len)
        return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    if len(diff) == 1:  # a letter changed
        return len(a) >= 6
    i, j = diff if len(diff) == 2 else (0, 0)
    return j == i + 1 and a[i] == b[j] and a[j] == b[i]  # two neighbours swapped


def _embed_labels(model: HPNet, ckpt: dict, cfg: Config, labels: list[str], source: str) -> None:
    """Give the text head ``labels`` embedded by ``cfg.text`` (one tower for all of it), after
    :func:`check_text_space`; with new templates also every label set of a joint run (which
    evaluate scores through their own rows)."""
    from hpnet.text.encoder import build_text_encoder

    encoder = build_text_encoder(cfg)
    try:
        check_text_space(ckpt, cfg, ckpt["classes"], source, encoder)
        if _templates_changed(ckpt, cfg):
            for i, (_, names) in enumerate(model.label_sets):
                rows = encoder.encode_class_names(names, cfg.text.templates)
                setattr(model, f"label_embeddings_{i}", rows.to(model.class_embeddings))
        rows = encoder.encode_class_names(labels, cfg.text.templates)
    finally:
        encoder.release()
    model.set_class_embeddings(rows, labels)


def _rebuild(ckpt: dict, cfg: Config, classes: list[str], source: str) -> HPNet:
    """``cfg``'s model with the checkpoint's weights, refused when ``cfg`` changes it."""
    state = ckpt["model"]
    stored = state.get("class_embeddings")
    sets = [(name, list(names)) for name, names in ckpt.get("label_sets") or []]
    changed = model_keys_changed(ckpt.get("config", {}), cfg)
    if changed:  # said before building (whose own checks would blame another key)
        raise _refusal(source, changed)
    model = build_model(
        cfg, classes, class_embeddings=stored, load_weights=False, label_sets=sets,
        label_embeddings=[state[f"label_embeddings_{i}"] for i in range(len(sets))]
        if stored is not None and sets else None,
    )  # fmt: skip
    if getattr(model.head, "aux", None) is None:  # older runs built it even with aux_weight=0
        state = {k: v for k, v in state.items() if not k.startswith("head.aux.")}
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise _refusal(source, ["its layers differ"]) from None
    return model


def _refusal(source: str, changed: list[str]) -> UserError:
    """The refusal of a config whose model keys differ from the checkpoint's (also those that
    change no weight: another model all the same)."""
    return UserError(
        f"{source} does not fit this config: {', '.join(changed)} (these keys define the "
        "trained model: drop those overrides, or set them in the config file given, to the "
        "checkpoint's values)"
    )


def _trained_templates(ckpt: dict, cfg: Config) -> list[str]:
    """The prompt templates the run embedded its classes with (``cfg``'s if not recorded)."""
    text = (ckpt.get("config") or {}).get("text") or {}
    return list(text.get("templates", cfg.text.templates))


def _templates_changed(ckpt: dict, cfg: Config) -> bool:
    return list(cfg.text.templates) != _trained_templates(ckpt, cfg)


def check_text_space(
    ckpt: dict, cfg: Config, classes: Sequence[str], source: str, encoder: ClassTextEncoder
) -> None:
    """Refuse ``cfg.text`` (its ``encoder``) when its tower does not give back the trained
    classes' stored embeddings (with the trained templates): new labels would land in another
    space."""
    stored = ckpt["model"]["class_embeddings"].float().cpu()  # (C, Dt), unit rows
    again = encoder.encode_class_names(list(classes), _trained_templates(ckpt, cfg))
    if again.shape != stored.shape:
        cosine = -1.0
    else:
        cosine = float((again.float().cpu() * stored).sum(dim=-1).min())
    if cosine < SAME_SPACE:
        text = cfg.text
        raise UserError(
            f"{source} was trained with other text embeddings than text.model={text.model} "
            f"text.pretrained={text.pretrained!r} (text.quick_gelu={text.quick_gelu}) give now "
            f"(its classes come back at cosine {cosine:.3f} to the stored rows): new labels "
            "would be scored in another embedding space. Set text.* as the run had them (its "
            "config.yaml; a run whose text tag fell back to random weights offline: "
            "text.pretrained='', with text.quick_gelu=true for an OpenAI tag), or classify its "
            "own labels"
        )
