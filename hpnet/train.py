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
import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from hpnet.atomic import copy_atomic
from hpnet.checkpoint import (
    OUT_DIR_OPTION,
    atomic_save,
)
from hpnet.cli import CommandParser, UserError, run_cli
from hpnet.config import (
    Config,
    config_to_dict,
    load_config,
)
from hpnet.config_cli import add_config_arguments
from hpnet.devices import pick_device
from hpnet.distributed import DistInfo, broadcast_buffers, distributed_session, main_only
from hpnet.engine import EpochProgress
from hpnet.epoch_report import (
    check_epoch_learned,
    data_line,
    epoch_summary,
    evaluate_epoch,
    log_metrics,
    open_tensorboard,
    reduce_epoch_stats,
)
from hpnet.epoch_run import EpochRun, run_epoch
from hpnet.eval_report import run_dataset_tests, summary_line, write_run_report
from hpnet.models.backbones import warn_unread_model_keys
from hpnet.models.freeze import set_backbone_frozen, warn_frozen_random_encoder
from hpnet.models.hpnet import build_model, check_model_config
from hpnet.resume import (
    CheckpointClock,
    check_resume_early,
    check_run_config,
    prepare_run_folder,
    resume_run,
    run_checkpoint,
)
from hpnet.resume_from import resume_path
from hpnet.run_folder import check_continues, interrupt_note, open_run_folder
from hpnet.runtime import (
    RunDataset,
    amp_dtype_for,
    build_loss_config,
    build_optimization,
    build_run_datasets,
    build_run_train_loader,
    build_transform,
    check_videos,
    label_sets,
    seed_everything,
    training_net,
)
from hpnet.splits import (
    check_protocol,
    check_split_lists,
    check_splits_usable,
    parse_splits,
    run_splits,
    split_folder,
    training_finished,
    with_split,
)

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(prog="python -m hpnet.train", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    parser.add_argument(
        "--splits",
        help="official splits to run one after another, e.g. 1,2,3: one run each in "
        "<train.out_dir>/split<N>, then <train.out_dir>/summary.json (mean and std)",
    )
    args = parser.parse_intermixed_args(argv)  # overrides before and after --splits
    cfg = load_config(args.config, args.overrides)
    splits = _splits_argument(args.splits, cfg, args.overrides)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = pick_device(cfg.train.device)
    with distributed_session(device.type, cfg) as dist:
        if device.type == "cuda" and dist.enabled:
            device = torch.device("cuda", dist.local_rank)
        if not splits:
            with contextlib.ExitStack() as held:
                return _train(cfg, device, dist, held)

        base = Path(cfg.train.out_dir)
        for split in splits:  # on every process, before any waits for the others
            folder, split_cfg = split_folder(base, split), with_split(cfg, split)
            check_protocol(folder, split_cfg, OUT_DIR_OPTION)
            check_run_config(folder, split_cfg)
        done = partial(training_finished, epochs=cfg.train.epochs, max_steps=cfg.train.max_steps)
        left = [s for s in splits if not done(split_folder(base, s))]
        check_split_lists(cfg, left)  # (a finished split's run is read back, not its lists)

        def run_split(split: int, folder: Path) -> None:
            train = dataclasses.replace(cfg.train, out_dir=str(folder), resume="auto")
            with contextlib.ExitStack() as held:  # the split folder's lock, released after it
                _train(dataclasses.replace(with_split(cfg, split), train=train), device, dist, held)

        run_splits(
            splits,
            base,
            cfg.data.dataset,
            finished=done,
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


def _check_run_config(cfg: Config) -> None:
    """Refuse what cannot train a classifier (a warm-up past the run's end is warned of by
    :func:`~hpnet.runtime.build_optimization`)."""
    check_model_config(cfg)
    warn_unread_model_keys(cfg)
    _warn_pretrain_keys(cfg)
    warn_frozen_random_encoder(cfg)
    if cfg.model.text and cfg.model.head_init_scale != 1.0:
        raise UserError(
            f"model.head_init_scale={cfg.model.head_init_scale:g} scales the linear head's "
            "initial weights; the text head (model.text=true) has none to scale: set "
            "model.text=false or model.head_init_scale=1"
        )
    if (cfg.train.mixup or cfg.train.cutmix) and cfg.model.pose:
        raise UserError(
            f"train.mixup={cfg.train.mixup:g} / train.cutmix={cfg.train.cutmix:g} mix two clips' "
            "pixels, but their joints cannot be mixed: set model.pose=false (RGB only, as "
            "VideoMAE fine-tunes) or train.mixup=0 train.cutmix=0"
        )
    if (cfg.train.mixup or cfg.train.cutmix) and cfg.train.batch_size < 2:
        raise UserError(
            f"train.mixup={cfg.train.mixup:g} / train.cutmix={cfg.train.cutmix:g} mix each clip "
            "with another video's of its batch (per process), and train.batch_size=1 has none: "
            "set train.batch_size >= 2 (train.accum_steps keeps the step's size)"
        )
    if cfg.data.dataset == "unlabeled":
        raise UserError(
            "data.dataset=unlabeled has no labels to train a classifier on: pretrain on it with "
            "python -m hpnet.pretrain, then fine-tune with model.pretrained=<its run>/last.pt"
        )


def _warn_pretrain_keys(cfg: Config) -> None:
    """One warning naming the ``pretrain.*`` keys set: only ``python -m hpnet.pretrain`` reads
    them (say, a pretraining run's config.yaml given to training, which then starts from
    random weights rather than from that run)."""
    defaults = config_to_dict(Config())["pretrain"]
    given = config_to_dict(cfg)["pretrain"]
    changed = [f"pretrain.{k}={v}" for k, v in given.items() if v != defaults[k]]
    if changed:
        hint = (
            ""
            if cfg.model.pretrained
            else (" (to start from a pretraining run, set model.pretrained=<its run>/last.pt)")
        )
        logger.warning(
            "%s: read by python -m hpnet.pretrain only; this run trains a classifier%s",
            ", ".join(changed), hint,
        )  # fmt: skip


def _train(cfg: Config, device: torch.device, dist: DistInfo, held: contextlib.ExitStack) -> int:
    """The run; ``held`` keeps what must stay open until it ends (the run folder's lock)."""
    out = Path(cfg.train.out_dir)
    held.enter_context(interrupt_note(out, dist))  # Ctrl-C: which last.pt is kept, and how on
    resume_from = resume_path(cfg, out, dist)
    _check_run_config(cfg)  # before the data and the run folder
    if resume_from is not None:  # a changed setting: refused now, not after the loading
        check_resume_early(resume_from, cfg, dist, classifier=True)
    seed_everything(cfg.train.seed)

    # ---- data: one dataset, or one per data.joint entry (batches interleaved) ---------------
    datasets = build_run_datasets(cfg, test_views=1)
    check_videos(datasets)
    sets = label_sets(datasets)
    # the model before the run folder: weights that cannot be had leave no folder behind, and
    # config.yaml records what loading them decided (text.quick_gelu)
    model = build_model(cfg, datasets[0].classes, label_sets=sets).to(device)
    # only once data and weights are there: a typo leaves no run folder
    open_run_folder(held, cfg, out, resume_from, dist, model.pretrained_report)
    train_loader = build_run_train_loader(datasets, dist)
    transform = build_transform(cfg)
    amp_dtype = amp_dtype_for(cfg.train.amp, device)

    # ---- optimizer, schedule, loss ----------------------------------------------------------
    steps_per_epoch = len(train_loader)
    if cfg.train.max_steps:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps)
    if dist.is_main:
        print(data_line(datasets, steps_per_epoch))
    optimizer, scheduler, scaler = build_optimization(cfg, model, steps_per_epoch, device, dist)
    loss_cfgs = [build_loss_config(cfg, d, device) for d in datasets]
    loss_cfg = loss_cfgs if sets else loss_cfgs[0]

    start_epoch, step, best = 0, 0, -1.0
    resumed: EpochProgress | None = None  # set when last.pt was written mid-epoch
    untested: dict | None = None  # set when last.pt was written before its epoch's test
    if resume_from is not None:
        start_epoch, step, best, resumed, untested = resume_run(
            resume_from, cfg, datasets, (model, optimizer, scheduler, scaler), dist, out
        )
        if start_epoch >= cfg.train.epochs and untested is None:
            test = f"test it with python -m hpnet.evaluate --checkpoint {resume_from}"
            check_continues(resume_from, out, start_epoch, cfg.train.epochs, test)
    # after the resume checks: a refused resume leaves config.yaml as it was
    main_only(dist, prepare_run_folder, cfg, out, start_epoch - (untested is not None))

    # per-dataset linear heads: only the batch's own head has gradients in a step; a frame
    # encoder frozen for the first epochs has none then
    unused = (bool(sets) and not cfg.model.text) or cfg.model.freeze_backbone_epochs > 0
    net = training_net(model, cfg, dist, device, find_unused=unused)
    run = EpochRun(
        cfg, out, dist, device, datasets, (model, optimizer, scheduler, scaler), net,
        train_loader, transform, amp_dtype, steps_per_epoch,
        step_options={"loss_cfg": loss_cfg, "use_pose": cfg.model.pose},
    )  # fmt: skip
    tb = open_tensorboard(cfg, out) if dist.is_main else None
    clock = CheckpointClock(cfg.train.checkpoint_steps, cfg.train.checkpoint_minutes)
    if untested is not None:  # killed in its last epoch's test: that test, not the epoch again
        best = _end_epoch(run, start_epoch - 1, step, best, untested, True, clock, tb)
    for epoch in range(start_epoch, cfg.train.epochs):
        resume = resumed if epoch == start_epoch else None
        step, best = _epoch(run, epoch, step, best, resume, clock, tb)
    _final_test(model, datasets, cfg, (transform, device, amp_dtype), dist, out, tb)
    if tb is not None:
        tb.close()
    return 0


def _epoch(
    run: EpochRun,
    epoch: int,
    step: int,
    best: float,
    resume: EpochProgress | None,
    clock: CheckpointClock,
    tb: Any,
) -> tuple[int, float]:
    """Train one epoch, test when it is time, log, write last.pt (and best.pt when the top-1
    that picks it improved); the step count and best top-1 after."""
    cfg, dist, datasets = run.cfg, run.dist, run.datasets
    model = run.parts[0]
    w = dist.world_size

    def checkpoint(at: int, where: dict) -> dict:  # mid-epoch
        return run_checkpoint(*run.parts, epoch, at, best, cfg, datasets, where, world_size=w)

    set_backbone_frozen(model, cfg, epoch)  # model.freeze_backbone_epochs
    if epoch == cfg.model.freeze_backbone_epochs > 0 and dist.is_main:
        print(f"epoch {epoch + 1}: the frame encoder is fine-tuned from here on")
    stats = run_epoch(run, epoch, step, resume, clock, checkpoint, save=atomic_save)
    step += int(stats["steps"])
    if dist.enabled:  # loss, accuracy, clips/s and skipped videos over all processes
        reduce_epoch_stats(stats, run.device, dist)
        broadcast_buffers(model)  # every process tests the BatchNorm statistics last.pt keeps
    check_epoch_learned(stats, epoch)
    record: dict[str, Any] = {"type": "train", "epoch": epoch + 1, **stats}  # lr: the last used
    test = bool(cfg.train.eval_every and (epoch + 1) % cfg.train.eval_every == 0)
    test = test or epoch + 1 == cfg.train.epochs
    if test and dist.is_main:  # the epoch kept before its test: a run killed in it resumes here
        ckpt = run_checkpoint(
            *run.parts, epoch + 1, step, best, cfg, datasets, world_size=w, untested=record
        )
        atomic_save(ckpt, run.out / "last.pt")
    return step, _end_epoch(run, epoch, step, best, record, test, clock, tb)


def _end_epoch(
    run: EpochRun,
    epoch: int,
    step: int,
    best: float,
    record: dict[str, Any],
    test: bool,
    clock: CheckpointClock,
    tb: Any,
) -> float:
    """What epoch ``epoch`` (trained: ``record``, ``step`` steps) ends with: its test when
    ``test``, the log line and record, last.pt (and best.pt when the top-1 that picks it
    improved); the best top-1 after. Also the start of a run resumed from a last.pt written
    before its epoch's test (``untested``)."""
    cfg, dist, datasets = run.cfg, run.dist, run.datasets
    is_best = False
    if test:
        tests = (run.parts[0], datasets, run.transform, run.device, run.amp_dtype, dist)
        chosen = evaluate_epoch(record, tests)
        if chosen is not None:  # (on the main process)
            is_best, best = chosen > best, max(best, chosen)
    if dist.is_main:
        log_metrics(run.out, record, tb)
        print(epoch_summary(record, cfg.train.epochs))
        w = dist.world_size
        ckpt = run_checkpoint(*run.parts, epoch + 1, step, best, cfg, datasets, world_size=w)
        _save_epoch_end(ckpt, run.out, is_best)
        clock.saved()
    return best


def _save_epoch_end(ckpt: dict[str, Any], out: Path, is_best: bool) -> None:
    """``last.pt`` (and ``best.pt``, the same bytes, when ``is_best``). best.pt comes first: a
    run killed between the two resumes from the previous last.pt and redoes this epoch, which
    picks its best.pt again; the other way round, the resumed run would know this epoch's
    top-1 as the best already and never write its best.pt."""
    last, best = out / "last.pt", out / "best.pt"
    if not is_best:
        atomic_save(ckpt, last)
        return
    atomic_save(ckpt, best)
    copy_atomic(best, last, what="checkpoint", folder_option=OUT_DIR_OPTION)


def _final_test(
    model: torch.nn.Module,
    datasets: list[RunDataset],
    cfg: Config,
    setup: tuple,
    dist: DistInfo,
    out: Path,
    tb: Any,
) -> None:
    """The multi-view test (eval.views x eval.crops) of every dataset, and of its validation
    split if any: ``eval.json``, the confusion matrices, a ``test`` (and ``val``) record in
    metrics.jsonl and the printed summary."""
    tests = (model, datasets, *setup, dist)
    views = {"crops": cfg.eval.crops, "views": cfg.eval.views}
    reports = run_dataset_tests(*tests, **views)
    vals = run_dataset_tests(*tests, **views, split="val")
    if not dist.is_main:
        return
    # (absolute: --splits reruns from another folder tell its own last.pt from another's)
    trained = {"epochs": cfg.train.epochs, "of": cfg.train.epochs, "mid_epoch": False,
               "run_finished": True}  # fmt: skip
    write_run_report(reports, datasets, out, str((out / "last.pt").resolve()), vals, cfg, trained)
    keys = ("top1", "top5", "mean_class_acc")
    epochs = cfg.train.epochs  # (TensorBoard's step for the final records)
    if vals[0]:
        log_metrics(out, {"type": "val", **{k: vals[0][k] for k in keys}}, tb, epochs)
    log_metrics(out, {"type": "test", **{k: reports[0][k] for k in keys}}, tb, epochs)
    for d, r, v in zip(datasets, reports, vals, strict=True):
        for split, scores in (("val", v), ("test", r)):
            if scores:
                print(f"{d.name}: " * bool(d.name) + f"{split} " + summary_line(scores))
    print(f"run folder: {out.resolve()}")


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
