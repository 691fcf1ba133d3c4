"""Which videos a config names: the records of ``cfg.data`` (any dataset kind), read from its
split files, list files or folders (:mod:`hpnet.data.records` and the modules beside it)."""

from __future__ import annotations

import logging

from hpnet.cli import UserError, quiet_logger
from hpnet.config import Config
from hpnet.data.folder_records import folder_records
from hpnet.data.list_files import list_records
from hpnet.data.official_splits import hmdb51_records, ucf101_records
from hpnet.data.records import RecordSplits

logger = logging.getLogger(__name__)


def records_for_config(
    cfg: Config, *, allow_missing: bool | None = None, needs_train: bool = True
) -> RecordSplits:
    """The records of ``cfg.data``; ``allow_missing`` overrides ``data.allow_missing``;
    ``needs_train=False`` (a test of a trained model): missing training videos are no error
    while every test video is there (one warning says how many).

    For ``synthetic`` these are the clips written as files
    (:func:`~hpnet.data.synthetic_files.synthetic_file_records`).
    """
    allow = cfg.data.allow_missing if allow_missing is None else allow_missing
    if needs_train or allow:
        return _records(cfg, allow)
    with quiet_logger("hpnet.data.records.missing"):
        splits = _records(cfg, True)
    if splits.missing_test:  # refused as any run refuses it (its other warnings said above)
        with quiet_logger("hpnet.data"):
            return _records(cfg, False)
    if splits.missing:
        logger.warning(
            "%d of the videos the %s files list are missing under %s, none of them a test "
            "video: a test does not need them", len(splits.missing),
            "split" if cfg.data.dataset in ("hmdb51", "ucf101") else "list", cfg.data.root,
        )  # fmt: skip
    return splits


def _records(cfg: Config, allow: bool) -> RecordSplits:
    """:func:`records_for_config` of one ``allow_missing``."""
    d = cfg.data
    if d.dataset in ("hmdb51", "ucf101", "folder", "unlabeled") and not d.root.strip():
        raise UserError(  # (read as the current folder, which a resume elsewhere is not)
            f"data.root is empty: set data.root=DIR, the folder of the {d.dataset} videos "
            "(data.root=. for the current folder)"
        )
    if d.dataset == "hmdb51":
        return hmdb51_records(d.root, d.split, d.split_dir or None, allow_missing=allow)
    if d.dataset == "ucf101":
        return ucf101_records(d.root, d.split, d.split_dir or None, allow_missing=allow)
    if d.dataset == "folder":
        return folder_records(d.root, test_fraction=d.test_fraction, seed=d.seed)
    if d.dataset == "list":
        if cfg.model.text and not d.classes_file:
            logger.warning(
                "data.dataset=list without data.classes_file: the classes are named class_0, "
                "class_1, ... and the text head (model.text=true) embeds those names, not your "
                "actions; give data.classes_file (one class name per line, in label order)"
            )
        return list_records(
            d.train_list, d.test_list, d.root, d.classes_file or None, allow_missing=allow
        )
    if d.dataset == "synthetic":
        from hpnet.data.synthetic_files import synthetic_file_records

        return synthetic_file_records(cfg, allow)
    if d.dataset == "unlabeled":
        from hpnet.data.unlabeled import unlabeled_records

        return unlabeled_records(d.root)
    raise ValueError(f"data.dataset={d.dataset!r} has no video records")
