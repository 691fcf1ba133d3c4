"""Deterministic stratified hold-outs: the folder dataset's test share, the validation split.

Per class, the videos are ordered by a hash of ``(seed, key)`` (the key: the video's path
relative to the dataset root, or a synthetic clip's index) and the first ``round(n * fraction)``
are held out, at least one when ``fraction > 0``, and never all: a class keeps at least one
video on the kept side (a class of one video gives none). The order depends on nothing but the
seed and the keys: the same split in every process (torchrun ranks) and in every resumed run.
A video added to or removed from a class moves at most one other video of that class across
(the count ``round(n * fraction)`` may change by one); other classes keep their split.

Clips cut from one source video are held out together when the dataset's file names say which
clips those are (:data:`SOURCE_GROUPS`: UCF101's ``v_<Class>_gNN_cMM`` groups, HMDB51's source
name before ``_<class>_``), as the official test splits keep them apart: per class the sources
are ordered by the hash of ``(seed, source)`` and, in that order, each is held out whole when
that brings the count nearer ``round(n * fraction)`` videos (at least one source, and never
every source of a class). Otherwise a validation video's near-twin, a few seconds of the same
scene, would train.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from hpnet.cli import UserError

if TYPE_CHECKING:
    from hpnet.config import Config

logger = logging.getLogger(__name__)

_UCF101_CLIP = re.compile(r"^(v_.+_g\d+)_c\d+$")


def ucf101_source(rel: str) -> str:
    """``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi`` -> ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08``
    (the group: clips of one long video); a name of another form is its own source."""
    path = PurePosixPath(rel)
    match = _UCF101_CLIP.match(path.stem)
    return str(path.parent / match.group(1)) if match else rel


def hmdb51_source(rel: str) -> str:
    """``brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi`` -> ``brush_hair/April_09``: the
    source video's name, before ``_<class>_`` (HMDB51 names clips ``<source>_<class>_<visible
    body part>_<camera motion>_<people>_<view>_<quality>_<n>``); another name is its own source."""
    path = PurePosixPath(rel)
    cut = path.stem.rfind(f"_{path.parent.name}_")
    return str(path.parent / path.stem[:cut]) if cut > 0 else rel


# dataset -> the source video of a clip's key, for the datasets whose names tell it
SOURCE_GROUPS: dict[str, Callable[[str], str]] = {
    "ucf101": ucf101_source,
    "hmdb51": hmdb51_source,
}


def holdout_order_key(key: str, seed: int) -> str:
    """Sort key that orders a class's videos (or sources) for the hold-out (stable per key)."""
    return hashlib.sha256(f"{seed}:{key}".encode("utf-8", "surrogateescape")).hexdigest()


def stratified_holdout(
    items: Sequence[tuple[str, int]],
    fraction: float,
    seed: int,
    source: Callable[[str], str] | None = None,
) -> tuple[list[int], list[int]]:
    """``(kept, held)``: indices into ``items`` (``(key, label)`` pairs), each list in the
    order of ``items``; ``held`` takes ``fraction`` of every class as described above, whole
    sources at a time when ``source`` (key -> source video) is given."""
    by_class: dict[int, dict[str, list[int]]] = {}  # label -> source -> indices
    for i, (key, label) in enumerate(items):
        group = source(key) if source else key
        by_class.setdefault(label, {}).setdefault(group, []).append(i)
    held: list[int] = []
    for groups in by_class.values():
        count = sum(map(len, groups.values()))
        if fraction <= 0 or len(groups) < 2:
            continue
        wanted = max(round(count * fraction), 1)
        order = sorted(groups, key=lambda g: holdout_order_key(g, seed))
        taken = 0
        for group in order[:-1]:  # the last source stays on the kept side
            size = len(groups[group])
            if not taken or taken + size - wanted < wanted - taken:  # nearer to the share
                held += groups[group]
                taken += size
            if taken >= wanted:
                break
    chosen = set(held)
    return [i for i in range(len(items)) if i not in chosen], sorted(chosen)


def single_source_classes(
    items: Sequence[tuple[str, int]], source: Callable[[str], str] | None = None
) -> list[int]:
    """Labels whose videos come from one source (one video, without ``source``): a hold-out
    leaves them all on the kept side."""
    sources: dict[int, set[str]] = {}
    for key, label in items:
        sources.setdefault(label, set()).add(source(key) if source else key)
    return sorted(label for label, found in sources.items() if len(found) == 1)


def validation_split(
    keys: Sequence[str],
    labels: Sequence[int],
    classes: Sequence[str],
    fraction: float,
    seed: int,
    source: Callable[[str], str] | None = None,
) -> tuple[list[int], list[int]]:
    """``(train, val)`` indices of a training split (``data.val_fraction``, ``data.seed``):
    :func:`stratified_holdout` of ``zip(keys, labels)`` (by ``source``, see there). Classes of
    one training video (or source) stay in training (a warning names them); a split that would
    leave no validation video is refused."""
    items = list(zip(keys, labels, strict=True))
    train, val = stratified_holdout(items, fraction, seed, source)
    if fraction <= 0:
        return train, val
    what = "training videos from 2 or more source videos" if source else "2 or more training videos"
    if not val:
        raise UserError(
            f"data.val_fraction={fraction:g} gives no validation video: no class has {what} "
            "(set data.val_fraction=0)"
        )
    lonely = single_source_classes(items, source)
    if lonely:
        names = ", ".join(classes[i] for i in lonely[:5]) + ", ..." * (len(lonely) > 5)
        one = "a single source video" if source else "a single training video"
        logger.warning(
            "data.val_fraction=%g: %d class(es) with %s keep it for training and have none to "
            "validate on: %s", fraction, len(lonely), one, names,
        )  # fmt: skip
    return train, val


def config_validation_split(
    cfg: Config, keys: list[str], labels: list[int], classes: list[str]
) -> tuple[list[int], list[int]]:
    """``(train, val)`` indices of a training split as ``cfg`` holds it out (``data.val_fraction``,
    ``data.seed``); ``keys``: each video's relative path, or :func:`rendered_keys`."""
    d = cfg.data
    source = SOURCE_GROUPS.get(d.dataset)  # clips of one source video: held out together
    return validation_split(keys, labels, classes, d.val_fraction, d.seed, source)


def rendered_keys(num_videos: int) -> list[str]:
    """The hold-out keys of a rendered synthetic split: a rendered clip is its index."""
    return [str(i) for i in range(num_videos)]
