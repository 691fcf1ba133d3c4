"""The command-line parts that ``hpnet.predict`` and ``hpnet.zeroshot`` share: their video
and ``key=value`` arguments, and their output (a table, or one JSON document)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpnet.config_cli import OneConfig, add_help_config
from hpnet.predictor import Predictor

# data.frames=8 (also a misspelt "frames=8" or a joint entry's "data.joint.a-1.root=x": named
# as a bad key, not tried as a video), not a file name
OVERRIDE = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*=")


def split_inputs(items: Sequence[str]) -> tuple[list[str], list[str]]:
    """Positional arguments -> ``(videos, key=value overrides)``; an existing path is a video."""
    videos, overrides = [], []
    for item in items:
        is_override = OVERRIDE.match(item) and not Path(item).exists()
        (overrides if is_override else videos).append(item)
    return videos, overrides


def print_table(results: list[dict[str, Any]], top_k: int) -> None:
    """Human-readable output: per video its top-k labels with probabilities."""
    for r in results:
        if not r["ok"]:
            print(f"{r['video']}: FAILED: {r['error']}")
            continue
        timing = ", ".join(f"{stage} {t:.2f} s" for stage, t in r.get("seconds", {}).items())
        pose = f"pose: {r['pose']}; " if "pose" in r else ""
        print(f"{r['video']}  ({pose}{timing})")
        for rank, t in enumerate(r["top"][:top_k], 1):
            print(f"  {rank}. {t['label']:<28s} {100 * t['prob']:6.2f} %")
        if "window" in r:  # a timeline: the windows as run (whole grid steps)
            every = f"every {r['stride']:g} s over {r['duration']:g} s"
            if len(r["windows"]) == 1:  # (a stride of no consequence)
                every = f"(one: the video is {r['duration']:g} s)"
            print(f"  windows of {r['window']:g} s {every}")
        for seg in r.get("segments", []):
            span = f"{seg['start']:8.2f} - {seg['end']:8.2f} s"
            print(f"  {span}  {seg['label']:<28s} {100 * seg['score']:6.2f} %")
        for kind in ("overlay", "timeline"):
            if r.get(kind):
                print(f"  {kind}: {r[kind]}")


def add_video_arguments(
    parser: argparse.ArgumentParser, *, videos: str, labels: str, config: str
) -> None:
    """The arguments ``hpnet.predict`` and ``hpnet.zeroshot`` share (``videos``: nargs;
    ``config``: where the settings come from without ``--config``)."""
    parser.add_argument(
        "inputs",
        nargs=videos,
        metavar="VIDEO|FOLDER|key=value",
        help="video files or folders (searched recursively), then optional config overrides",
    )
    parser.add_argument("--config", action=OneConfig, help=f"YAML config file (default: {config})")
    add_help_config(parser)
    parser.add_argument("--top-k", type=int, default=5, help="labels shown per video (5)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--labels", help=f'{labels}, comma-separated: "wave,clap,run"')
    parser.add_argument("--labels-file", help=f"{labels}, one per line")


def emit(
    results: list[dict[str, Any]],
    predictor: Predictor,
    *,
    top_k: int,
    as_json: bool,
    source: dict[str, Any],
    views: int | None = None,
) -> int:
    """Print the results (table, or one JSON document with ``source`` first); the exit code:
    1 when a video could not be read, else 0. ``views``: clips scored per video (default
    ``eval.views``; a timeline's windows are one each)."""
    failed = sum(not r["ok"] for r in results)
    if as_json:
        cfg = predictor.cfg
        document = {
            **source,
            "labels": predictor.labels,
            "top_k": min(top_k, len(predictor.labels)),  # (as many as there are)
            "frames": cfg.data.frames,
            "views": cfg.eval.views if views is None else views,
            "crops": cfg.eval.crops,
            "videos": results,
            "failed": failed,
        }
        json.dump(document, sys.stdout, indent=2)
        print()
    else:
        print_table(results, top_k)
        if failed:
            print(f"{failed} of {len(results)} videos could not be read")
    return 1 if failed else 0
