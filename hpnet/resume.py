"""A run folder's checkpoints: which one a run continues from, whether it may, restoring it,
and the checkpoint dict a run writes (``last.pt`` / ``best.pt``, see :mod:`hpnet.checkpoint`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from hpnet.atomic import write_atomic
from hpnet.checkpoint import (
    FORMAT_VERSION,
    OUT_DIR_OPTION,
    atomic_save,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from hpnet.cli import UserError
from hpnet.config import Config, changed_keys, config_to_dict
from hpnet.distributed import DistInfo
from hpnet.engine import EpochProgress
from hpnet.runtime import label_sets


def resume_run(
    path: Path, cfg: Config, sets: list, parts: tuple, dist: DistInfo, out: Path
) -> tuple[int, int, float, EpochProgress | None]:
    """Load ``path`` into ``parts`` (model, optimizer, scheduler, scaler) and the RNGs;
    ``(start epoch, optimizer steps of finished epochs, best top-1, mid-epoch progress)``."""
    model, optimizer, scheduler, scaler = parts
    ckpt = load_checkpoint(path)  # on the CPU: load_state_dict moves to the device
    check_resumable(ckpt, cfg, model.class_names, sets, path, dist)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    start_epoch, step, best = ckpt["epoch"], ckpt["step"], ckpt["best_top1"]
    resumed = None
    if ckpt.get("progress"):
        # Rank 0's sums, restored on every rank: under torchrun the resumed epoch's loss
        # and accuracy before the checkpoint are rank 0's share standing for each rank's.
        resumed = EpochProgress.from_dict(ckpt["progress"]["epoch"])
        step -= resumed.steps  # `step` counts the optimizer steps of finished epochs
    if dist.is_main:
        rewind_metrics(out / "metrics.jsonl", start_epoch)
        where = (
            f"in epoch {start_epoch + 1} after batch {resumed.batches}"
            if resumed
            else f"after epoch {start_epoch}"
        )
        print(f"resumed from {path} {where} (step {ckpt['step']})")
    return start_epoch, step, best, resumed


def resume_path(cfg: Config, out: Path) -> Path | None:
    r = cfg.train.resume
    if not r:
        if (out / "last.pt").exists():
            raise UserError(
                f"{out}/last.pt exists: continue that run with train.resume=auto, "
                "or start a new one in another train.out_dir"
            )
        return None
    if r == "auto":
        return out / "last.pt" if (out / "last.pt").exists() else None
    path = Path(r)
    if not path.is_file():
        raise UserError(f"train.resume={r}: no such checkpoint file")
    return path


def check_resumable(
    ckpt: dict, cfg: Config, classes: list[str], sets: list, path: Path, dist: DistInfo
) -> None:
    if ckpt.get("format") != FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format {ckpt.get('format')}, expected {FORMAT_VERSION}"
        )
    if ckpt.get("pretrain") and classes:  # a classifier run asked to continue a pretraining
        raise UserError(
            f"{path} is a pretraining checkpoint (python -m hpnet.pretrain): fine-tune from it "
            f"with model.pretrained={path} in another train.out_dir"
        )
    if ckpt.get("classes") != list(classes):
        raise UserError(f"{path} was trained on other classes than data.dataset={cfg.data.dataset}")
    if [tuple(s) for s in ckpt.get("label_sets") or []] != [tuple(s) for s in sets]:
        raise UserError(
            f"{path} was trained on other data.joint datasets (names or classes) than this run"
        )
    position = ckpt.get("progress")
    if position:  # a mid-epoch checkpoint: the rest of the epoch is dealt out the same way
        then = (position["world_size"], position["batch_size"])
        now = (dist.world_size, cfg.train.batch_size)
        if then != now:
            raise UserError(
                f"cannot resume {path} mid-epoch: it ran {then[0]} process(es) x batch "
                f"{then[1]}, this run has {now[0]} x {now[1]} (use the same process count and "
                "train.batch_size)"
            )
    keys = ("model.arch", "model.size", "model.depth", "model.patch_size", "data.frames")
    keys += ("data.size", "train.optimizer")  # the optimizer state
    # which videos train and test: else a resumed run could train on the test videos
    keys += ("data.dataset", "data.split", "data.seed", "data.test_fraction", "data.val_fraction")
    # what the saved optimizer and schedule hold (restored as saved, whatever the config says)
    # and the step count the schedule runs on
    keys += ("train.lr", "train.backbone_lr", "train.layer_decay", "train.weight_decay")
    keys += ("train.betas", "train.momentum", "train.batch_size", "train.accum_steps")
    changed = changed_keys(ckpt.get("config", {}), cfg, keys)
    if changed:
        key, then, now = changed[0]
        raise UserError(
            f"cannot resume {path}: it used {key}={then}, this run has {now} (drop that "
            "override, or start a new run in another train.out_dir)"
        )
    saved_world = ckpt.get("world_size")
    if saved_world is not None and saved_world != dist.world_size:
        raise UserError(
            f"cannot resume {path}: it ran {saved_world} process(es), this run has "
            f"{dist.world_size} (its learning-rate schedule counts the steps of "
            f"{saved_world} x train.batch_size clips): use {saved_world}"
        )


class CheckpointClock:
    """When to write a mid-epoch ``last.pt``: every ``every_steps`` optimizer steps and/or
    ``every_minutes`` minutes after the previous checkpoint (0 turns either off)."""

    def __init__(self, every_steps: int, every_minutes: float) -> None:
        self.every_steps = every_steps
        self.every_s = every_minutes * 60
        self.last = time.monotonic()

    def due(self, step: int) -> bool:
        if self.every_steps and step % self.every_steps == 0:
            return True
        return bool(self.every_s) and time.monotonic() - self.last >= self.every_s

    def saved(self) -> None:
        self.last = time.monotonic()


def mid_epoch_saver(
    clock: CheckpointClock,
    out: Path,
    *,
    steps_per_epoch: int,
    done: int,
    dist: DistInfo,
    batch_size: int,
    checkpoint: Callable[[int, dict], dict],
    save: Callable[[dict, Path], None] = atomic_save,
) -> Callable[[EpochProgress], None]:
    """The ``on_step`` of an epoch (:func:`hpnet.engine.train_one_epoch`): when ``clock`` is
    due, ``save`` (atomically) to ``out/last.pt`` what ``checkpoint(step, progress)`` gives: the
    run's checkpoint dict at optimizer step ``step`` (``done`` before this epoch) with
    ``progress`` (where the epoch stands, the process count and batch size it was dealt out
    for)."""

    def save_if_due(progress: EpochProgress) -> None:
        if progress.batches >= steps_per_epoch or not clock.due(done + progress.steps):
            return  # (the end-of-epoch checkpoint follows anyway)
        where = {"world_size": dist.world_size, "batch_size": batch_size}
        ckpt = checkpoint(done + progress.steps, {**where, "epoch": progress.to_dict()})
        save(ckpt, out / "last.pt")
        clock.saved()

    return save_if_due


def rewind_metrics(path: Path, epoch: int) -> None:
    """Keep the records of the first ``epoch`` epochs in ``metrics.jsonl``.

    A run resumed from ``last.pt`` redoes whatever came after it (and a kill can leave half a
    line), so the file again says exactly what the checkpoint has seen.
    """
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("type") == "train" and record.get("epoch", 0) <= epoch:
            kept.append(line + "\n")
    write_atomic(
        path, lambda f: f.write("".join(kept).encode()), what="metrics log",
        folder_option=OUT_DIR_OPTION,
    )  # fmt: skip


def run_checkpoint(
    model, optimizer, scheduler, scaler, epoch, step, best, cfg, datasets, progress=None,
    *, world_size: int = 1,
) -> dict:  # fmt: skip
    """The checkpoint dict (plain values); ``progress`` is set when written mid-epoch.
    ``classes``: the (first) dataset's; ``label_sets``: ``[name, classes]`` per dataset of a
    joint run (None for one dataset); ``world_size``: the processes the run trains on."""
    sets = [[name, names] for name, names in label_sets(datasets)]
    return {
        "world_size": world_size,
        "format": FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch,
        "step": step,
        "best_top1": best,
        "rng": rng_state(),
        "config": config_to_dict(cfg),
        "classes": list(datasets[0].classes),
        "label_sets": sets or None,
        "progress": progress,
    }
