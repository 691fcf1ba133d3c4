"""``python -m hpnet.pose.cache``: joints of every video, computed once, batched and resumable.

    python -m hpnet.pose.cache --config configs/hmdb51_fusion.yaml          # the dataset's videos
    python -m hpnet.pose.cache --videos clips/ --out pose_cache/ --preview 8  # any folder
    torchrun --nproc_per_node=8 -m hpnet.pose.cache --config ...             # one share per GPU
    python -m hpnet.pose.cache --config ... --shard 2/4                      # machine 3 of 4

Worker processes decode every ``pose.stride``-th frame of the videos (on the CPU, resized to the
model's letterbox size) while the model runs batches of ``pose.batch`` frames that cross video
boundaries. Each video's joints go to ``<cache_dir>/<relative path>.npz`` (see
:mod:`hpnet.pose.store`) by an atomic rename, so a run killed at any moment leaves only whole
files; a rerun skips videos cached with the same settings and redoes the others. A video that
cannot be decoded is listed in ``<cache_dir>/failures.json`` (path, error) and the run goes on;
the exit code is 1 when anything failed. A full disk, quota or file-size limit, a permission
problem or a read-only cache folder is no video's fault (every following file would fail the same
way): it stops the run with a one-line error (exit code 2); the files written so far stay valid.
Under torchrun (RANK, WORLD_SIZE) and/or with ``--shard K/N`` each process takes the sorted
videos ``[k::n]`` on ``cuda:LOCAL_RANK``; each share writes ``failures-<k>-of-<n>.json`` and
whichever finishes last merges them.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from hpnet.atomic import WriteError
from hpnet.cli import CommandParser, UserError, counted, progress_enabled, run_cli
from hpnet.config import Config, load_config
from hpnet.config_cli import add_config_arguments
from hpnet.data.loader import ForkSafeLoader
from hpnet.data.records import VIDEO_EXTENSIONS
from hpnet.devices import pick_device
from hpnet.pose.estimator import (
    PoseEstimator,
    resolve_precision,
    resolve_weights,
    weights_fingerprint,
)
from hpnet.pose.frames import FrameChunks
from hpnet.pose.jobs import (
    CacheFolder,
    VideoJob,
    config_folders,
    folder_videos,
    parse_shard,
    share_device,
    this_share,
    uncached,
)
from hpnet.pose.preview import write_previews
from hpnet.pose.report import REPORT_NAME, ShardReport, clear_shard_report, write_shard_report
from hpnet.pose.same_video import video_facts
from hpnet.pose.store import CACHE_DIR_OPTION, FRAMES_AS, cache_path, save_joints
from hpnet.pose.tracking import FrameDetections, track_persons
from hpnet.run_lock import run_folder_lock

# ----------------------------------------------------------------------------- the run


@dataclass
class _VideoState:
    chunks: int
    info: tuple
    done_chunks: int = 0
    rows: list[tuple[int, FrameDetections]] = field(default_factory=list)


class CacheRun:
    """Caches ``jobs`` with ``estimator``; counts into :class:`ShardReport`."""

    def __init__(
        self,
        jobs: Sequence[VideoJob],
        estimator: PoseEstimator,
        *,
        cache_dir: Path,
        settings: dict[str, Any],
        batch: int,
        report: ShardReport,
        folder_option: str = CACHE_DIR_OPTION,
    ) -> None:
        self.jobs, self.estimator, self.cache_dir = list(jobs), estimator, cache_dir
        self.settings, self.batch, self.report = settings, batch, report
        self.folder_option = folder_option
        self.states: dict[int, _VideoState] = {}
        self.failed: set[int] = set()
        self.finished: set[int] = set()
        self.queue: deque[tuple[int, torch.Tensor, torch.Tensor, bool]] = deque()
        self.queued = 0
        self.bar: tqdm | None = None
        self.start = time.perf_counter()

    def run(self, chunks: Iterator[dict[str, Any]], bar: tqdm) -> None:
        """Feed decoded chunks to the model ``batch`` frames at a time, across videos."""
        self.bar = bar
        for item in chunks:
            video = int(item["video"])
            if item["error"] is not None:
                self._fail(video, item["error"])
                continue
            self.states.setdefault(video, _VideoState(int(item["chunks"]), tuple(item["info"])))
            self.queue.append((video, item["frames"], item["indices"], True))
            self.queued += len(item["indices"])
            while self.queued >= self.batch:
                self._run_batch(self.batch)
        while self.queued:
            self._run_batch(self.batch)

    def _take(self, count: int) -> list[tuple[int, torch.Tensor, torch.Tensor, bool]]:
        pieces = []
        while count and self.queue:
            video, frames, indices, ends = self.queue.popleft()
            if len(indices) > count:  # split the chunk; its tail waits for the next batch
                self.queue.appendleft((video, frames[count:], indices[count:], ends))
                frames, indices, ends = frames[:count], indices[:count], False
            pieces.append((video, frames, indices, ends))
            count -= len(indices)
            self.queued -= len(indices)
        return pieces

    def _run_batch(self, count: int) -> None:
        pieces = [p for p in self._take(count) if p[0] not in self.failed]
        if not pieces:
            return
        detections = iter(self.estimator.detect([frames for _, frames, _, _ in pieces]))
        for video, _, indices, ends in pieces:
            state = self.states[video]
            state.rows += [(int(i), next(detections)) for i in indices]
            self.report.frames += len(indices)
            state.done_chunks += ends
            if state.done_chunks == state.chunks:
                self._finish(video)

    def _finish(self, video: int) -> None:
        """All frames of ``video`` are through the model: assign person slots, write the file."""
        state, job = self.states.pop(video), self.jobs[video]
        state.rows.sort(key=lambda row: row[0])
        keypoints = track_persons([det for _, det in state.rows], self.settings["persons"])
        num_frames, fps, width, height, decoder, rotation, pixel_aspect = state.info
        meta = {
            **self.settings,
            "num_frames": num_frames,
            "fps": fps,
            "width": width,  # of the frames as displayed
            "height": height,
            "rotation": rotation,  # turned and pixel-aspect corrected so (see store.py)
            "pixel_aspect": pixel_aspect,
            "decoder": decoder,  # which reader numbered the frames (see JointCache)
            **video_facts(job.path),  # to tell on a rerun that the video was replaced
        }
        path = cache_path(self.cache_dir, job.rel)
        try:
            rows = [row[0] for row in state.rows]
            save_joints(path, keypoints, rows, meta, folder_option=self.folder_option)
        except WriteError as err:
            if err.is_storage_error:  # disk full, permissions: every next video would fail too
                raise
            self._fail(video, str(err))  # e.g. a name too long for the file system
            return
        self.finished.add(video)
        self.report.cached += 1
        self._tick()

    def _fail(self, video: int, error: str) -> None:
        if video in self.finished:  # e.g. an error closing the decoder after the last frame
            return
        self.failed.add(video)
        self.states.pop(video, None)
        job = self.jobs[video]
        self.report.failures.append({"path": str(job.path), "rel": job.rel, "error": error})
        self._tick()

    def _tick(self) -> None:
        if self.bar is not None:
            rate = self.report.frames / max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix_str(f"{rate:.1f} frames/s, {len(self.report.failures)} failed")
            self.bar.update(1)


def cache_settings(cfg: Config, precision: str) -> dict[str, Any]:
    """The settings stored in every file's meta (those in store.SETTINGS_KEYS decide reuse)."""
    p = cfg.pose
    return {
        "model": Path(p.weights).name,
        "model_id": weights_fingerprint(p.weights),
        "imgsz": p.imgsz,
        "conf": p.conf,
        "iou": p.iou,
        "persons": p.persons,
        "stride": p.stride,
        "precision": precision,
        "frames_as": FRAMES_AS,  # joints of the frames as displayed (older files: redone)
    }


def _frame_loader(todo: Sequence[VideoJob], cfg: Config, device: torch.device) -> DataLoader:
    """Chunks of ``cfg.pose.batch`` sampled frames of ``todo``'s videos, in order, decoded by
    up to ``cfg.pose.workers`` processes (each worker takes whole videos)."""
    stream = FrameChunks(
        [j.path for j in todo],
        stride=cfg.pose.stride,
        chunk=cfg.pose.batch,
        imgsz=cfg.pose.imgsz,
        resize=device.type == "cpu",
        backend=cfg.data.decoder,
        max_pixels=cfg.data.max_pixels,
    )
    workers = min(cfg.pose.workers, len(todo))
    return ForkSafeLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        in_order=not workers,
    )


def cache_videos(
    jobs: Sequence[VideoJob],
    cfg: Config,
    cache_dir: Path,
    *,
    share: tuple[int, int] = (0, 1),
    progress: bool = True,
    folder_option: str = CACHE_DIR_OPTION,
) -> ShardReport:
    """Cache share ``[index::count]`` of ``jobs`` sorted by rel; returns the share's report.

    Raises :class:`hpnet.atomic.WriteError` when the cache folder cannot take the files (full,
    not writable); ``folder_option`` (how to choose another folder) goes into its message.
    """
    start = time.perf_counter()
    index, count = share
    mine = sorted(jobs, key=lambda j: j.rel)[index::count]
    device = pick_device(share_device(cfg.pose.device), option="pose.device")
    precision = resolve_precision(cfg.pose.precision, device)
    settings = cache_settings(cfg, precision)
    report = ShardReport(shard=index, shards=count, videos=len(mine), settings=settings)
    todo = uncached(mine, cache_dir, settings)
    report.skipped = len(mine) - len(todo)
    redone = sum(os.path.isfile(cache_path(cache_dir, job.rel)) for job in todo)  # (no raise)
    if redone:  # (counted as "cached" in the summary, with the new videos)
        print(f"redoing {counted(redone, 'file')} made with other pose settings or from a video "
              "replaced since")  # fmt: skip
    if todo:
        chunks = iter(_frame_loader(todo, cfg, device))  # forks the decoders before the model
        estimator = PoseEstimator(
            cfg.pose.weights,
            imgsz=cfg.pose.imgsz,
            conf=cfg.pose.conf,
            iou=cfg.pose.iou,
            device=str(device),
            precision=precision,
        )
        run = CacheRun(
            todo,
            estimator,
            cache_dir=cache_dir,
            settings=settings,
            batch=cfg.pose.batch,
            report=report,
            folder_option=folder_option,
        )
        with tqdm(
            total=len(todo),
            unit="video",
            desc=f"pose cache {index}/{count}",
            disable=not progress_enabled(progress),
            dynamic_ncols=True,
        ) as bar:
            run.run(chunks, bar)
    report.seconds = time.perf_counter() - start
    return report


# ----------------------------------------------------------------------------- command


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="python -m hpnet.pose.cache",
        description="Compute YOLO pose joints for every video (batched, resumable, shardable).",
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--videos",
        metavar="DIR",
        help="cache every video under DIR instead of the configured dataset",
    )
    parser.add_argument("--out", metavar="DIR", help="cache folder (default: pose.cache_dir)")
    parser.add_argument(
        "--shard",
        metavar="K/N",
        help="process share K of N (0-based), e.g. one per machine; combines with torchrun ranks",
    )
    parser.add_argument(
        "--preview",
        metavar="N",
        type=int,
        default=0,
        help="write N PNGs with skeletons drawn to <cache_dir>/preview/",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (1 when a video failed).

    Raises ``UserError`` (exit code 2 under :func:`cli`) on a bad argument and on a cache folder
    that cannot take the files (:class:`hpnet.atomic.WriteError`).
    """
    args = _parser().parse_intermixed_args(argv)
    if not args.config and not args.videos:
        raise UserError("give --config FILE (the dataset's videos) or --videos DIR [--out DIR]")
    if args.preview < 0:
        raise UserError(f"--preview {args.preview} must be >= 0")
    share = this_share(parse_shard(args.shard) if args.shard else None)
    cfg = load_config(args.config, args.overrides)
    if args.out and cfg.data.joint and not args.videos:
        raise UserError(
            "--out with data.joint: each entry's videos go to its own pose_cache_dir (else "
            "pose.cache_dir), where training reads them; drop --out"
        )
    if args.out:
        cfg.pose.cache_dir = args.out
    if args.videos:
        folders = [CacheFolder(Path(cfg.pose.cache_dir).expanduser(), cfg,
                               folder_videos(args.videos), [""])]  # fmt: skip
        if not folders[0].jobs:
            raise UserError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {args.videos}")
    else:
        folders = config_folders(cfg)
    for folder in folders:  # a bad pose.weights refused before any cache folder is made
        resolve_weights(folder.cfg.pose.weights)
    folder_option = "--out DIR" if args.out else CACHE_DIR_OPTION
    failed = False
    for folder in folders:
        failed |= _cache_folder(folder, share, args, folder_option)
    return 1 if failed else 0


def _cache_folder(
    folder: CacheFolder, share: tuple[int, int], args: argparse.Namespace, folder_option: str
) -> bool:
    """Cache one folder's videos (this process's share), print the summary; True if any failed."""
    cache_dir, cfg, jobs = folder.cache_dir, folder.cfg, folder.jobs
    k, n = share
    lock = run_folder_lock(  # shares write side by side; one run per share
        cache_dir, name=f".lock-{k}-of-{n}", folder_option=folder_option,
        what="another pose cache run" + (f" of share {k}/{n}" if n > 1 else ""),
    )  # fmt: skip
    with lock:
        clear_shard_report(cache_dir, *share, folder_option=folder_option)
        progress = not args.no_progress and os.environ.get("RANK", "0") == "0"
        report = cache_videos(
            jobs, cfg, cache_dir, share=share, progress=progress, folder_option=folder_option
        )
        merged = write_shard_report(cache_dir, report, folder_option=folder_option)
    label = f"share {k}/{n}" if n > 1 else "pose cache"
    names = ", ".join(n for n in folder.names if n)
    label += f" ({names})" if names else ""
    print(f"{label}: {report.summary()}")
    for failure in report.failures:
        print(f"  failed: {failure['path']}: {failure['error']}")
    if n > 1 and merged is not None:
        print(f"pose cache, all {n} shares: {merged.summary()}")
    if merged is not None:
        print(f"report: {cache_dir / REPORT_NAME}")
    if args.preview and k == 0:
        videos = [(j.path, j.rel) for j in jobs]
        pngs = write_previews(
            cache_dir, videos, args.preview, settings=report.settings, backend=cfg.data.decoder
        )
        print(f"previews: {len(pngs)} PNGs in {cache_dir / 'preview'}")
    return bool(report.failures)


def cli(argv: Sequence[str] | None = None) -> None:
    """Console entry point: exit code 2 with a one-line message on a bad argument."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
