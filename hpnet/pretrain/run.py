"""``python -m hpnet.pretrain --config X.yaml [key=value ...]``: self-supervised pretraining.

Like ``hpnet.train`` (same config, run folder ``train.out_dir`` with ``config.yaml``,
``metrics.jsonl`` and ``last.pt``, exact resume with ``train.resume=auto`` also mid-epoch,
AMP on CUDA, torchrun, bad videos skipped), on the training split of ``data.dataset`` or on
every video under ``data.root`` with ``data.dataset=unlabeled``. Labels are never read: the
loss sees only the frames. ``pretrain.method`` picks the method: videomae (model.arch=lsvit)
or simsiam (model.arch=ssl_transformer: its 2D ResNet of ``model.depth``, :mod:`.simsiam`).
Fine-tune afterwards with ``python -m hpnet.train ... model.pretrained=<train.out_dir>/last.pt``.

``--preview N`` (videomae) writes ``<train.out_dir>/preview.png`` from the run's ``last.pt`` for N
training clips (masked input, reconstruction, original) and exits without training.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from hpnet.checkpoint import atomic_save
from hpnet.cli import CommandParser, UserError, counted, run_cli
from hpnet.config import (
    Config,
    load_config,
)
from hpnet.config_cli import add_config_arguments
from hpnet.devices import pick_device
from hpnet.distributed import DistInfo, all_reduce_sum, distributed_session, main_only
from hpnet.engine import EpochProgress, LossConfig, backward_and_record
from hpnet.epoch_report import (
    check_epoch_learned,
    log_metrics,
    open_tensorboard,
    reduce_epoch_stats,
)
from hpnet.epoch_run import EpochRun, run_epoch
from hpnet.pretrain.setup import (
    build_pretrain_model,
    check_pretrain_config,
    check_pretrain_resumable,
    pretrain_datasets,
)
from hpnet.pretrain.simsiam import build_views, simsiam_batch
from hpnet.resume import (
    CheckpointClock,
    check_resume_early,
    prepare_run_folder,
    resume_run,
    run_checkpoint,
)
from hpnet.resume_from import resume_path
from hpnet.run_folder import check_continues, interrupt_note, open_run_folder
from hpnet.runtime import (
    amp_dtype_for,
    build_optimization,
    build_run_train_loader,
    build_transform,
    seed_everything,
    training_net,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(prog="python -m hpnet.pretrain", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    parser.add_argument(
        "--preview",
        type=int,
        default=None,
        metavar="N",
        help="write <train.out_dir>/preview.png for N clips from the run's last.pt, then exit",
    )
    args = parser.parse_intermixed_args(argv)
    if args.preview is not None and args.preview < 1:
        raise UserError(f"--preview {args.preview}: give the number of clips to draw, 1 or more")
    cfg = load_config(args.config, args.overrides)
    check_pretrain_config(cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = pick_device(cfg.train.device)
    if args.preview is not None:
        if cfg.pretrain.method != "videomae":
            raise UserError("--preview shows VideoMAE reconstructions: pretrain.method=videomae")
        from hpnet.pretrain.preview import write_preview

        print(f"preview: {write_preview(cfg, device, args.preview)}")
        return 0
    with distributed_session(device.type, cfg) as dist:
        if device.type == "cuda" and dist.enabled:
            device = torch.device("cuda", dist.local_rank)
        with contextlib.ExitStack() as held:
            return _pretrain(cfg, device, dist, held)


def pretrain_batch(
    model: torch.nn.Module,
    batch: dict[str, Any],
    state: EpochProgress,
    *,
    transform: Any,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    generator: torch.Generator | None,
    scaler: torch.amp.GradScaler | None,
    loss_divisor: int,
    where: str,
    weight: float = 1.0,
    **_: Any,  # the classification step's loss_cfg and use_pose: unused
) -> None:
    """Forward + backward of one batch's frames (its labels and joints are never read); the
    augmentation and the masks are drawn from ``generator``."""
    video = batch["video"].to(device, non_blocking=True)
    video, _ = transform.train(video, None, generator)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)):
        loss = model(video, generator=generator)["loss"]
    backward_and_record(
        loss, state, clips=video.shape[0], correct=None, scaler=scaler, weight=weight,
        loss_divisor=loss_divisor, where=where,
    )  # fmt: skip


def pretrain_checkpoint(
    model, optimizer, scheduler, scaler, epoch, step, cfg, datasets, where, world_size
):
    """:func:`~hpnet.resume.run_checkpoint` (no classes, no best top-1) marked as a
    pretraining run: ``"pretrain": {"method": ...}`` is what ``model.pretrained`` recognises."""
    ckpt = run_checkpoint(
        model, optimizer, scheduler, scaler, epoch, step, -1.0, cfg, datasets, where,
        world_size=world_size,
    )  # fmt: skip
    ckpt["pretrain"] = {"method": cfg.pretrain.method}
    return ckpt


def _pretrain(cfg: Config, device: torch.device, dist: DistInfo, held: Any) -> int:
    """The run; ``held`` keeps the run folder's lock until it ends."""
    out = Path(cfg.train.out_dir)
    held.enter_context(interrupt_note(out, dist))  # Ctrl-C: which last.pt is kept, and how on
    resume_from = resume_path(cfg, out, dist)
    if resume_from is not None:  # refused now, not after the loading
        check_pretrain_resumable(resume_from, cfg)
        check_resume_early(resume_from, cfg, dist, classifier=False)
    seed_everything(cfg.train.seed)
    datasets = pretrain_datasets(cfg)
    model = build_pretrain_model(cfg).to(device)
    open_run_folder(held, cfg, out, resume_from, dist, model.pretrained_report)
    loader = build_run_train_loader(datasets, dist)
    steps_per_epoch = len(loader)
    if cfg.train.max_steps:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps)
    optimizer, scheduler, scaler = build_optimization(cfg, model, steps_per_epoch, device, dist)
    parts = (model, optimizer, scheduler, scaler)

    start_epoch, step, resumed = 0, 0, None
    if resume_from is not None:
        start_epoch, step, _, resumed, _ = resume_run(resume_from, cfg, datasets, parts, dist, out)
        if start_epoch >= cfg.train.epochs:
            use = f"fine-tune from it with model.pretrained={resume_from}"
            check_continues(resume_from, out, start_epoch, cfg.train.epochs, use)
            if dist.is_main:
                print(f"finished: train.epochs={cfg.train.epochs} (raise it to train on)")
    # after the resume checks: a refused resume leaves config.yaml as it was
    main_only(dist, prepare_run_folder, cfg, out, start_epoch)
    net = training_net(model, cfg, dist, device)
    transform, amp_dtype = build_transform(cfg), amp_dtype_for(cfg.train.amp, device)
    batch_step = pretrain_batch
    if cfg.pretrain.method == "simsiam":
        batch_step = functools.partial(simsiam_batch, views=build_views(cfg))
    options = {"loss_cfg": LossConfig(), "use_pose": False, "batch_step": batch_step}
    run = EpochRun(
        cfg, out, dist, device, datasets, parts, net, loader, transform, amp_dtype,
        steps_per_epoch, step_options=options,
    )  # fmt: skip
    tb = open_tensorboard(cfg, out) if dist.is_main else None
    clock = CheckpointClock(cfg.train.checkpoint_steps, cfg.train.checkpoint_minutes)
    for epoch in range(start_epoch, cfg.train.epochs):
        resume = resumed if epoch == start_epoch else None
        step = _epoch(run, epoch, step, resume, clock, tb)
    if tb is not None:
        tb.close()
    if dist.is_main:
        print(f"run folder: {out.resolve()}  (fine-tune: model.pretrained={out / 'last.pt'})")
    return 0


def _epoch(
    run: EpochRun, epoch: int, step: int, resume: EpochProgress | None, clock: CheckpointClock, tb
) -> int:
    """Train one epoch (from ``resume`` when set), log it, write last.pt; the step count after."""
    cfg, dist = run.cfg, run.dist
    w = dist.world_size

    def checkpoint(at: int, where: dict) -> dict:  # mid-epoch
        return pretrain_checkpoint(*run.parts, epoch, at, cfg, run.datasets, where, w)

    stats = run_epoch(run, epoch, step, resume, clock, checkpoint, save=atomic_save)
    step += int(stats["steps"])
    if dist.enabled:
        _reduce_stats(stats, run.device, dist)
    check_epoch_learned(stats, epoch)
    stats.pop("acc")  # (no classes)
    record = {"type": "train", "epoch": epoch + 1, **stats}  # (lr: of the epoch's last step)
    if dist.is_main:
        log_metrics(run.out, record, tb)
        skipped = int(record["skipped"])
        print(
            f"epoch {epoch + 1}/{cfg.train.epochs}  {cfg.pretrain.method} loss "
            f"{record['loss']:.4f}  lr {record['lr']:.2e}  {record['clips_per_s']:.1f} "
            f"clips/s  {record['time_s']:.0f} s"
            + (f"  collapse std {record['collapse_std']:.4f}" if "collapse_std" in record else "")
            + (f"  skipped {counted(skipped, 'bad video')}" if skipped else "")
        )
        ckpt = pretrain_checkpoint(*run.parts, epoch + 1, step, cfg, run.datasets, None, w)
        atomic_save(ckpt, run.out / "last.pt")
        clock.saved()
    return step


def _reduce_stats(stats: dict[str, float], device: torch.device, dist: DistInfo) -> None:
    """:func:`~hpnet.epoch_report.reduce_epoch_stats`, and the method's per-clip means
    (``collapse_std``) averaged over all clips of all processes, in place."""
    extra = [key for key in stats if key == "collapse_std"]
    sums = all_reduce_sum([stats[key] * stats["clips"] for key in extra], device) if extra else []
    reduce_epoch_stats(stats, device, dist)
    stats.update(
        {key: total / max(stats["clips"], 1) for key, total in zip(extra, sums, strict=True)}
    )


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
