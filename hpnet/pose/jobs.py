"""What ``python -m hpnet.pose.cache`` caches, and which share of it is this process's.

The videos of a dataset (every split) or of a folder, sorted by path; a share is
``sorted_videos[k::n]`` for ``--shard K/N`` machines times torchrun ranks, each on
``cuda:LOCAL_RANK``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpnet.atomic import remove_stale_temp_files, temp_file_names, temp_stem
from hpnet.cli import UserError, missing
from hpnet.config import Config, dataset_configs
from hpnet.data.records import VIDEO_EXTENSIONS, videos_under
from hpnet.pose.store import cache_path, is_cached


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
        raise UserError(f"video folder {missing(root, folder=True)}: {root} (--videos DIR)")
    jobs = [VideoJob(p, p.relative_to(root).as_posix()) for p in videos_under(root)]
    return sorted(jobs, key=lambda j: j.rel)


def dataset_videos(cfg: Config) -> list[VideoJob]:
    """Every video of ``cfg.data``'s dataset, all splits (HMDB51 / UCF101: splits 1-3)."""
    from hpnet.data.datasets import records_for_config

    if cfg.data.dataset == "synthetic":
        from hpnet.data.synthetic_files import config_settings, write_command

        jobs = folder_videos(cfg.data.root) if Path(cfg.data.root).is_dir() else []
        if not jobs:
            raise UserError(
                f"no synthetic video files under data.root={cfg.data.root}: write them first "
                f"({write_command(cfg.data.root, config_settings(cfg))}) or use "
                "pose.source=groundtruth"
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


@dataclass
class CacheFolder:
    """The videos that go into one cache folder, with the config that caches them."""

    cache_dir: Path
    cfg: Config  # the (first) dataset's config: pose.*, data.decoder, data.max_pixels
    jobs: list[VideoJob]
    names: list[str]  # the data.joint entries caching here ([""] for one dataset)


def config_folders(cfg: Config) -> list[CacheFolder]:
    """Every dataset's videos by the cache folder training reads them from: ``pose.cache_dir``,
    or per ``data.joint`` entry its ``pose_cache_dir`` (entries sharing a folder share a pass).

    Raises UserError naming the entry for a dataset without videos, and for two datasets whose
    different videos would get one file (the same path under their roots, in one folder).
    """
    folders: dict[Path, CacheFolder] = {}
    for name, one in dataset_configs(cfg):
        where = f"data.joint entry '{name}': " if name else ""
        try:
            jobs = dataset_videos(copy.deepcopy(one))
        except UserError as err:
            raise UserError(f"{where}{err}") from None
        if not jobs:
            raise UserError(
                f"{where}no video files ({', '.join(VIDEO_EXTENSIONS)}) under "
                f"data.root={one.data.root}"
            )
        cache_dir = Path(one.pose.cache_dir).expanduser().resolve()  # one folder, one name
        folder = folders.setdefault(cache_dir, CacheFolder(cache_dir, one, [], []))
        reading = ("decoder", "max_pixels")  # how the pass reads every video of the folder
        if any(getattr(one.data, k) != getattr(folder.cfg.data, k) for k in reading):
            raise UserError(
                f"{where}its data.decoder / data.max_pixels differ from entry "
                f"'{folder.names[0]}', which caches into the same pose_cache_dir {cache_dir}: "
                "give the entries their own pose_cache_dir, or the same values"
            )
        known = {job.rel: job for job in folder.jobs}
        for job in jobs:
            other = known.get(job.rel)
            if other is not None and other.path != job.path:
                raise UserError(
                    f"{where}{job.path} and {other.path} would share the pose cache file "
                    f"{cache_dir / job.rel}.npz: give the data.joint entries their own "
                    "pose_cache_dir"
                )
            if other is None:
                folder.jobs.append(job)
        folder.names.append(name)
    for folder in folders.values():
        folder.jobs.sort(key=lambda j: j.rel)
    return list(folders.values())


def uncached(jobs: Sequence[VideoJob], cache_dir: Path, settings: dict[str, Any]) -> list[VideoJob]:
    """The jobs whose cache file is missing, was made with other settings or from another
    video than the one now at the job's path (replaced since); on the way, the temporary files
    a killed run left beside each target are removed."""
    todo = []
    temp_files: dict[Path, set[str]] = {}  # folder -> its *.tmp names, listed once (13k videos)
    for job in jobs:
        target = cache_path(cache_dir, job.rel)
        if target.parent not in temp_files:
            temp_files[target.parent] = temp_file_names(target.parent)
        begins = f"{temp_stem(target)}."
        if any(name.startswith(begins) for name in temp_files[target.parent]):
            remove_stale_temp_files(target, keep_live_writers=True)  # (a run of other shares)
        if not is_cached(target, settings, job.path):
            todo.append(job)
    return todo


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
