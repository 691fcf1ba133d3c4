"""Class imbalance: the balanced sampler (single process and DDP shards) and loss weights."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from hpnet.data.balance import class_balanced_sampler, class_weights

LABELS = [0] * 90 + [1] * 10


def _class_share(indices: list[int], labels: list[int]) -> float:
    """Fraction of drawn indices whose label is 1."""
    return sum(labels[i] for i in indices) / len(indices)


def test_sampler_draws_classes_about_equally():
    sampler = class_balanced_sampler(LABELS, num_samples=4000, seed=0)
    assert isinstance(sampler, WeightedRandomSampler)
    drawn = list(sampler)
    assert len(drawn) == len(sampler) == 4000
    assert 0.45 < _class_share(drawn, LABELS) < 0.55  # natural share would be 0.10
    assert len(set(drawn)) > 90  # frequent-class clips vary, not one clip over and over


def test_sampler_is_seeded_per_epoch_and_resumable():
    sampler = class_balanced_sampler(LABELS, seed=3)
    assert len(sampler) == len(LABELS)
    epoch0, epoch1 = list(sampler), list(sampler)  # the epoch advances by itself
    assert epoch0 != epoch1
    resumed = class_balanced_sampler(LABELS, seed=3)
    resumed.set_epoch(1)
    assert list(resumed) == epoch1
    assert list(class_balanced_sampler(LABELS, seed=4)) != epoch0
    loader = DataLoader(list(range(len(LABELS))), batch_size=10, sampler=resumed)
    assert sum(len(batch) for batch in loader) == len(LABELS)


def test_sampler_ddp_shards_are_disjoint_draws_of_one_epoch():
    single = class_balanced_sampler(LABELS, num_samples=101, seed=1)
    single.set_epoch(2)
    whole = list(single)
    shards, draws = [], set()
    for rank in range(2):
        shard = class_balanced_sampler(LABELS, num_samples=101, seed=1, num_replicas=2, rank=rank)
        shard.set_epoch(2)
        shards.append(list(shard))
        assert len(shards[-1]) == len(shard) == 51  # ceil(101 / 2), equal on every rank
        draws |= set(zip(shards[-1], shard.draw_numbers, strict=True))
    assert shards[0][:50] == whole[0:100:2] and shards[1][:50] == whole[1:101:2]
    # repeats are numbered over both ranks: no (index, draw) pair twice, numbers from 0 up
    assert len(draws) == 102 and max(n for _, n in draws) > 0
    for index in {i for i, _ in draws}:
        numbers = sorted(n for i, n in draws if i == index)
        assert numbers == list(range(len(numbers)))
    with pytest.raises(ValueError, match="rank"):
        class_balanced_sampler(LABELS, num_replicas=2, rank=2)


def test_class_weights_inverse_frequency_mean_one():
    weights = class_weights(LABELS, 2)
    assert weights.dtype == torch.float32 and weights.shape == (2,)
    torch.testing.assert_close(weights, torch.tensor([0.2, 1.8]))  # 1/90 : 1/10, mean 1
    torch.testing.assert_close(class_weights([0, 1, 2, 0, 1, 2], 3), torch.ones(3))


def test_class_weights_missing_class_gets_zero_and_a_warning():
    with pytest.warns(UserWarning, match="1 of 3 classes have no training samples"):
        weights = class_weights([0, 0, 2, 2, 2, 2], 3)
    torch.testing.assert_close(weights, torch.tensor([4 / 3, 0.0, 2 / 3]))
    assert weights[[0, 2]].mean() == pytest.approx(1.0)
    loss = torch.nn.functional.cross_entropy(
        torch.randn(6, 3), torch.tensor([0, 0, 2, 2, 2, 2]), weight=weights, label_smoothing=0.1
    )
    assert torch.isfinite(loss)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        class_weights([0, 1], 2)  # nothing missing: no warning


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="out of range"):
        class_weights([0, 3], 3)
    with pytest.raises(ValueError, match="empty"):
        class_balanced_sampler([])
    with pytest.raises(ValueError, match=">= 0"):
        class_weights([-1, 0], 2)
