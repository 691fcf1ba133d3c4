"""Class imbalance: a class-balanced sampler (also for DDP) and inverse-frequency loss weights.

Two remedies, chosen by ``data.balance``: ``sampler`` draws every class equally often in
expectation (rare clips repeat, frequent ones are skipped, each epoch differently); ``loss``
keeps the natural order and weights the cross-entropy by :func:`class_weights`. Oversampling by
synthesis (SMOTE) does not fit video and is not offered.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from hpnet.cli import HpnetWarning


def _label_tensor(labels: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Labels as int64 ``(N,)``; ValueError when empty or negative."""
    tensor = torch.as_tensor(np.asarray(labels), dtype=torch.int64).flatten()
    if tensor.numel() == 0:
        raise ValueError("no labels: the training split is empty (check data.root / data.split)")
    if int(tensor.min()) < 0:
        raise ValueError(f"labels must be >= 0, got {int(tensor.min())}")
    return tensor


class ClassBalancedSampler(WeightedRandomSampler):
    """WeightedRandomSampler with weight ``1 / count(class)`` per sample, seeded per epoch, and
    split across DDP ranks.

    Every epoch draws ``num_samples`` indices with replacement from a generator seeded with
    ``(seed, epoch)``; each rank takes every ``num_replicas``-th of them, so ranks get disjoint
    draws of equal length (``ceil(num_samples / num_replicas)``) without talking to each other.
    The epoch advances by itself at each ``iter()``; call :meth:`set_epoch` (as with
    DistributedSampler) to make a resumed run draw exactly what the original one did.
    After each ``iter()``, ``draw_numbers[i]`` says how many times the ``i``-th index this rank
    got was drawn before in the pass, on any rank (0 for its first draw): the
    :class:`~hpnet.data.loader.EpochSampler` hands repeats to the dataset as draw keys, so each
    samples its own frames.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        num_samples: int | None = None,
        seed: int = 0,
        *,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        label_t = _label_tensor(labels)
        total = len(label_t) if num_samples is None else num_samples
        if total <= 0:
            raise ValueError(f"num_samples must be > 0, got {num_samples}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, num_replicas={num_replicas})")
        counts = torch.bincount(label_t).double()
        weights = 1.0 / counts[label_t]  # (N,): every class sums to 1
        self.per_replica = math.ceil(total / num_replicas)
        super().__init__(weights, self.per_replica, replacement=True)
        self.seed, self.epoch = seed, 0
        self.draw_numbers: list[int] = []
        self.num_replicas, self.rank = num_replicas, rank

    def set_epoch(self, epoch: int) -> None:
        """Draw the indices of ``epoch`` at the next ``iter()``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)
        generator = torch.Generator().manual_seed(int(state[0]))
        self.epoch += 1
        draws = torch.multinomial(
            self.weights, self.per_replica * self.num_replicas, True, generator=generator
        ).tolist()
        self.draw_numbers = _draw_numbers(draws)[self.rank :: self.num_replicas]
        return iter(draws[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self.per_replica


def _draw_numbers(draws: list[int]) -> list[int]:
    """For every draw, how many times its index was drawn before it in the pass (all ranks)."""
    seen: dict[int, int] = {}
    numbers = []
    for index in draws:
        numbers.append(seen.get(index, 0))
        seen[index] = numbers[-1] + 1
    return numbers


def class_balanced_sampler(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    num_samples: int | None = None,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
) -> ClassBalancedSampler:
    """A sampler drawing each class equally often in expectation (``DataLoader(sampler=...)``).

    labels: one class index per training sample; num_samples: draws per epoch over all ranks
    (default ``len(labels)``). Under DDP pass ``num_replicas=world_size, rank=rank`` and the same
    seed on every rank, use it instead of DistributedSampler (not wrapped in one), and call
    ``sampler.set_epoch(epoch)`` at the start of each epoch.
    """
    return ClassBalancedSampler(labels, num_samples, seed, num_replicas=num_replicas, rank=rank)


def class_weights(
    labels: Sequence[int] | np.ndarray | torch.Tensor, num_classes: int, *, warn: bool = True
) -> torch.Tensor:
    """Inverse-frequency cross-entropy weights: float32 ``(num_classes,)``.

    ``w_c = 1 / count_c``, scaled so the classes present in ``labels`` average 1 (a balanced
    split gets all ones). A class with no samples gets 0 and a warning: it can never be a
    target, so its weight would only matter through label smoothing, where 0 keeps the loss from
    pulling probability towards a class the data never shows (an infinite 1/0 would make NaNs).
    A missing class usually means a class list that does not match the split (``warn=False``:
    the caller has named those classes already).
    """
    label_t = _label_tensor(labels)
    if int(label_t.max()) >= num_classes:
        raise ValueError(f"label {int(label_t.max())} is out of range for {num_classes} classes")
    counts = torch.bincount(label_t, minlength=num_classes).double()
    present = counts > 0
    weights = torch.where(present, 1.0 / counts.clamp(min=1), 0.0)
    weights *= present.sum() / weights.sum()
    if warn and not bool(present.all()):
        missing = torch.nonzero(~present).flatten().tolist()
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        warnings.warn(
            f"{len(missing)} of {num_classes} classes have no training samples "
            f"(class indices {shown}); their loss weight is 0",
            HpnetWarning,
            stacklevel=2,
        )
    return weights.float()
