"""The training loop's arithmetic: the loss terms (class weights, label smoothing, the pose
stream's auxiliary loss), a stand-in batch's zero weight, the epoch's accuracy, gradient
accumulation groups and the per-batch seeds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hpnet import engine


def test_classification_loss_terms_by_hand():
    torch.manual_seed(0)
    logits, aux = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.tensor([0, 2, 1, 2])
    weights = torch.tensor([1.0, 3.0, 0.5])
    cfg = engine.LossConfig(label_smoothing=0.1, aux_weight=0.5, class_weights=weights)
    got = engine.classification_loss({"logits": logits, "aux_logits": aux}, labels, cfg)

    def smoothed_weighted_ce(x: torch.Tensor) -> torch.Tensor:
        """PyTorch's definition, written out: per clip, weight[y] x (0.9 x -log p_y) plus
        0.1 / C x sum_c weight[c] x -log p_c; divided by the sum of weight[y]."""
        logp = x.log_softmax(-1)
        hit = -(weights[labels] * logp[torch.arange(4), labels]).sum() / weights[labels].sum()
        spread = -(logp * weights).sum(-1).sum() / weights[labels].sum() / 3
        return 0.9 * hit + 0.1 * spread

    expected = smoothed_weighted_ce(logits) + 0.5 * smoothed_weighted_ce(aux)
    torch.testing.assert_close(got, expected)
    plain = engine.classification_loss({"logits": logits, "aux_logits": aux}, labels,
                                       engine.LossConfig())  # fmt: skip
    torch.testing.assert_close(plain, F.cross_entropy(logits, labels))  # aux_weight 0: off


class _Identity:
    def train(self, video, joints, generator):
        return video, joints


class _Logits(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)

    def forward(self, video, joints):
        return {"logits": self.fc(video)}


def _step(model, batch, state, weight):
    engine._train_batch(
        model, batch, state, transform=_Identity(), device=torch.device("cpu"), amp_dtype=None,
        generator=None, use_pose=False, scaler=None, weight=weight, loss_divisor=1,
        loss_cfg=engine.LossConfig(), where="test",
    )  # fmt: skip


def test_a_mixed_batch_takes_lam_of_each_label_and_counts_the_larger_share():
    from hpnet.data.mixing import Mixing, mix_clips

    torch.manual_seed(0)
    model, video, labels = _Logits(), torch.randn(4, 3), torch.tensor([0, 1, 1, 1])
    cfg = engine.LossConfig(label_smoothing=0.1, mixing=Mixing(mixup=0.8))
    state = engine.EpochProgress()
    batch = {"video": video, "joints": torch.zeros(4), "label": labels}
    engine._train_batch(
        model, batch, state, transform=_Identity(), device=torch.device("cpu"), amp_dtype=None,
        generator=torch.Generator().manual_seed(3), use_pose=False, scaler=None,
        loss_divisor=1, loss_cfg=cfg, where="test",
    )  # fmt: skip
    mixed, lam = mix_clips(video, cfg.mixing, torch.Generator().manual_seed(3))
    logits = model(mixed, None)["logits"].detach()
    own = F.cross_entropy(logits, labels, label_smoothing=0.1)
    partner = F.cross_entropy(logits, labels.roll(1, 0), label_smoothing=0.1)
    engine.flush_records(state)
    assert 0 < lam < 1
    assert state.loss_sum / state.seen == pytest.approx(float(lam * own + (1 - lam) * partner))
    counted = labels if lam >= 0.5 else labels.roll(1, 0)
    assert state.correct == int((logits.argmax(1) == counted).sum())


def test_repeated_augmentation_trains_on_each_clip_twice():
    from hpnet.data.mixing import repeat_clips

    a, b = torch.tensor([1, 2]), torch.tensor([[1.0], [2.0]])
    assert [t.tolist() for t in repeat_clips(2, a, b)] == [[1, 1, 2, 2], [[1], [1], [2], [2]]]
    torch.manual_seed(0)
    model, video, labels = _Logits(), torch.randn(3, 3), torch.tensor([0, 1, 1])
    sums, seen = [], []

    class Recording(_Identity):  # the copies reach the augmentation, to be augmented apart
        def train(self, video, joints, generator):
            seen.append(video.shape[0])
            return video, joints

    for repeats in (1, 2):
        state = engine.EpochProgress()
        engine._train_batch(
            model, {"video": video, "joints": torch.zeros(3), "label": labels}, state,
            transform=Recording(), device=torch.device("cpu"), amp_dtype=None, generator=None,
            use_pose=False, scaler=None, loss_divisor=1, where="test",
            loss_cfg=engine.LossConfig(repeats=repeats),
        )  # fmt: skip
        engine.flush_records(state)
        sums.append((state.seen, state.loss_sum / state.seen))
    assert sums[1][0] == 2 * sums[0][0] == 6 and seen == [3, 6]
    assert sums[1][1] == pytest.approx(sums[0][1])  # the same clips, unaugmented: the same loss


def test_a_stand_in_batch_adds_no_gradient_and_is_not_counted():
    """A DDP process whose batch failed steps on a stand-in of weight 0: its backward joins the
    collective but adds nothing, and its clips stay out of the epoch's numbers."""
    torch.manual_seed(0)
    model = _Logits()
    batch = {"video": torch.randn(2, 3), "joints": torch.zeros(2), "label": torch.tensor([0, 1])}
    state = engine.EpochProgress()
    _step(model, batch, state, weight=0.0)
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().max() == 0
    engine.flush_records(state)
    assert state.seen == 0 and state.loss_sum == 0
    _step(model, batch, state, weight=1.0)
    assert model.fc.weight.grad.abs().max() > 0


def test_epoch_accuracy_and_loss_are_per_clip_means():
    """Three batches (2, 1, 3 clips) of a model that predicts class 0: acc = clips of class 0
    over all clips, loss = the clip-weighted mean of the batch losses."""
    model = _Logits()
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([2.0, 0.0]))  # always class 0
    labels = [torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([1, 1, 0])]
    batches = [{"video": torch.randn(len(y), 3), "joints": torch.zeros(len(y)), "label": y}
               for y in labels]  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    stats = engine.train_one_epoch(
        model, batches, transform=_Identity(), optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0), scaler=None,
        loss_cfg=engine.LossConfig(), device=torch.device("cpu"), amp_dtype=None, epoch=0,
        progress=False, use_pose=False,
    )  # fmt: skip
    every = torch.cat(labels)
    assert stats["clips"] == 6 and stats["acc"] == pytest.approx(3 / 6)
    expected = F.cross_entropy(torch.tensor([[2.0, 0.0]]).expand(6, 2), every)
    assert stats["loss"] == pytest.approx(float(expected))


def test_the_progress_bar_shows_each_steps_own_rate_and_the_epochs_last_loss(monkeypatch):
    """After every optimizer step (and the end-of-epoch flush): the rate that step used, not
    the schedule's next, and the running loss the epoch ends with."""
    shown = []
    monkeypatch.setattr(
        engine, "_show_progress", lambda bar, state, start: shown.append((state.lr, state.seen))
    )
    batches = [
        {"video": torch.randn(2, 3), "joints": torch.zeros(2), "label": torch.tensor([0, 1])}
        for _ in range(5)
    ]
    model = _Logits()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    used = []
    optimizer.register_step_pre_hook(lambda *_: used.append(optimizer.param_groups[0]["lr"]))
    stats = engine.train_one_epoch(
        model, batches, transform=_Identity(), optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5**s), scaler=None,
        loss_cfg=engine.LossConfig(), device=torch.device("cpu"), amp_dtype=None, epoch=0,
        accum_steps=2, progress=True, use_pose=False,
    )  # fmt: skip
    assert [lr for lr, _ in shown] == used == [1.0, 0.5, 0.25]  # 2 + 2 + the flushed 1
    assert [seen for _, seen in shown] == [4, 8, 10] and stats["clips"] == 10


def test_the_run_builds_its_loss_from_the_config():
    """data.balance=loss weighs classes by inverse frequency; model.pose=false drops the pose
    stream's auxiliary loss; train.label_smoothing goes through."""
    from types import SimpleNamespace

    from hpnet.config import load_config
    from hpnet.runtime import build_loss_config

    cfg = load_config(None, ["data.balance=loss", "train.label_smoothing=0.2",
                             "model.aux_weight=0.3"])  # fmt: skip
    data = SimpleNamespace(cfg=cfg, train=SimpleNamespace(labels=[0, 0, 0, 1]), classes=["a", "b"])
    loss = build_loss_config(cfg, data, torch.device("cpu"))
    assert loss.label_smoothing == 0.2 and loss.aux_weight == pytest.approx(0.3)
    assert loss.class_weights is not None
    assert loss.class_weights[1] / loss.class_weights[0] == pytest.approx(3.0)  # rarer: heavier
    cfg = load_config(None, ["model.pose=false", "model.aux_weight=0.3", "pose.source=none"])
    loss = build_loss_config(cfg, SimpleNamespace(cfg=cfg, train=data.train, classes=data.classes),
                             torch.device("cpu"))  # fmt: skip
    assert loss.class_weights is None and loss.aux_weight == 0.0


@pytest.mark.parametrize("known_length", [True, False])
def test_an_epochs_last_partial_accumulation_steps_on_its_mean_gradient(known_length):
    """5 batches, accumulation 4: the second optimizer step sees one batch, and its gradient is
    that batch's (divided by 1, not 4) when the epoch's length is known."""
    torch.manual_seed(0)
    batches = [
        {"video": torch.randn(2, 3), "joints": torch.zeros(2), "label": torch.tensor([0, 1])}
        for _ in range(5)
    ]
    model = _Logits()
    grads = []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    optimizer.register_step_pre_hook(lambda *_: grads.append(model.fc.weight.grad.clone()))
    reference = _Logits()
    reference.load_state_dict(model.state_dict())
    loader = batches if known_length else iter(batches)
    engine.train_one_epoch(
        model, loader, transform=_Identity(), optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0), scaler=None,
        loss_cfg=engine.LossConfig(), device=torch.device("cpu"), amp_dtype=None, epoch=0,
        accum_steps=4, progress=False, use_pose=False,
    )  # fmt: skip
    loss = torch.nn.functional.cross_entropy(reference(batches[4]["video"], None)["logits"],
                                             batches[4]["label"])  # fmt: skip
    (last,) = torch.autograd.grad(loss, reference.fc.weight)
    assert len(grads) == 2
    first = (
        sum(
            torch.nn.functional.cross_entropy(reference(b["video"], None)["logits"], b["label"])
            for b in batches[:4]
        )
        / 4
    )  # the first, whole group: the mean of its 4 batches' losses
    torch.testing.assert_close(grads[0], torch.autograd.grad(first, reference.fc.weight)[0])
    if known_length:
        torch.testing.assert_close(grads[1], last)
    else:  # a loader without a length: the group's size is unknown, accum_steps divides
        torch.testing.assert_close(grads[1], last / 4)


def test_seed_step_takes_any_train_seed():
    """train.py derives per-epoch seeds as (seed * 100_003 + epoch) * 7919 + rank: large."""
    big = (2**31 * 100_003 + 7) * 7919 + 1
    engine.seed_step(big, 3, torch.Generator())  # overflowed torch.manual_seed before
    a = torch.rand(3)
    engine.seed_step(big, 3, torch.Generator())
    assert torch.equal(torch.rand(3), a)
    engine.seed_step(big, 4, torch.Generator())  # the next batch draws otherwise
    assert not torch.equal(torch.rand(3), a)
    engine.seed_step(big + 1, 3, torch.Generator())  # and so does another rank or epoch
    assert not torch.equal(torch.rand(3), a)
