"""Deterministic stratified hold-outs: the folder dataset's test share, the validation split.

Per class, the videos are ordered by a hash of ``(seed, key)`` (the key: the video's path
relative to the dataset root, or a synthetic clip's index) and the first ``round(n * fraction)``
are held out, at least one when ``fraction > 0``, and never all: a class keeps at least one
video on the kept side (a class of one video gives none). The hash keeps each video on its side
when other videos are added or removed, and depends on nothing but the seed and the key: the
same split in every process (torchrun ranks) and in every resumed run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from hpnet.cli import UserError

logger = logging.getLogger(__name__)


def holdout_order_key(key: str, seed: int) -> str:
    """Sort key that orders a class's videos for the hold-out split (stable per video)."""
    return hashlib.sha256(f"{seed}:{key}".encode("utf-8", "surrogateescape")).hexdigest()


def stratified_holdout(
    items: Sequence[tuple[str, int]], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """``(kept, held)``: indices into ``items`` (``(key, label)`` pairs), each list in the
    order of ``items``; ``held`` takes ``fraction`` of every class as described above."""
    by_class: dict[int, list[int]] = {}
    for i, (_, label) in enumerate(items):
        by_class.setdefault(label, []).append(i)
    held: set[int] = set()
    for members in by_class.values():
        if fraction <= 0 or len(members) < 2:
            continue
        members.sort(key=lambda i: holdout_order_key(items[i][0], seed))
        n_held = min(max(round(len(members) * fraction), 1), len(members) - 1)
        held.update(members[:n_held])
    kept = [i for i in range(len(items)) if i not in held]
    return kept, sorted(held)


def single_video_classes(labels: Sequence[int]) -> list[int]:
    """Labels with exactly one video: a hold-out leaves them all on the kept side."""
    counts: dict[int, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return sorted(label for label, n in counts.items() if n == 1)


def validation_split(
    keys: Sequence[str], labels: Sequence[int], classes: Sequence[str], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """``(train, val)`` indices of a training split (``data.val_fraction``, ``data.seed``):
    :func:`stratified_holdout` of ``zip(keys, labels)``. Classes of one training video stay in
    training (a warning names them); a split that would leave no validation video is refused."""
    train, val = stratified_holdout(list(zip(keys, labels, strict=True)), fraction, seed)
    if fraction <= 0:
        return train, val
    if not val:
        raise UserError(
            f"data.val_fraction={fraction:g} gives no validation video: no class has 2 or more "
            "training videos (set data.val_fraction=0)"
        )
    lonely = single_video_classes(labels)
    if lonely:
        names = ", ".join(classes[i] for i in lonely[:5]) + ", ..." * (len(lonely) > 5)
        logger.warning(
            "data.val_fraction=%g: %d class(es) with a single training video keep it for "
            "training and have none to validate on: %s", fraction, len(lonely), names,
        )  # fmt: skip
    return train, val
