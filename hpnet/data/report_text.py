"""The text of ``python -m hpnet.data``'s report (:func:`format_report`): what each split
holds per class, what is missing, what failed to decode, what training would refuse."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hpnet.cli import counted
from hpnet.data.records import some_names

_SHOW_MISSING = 10  # missing files the text report names
_WIDTH = 100  # text report width


def pose_cache_incomplete(report: dict[str, Any]) -> bool:
    """Some looked-up videos have no pose cache file while others have one (videos added
    since the caching: a problem; none cached yet is not)."""
    gone = report.get("pose_cache_missing")
    return bool(gone) and len(gone) < report["pose_cache_videos"]


def _class_table(classes: Sequence[str], *counts: dict[str, int]) -> list[str]:
    """Per-class ``train/test`` (or ``train/val/test``) counts in as many columns as fit."""
    cells = [(name, "/".join(str(c[name]) for c in counts)) for name in classes]
    name_w = max(len(n) for n, _ in cells)
    count_w = max(len(c) for _, c in cells)
    cell_w = name_w + 1 + count_w
    columns = max(1, (_WIDTH - 2) // (cell_w + 3))
    rows = -(-len(cells) // columns)
    lines = []
    for r in range(rows):
        row = [cells[c * rows + r] for c in range(columns) if c * rows + r < len(cells)]
        lines.append("  " + "   ".join(f"{n:<{name_w}} {c:>{count_w}}" for n, c in row).rstrip())
    return lines


def _missing_lines(report: dict[str, Any]) -> list[str]:
    """The report's lines on listed videos absent from disk, and how to go on."""
    missing = report["missing"]
    if report["rendered"] and not missing:
        return ["missing     none: the synthetic clips are rendered in memory"]
    if report["dataset"] == "unlabeled":
        return ["missing     none: no list files, every video under data.root is read"]
    if not missing:
        return [f"missing     none: all {report['listed']} listed videos are on disk"]
    lines = [f"MISSING: {len(missing)} of {report['listed']} listed videos are not on disk"]
    absent = report["absent_classes"]
    if absent:
        lines.append(f"  {len(absent)} classes have none of their videos: {some_names(absent)}")
    lines.append(f"  first {min(len(missing), _SHOW_MISSING)}:")
    lines += [f"    {path}" for path in missing[:_SHOW_MISSING]]
    if len(missing) > _SHOW_MISSING:
        lines.append(f"    ... and {len(missing) - _SHOW_MISSING} more (--json lists them all)")
    if report.get("root_hint"):  # data.root one level too high, folders in another case
        lines.append(f"  fix: {report['root_hint']}")
    elif not report["missing_allowed"]:
        lines.append("  fix: check data.root, or set data.allow_missing=true to use what is there")
    if report["missing_allowed"]:
        lines.append("  allowed (data.allow_missing=true): a run uses the videos on disk")
    return lines


def _decode_lines(report: dict[str, Any], frames: int) -> list[str]:
    """The report's lines on the decode check (``--check-decode``), if one ran."""
    if not report["checked"]:
        if report["rendered"]:
            return []
        return ["decoding    not checked (add --check-decode N or --check-decode all)"]
    bad = report["undecodable"]
    lines = [
        f"decoded     {counted(report['checked'], 'video')}, {len(bad)} failed (as the test "
        f"loader reads them: {frames} frames x {report['views']} views)"
    ]
    if report["short_videos"]:
        lines.append(
            f"            {report['short_videos']} have fewer than data.frames={frames} "
            f"frames (their last frame is repeated): {some_names(report.get('short_names', []), 4)}"
        )
    if bad:
        lines.append(f"UNDECODABLE: {counted(len(bad), 'video')} (data.on_error=skip skips them):")
        lines += [f"  {item['path']}: {item['error']}" for item in bad]
    return lines


def format_report(report: dict[str, Any], frames: int) -> str:
    """The human-readable report."""
    train, test = report["splits"]["train"], report["splits"]["test"]
    split = f" (official split {report['split']})" if report["split"] else ""
    lines = [
        f"dataset     {report['dataset']}{split}",
        f"root        {report['root']}",
    ]
    if report["split_dir"]:
        lines.append(f"split files {report['split_dir']}")
    val = report["splits"].get("val")
    if val:  # the training split less what is held out for validation
        kept = {c: n - val["per_class"][c] for c, n in train["per_class"].items()}
        counts, columns = (kept, val["per_class"], test["per_class"]), "train/val/test"
        videos = (
            f"{train['videos'] - val['videos']} train + {val['videos']} validation "
            f"(data.val_fraction={val['fraction']:g}), {test['videos']} test"
        )
    else:
        counts, columns = (train["per_class"], test["per_class"]), "train/test"
        videos = f"{train['videos']} train, {test['videos']} test"
    where = "rendered in memory" if report["rendered"] else f"on disk; {report['listed']} listed"
    if not report["classes"]:  # data.dataset=unlabeled: every video is a training one
        lines.append(f"videos      {train['videos']} under data.root, without labels (pretraining)")
    else:
        lines += [
            f"classes     {report['num_classes']}",
            f"videos      {videos} ({where})",
            "",
            f"videos per class ({columns}):",
            *_class_table(report["classes"], *counts),
        ]
    no_train = [c for c in report["classes"] if train["per_class"][c] == 0]
    if no_train and train["videos"]:
        lines.append(f"  ! {len(no_train)} classes have no training video: {some_names(no_train)}")
    lines += ["", *_missing_lines(report), *_decode_lines(report, frames)]
    unlisted = report.get("unlisted")
    if unlisted:  # (not a problem: the official protocol reads the listed videos only)
        lines.append(
            f"unlisted    {counted(len(unlisted), 'video')} under data.root that no split file "
            f"names, never read: {some_names(unlisted, 3)}"
        )
    for split in report.get("empty_splits", []):  # (training refuses such a dataset)
        lines.append(f"EMPTY: the {split} split has no videos on disk")
    gone = report.get("pose_cache_missing")
    replaced = report.get("pose_cache_replaced") or []
    if pose_cache_incomplete(report):
        lines.append(
            f"POSE CACHE: no file in pose.cache_dir for {counted(len(gone), 'video')} (the "
            f"first: {gone[0]}; training stops on them): python -m hpnet.pose.cache --config "
            "... computes them"
        )
    elif gone:
        lines.append("pose cache  none yet: python -m hpnet.pose.cache --config ... makes it")
    elif gone is not None and report["pose_cache_videos"]:  # (None: the run reads no cache)
        bad = report.get("pose_cache_undecodable") or []
        videos = counted(report["pose_cache_videos"] - len(bad), "train/test video")
        state = "complete" if not replaced else "files"  # (replaced ones: said below)
        lines.append(f"pose cache  {state}: a file for each of the {videos}")
        if bad:  # (the cache command's failures.json: training skips them)
            total = report["pose_cache_videos"]
            lines[-1] += (
                f" of {total}; the other {len(bad)} the cache command could not decode "
                f"({some_names(bad, 3)}): skipped"
            )
    if replaced:
        lines.append(
            f"POSE CACHE: {counted(len(replaced), 'video')} replaced since its file was made "
            f"({some_names(replaced, 3)}): python -m hpnet.pose.cache --config ... redoes them"
        )
    if report.get("class_clash"):
        lines.append(f"CLASSES: {report['class_clash']}")
    if report.get("val_problem"):
        lines.append(f"VALIDATION: {report['val_problem']}")
    lines += ["", "result      OK" if report["ok"] else "result      PROBLEMS FOUND (exit code 1)"]
    return "\n".join(lines)
