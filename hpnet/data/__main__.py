"""Inspect a dataset before a long run: ``python -m hpnet.data --config X.yaml [key=value ...]``.

Prints the dataset, root, split, number of classes, videos per split and per class, and the
videos the split/list files name that are not on disk. ``--check-decode N`` decodes N random
videos (``all``: every video) the way the test loader does (``data.frames`` frames in
``eval.views`` views, resized to the loader canvas), in ``data.workers`` worker processes (at
most one per CPU), and lists the files that fail with their error. Unlike training, missing
files never stop the command: they are all reported.

Exit code: 0 when every listed video is there (and decodes, with ``--check-decode``); 1 when
some are missing or undecodable; 2 for a bad argument or config.

``--json`` prints one JSON object instead of the text report, with the keys:

- ``dataset``, ``root``, ``split`` (official split number; null for folder/list/synthetic),
  ``split_dir`` (folder of the split files; null when there is none)
- ``classes`` (names, label = position), ``num_classes``
- ``splits``: ``{"train": {"videos": int, "per_class": {name: int}}, "test": {...}}``
  (videos that are on disk); with ``data.val_fraction`` > 0 also ``"val"``: the videos held out
  of ``train`` for validation (the same ones training holds out), plus its ``"fraction"``
- ``listed``: how many videos the split/list files name (HMDB51: the unused ones too)
- ``missing``: paths relative to ``root`` of the listed videos that are not on disk
- ``absent_classes``: classes none of whose listed videos is on disk
- ``checked``: how many videos were decoded (0 without ``--check-decode``), each as
  ``data.frames`` frames in ``views`` (= ``eval.views``) temporal views
- ``undecodable``: ``[{"path": relative path, "error": message}]``
- ``short_videos``: how many checked videos have fewer frames than ``data.frames``;
  ``short_names``: their paths relative to ``root``
- ``rendered``: true for the synthetic dataset rendered in memory (no files to check; with
  ``pose.source=cache`` it is read from the video files written into ``root``)
- ``missing_allowed``: ``data.allow_missing`` (missing videos are then no problem)
- ``empty_splits``: ``train`` / ``test`` when that split has no video on disk
- ``pose_cache_missing``: with ``model.pose`` and ``pose.source=cache``, the train and test
  videos on disk without a pose cache file (null otherwise; ``pose_cache_videos``: how many
  were looked up); training stops at start on any. A problem when the cache has files for
  others (videos added since), not before the first caching. ``pose_cache_undecodable``: those
  the cache command could not decode (its ``failures.json``), which training skips;
  ``pose_cache_replaced``: those whose video changed size since its file was made (a problem:
  training refuses them until the cache command redoes them)
- ``unlisted``: (HMDB51, UCF101) the videos under ``root`` that no split file names (training
  never reads them); null for other datasets, or with a ``root_hint``
- ``root_hint``: data.root one level above the class folders, or folders named in another
  case than the split files (what to set; '' otherwise)
- ``val_problem``: why training refuses ``data.val_fraction`` on these videos, or ''
- ``class_clash``: why training refuses the classes (one class; with ``model.text``, two of
  them the same words, ``Punch`` and ``punch``), or ''
- ``ok``: true when nothing is undecodable, nothing missing unless allowed, no split empty,
  no pose cache file missing beside cached ones, no class clash and no ``val_problem``
  (exit code 0)

With ``data.joint`` each dataset of the joint run is reported in turn, as training reads it;
``--json`` then prints ``{"datasets": {name: report}, "ok": all of them ok}``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from hpnet.cli import CommandParser, UserError, progress_enabled, quiet_logger, run_cli
from hpnet.config import (
    Config,
    dataset_configs,
    joint_entry_error,
    joint_entry_keys,
    load_config,
)
from hpnet.config_cli import add_config_arguments
from hpnet.data.datasets import (
    VideoClipDataset,
    loader_canvas,
    records_for_config,
    synthetic_actions,
)
from hpnet.data.holdout import config_validation_split, rendered_keys
from hpnet.data.loader import ForkSafeLoader, usable_cpus
from hpnet.data.official_splits import HMDB51_SPLIT_DIR, UCF101_SPLIT_DIR, default_split_dir
from hpnet.data.records import VideoRecord, per_class_counts, videos_under
from hpnet.data.report_text import format_report, pose_cache_incomplete


def _decode_count(text: str) -> int | None:
    """``--check-decode`` value: a positive count, or ``all`` (None)."""
    if text.lower() == "all":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'all', got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="python -m hpnet.data",
        description="Inspect a dataset: videos per split and class, missing and undecodable files.",
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--check-decode",
        metavar="N|all",
        type=_decode_count,
        default=0,
        help="decode N random videos (or all) as the test loader does, in data.workers processes",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


class _DecodeCheck(Dataset):
    """Item i = ``(i, error message or None, frame count)`` of decoding record i's test clip."""

    def __init__(self, clips: VideoClipDataset) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[int, str | None, int]:
        try:
            _, _, info = self.clips.read_clip(self.clips.records[i])
        except Exception as err:  # report every failure; this command must not stop on one
            reason = getattr(err, "reason", None)  # VideoDecodeError: without the path again
            return i, reason or str(err) or type(err).__name__, 0
        return i, None, info.num_frames


def _check_decode(
    records: list[VideoRecord], cfg: Config, count: int | None, show_progress: bool
) -> tuple[list[dict[str, str]], int, int]:
    """Decode ``count`` random records (None = all): ``(undecodable, checked, short)``
    (``short``: the relative paths of those with fewer than ``data.frames`` frames)."""
    if count is not None and count < len(records):
        rng = np.random.default_rng(cfg.data.seed)
        picked = sorted(rng.choice(len(records), size=count, replace=False).tolist())
        records = [records[i] for i in picked]
    clips = VideoClipDataset(
        records,
        frames=cfg.data.frames,
        train=False,
        views=cfg.eval.views,
        canvas_hw=loader_canvas(cfg.data.size, cfg.data.load_size, cfg.data.aspect),
        resize=cfg.data.resize,
        interpolation=cfg.data.interpolation,
        on_error="raise",
        backend=cfg.data.decoder,
        max_pixels=cfg.data.max_pixels,
    )
    loader = ForkSafeLoader(
        _DecodeCheck(clips),
        batch_size=None,
        num_workers=min(cfg.data.workers, len(records), usable_cpus()),
    )  # decoding is CPU work: no more processes than CPUs
    undecodable, short = [], []
    for i, error, num_frames in tqdm(
        loader,
        total=len(records),
        desc="decoding",
        unit="video",
        disable=not progress_enabled(show_progress),
    ):
        if error is not None:
            undecodable.append({"path": records[i].rel, "error": error})
        elif num_frames < cfg.data.frames:
            short.append(records[i].rel)
    undecodable.sort(key=lambda item: item["path"])
    return undecodable, len(records), sorted(short)


def _synthetic_report(cfg: Config) -> dict[str, Any]:
    """Counts of the rendered dataset (clip i has label i % C): nothing to read from disk."""
    s = cfg.data.synthetic
    classes = list(synthetic_actions(cfg))  # refused as training refuses them
    per_split = {}
    for name, num in (("train", s.train_videos), ("test", s.test_videos)):
        base, extra = divmod(num, len(classes))
        per_class = {c: base + (i < extra) for i, c in enumerate(classes)}
        per_split[name] = {"videos": num, "per_class": per_class}
    return {"classes": classes, "splits": per_split, "listed": s.train_videos + s.test_videos}


def _validation_report(
    cfg: Config, keys: list[str], labels: list[int], classes: list[str]
) -> dict[str, Any]:
    """The ``val`` split entry: what training holds out of ``train`` (``data.val_fraction``)."""
    _, held = config_validation_split(cfg, keys, labels, classes)
    per_class = dict.fromkeys(classes, 0)
    for i in held:
        per_class[classes[labels[i]]] += 1
    return {"videos": len(held), "per_class": per_class, "fraction": cfg.data.val_fraction}


def inspect_dataset(cfg: Config, check_decode: int | None = 0, progress: bool = True) -> dict:
    """The report of ``python -m hpnet.data`` as a dict (keys: see the module docstring)."""
    d = cfg.data
    report: dict[str, Any] = {
        "dataset": d.dataset,
        "root": d.root,
        "split": d.split if d.dataset in ("hmdb51", "ucf101") else None,
        "split_dir": _split_dir(cfg),
        "views": cfg.eval.views,
        "absent_classes": [], "root_hint": "", "unlisted": None,
        "missing": [], "checked": 0, "undecodable": [], "short_videos": 0, "short_names": [],
    }  # fmt: skip
    report["rendered"] = d.dataset == "synthetic" and cfg.pose.source != "cache"
    if report["rendered"]:  # in memory: no files to look for
        report.update(_synthetic_report(cfg))
        num, classes = cfg.data.synthetic.train_videos, report["classes"]
        train_keys = rendered_keys(num)
        train_labels = [i % len(classes) for i in range(num)]  # clip i has label i % C
    else:
        train_keys, train_labels = _files_report(cfg, report, check_decode, progress)
    report["val_problem"] = ""
    if cfg.data.val_fraction and train_keys and report["classes"]:  # (unlabeled: no labels)
        try:  # (too few videos on disk: said beside what is missing, not instead of it)
            val = _validation_report(cfg, train_keys, train_labels, report["classes"])
            report["splits"]["val"] = val
        except UserError as err:
            report["val_problem"] = str(err)
    report["num_classes"] = len(report["classes"])
    report["missing_allowed"] = bool(cfg.data.allow_missing)
    needed = ("train",) if cfg.data.dataset == "unlabeled" else ("train", "test")  # (no test)
    report["empty_splits"] = [name for name in needed if not report["splits"][name]["videos"]]
    report["class_clash"] = _class_clash(cfg, report["classes"])
    problems = [
        report["missing"] and not cfg.data.allow_missing, report["undecodable"],
        report["empty_splits"], pose_cache_incomplete(report), report["class_clash"],
        report["val_problem"], report.get("pose_cache_replaced"),
    ]  # fmt: skip
    report["ok"] = not any(problems)
    return report


def _split_dir(cfg: Config) -> str | None:
    """The HMDB51 / UCF101 split folder a run reads (None for other datasets)."""
    d = cfg.data
    if d.dataset not in ("hmdb51", "ucf101") or d.split_dir:  # (given: not looked for)
        return d.split_dir or None
    default = HMDB51_SPLIT_DIR if d.dataset == "hmdb51" else UCF101_SPLIT_DIR
    root = Path(d.root).expanduser()
    return str(default_split_dir(root, default) if root.is_dir() else root / default)


def _files_report(
    cfg: Config, report: dict[str, Any], check_decode: int | None, progress: bool
) -> tuple[list[str], list[int]]:
    """Fill ``report`` with what the list files or folders of a dataset on disk hold (per
    split and class, missing, unlisted, pose cache, decoding); returns the training videos'
    keys and labels (for the validation split)."""
    d = cfg.data
    with quiet_logger("hpnet.data.records.missing"):  # (listed below; others are said)
        splits = records_for_config(cfg, allow_missing=True)
    report["classes"] = list(splits.classes)
    report["root_hint"] = splits.root_hint
    if d.dataset in ("hmdb51", "ucf101") and not splits.root_hint:  # (else: all of them)
        report["unlisted"] = _unlisted(Path(d.root).expanduser(), splits.listed_rels)
    report["splits"] = {
        name: {"videos": len(recs), "per_class": per_class_counts(recs, splits.classes)}
        for name, recs in (("train", splits.train), ("test", splits.test))
    }
    report["listed"] = splits.listed
    report["missing"] = [r.rel for r in splits.missing]
    missing_per_class = per_class_counts(splits.missing, splits.classes)
    listed_per_class = dict(missing_per_class)
    for records in (splits.train, splits.test):
        for name, n in per_class_counts(records, splits.classes).items():
            listed_per_class[name] += n
    report["absent_classes"] = [
        c for c, n in missing_per_class.items() if n and n == listed_per_class[c]
    ]
    present = sorted({r.rel: r for r in splits.train + splits.test}.values(), key=_rel)
    cache = _pose_cache_missing(cfg, present)
    report["pose_cache_missing"], report["pose_cache_undecodable"], replaced = cache
    report["pose_cache_replaced"] = replaced
    report["pose_cache_videos"] = len(present)  # (checked; HMDB51 lists unused ones too)
    if check_decode != 0:
        undecodable, checked, short = _check_decode(present, cfg, check_decode, progress)
        report.update(
            undecodable=undecodable, checked=checked, short_videos=len(short), short_names=short
        )
    return [r.rel for r in splits.train], [r.label for r in splits.train]


def _unlisted(root: Path, listed: set[str]) -> list[str]:
    """The videos under ``root`` that no split file names (relative paths): training never
    reads them (a video added to a class folder, a class that classInd.txt leaves out)."""
    on_disk = (path.relative_to(root).as_posix() for path in videos_under(root))
    return [rel for rel in on_disk if rel not in listed]


def _class_clash(cfg: Config, classes: Sequence[str]) -> str:
    """Why training refuses these classes (one class; with the text head, ``model.text=true``,
    two that read as the same words: ``Punch/`` and ``punch/``), or ''."""
    from hpnet.text.prompts import check_distinct_phrases

    if len(classes) == 1:  # (none: unlabeled videos, or nothing found: said apart)
        return (
            f"1 class ({classes[0]}): a classifier needs 2 or more (training refuses it; "
            "pretraining reads no labels: data.dataset=unlabeled says so)"
        )
    if not cfg.model.text:
        return ""
    try:
        check_distinct_phrases(classes, "the classes")
    except UserError as err:
        return f"{err} (training refuses them with model.text=true)"
    return ""


def _pose_cache_missing(
    cfg: Config, records: Sequence[VideoRecord]
) -> tuple[list[str] | None, list[str] | None, list[str] | None]:
    """The relative paths of ``records`` without a pose cache file (as training checks at
    start), and of those the cache command could not decode (a bad video, not a missing one:
    training skips it), and of those replaced since their file was made (training refuses
    them); Nones when the run reads no cache (``model.pose=false`` or another source). Cache
    files made with other ``pose.*`` settings are warned of, as training warns."""
    if not cfg.model.pose or cfg.pose.source != "cache" or cfg.data.dataset == "unlabeled":
        return None, None, None
    from hpnet.pose.store import JointCache

    cache = JointCache(cfg.pose.cache_dir, persons=cfg.pose.persons)
    cache.warn_other_settings(records, cfg.pose)
    without, bad = {r.rel for r in cache.missing(records)}, set(cache.undecodable)
    replaced = sorted(r.rel for r in cache.replaced(records))
    return sorted(without - bad), sorted(without & bad), replaced


def _rel(record: VideoRecord) -> str:
    return record.rel


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (UserError for bad config, see :func:`cli`).
    With ``data.joint``: one report per dataset (``--json``: ``{"datasets": {name: report},
    "ok": ...}``), exit code 0 when every one is OK."""
    args = _parser().parse_intermixed_args(argv)
    cfg = load_config(args.config, args.overrides)
    entries = dataset_configs(cfg)
    reports = {}
    for name, one in entries:
        try:
            reports[name] = inspect_dataset(one, args.check_decode, progress=not args.json)
        except UserError as err:
            raise joint_entry_error(name, err) if name else err from None
    ok, frames = all(r["ok"] for r in reports.values()), cfg.data.frames  # one for all entries
    if args.json:
        print(json.dumps(reports.get("", {"datasets": reports, "ok": ok})))  # "": not joint
    else:
        texts = [
            f"== data.joint dataset {name}\n{joint_entry_keys(name, format_report(r, frames))}"
            if name
            else format_report(r, frames)
            for (name, _), r in zip(entries, reports.values(), strict=True)
        ]
        print("\n\n".join(texts))
    return 0 if ok else 1


def cli(argv: Sequence[str] | None = None) -> None:
    """Console entry point: exit code 2 with a one-line message on a bad argument."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
