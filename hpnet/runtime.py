"""Turning a Config into the run-time parts the commands share: device, AMP, loaders, transform.

Only the commands (train, evaluate, predict) call these; leaf modules take typed arguments.
A run trains on one dataset, or on several (``data.joint``): :func:`build_run_datasets` gives
one :class:`RunDataset` per dataset either way.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from hpnet.cli import UserError
from hpnet.config import Config, check_pose_source, dataset_configs, joint_entry_error
from hpnet.data.joint import JointLoader
from hpnet.data.records import some_names
from hpnet.data.transforms import ClipTransform
from hpnet.distributed import DistInfo, sync_batchnorm
from hpnet.engine import LossConfig
from hpnet.models.lsvit import LSViT

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (a run's start: model init)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def amp_dtype_for(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: bf16 / fp16 on CUDA; None (fp32) on the CPU or with train.amp=off."""
    if device.type != "cuda" or amp == "off":
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def training_net(
    model: torch.nn.Module,
    cfg: Config,
    dist: DistInfo,
    device: torch.device,
    *,
    find_unused: bool = False,
) -> torch.nn.Module:
    """The module a training loop calls: ``model`` with SyncBatchNorm (``train.sync_bn``, under
    torchrun on CUDA: converted in place), its LS-ViT checkpointed (``train.grad_checkpointing``),
    compiled (``train.compile``) and wrapped in DDP under torchrun (``find_unused``: some
    parameters get no gradient in a step). Checkpoints keep saving ``model`` itself: the same
    parameters, the same keys."""
    if cfg.train.sync_bn:
        sync_batchnorm(model, dist, device)
    if cfg.train.grad_checkpointing:
        for module in model.modules():
            if isinstance(module, LSViT):
                module.set_grad_checkpointing(True)
    net = torch.compile(model) if cfg.train.compile else model
    if dist.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        net = DistributedDataParallel(
            net, device_ids=device_ids, find_unused_parameters=find_unused
        )
    return net


def build_transform(cfg: Config) -> ClipTransform:
    """The GPU-side clip transform of ``cfg.data`` (crops, flips, colour, normalisation): it
    runs on whatever device the batches it is given are on."""
    a = cfg.data.augment
    return ClipTransform(
        size=cfg.data.size,
        mean=a.mean,
        std=a.std,
        flip=a.flip,
        scale_min=a.scale_min,
        ratio_max=a.ratio_max,
        jitter=a.jitter,
        blur_prob=a.blur_prob,
        hue=a.hue,
        erase_prob=a.erase_prob,
        randaug_n=a.randaug_n,
        randaug_m=a.randaug_m,
        randaug_mstd=a.randaug_mstd,
    )


def build_joint_source(cfg: Config) -> Any:
    """The callable that gives datasets their joints, or None (ground truth or no pose)."""
    if not cfg.model.pose or cfg.pose.source != "cache":
        return None
    from hpnet.data.decode import resolve_backend
    from hpnet.pose.store import JointCache

    decoder = resolve_backend(cfg.data.decoder)
    return JointCache(cfg.pose.cache_dir, persons=cfg.pose.persons, decoder=decoder)


def build_train_loader(cfg: Config, ds: Dataset, dist: DistInfo) -> DataLoader:
    """Training loader: shuffled per (seed, epoch), class-balanced, or sharded under torchrun.

    Its sampler forwards ``set_epoch`` to the dataset and the inner sampler every epoch. Under
    torchrun, ``train.batch_size`` is per process: the global batch is world_size times it.
    """
    from hpnet.data.balance import class_balanced_sampler
    from hpnet.data.loader import build_loader

    # One permutation per (seed, epoch), dealt out rank by rank: N processes with batch b see
    # the clips that one process with batch N x b sees, step by step, when N divides the number
    # of clips (else the sampler repeats a few to give every rank as many: one step more, maybe).
    sampler: Sampler
    if cfg.data.balance == "sampler":
        sampler = class_balanced_sampler(
            ds.labels, seed=cfg.train.seed, num_replicas=dist.world_size, rank=dist.rank
        )
    else:
        sampler = DistributedSampler(
            ds, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=cfg.train.seed
        )
    loader = build_loader(
        ds,
        batch_size=cfg.train.batch_size,
        train=True,
        workers=cfg.data.workers,
        sampler=sampler,
        seed=cfg.train.seed,
    )
    return loader


@dataclass
class RunDataset:
    """One dataset of a run: its name ('' without ``data.joint``), its own config (``data``
    and ``pose.cache_dir`` from its ``data.joint`` entry), train and test sets, class names,
    and the validation set taken from its training videos (``data.val_fraction``) or None."""

    name: str
    cfg: Config
    train: Dataset
    test: Dataset
    classes: list[str]
    val: Dataset | None = None


def build_run_datasets(
    cfg: Config, *, test_views: int, used: tuple[str, ...] = ("train", "test", "val")
) -> list[RunDataset]:
    """Every dataset of the run, in ``data.joint`` order (one without it); with cached joints,
    the ``used`` splits checked complete at start (not at the first batch without them)."""
    from hpnet.data.datasets import build_datasets
    from hpnet.pose.store import JointCache

    _warn_no_joints(cfg)
    out = []
    for name, one in dataset_configs(cfg):
        try:
            check_pose_source(one)
            source = build_joint_source(one)
            # a test (no "train") needs the training videos only for its validation split
            needs = "train" in used or ("val" in used and one.data.val_fraction > 0)
            built = build_datasets(
                one, joint_source=source, test_views=test_views, needs_train=needs
            )
            if isinstance(source, JointCache):
                parts = [getattr(built, split) for split in used]
                records = [r for ds in parts if ds is not None for r in ds.records]
                source.check_complete(records, one.data.on_error)
                source.warn_other_settings(records, one.pose)
        except UserError as err:
            if not name:
                raise
            raise joint_entry_error(name, err) from None
        out.append(RunDataset(name, one, built.train, built.test, built.classes, built.val))
    return out


def _warn_no_joints(cfg: Config) -> None:
    """Pose pooling (``model.pose=true``) on ``pose.source=none``: every joint is missing, so
    the pose stream trains on nothing (the comparison configs set none; model.pose=true alone
    was silent)."""
    if cfg.model.pose and cfg.pose.source == "none":
        rendered = "pose.source=groundtruth (the rendered skeletons), " * (
            cfg.data.dataset == "synthetic"
        )
        logger.warning(
            "model.pose=true with pose.source=none: every joint is missing, so the pose "
            "stream gets nothing to pool; set %spose.source=cache (after python -m "
            "hpnet.pose.cache --config ...) or model.pose=false", rendered,
        )  # fmt: skip


def check_videos(datasets: list[RunDataset], splits: tuple[str, ...] = ("train", "test")) -> None:
    """Refuse a dataset of one class, or without videos in one of ``splits``, before anything
    trains (one class trained to a 100 % top-1; an empty training split trained 0 steps and
    reported a test score; an empty test split failed after the whole training); warn about
    classes without a training video."""
    for d in datasets:
        entry = f"data.joint entry '{d.name}': " if d.name else ""
        if len(d.classes) < 2:  # (data.root one folder above the class folders, say)
            raise UserError(
                f"{entry}{_split_source(d.cfg, 'train')} has {len(d.classes)} class "
                f"({', '.join(d.classes)}): a classifier needs 2 or more (python -m hpnet.data "
                "--config ... shows what it finds where)"
            )
        for split in splits:
            if len(getattr(d, split)) == 0:
                raise UserError(
                    f"{entry}the {split} split has no videos ({_split_source(d.cfg, split)}): "
                    "python -m hpnet.data --config ... shows what it finds where"
                )
        trained = set(d.train.labels)
        untrained = [name for label, name in enumerate(d.classes) if label not in trained]
        if untrained:
            logger.warning(
                "%s%d of %d classes have no training video: %s (never learnt: their test "
                "videos count as errors)", entry, len(untrained), len(d.classes),
                some_names(untrained),
            )  # fmt: skip


def _split_source(cfg: Config, split: str) -> str:
    """Where the videos of ``split`` come from, as the user sets it."""
    d = cfg.data
    if d.dataset == "list":
        return f"data.{split}_list={getattr(d, f'{split}_list') or '(not set)'}"
    return f"data.dataset={d.dataset}, data.root={d.root}"


def label_sets(datasets: list[RunDataset]) -> list[tuple[str, list[str]]]:
    """``(name, classes)`` per dataset of a joint run; ``[]`` for one dataset."""
    return [(d.name, d.classes) for d in datasets] if len(datasets) > 1 else []


def build_run_train_loader(datasets: list[RunDataset], dist: DistInfo) -> Any:
    """The training loader of one dataset, or a :class:`~hpnet.data.joint.JointLoader` over
    every dataset's (each with its own sampler: shuffle, class balance, torchrun shard)."""
    loaders = [build_train_loader(d.cfg, d.train, dist) for d in datasets]
    if len(loaders) == 1:
        return loaders[0]
    return JointLoader(loaders)


def start_epoch(loader: Any, epoch: int, skip_batches: int = 0) -> None:
    """Set the training loader's epoch; its next pass leaves out the first ``skip_batches``
    batches (an epoch resumed from a mid-epoch checkpoint)."""
    if isinstance(loader, JointLoader):
        loader.set_epoch(epoch, skip_batches)
    else:
        loader.sampler.set_epoch(epoch, skip=skip_batches * loader.batch_size)


def build_optimization(
    cfg: Config,
    model: torch.nn.Module,
    steps_per_epoch: int,
    device: torch.device,
    dist: DistInfo | None = None,
) -> tuple[torch.optim.Optimizer, Any, torch.amp.GradScaler | None]:
    """The optimizer (train.optimizer), the warm-up + decay schedule (train.schedule) over the
    run's optimizer steps, and a GradScaler for fp16 on CUDA (else None). With
    ``train.base_batch`` the peak lrs are scaled to the global batch of ``dist``'s processes
    (:func:`~hpnet.optim.batch_scaled`), which the main process prints."""
    from hpnet.optim import batch_scaled, build_optimizer, build_scheduler

    dist = dist or DistInfo()
    train = batch_scaled(cfg.train, dist.world_size)
    if train is not cfg.train and dist.is_main:
        t = cfg.train
        batch = f"{t.batch_size} x {t.accum_steps} accum x {dist.world_size} processes"
        rates = f"train.lr {t.lr:.3g} -> {train.lr:.3g}"
        if t.backbone_lr:
            rates += f", train.backbone_lr {t.backbone_lr:.3g} -> {train.backbone_lr:.3g}"
        print(f"train.base_batch={t.base_batch}: global batch {batch}: {rates}")
    if train.min_lr > train.lr and dist.is_main:
        scaled = f" (scaled by train.base_batch={train.base_batch})" if train.base_batch else ""
        logger.warning(
            "train.min_lr=%g is above the peak train.lr=%g%s: the schedule is flat at the peak; "
            "lower train.min_lr", train.min_lr, train.lr, scaled,
        )  # fmt: skip
    if train.warmup_epochs >= train.epochs and dist.is_main:
        logger.warning(
            "train.warmup_epochs=%g >= train.epochs=%d: the learning rate never reaches "
            "train.lr=%g (lower train.warmup_epochs)", train.warmup_epochs, train.epochs,
            train.lr,
        )  # fmt: skip
    if 0 < steps_per_epoch < train.accum_steps and dist.is_main:
        logger.warning(
            "train.accum_steps=%d is more than the %d batches of an epoch: each epoch steps "
            "once, on %d x train.batch_size=%d clips; lower train.accum_steps",
            train.accum_steps, steps_per_epoch, steps_per_epoch, train.batch_size,
        )  # fmt: skip
    optimizer = build_optimizer(model, train, fused=device.type == "cuda")
    scheduler = build_scheduler(optimizer, train, steps_per_epoch)
    use_scaler = amp_dtype_for(cfg.train.amp, device) == torch.float16  # (CUDA only)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    return optimizer, scheduler, scaler


def build_loss_config(cfg: Config, data: RunDataset, device: torch.device) -> LossConfig:
    """The loss of one dataset's batches (its class weights with data.balance=loss; a class
    without training videos gets weight 0, named by :func:`check_videos`' warning)."""
    from hpnet.data.balance import class_weights
    from hpnet.data.mixing import Mixing

    t = cfg.train
    return LossConfig(
        label_smoothing=cfg.train.label_smoothing,
        aux_weight=cfg.model.aux_weight if cfg.model.pose else 0.0,
        mixing=Mixing(t.mixup, t.cutmix, t.mix_prob, t.mix_switch),
        repeats=t.repeat_aug,
        class_weights=(
            class_weights(data.train.labels, len(data.classes), warn=False).to(device)
            if data.cfg.data.balance == "loss"
            else None
        ),
    )
