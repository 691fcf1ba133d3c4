"""One training epoch of a run, as ``hpnet.train`` and ``hpnet.pretrain`` both take it.

A run builds an :class:`EpochRun` once (data, model, optimisation, the net as trained); then
each epoch is :func:`run_epoch`: the loader set to the epoch (its first batches left out when
resuming mid-epoch), mid-epoch checkpoints on the clock, and
:func:`~hpnet.engine.train_one_epoch` with every random draw derived from ``(seed, epoch)``.
What an epoch ends with (evaluation, logging, last.pt) stays with each command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hpnet.config import Config
from hpnet.data.loader import first_clip_batch
from hpnet.data.transforms import ClipTransform
from hpnet.distributed import DistInfo
from hpnet.engine import EpochProgress, train_one_epoch
from hpnet.resume import CheckpointClock, mid_epoch_saver
from hpnet.runtime import RunDataset, start_epoch


@dataclass
class EpochRun:
    """What the epochs of a run share (built once by the command)."""

    cfg: Config
    out: Path
    dist: DistInfo
    device: torch.device
    datasets: list[RunDataset]
    parts: tuple  # model, optimizer, scheduler, scaler
    net: torch.nn.Module  # the model as trained (SyncBN, compiled, DDP)
    loader: Any
    transform: ClipTransform
    amp_dtype: torch.dtype | None
    steps_per_epoch: int
    # what else train_one_epoch takes: loss_cfg and use_pose, or the method's batch_step
    step_options: dict[str, Any] = field(default_factory=dict)


def run_epoch(
    run: EpochRun,
    epoch: int,
    step: int,
    resume: EpochProgress | None,
    clock: CheckpointClock,
    checkpoint: Callable[[int, dict], dict],
    save: Callable[[dict, Path], None],
) -> dict[str, float]:
    """Train epoch ``epoch`` (0-based; from ``resume`` when last.pt was written mid-epoch)
    after ``step`` optimizer steps; when ``clock`` is due, the main process ``save``s
    ``checkpoint(step, progress)`` to last.pt (the command's atomic save, as it names it).
    Returns this process's epoch statistics."""
    cfg, dist = run.cfg, run.dist
    _, optimizer, scheduler, scaler = run.parts
    # Everything random in an epoch derives from (seed, epoch): the order and frame offsets
    # (sampler, dataset), and per batch the augmentation and drop-path (engine.seed_step).
    epoch_seed = cfg.train.seed * 100_003 + epoch
    start_epoch(run.loader, epoch, resume.batches if resume else 0)
    save_mid_epoch = mid_epoch_saver(
        clock, run.out, steps_per_epoch=run.steps_per_epoch, done=step, dist=dist,
        batch_size=cfg.train.batch_size, save=save, checkpoint=checkpoint,
    )  # fmt: skip
    return train_one_epoch(
        run.net, run.loader, transform=run.transform, optimizer=optimizer, scheduler=scheduler,
        scaler=scaler, device=run.device, amp_dtype=run.amp_dtype, epoch=epoch,
        accum_steps=cfg.train.accum_steps, clip_grad=cfg.train.clip_grad,
        max_steps=cfg.train.max_steps,
        generator=torch.Generator(),  # on the CPU: draws cost no device sync
        seed=epoch_seed * 7919 + dist.rank, progress=dist.is_main, resume=resume,
        on_step=save_mid_epoch if dist.is_main else None,
        stand_in=lambda d: first_clip_batch(run.datasets[d].train), **run.step_options,
    )  # fmt: skip
