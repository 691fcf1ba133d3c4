"""What a classifier's epoch reports: its statistics over all processes, its test (and
validation) top-1, the printed line and the ``metrics.jsonl`` record (and TensorBoard)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from hpnet.atomic import write_errors_reported
from hpnet.checkpoint import OUT_DIR_OPTION
from hpnet.cli import UserError, counted
from hpnet.config import Config
from hpnet.distributed import DistInfo, all_reduce_sum
from hpnet.eval_report import run_dataset_tests
from hpnet.runtime import RunDataset


def reduce_epoch_stats(stats: dict[str, float], device: torch.device, dist: DistInfo) -> None:
    """Loss, accuracy, clips, clips/s and skipped videos over all processes, in place."""
    seen = stats["clips"]
    total = all_reduce_sum(
        [stats["loss"] * seen, stats["acc"] * seen, seen, stats["skipped"]], device
    )
    stats.update(
        loss=total[0] / max(total[2], 1),
        acc=total[1] / max(total[2], 1),
        clips=total[2],
        clips_per_s=stats["clips_per_s"] * dist.world_size,
        skipped=total[3],
    )


def check_epoch_learned(stats: dict[str, float], epoch: int) -> None:
    """Refuse an epoch in which every video read failed to decode (``stats`` over all
    processes: every process stops alike): its weights learned nothing, and a run that went on
    would end as a success (a pretraining run: with a last.pt to fine-tune from)."""
    if stats["clips"] == 0 and stats["skipped"] > 0:
        raise UserError(
            f"epoch {epoch + 1}: all {counted(int(stats['skipped']), 'video')} it read failed to "
            "decode (data.on_error=skip skips them), so nothing was learned; check the dataset "
            "with `python -m hpnet.data --config <your config> --check-decode all`"
        )


def evaluate_epoch(record: dict[str, Any], tests: tuple) -> float | None:
    """Score the test (and validation, ``data.val_fraction``) split of every dataset at the end
    of an epoch, on all processes; on the main one add ``test_top1`` / ``val_top1`` to
    ``record`` and return the top-1 that picks best.pt: the first dataset's validation top-1,
    else its test top-1 (None on the other processes). ``tests`` = (model, datasets, transform,
    device, amp_dtype, dist), as :func:`~hpnet.eval_report.run_dataset_tests` takes them."""
    datasets, dist = tests[1], tests[-1]
    reports = run_dataset_tests(*tests, crops=1)
    vals = run_dataset_tests(*tests, crops=1, split="val")
    if not dist.is_main:
        return None
    add_top1(record, datasets, reports, "test")
    add_top1(record, datasets, vals, "val")
    return (vals[0] or reports[0])["top1"]


def add_top1(record: dict[str, Any], datasets: list[RunDataset], reports: list, split: str) -> None:
    """``<split>_top1`` of the first dataset and, joint, ``<split>_top1_<name>`` of each (None
    reports: datasets without that split)."""
    for i, (d, r) in enumerate(zip(datasets, reports, strict=True)):
        if r is not None and i == 0:
            record[f"{split}_top1"] = r["top1"]
        if r is not None and d.name:
            record[f"{split}_top1_{d.name}"] = r["top1"]


def data_line(datasets: list[RunDataset], steps_per_epoch: int) -> str:
    """What a run trains on, said at its start: ``data: 7 train / 4 val / 5 test videos, 4
    classes; 2 steps an epoch`` (per dataset of a joint run)."""

    def one(d: RunDataset) -> str:
        val = f" / {len(d.val)} val" if d.val is not None else ""
        return (
            f"{d.name + ': ' if d.name else ''}{len(d.train)} train{val} / {len(d.test)} test "
            f"videos, {len(d.classes)} class{'es' * (len(d.classes) != 1)}"
        )

    steps = counted(steps_per_epoch, "step")
    return f"data: {'; '.join(one(d) for d in datasets)}; {steps} an epoch"


def epoch_summary(r: dict[str, Any], epochs: int) -> str:
    s = (
        f"epoch {r['epoch']}/{epochs}  loss {r['loss']:.4f}  train acc {100 * r['acc']:.1f} %  "
        f"lr {r['lr']:.2e}  {r['clips_per_s']:.1f} clips/s  {r['time_s']:.0f} s"
    )
    if "val_top1" in r:
        s += f"  val top-1 {100 * r['val_top1']:.1f} %"
    if "test_top1" in r:
        s += f"  test top-1 {100 * r['test_top1']:.1f} %"
    if r.get("skipped"):
        s += f"  skipped {counted(int(r['skipped']), 'bad video')}"
    return s


def log_metrics(out: Path, record: dict[str, Any], tb: Any, tb_step: int = 0) -> None:
    """Append ``record`` (time-stamped) to ``<out>/metrics.jsonl`` and to TensorBoard if on, at
    step ``record["epoch"]`` (``tb_step`` for a record of none: the final test's)."""
    record = {"time": time.time(), **record}
    path = out / "metrics.jsonl"
    reported = write_errors_reported(path, what="metrics log", folder_option=OUT_DIR_OPTION)
    with reported, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    if tb is not None:
        step = record.get("epoch", tb_step)
        for k, v in record.items():
            if isinstance(v, float | int) and k not in ("epoch", "time"):
                tb.add_scalar(f"{record['type']}/{k}", v, step)


def open_tensorboard(cfg: Config, out: Path) -> Any:
    """A TensorBoard writer in ``<out>/tb`` when ``train.tensorboard``, else None."""
    writer = tensorboard_writer(cfg)
    return None if writer is None else writer(out / "tb")


def tensorboard_writer(cfg: Config) -> Any:
    """TensorBoard's ``SummaryWriter`` class when ``train.tensorboard``, else None; without the
    package a one-line :class:`UserError` (call it before the run folder is made)."""
    if not cfg.train.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise UserError(
            "train.tensorboard=true needs the tensorboard package: pip install 'hpnet[tensorboard]'"
        ) from err
    return SummaryWriter
