"""``python -m hpnet.train --config X.yaml [key=value ...]``: train, evaluate, keep checkpoints.

Read top to bottom: parse the config, set up devices and (under torchrun) the process group,
build data, model, optimizer and schedule, resume if asked, loop over epochs (train, evaluate,
checkpoint), then run the final multi-view test and write ``eval.json``.

``--splits 1,2,3`` runs that once per official split, each in ``<train.out_dir>/split<N>``
resumed from its own ``last.pt``, and writes ``<train.out_dir>/summary.json`` (see
:mod:`hpnet.splits`); a rerun skips the finished splits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from hpnet.atomic import remove_stale_temp_files, write_atomic, write_errors_reported
from hpnet.checkpoint import (
    FORMAT_VERSION,
    OUT_DIR_OPTION,
    atomic_save,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from hpnet.cli import CommandParser, UserError, run_cli
from hpnet.config import (
    Config,
    add_config_arguments,
    changed_keys,
    config_to_dict,
    describe,
    load_config,
    save_config,
)
from hpnet.distributed import DistInfo, all_reduce_sum, distributed_session
from hpnet.engine import EpochProgress, train_one_epoch
from hpnet.evaluate import run_dataset_tests, write_run_report
from hpnet.models.hpnet import build_model, check_model_config
from hpnet.run_lock import run_folder_lock
from hpnet.runtime import (
    RunDataset,
    amp_dtype_for,
    build_loss_config,
    build_optimization,
    build_run_datasets,
    build_run_train_loader,
    build_transform,
    label_sets,
    pick_device,
)
from hpnet.runtime import start_epoch as start_loader_epoch
from hpnet.splits import (
    check_splits_usable,
    parse_splits,
    run_splits,
    training_finished,
    with_split,
)

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(prog="python -m hpnet.train", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--help-config", action="store_true", help="list every config key")
    parser.add_argument(
        "--splits",
        help="official splits to run one after another, e.g. 1,2,3: one run each in "
        "<train.out_dir>/split<N>, then <train.out_dir>/summary.json (mean and std)",
    )
    args = parser.parse_intermixed_args(argv)  # overrides before and after --splits
    if args.help_config:
        print(describe())
        return 0
    cfg = load_config(args.config, args.overrides)
    splits = _splits_argument(args.splits, cfg, args.overrides)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = pick_device(cfg.train.device)
    with distributed_session(device.type) as dist:
        if device.type == "cuda" and dist.enabled:
            device = torch.device("cuda", dist.local_rank)
        if not splits:
            with contextlib.ExitStack() as held:
                return _train(cfg, device, dist, held)

        def run_split(split: int, folder: Path) -> None:
            train = dataclasses.replace(cfg.train, out_dir=str(folder), resume="auto")
            with contextlib.ExitStack() as held:  # the split folder's lock, released after it
                _train(dataclasses.replace(with_split(cfg, split), train=train), device, dist, held)

        run_splits(
            splits,
            Path(cfg.train.out_dir),
            cfg.data.dataset,
            finished=lambda folder: training_finished(folder, cfg.train.epochs),
            run=run_split,
            dist=dist,
            folder_option=OUT_DIR_OPTION,
        )
        return 0


def _splits_argument(value: str | None, cfg: Config, overrides: Sequence[str]) -> list[int]:
    """``--splits`` as split numbers ([] without it); each split resumes its own folder."""
    if value is None:
        return []
    splits = parse_splits(value)
    check_splits_usable(cfg, overrides)
    if cfg.train.resume not in ("", "auto"):
        raise UserError(
            f"--splits resumes each split from its own <train.out_dir>/split<N>/last.pt: "
            f"drop train.resume={cfg.train.resume}"
        )
    return splits


def _train(cfg: Config, device: torch.device, dist: DistInfo, held: contextlib.ExitStack) -> int:
    """The run; ``held`` keeps what must stay open until it ends (the run folder's lock)."""
    out = Path(cfg.train.out_dir)
    resume_path = _resume_path(cfg, out)
    check_model_config(cfg)  # before the data and the run folder
    if cfg.train.warmup_epochs >= cfg.train.epochs and dist.is_main:
        logger.warning(
            "train.warmup_epochs=%g >= train.epochs=%d: the learning rate never reaches "
            "train.lr=%g (lower train.warmup_epochs)",
            cfg.train.warmup_epochs, cfg.train.epochs, cfg.train.lr,
        )  # fmt: skip
    seed_everything(cfg.train.seed)

    # ---- data: one dataset, or one per data.joint entry (batches interleaved) ---------------
    datasets = build_run_datasets(cfg, test_views=1)
    if dist.is_main:  # (only once the data is there: a typo in data.root leaves no run folder)
        out.mkdir(parents=True, exist_ok=True)
        held.enter_context(run_folder_lock(out))  # one run at a time writes here
        save_config(cfg, out / "config.yaml")
    train_loader = build_run_train_loader(datasets, dist)
    transform = build_transform(cfg, device)
    amp_dtype = amp_dtype_for(cfg.train.amp, device)

    # ---- model, optimizer, schedule -----------------------------------------------------------
    sets = label_sets(datasets)
    model = build_model(cfg, datasets[0].classes, label_sets=sets).to(device)
    if dist.is_main and model.pretrained_report:
        print(f"model.pretrained: {model.pretrained_report}")
    steps_per_epoch = len(train_loader)
    if cfg.train.max_steps:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps)
    optimizer, scheduler, scaler = build_optimization(cfg, model, steps_per_epoch, device)
    loss_cfgs = [build_loss_config(cfg, d, device) for d in datasets]
    loss_cfg = loss_cfgs if sets else loss_cfgs[0]

    start_epoch, step, best = 0, 0, -1.0
    resumed: EpochProgress | None = None  # set when last.pt was written mid-epoch
    if resume_path is not None:
        start_epoch, step, best, resumed = _resume(
            resume_path, cfg, sets, (model, optimizer, scheduler, scaler), dist, out
        )
    if dist.is_main:
        for name in ("last.pt", "best.pt", "metrics.jsonl"):  # what a killed write left
            remove_stale_temp_files(out / name)

    net: torch.nn.Module = model
    if cfg.train.compile:
        net = torch.compile(net)
    if dist.enabled:  # per-dataset linear heads: only the batch's own head has gradients
        net = DistributedDataParallel(
            net,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(sets) and not cfg.model.text,
        )

    # ---- epochs ----------------------------------------------------------------------------
    tb = _tensorboard(cfg, out) if dist.is_main else None
    clock = CheckpointClock(cfg.train.checkpoint_steps, cfg.train.checkpoint_minutes)
    for epoch in range(start_epoch, cfg.train.epochs):
        # Everything random in an epoch derives from (seed, epoch): the order and frame offsets
        # (sampler, dataset), and per batch the augmentation and drop-path (engine.seed_step).
        epoch_seed = cfg.train.seed * 100_003 + epoch
        resume = resumed if epoch == start_epoch else None
        start_loader_epoch(train_loader, epoch, resume.batches if resume else 0)

        def save_mid_epoch(
            progress: EpochProgress, epoch: int = epoch, done: int = step, best: float = best
        ) -> None:
            if progress.batches >= steps_per_epoch or not clock.due(done + progress.steps):
                return  # (the end-of-epoch checkpoint follows anyway)
            where = {"world_size": dist.world_size, "batch_size": cfg.train.batch_size}
            ckpt = _checkpoint(
                model, optimizer, scheduler, scaler, epoch, done + progress.steps, best, cfg,
                datasets, progress={**where, "epoch": progress.to_dict()},
            )  # fmt: skip
            atomic_save(ckpt, out / "last.pt")
            clock.saved()

        stats = train_one_epoch(
            net,
            train_loader,
            transform=transform,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            loss_cfg=loss_cfg,
            device=device,
            amp_dtype=amp_dtype,
            epoch=epoch,
            accum_steps=cfg.train.accum_steps,
            clip_grad=cfg.train.clip_grad,
            max_steps=cfg.train.max_steps,
            generator=torch.Generator(),  # on the CPU: draws cost no device sync
            seed=epoch_seed * 7919 + dist.rank,
            use_pose=cfg.model.pose,
            progress=dist.is_main,
            resume=resume,
            on_step=save_mid_epoch if dist.is_main else None,
        )
        step += int(stats["steps"])
        if dist.enabled:  # loss, accuracy, clips/s and skipped videos over all processes
            _reduce_epoch_stats(stats, device, dist)
        record: dict[str, Any] = {"type": "train", "epoch": epoch + 1, **stats}
        record["lr"] = optimizer.param_groups[0]["lr"]
        is_best = False
        evaluated = cfg.train.eval_every and (epoch + 1) % cfg.train.eval_every == 0
        if evaluated or epoch + 1 == cfg.train.epochs:
            reports = run_dataset_tests(
                model, datasets, transform, device, amp_dtype, dist, crops=1
            )
            if dist.is_main:  # best.pt: the first dataset's top-1
                record["test_top1"] = reports[0]["top1"]
                for d, r in zip(datasets, reports, strict=True):
                    if d.name:  # joint: each dataset's too
                        record[f"test_top1_{d.name}"] = r["top1"]
                is_best = reports[0]["top1"] > best
                best = max(best, reports[0]["top1"])
        if dist.is_main:
            _log(out, record, tb)
            print(_summary(record, cfg.train.epochs))
            ckpt = _checkpoint(
                model, optimizer, scheduler, scaler, epoch + 1, step, best, cfg, datasets
            )
            atomic_save(ckpt, out / "last.pt")
            clock.saved()
            if is_best:
                atomic_save(ckpt, out / "best.pt")

    _final_test(model, datasets, cfg, (transform, device, amp_dtype), dist, out, tb)
    if tb is not None:
        tb.close()
    return 0


def _resume(
    path: Path, cfg: Config, sets: list, parts: tuple, dist: DistInfo, out: Path
) -> tuple[int, int, float, EpochProgress | None]:
    """Load ``path`` into ``parts`` (model, optimizer, scheduler, scaler) and the RNGs;
    ``(start epoch, optimizer steps of finished epochs, best top-1, mid-epoch progress)``."""
    model, optimizer, scheduler, scaler = parts
    ckpt = load_checkpoint(path)  # on the CPU: load_state_dict moves to the device
    _check_resumable(ckpt, cfg, model.class_names, sets, path, dist)
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
        _rewind_metrics(out / "metrics.jsonl", start_epoch)
        where = (
            f"in epoch {start_epoch + 1} after batch {resumed.batches}"
            if resumed
            else f"after epoch {start_epoch}"
        )
        print(f"resumed from {path} {where} (step {ckpt['step']})")
    return start_epoch, step, best, resumed


def _reduce_epoch_stats(stats: dict[str, float], device: torch.device, dist: DistInfo) -> None:
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


def _final_test(
    model: torch.nn.Module,
    datasets: list[RunDataset],
    cfg: Config,
    setup: tuple,
    dist: DistInfo,
    out: Path,
    tb: Any,
) -> None:
    """The multi-view test (eval.views x eval.crops) of every dataset: ``eval.json``, the
    confusion matrices, a ``test`` record in metrics.jsonl and the printed summary."""
    transform, device, amp_dtype = setup
    reports = run_dataset_tests(
        model, datasets, transform, device, amp_dtype, dist,
        crops=cfg.eval.crops, views=cfg.eval.views,
    )  # fmt: skip
    if not dist.is_main:
        return
    report = write_run_report(reports, datasets, out, str(out / "last.pt"))
    _log(out, {"type": "test", **{k: report[k] for k in ("top1", "top5", "mean_class_acc")}}, tb)
    for d, r in zip(datasets, reports, strict=True):
        print(
            f"{d.name}: " * bool(d.name) + f"test top-1 {100 * r['top1']:.1f} %  "
            f"top-5 {100 * r['top5']:.1f} %  mean class acc {100 * r['mean_class_acc']:.1f} %  "
            f"({r['num_videos']} videos x {r['views']} views)"
        )
    print(f"run folder: {out.resolve()}")


def _resume_path(cfg: Config, out: Path) -> Path | None:
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


def _check_resumable(
    ckpt: dict, cfg: Config, classes: list[str], sets: list, path: Path, dist: DistInfo
) -> None:
    if ckpt.get("format") != FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format {ckpt.get('format')}, expected {FORMAT_VERSION}"
        )
    if ckpt.get("classes") != list(classes):
        raise UserError(f"{path} was trained on other classes than data.dataset={cfg.data.dataset}")
    if [tuple(s) for s in ckpt.get("label_sets") or []] != [tuple(s) for s in sets]:
        raise UserError(
            f"{path} was trained on other data.joint datasets (names or classes) than this run"
        )
    keys = ("model.size", "model.patch_size", "data.frames", "data.size")
    changed = changed_keys(ckpt.get("config", {}), cfg, keys)
    if changed:
        key, then, now = changed[0]
        raise UserError(f"cannot resume {path}: it used {key}={then}, this run has {now}")
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


def _rewind_metrics(path: Path, epoch: int) -> None:
    """Keep the records of the first ``epoch`` epochs in ``metrics.jsonl``.

    A run resumed from ``last.pt`` redoes whatever came after it (and a kill can leave half a
    line), so the file again says exactly what the checkpoint has seen.
    """
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
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


def _checkpoint(
    model, optimizer, scheduler, scaler, epoch, step, best, cfg, datasets, progress=None
) -> dict:
    """The checkpoint dict (plain values); ``progress`` is set when written mid-epoch.
    ``classes``: the (first) dataset's; ``label_sets``: ``[name, classes]`` per dataset of a
    joint run (None for one dataset)."""
    sets = [[name, names] for name, names in label_sets(datasets)]
    return {
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


def _summary(r: dict[str, Any], epochs: int) -> str:
    s = (
        f"epoch {r['epoch']}/{epochs}  loss {r['loss']:.4f}  train acc {100 * r['acc']:.1f} %  "
        f"lr {r['lr']:.2e}  {r['clips_per_s']:.1f} clips/s  {r['time_s']:.0f} s"
    )
    if "test_top1" in r:
        s += f"  test top-1 {100 * r['test_top1']:.1f} %"
    if r.get("skipped"):
        s += f"  skipped {int(r['skipped'])} bad videos"
    return s


def _log(out: Path, record: dict[str, Any], tb: Any) -> None:
    record = {"time": time.time(), **record}
    path = out / "metrics.jsonl"
    reported = write_errors_reported(path, what="metrics log", folder_option=OUT_DIR_OPTION)
    with reported, open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    if tb is not None:
        step = record.get("epoch", 0)
        for k, v in record.items():
            if isinstance(v, float | int) and k not in ("epoch", "time"):
                tb.add_scalar(f"{record['type']}/{k}", v, step)


def _tensorboard(cfg: Config, out: Path) -> Any:
    if not cfg.train.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise UserError(
            "train.tensorboard=true needs the tensorboard package: pip install 'hpnet[tensorboard]'"
        ) from err
    return SummaryWriter(out / "tb")


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
