"""What ``python -m hpnet.pose.cache`` caches, and which share of it is this process's.

The videos of a dataset (every split) or of a folder, sorted by path; a share is
``sorted_videos[k::n]`` for ``--shard K/N`` machines times torchrun ranks, each on
``cuda:LOCAL_RANK``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from hpnet.cli import UserError
from hpnet.config import Config
from hpnet.data.records import videos_under


@dataclass(frozen=True)
class VideoJob:
    """One video to cache: its file and its path relative to the dataset or folder root."""

    path: Path
    rel: str


# ----------------------------------------------------------------------------- which videos


def folder_videos(folder: str | Path) -> list[VideoJob]:
    """Every video file under ``folder`` (recursive, hidden entries skipped), sorted by path."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"video folder not found: {root} (--videos DIR)")
    jobs = [VideoJob(p, p.relative_to(root).as_posix()) for p in videos_under(root)]
    return sorted(jobs, key=lambda j: j.rel)


def dataset_videos(cfg: Config) -> list[VideoJob]:
    """Every video of ``cfg.data``'s dataset, all splits (HMDB51 / UCF101: splits 1-3)."""
    from hpnet.data.datasets import records_for_config

    if cfg.data.dataset == "synthetic":
        jobs = folder_videos(cfg.data.root) if Path(cfg.data.root).is_dir() else []
        if not jobs:
            raise UserError(
                f"no synthetic video files under data.root={cfg.data.root}: write them first "
                "(hpnet.data.synthetic.write_synthetic_videos) or use pose.source=groundtruth"
            )
        return jobs
    splits = (1, 2, 3) if cfg.data.dataset in ("hmdb51", "ucf101") else (cfg.data.split,)
    found: dict[str, VideoJob] = {}
    for split in splits:
        cfg.data.split = split
        train, test, _ = records_for_config(cfg)
        for record in (*train, *test):
            found[record.rel] = VideoJob(Path(record.path), record.rel)
    return sorted(found.values(), key=lambda j: j.rel)


# ----------------------------------------------------------------------------- shares


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r} must look like K/N, e.g. 0/4") from None
    if not 0 <= k < n:
        raise UserError(f"--shard {text}: K must be in [0, N) (shards are numbered from 0)")
    return k, n


def this_share(shard: tuple[int, int] | None) -> tuple[int, int]:
    """(index, count) of this process's share: ``--shard`` machines x torchrun ranks."""
    k, n = shard or (0, 1)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    return k * world + rank, n * world


def share_device(device: str) -> str:
    """``auto``/``cuda`` under torchrun -> ``cuda:LOCAL_RANK``; anything else unchanged."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return device
