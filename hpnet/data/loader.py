"""Batching clips: the collate function, the epoch-aware training sampler, the DataLoader factory.

:func:`collate_clips` stacks the sample dicts of :class:`~hpnet.data.datasets.VideoClipDataset`
(or the synthetic datasets) and drops the ``None`` s of skipped bad videos, counting them in
``batch["skipped"]``. :class:`EpochSampler` tells the dataset the epoch before each pass, so
each sample's random stream is ``(seed, epoch, index)`` whichever worker loads it, and skips
the part of an epoch a mid-epoch checkpoint already covered. :func:`build_loader` wires both.
"""

from __future__ import annotations

import gc
import logging
import os
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from hpnet.cli import UserError
from hpnet.data.sampling import DrawKey, draw_key

logger = logging.getLogger(__name__)
_SAID_WORKERS: set[tuple[int, int]] = set()  # (asked, usable) already warned of

__all__ = ["EpochSampler", "ForkSafeLoader", "build_loader", "collate_clips", "first_clip_batch"]

_STAND_IN_TRIES = 64  # videos first_clip_batch tries before it gives up


def collate_clips(samples: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack sample dicts into a batch; drop ``None`` (skipped videos) and count them.

    Returns ``video uint8 (B, [V,] T, 3, H, W)``, ``joints float32 (B, [V,] T, P, 17, 3)``,
    ``label int64 (B,)``, ``index int64 (B,)``, ``skipped`` (int). Other tensor fields are
    stacked, other values kept as lists. A batch whose samples were all skipped has B = 0:
    empty ``label`` and ``index``, and ``video`` / ``joints`` of shape ``(0,)``.
    """
    kept = [s for s in samples if s is not None]
    skipped = len(samples) - len(kept)
    if not kept:
        return {
            "video": torch.empty(0, dtype=torch.uint8),
            "joints": torch.empty(0, dtype=torch.float32),
            "label": torch.empty(0, dtype=torch.int64),
            "index": torch.empty(0, dtype=torch.int64),
            "skipped": skipped,
        }
    batch: dict[str, Any] = {}
    for key, first in kept[0].items():
        values = [s[key] for s in kept]
        if isinstance(first, torch.Tensor):
            batch[key] = torch.stack(values)
        elif key in ("label", "index"):
            batch[key] = torch.tensor(values, dtype=torch.int64)
        else:
            batch[key] = values
    batch["skipped"] = skipped
    return batch


def first_clip_batch(dataset: Dataset) -> dict[str, Any]:
    """A batch of one clip: the first of ``dataset``'s items that decodes, as
    :func:`collate_clips` gives it (what a DDP process whose whole batch failed trains on with
    weight 0, when it has no earlier batch). :class:`UserError` when none of the first
    videos decodes."""
    for index in range(min(len(dataset), _STAND_IN_TRIES)):
        sample = dataset[index]
        if sample is not None:
            return collate_clips([sample])
    raise UserError(
        f"none of the first {min(len(dataset), _STAND_IN_TRIES)} training videos decodes; check "
        "the dataset with `python -m hpnet.data --config <your config> --check-decode all`"
    )


class EpochSampler(Sampler[DrawKey]):
    """Training order for one pass; tells the dataset the epoch before the pass starts.

    Without ``sampler``: a permutation drawn from ``numpy.random.default_rng([seed, epoch])``;
    the epoch is counted here: each ``iter()`` uses the current one, then advances it by one,
    and ``set_epoch(e)`` sets it (call it every epoch for exact resume).
    With ``sampler`` (EpochShuffleSampler, class-balanced, DistributedSampler): its order, and
    its own ``epoch`` attribute when it has one is the epoch handed to the dataset, so calling
    ``set_epoch`` on that sampler (the DistributedSampler idiom) is enough. A sampler that
    repeats indices in a pass (class-balanced: its ``draw_numbers``) has the repeats handed to
    a dataset with ``draw_keys = True`` as :func:`~hpnet.data.sampling.draw_key` s.
    ``set_epoch(e, skip=n)`` leaves out the first ``n`` indices of the next pass (an epoch
    resumed from a mid-epoch checkpoint); ``len()`` stays the length of a whole pass.
    """

    def __init__(self, dataset: Dataset, *, seed: int, sampler: Sampler | None = None) -> None:
        self.dataset = dataset
        self.seed = seed
        self.sampler = sampler
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch = epoch
        self.skip = skip
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler) if self.sampler is not None else len(self.dataset)

    def __iter__(self):
        if self.sampler is not None and hasattr(self.sampler, "epoch"):
            epoch = int(self.sampler.epoch)  # the epoch the sampler is about to draw
        else:
            epoch, self.epoch = self.epoch, self.epoch + 1
        skip, self.skip = self.skip, 0  # only the pass right after set_epoch(e, skip) skips
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        if self.sampler is not None:
            return iter(self._keys(list(self.sampler))[skip:])
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
        return iter(order[skip:].tolist())

    def _keys(self, order: list[int]) -> list[DrawKey]:
        """``order`` with every repeat of an index in the pass as its ``draw_key`` (the wrapped
        sampler's ``draw_numbers``), when the dataset takes them."""
        numbers = getattr(self.sampler, "draw_numbers", None)
        if not getattr(self.dataset, "draw_keys", False) or numbers is None:
            return order
        return [draw_key(i, n) for i, n in zip(order, numbers, strict=True)]


class ForkSafeLoader(DataLoader):
    """A DataLoader whose worker processes are forked after a garbage collection here.

    Cyclic garbage holding native threads (PyAV's frame reformatter keeps FFmpeg slice threads)
    must be freed in the process its threads run in: freed in a forked worker (its collector
    runs there too), it waits forever for threads the fork did not copy, and the loader with
    it (seen: a test split hung after the long-video overlay tests).
    """

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers > 0:  # (persistent workers fork once; a collection costs ~ms)
            gc.collect()
        return super().__iter__()


def _seed_worker(worker_id: int) -> None:
    """Seed Python's and NumPy's global generators from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system tells it)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cpus or 1)


def usable_workers(workers: int) -> int:
    """``workers`` (``data.workers``), at most :func:`usable_cpus`: more would only compete
    for them (torch warns so, once per loader, mid-bar). Said once per setting."""
    cpus = usable_cpus()
    if workers <= cpus:
        return workers
    if (workers, cpus) not in _SAID_WORKERS:
        _SAID_WORKERS.add((workers, cpus))
        logger.warning(
            "data.workers=%d is more than the %d CPUs this process may use: %d loader "
            "processes", workers, cpus, cpus,
        )  # fmt: skip
    return cpus


def build_loader(
    ds: Dataset,
    *,
    batch_size: int,
    train: bool,
    workers: int,
    sampler: Sampler | None = None,
    seed: int = 0,
) -> DataLoader:
    """DataLoader with :func:`collate_clips`; training order through :class:`EpochSampler`.

    Training drops the last incomplete batch (unless the dataset is smaller than one batch).
    Workers are persistent, seeded from a generator seeded with ``seed``, at most one per CPU
    (:func:`usable_workers`; what a clip is never depends on their number); memory is pinned
    when CUDA is available.
    """
    if train:
        sampler = EpochSampler(ds, seed=seed, sampler=sampler)
    num_samples = len(sampler) if sampler is not None else len(ds)
    workers = usable_workers(workers)
    return ForkSafeLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_clips,
        pin_memory=torch.cuda.is_available(),
        drop_last=train and num_samples >= batch_size,
        persistent_workers=workers > 0,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed),
    )
