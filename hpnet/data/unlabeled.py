"""``data.dataset=unlabeled``: every video under ``data.root`` (recursively), with no classes.

The videos a self-supervised method (``python -m hpnet.pretrain``) learns from: no class folders,
split files or labels are needed. All of them are the training split; the test split is empty.
Each record's label is :data:`NO_LABEL` (a placeholder the collate function stacks; pretraining
never reads it).
"""

from __future__ import annotations

from pathlib import Path

from hpnet.cli import UserError, missing
from hpnet.data.records import VIDEO_EXTENSIONS, RecordSplits, VideoRecord, videos_under

NO_LABEL = -1  # the label of every unlabelled record


def unlabeled_records(root: str | Path) -> RecordSplits:
    """Every video file under ``root`` (any depth, hidden files skipped) as training records."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"dataset folder {missing(root, folder=True)}: {root} (set data.root)")
    paths = videos_under(root)
    if not paths:
        raise UserError(
            f"no videos found under {root} (extensions {' '.join(VIDEO_EXTENSIONS)}; "
            "check data.root)"
        )
    train = [VideoRecord(p, NO_LABEL, p.relative_to(root).as_posix()) for p in paths]
    return RecordSplits(train, [], [])
