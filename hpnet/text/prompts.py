"""Class names -> readable phrases -> prompts for the CLIP text encoder.

Dataset class names are identifiers (``brush_hair``, ``ApplyEyeMakeup``); CLIP was trained on
sentences. :func:`class_name_to_phrase` turns a name into the words a caption would use and
:func:`make_prompts` puts each phrase into every template of a prompt ensemble::

    make_prompts(["brush_hair", "ApplyEyeMakeup"], ["{}", "a video of a person {}."])
    # [["brush hair", "a video of a person brush hair."],
    #  ["apply eye makeup", "a video of a person apply eye makeup."]]

Templates are plain strings with a ``{}`` where the phrase goes (as in ``text.templates``).
:func:`check_labels` checks a label list and :func:`read_labels` reads the ``--labels`` /
``--labels-file`` of predict, zero-shot and export.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from hpnet.cli import UserError, missing

PLACEHOLDER = "{}"

# Named prompt ensembles. "bare" (the phrase alone) is what ViFi-CLIP found best for video;
# "video" is a small ActionCLIP-style ensemble.
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "bare": ("{}",),
    "video": (
        "a video of a person {}.",
        "a photo of a person {}.",
        "a person is {}.",
        "human action of {}.",
        "{}, an action.",
    ),
}

# Word boundaries inside CamelCase: "eyeMakeup" (lower/digit then upper) and "HTMLParser"
# (an upper that starts a capitalised word after a run of capitals).
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def class_name_to_phrase(name: str) -> str:
    """Turn a dataset class name into lower-case words.

    ``brush_hair`` -> ``brush hair``, ``ApplyEyeMakeup`` -> ``apply eye makeup``,
    ``flic-flac`` -> ``flic flac``, ``YoYo`` -> ``yo yo``; a name that already is a phrase
    (``"ride bike"``) is only lower-cased and has its spaces collapsed. Unicode is composed
    (NFC): ``klättern`` typed on macOS (``a`` + combining diaeresis) is the same phrase, as the
    text encoder reads it.
    """
    words = re.sub(r"[_\-]+", " ", _nfc(name))
    words = _CAMEL_BOUNDARY.sub(" ", words)
    return " ".join(words.lower().split())


def check_templates(templates: Sequence[str]) -> list[str]:
    """Return ``templates`` as a list after checking each has a ``{}`` for the class phrase."""
    if isinstance(templates, str):
        templates = [templates]
    templates = list(templates)
    if not templates:
        raise UserError("no prompt templates given (text.templates / --templates)")
    for template in templates:
        if PLACEHOLDER not in template:
            raise UserError(
                f"prompt template {template!r} has no '{{}}' where the class name goes "
                "(text.templates / --templates), e.g. 'a video of a person {}.'"
            )
    return templates


def get_templates(spec: str | Sequence[str]) -> list[str]:
    """Templates from a set name in :data:`TEMPLATE_SETS`, one template, or a list of them."""
    if isinstance(spec, str) and spec in TEMPLATE_SETS:
        return list(TEMPLATE_SETS[spec])
    if isinstance(spec, str) and PLACEHOLDER not in spec:
        raise UserError(
            f"unknown prompt template set {spec!r}; use one of {', '.join(TEMPLATE_SETS)} "
            "or templates with '{}' where the class name goes"
        )
    return check_templates(spec)


def make_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
    """Prompts for every class and template: ``prompts[c][k]`` = template k filled with class c."""
    templates = check_templates(templates)
    phrases = [class_name_to_phrase(name) for name in class_names]
    return [[t.replace(PLACEHOLDER, phrase) for t in templates] for phrase in phrases]


def check_labels(labels: Sequence[str], what: str = "labels") -> list[str]:
    """A label set a user gives (``--labels``, ``labels=``), as a list: at least 2 labels,
    none empty, none twice, no two that the text encoder reads as the same words
    (:func:`check_distinct_phrases`); ``what`` names where they come from."""
    if isinstance(labels, str):
        raise UserError(
            f"{what}: give a list of labels, not the one string {labels!r} "
            "(e.g. ['wave', 'clap'], or 'wave,clap'.split(','))"
        )
    names = list(labels)
    if any(not isinstance(n, str) or not n.strip() for n in names):
        raise UserError(f"{what}: every label must be a non-empty string, got {names}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"{what}: label {twice[0]!r} is given twice")
    if len(names) < 2:
        raise UserError(f"{what}: need at least 2 labels, got {names}")
    check_distinct_phrases(names, what)
    return names


def check_distinct_phrases(class_names: Sequence[str], what: str = "labels") -> None:
    """Refuse two labels of one label set that become the same phrase (``brush_hair``,
    ``BrushHair``, ``Brush hair``): the text head would give them the same embedding, so
    neither could ever win over the other. ``what`` names where the labels come from."""
    seen: dict[str, str] = {}
    for name in class_names:
        phrase = class_name_to_phrase(name)
        if phrase in seen and seen[phrase] != name:
            forms = " (two Unicode forms of one name)" * (_nfc(seen[phrase]) == _nfc(name))
            raise UserError(
                f"{what}: {seen[phrase]!r} and {name!r}{forms} are the same words ({phrase!r}) "
                "to the text encoder, so they get one embedding and cannot be told apart; keep one"
            )
        seen.setdefault(phrase, name)


def read_labels(labels: str | None, labels_file: str | None) -> list[str] | None:
    """``--labels "a,b,c"`` or ``--labels-file F`` (one label per line, UTF-8) -> labels
    (:func:`~hpnet.text.prompts.check_labels`), or None without either. Blank entries are
    dropped; ``--labels ""`` (an unset shell variable) is refused, not read as "none"."""
    if labels is not None and labels_file:
        raise UserError("give --labels or --labels-file, not both")
    if labels_file:
        path = Path(labels_file).expanduser()
        if not path.is_file():
            raise UserError(f"labels file {missing(path)}: {path} (--labels-file)")
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as err:
            raise UserError(
                f"labels file {path} is not UTF-8 text ({err.reason} at byte {err.start}): "
                "save it as UTF-8 (--labels-file)"
            ) from None
        names = [line.strip() for line in lines]
    elif labels is not None:
        names = [name.strip() for name in labels.split(",")]
    else:
        return None
    return check_labels([n for n in names if n], "--labels/--labels-file")
