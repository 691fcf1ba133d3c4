"""Joint training on several datasets: their training loaders interleaved as one.

An epoch is one pass over every dataset: each loader gives all of its batches once, and the
order of datasets over the epoch's steps is :func:`interleave` of the loaders' lengths, a pure
function of them, so every process of a torchrun job takes the same dataset at the same step
(the linear heads of different datasets are different parameters: the gradient all-reduce
must see the same ones everywhere). Each batch is scored over its own dataset's labels; the
loader marks it with ``batch["dataset"]`` (the dataset's index).

Proportional, not round-robin: a dataset's batches are spread evenly over the epoch, so the
mix of every stretch of steps follows the datasets' sizes, each clip is seen once per epoch
(epochs, the schedule and ``train.eval_every`` mean what they mean for one dataset) and the
smaller dataset is not repeated until the larger one is done (HMDB51 would be seen ~2.7 times
per pass over UCF101 with strict alternation).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Any

from torch.utils.data import DataLoader


def interleave(counts: Sequence[int]) -> list[int]:
    """The dataset index of every step of an epoch whose dataset i has ``counts[i]`` batches.

    Batch k of dataset i sits at the fraction ``(k + 1/2) / counts[i]`` of the epoch; ties go
    to the earlier dataset. ``interleave([2, 4]) == [1, 0, 1, 1, 0, 1]``.
    """
    slots = [(Fraction(2 * k + 1, 2 * n), i) for i, n in enumerate(counts) for k in range(n)]
    return [i for _, i in sorted(slots)]


class JointLoader:
    """Several training loaders (:func:`hpnet.data.loader.build_loader`, one per dataset)
    iterated as one, in :func:`interleave` order; each batch gets ``batch["dataset"]``.

    ``len()`` is the total number of batches; :meth:`set_epoch` starts an epoch, also part way
    through (exact resume).
    """

    def __init__(self, loaders: Sequence[DataLoader]) -> None:
        if not loaders:
            raise ValueError("JointLoader needs at least one loader")
        self.loaders = list(loaders)
        self.skip = 0

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders)

    def order(self) -> list[int]:
        """The dataset of every step of a whole epoch."""
        return interleave([len(loader) for loader in self.loaders])

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Epoch ``epoch`` of every loader's sampler; the next pass leaves out its first
        ``skip_batches`` steps (each loader skips the batches it gave in them)."""
        done = Counter(self.order()[:skip_batches])
        for i, loader in enumerate(self.loaders):
            loader.sampler.set_epoch(epoch, skip=done[i] * (loader.batch_size or 1))
        self.skip = skip_batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        order = self.order()[self.skip :]
        self.skip = 0  # only the pass right after set_epoch(e, skip) skips
        iterators = [iter(loader) for loader in self.loaders]
        for i in order:
            batch = next(iterators[i])
            batch["dataset"] = i
            yield batch
