"""The cache command's report of each run: ``<cache_dir>/failures.json`` (counts, timings,
and every video that failed with its error), one file per share when ``--shards`` splits the
run, merged by whichever share finishes last.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hpnet.atomic import write_error, write_json
from hpnet.cli import counted

REPORT_NAME = "failures.json"  # the cache command's report: the videos it could not decode


@dataclass
class ShardReport:
    """What one share of a cache run did; the merged report has the same fields."""

    shard: int = 0
    shards: int = 1
    videos: int = 0  # videos in this share
    cached: int = 0  # written by this run
    skipped: int = 0  # already cached with the same settings
    frames: int = 0  # frames through the model
    seconds: float = 0.0  # wall time of the share (merged: the slowest share)
    failures: list[dict[str, str]] = field(default_factory=list)  # {"path", "rel", "error"}
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def summary(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{counted(self.videos, 'video')}: {self.cached} cached, {self.skipped} already done, "
            f"{self.failed} failed; {self.frames} frames in {self.seconds:.1f} s "
            f"({rate:.1f} frames/s)"
        )


def shard_report_path(cache_dir: str | Path, shard: int, shards: int) -> Path:
    if shards == 1:
        return Path(cache_dir) / REPORT_NAME
    return Path(cache_dir) / f"failures-{shard}-of-{shards}.json"


def clear_shard_report(
    cache_dir: str | Path, shard: int, shards: int, *, folder_option: str
) -> None:
    """Remove this share's report of an earlier run (so no merge uses it)."""
    if shards > 1:
        path = shard_report_path(cache_dir, shard, shards)
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            raise write_error(
                path, err, what="pose cache report", folder_option=folder_option
            ) from err


def _write_json(path: Path, data: Any, folder_option: str) -> None:
    write_json(path, data, indent=1, what="pose cache report", folder_option=folder_option)


def _read_report(path: Path) -> ShardReport | None:
    """The report at ``path`` (keys it does not know are passed over); None when it is missing
    or not a report (cut short, hand-edited into something else)."""
    known = {f.name for f in fields(ShardReport)}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ShardReport(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def undecodable_videos(cache_dir: str | Path) -> dict[str, str]:
    """``{rel: error}`` of the videos the cache command could not decode, from
    ``<cache_dir>/failures.json``; empty without a readable report. An entry without its
    ``rel`` is passed over."""
    report = _read_report(Path(cache_dir) / REPORT_NAME)
    failures = report.failures if report is not None and isinstance(report.failures, list) else []
    entries = [f for f in failures if isinstance(f, dict) and f.get("rel")]
    return {str(f["rel"]): str(f.get("error") or "") for f in entries}


def write_shard_report(
    cache_dir: str | Path, report: ShardReport, *, folder_option: str
) -> ShardReport | None:
    """Write this share's report; when every share's report is there, merge them.

    The merge goes to ``<cache_dir>/failures.json`` (a single share writes it directly) and is
    returned; None while other shares are still running. No process group is needed: the share
    that finishes last sees all reports, and two shares merging at once write the same file.
    A stale report of an earlier run can make an early merge incomplete; the last share's merge
    replaces it. A failed write raises :class:`hpnet.atomic.WriteError`.
    """
    data = {**asdict(report), "failed": report.failed}
    _write_json(shard_report_path(cache_dir, report.shard, report.shards), data, folder_option)
    if report.shards == 1:
        return report
    parts = [
        _read_report(shard_report_path(cache_dir, k, report.shards)) for k in range(report.shards)
    ]
    if any(p is None for p in parts):
        return None
    merged = ShardReport(shard=0, shards=report.shards, settings=report.settings)
    for part in parts:
        merged.videos += part.videos
        merged.cached += part.cached
        merged.skipped += part.skipped
        merged.frames += part.frames
        merged.seconds = max(merged.seconds, part.seconds)
        merged.failures += part.failures
    merged.failures.sort(key=lambda f: f.get("rel", ""))
    merged_data = {**asdict(merged), "failed": merged.failed}
    _write_json(Path(cache_dir) / REPORT_NAME, merged_data, folder_option)
    return merged
