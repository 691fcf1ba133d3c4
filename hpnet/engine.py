"""The training loop, free of set-up: it takes built parts and returns numbers (the test loop:
:mod:`hpnet.scoring`).

A model here maps ``(video float (B,T,3,S,S), joints (B,T,P,K,3) | None)`` to a dict with
``"logits" (B,C)`` and optionally ``"aux_logits" (B,C)`` (the pose stream's own prediction).
Joint training: a batch with ``batch["dataset"] = i`` is scored by ``model(video, joints,
label_set=i)`` (dataset i's C_i labels) with the i-th of the loss configs.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from hpnet.cli import UserError, progress_enabled
from hpnet.data.mixing import Mixing, mix_clips, partners, repeat_clips
from hpnet.data.transforms import ClipTransform
from hpnet.optim import clip_in_float64
from hpnet.scoring import batch_to_device


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite; training stops instead of corrupting the weights."""


@dataclass
class LossConfig:
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    aux_weight: float = 0.0  # weight of the auxiliary pose-stream loss
    class_weights: torch.Tensor | None = None  # (C,) per-class loss weights (balance=loss)
    mixing: Mixing = field(default_factory=Mixing)  # mixup / cutmix of the batch's clips
    repeats: int = 1  # repeated augmentation: each clip this many times in its batch


def classification_loss(out: dict[str, torch.Tensor], labels: torch.Tensor, cfg: LossConfig):
    """Cross-entropy on ``logits`` plus ``aux_weight`` x cross-entropy on ``aux_logits``."""
    ce = partial(
        F.cross_entropy, target=labels, weight=cfg.class_weights,
        label_smoothing=cfg.label_smoothing,
    )  # fmt: skip
    loss = ce(out["logits"].float())
    if cfg.aux_weight > 0 and out.get("aux_logits") is not None:
        loss = loss + cfg.aux_weight * ce(out["aux_logits"].float())
    return loss


@dataclass
class EpochProgress:
    """How far an epoch has got, counted from its start: what a mid-epoch checkpoint stores to
    resume it exactly (the resumed epoch skips ``batches``, see
    :meth:`~hpnet.data.loader.EpochSampler.set_epoch`)."""

    batches: int = 0  # loader batches (micro-steps) consumed
    steps: int = 0  # optimizer steps taken
    loss_sum: float = 0.0  # sum over clips of the loss
    correct: float = 0.0  # clips predicted right
    seen: float = 0.0  # clips trained on
    skipped: float = 0.0  # videos that could not be decoded
    time_s: float = 0.0  # seconds spent in this epoch before the current process took over
    lr: float = 0.0  # the (first group's) learning rate of the last optimizer step taken
    extra: dict[str, float] = field(default_factory=dict)  # per-clip sums a step adds (mean out)
    # micro-batches recorded on the device, not yet read: (loss, correct | None, clips, weight,
    # where, extra means); :func:`flush_records` reads them all in one sync at the optimizer step
    queued: list[tuple] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        kept = {k: v for k, v in vars(self).items() if k != "queued"}
        return {**kept, "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> EpochProgress:
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in state.items()})

    def summary(self, elapsed: float) -> dict[str, float]:
        """The epoch's metrics after ``elapsed`` seconds: means per clip, clips/s, counts."""
        clips = max(self.seen, 1)
        return {
            "loss": self.loss_sum / clips,
            "acc": self.correct / clips,
            "clips": self.seen,
            "steps": self.steps,
            "clips_per_s": self.seen / max(elapsed, 1e-9),
            "skipped": self.skipped,
            "time_s": elapsed,
            "lr": self.lr,
            **{key: total / clips for key, total in self.extra.items()},
        }


def seed_step(seed: int, batch: int, generator: torch.Generator | None) -> None:
    """Seed torch's global RNG (dropout, drop-path) and the augmentation ``generator`` from
    ``(seed, batch)``, so that a step's randomness does not depend on the steps before it: an
    epoch resumed at batch k draws exactly what the uninterrupted epoch drew."""
    base = (seed * 1_000_003 + 2 * batch) % 2**62  # torch takes seeds below 2**63
    torch.manual_seed(base)
    if generator is not None:
        generator.manual_seed(base + 1)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    *,
    transform: ClipTransform,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    loss_cfg: LossConfig | Sequence[LossConfig],
    device: torch.device,
    amp_dtype: torch.dtype | None,
    epoch: int,
    accum_steps: int = 1,
    clip_grad: float = 0.0,
    max_steps: int = 0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    use_pose: bool = True,
    progress: bool = True,
    resume: EpochProgress | None = None,
    on_step: Callable[[EpochProgress], None] | None = None,
    batch_step: Callable[..., None] | None = None,
    stand_in: Callable[[int], dict[str, Any]] | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns mean loss, accuracy, clips/s and skipped videos.

    ``seed``: reseed the RNGs before every batch from ``(seed, batch)`` (:func:`seed_step`).
    ``resume``: continue an epoch from a mid-epoch checkpoint; the loader must already skip
    the ``resume.batches`` batches it consumed. ``on_step(progress)`` runs after every
    optimizer step (gradients are zero then: the moment to write a checkpoint).
    ``loss_cfg``: one per dataset for a joint loader (batches with ``"dataset"``).
    ``batch_step``: the forward + backward of one batch, called like :func:`_train_batch`
    (default: classification; ``hpnet.pretrain`` passes its self-supervised step).
    ``stand_in(dataset)``: a batch of one clip of that dataset (index 0 for a single one), for
    a DDP process whose whole batch failed before it had an earlier batch (:func:`_stand_in`).
    """
    model.train()
    step = partial(
        batch_step or _train_batch, transform=transform, device=device, amp_dtype=amp_dtype,
        generator=generator, use_pose=use_pose, scaler=scaler,
    )  # fmt: skip
    state = EpochProgress.from_dict(resume.to_dict()) if resume else EpochProgress()
    bar, total = _progress_bar(loader, state, epoch, max_steps, progress)
    start = time.perf_counter() - state.time_s
    optimizer.zero_grad(set_to_none=True)
    ddp = isinstance(model, DistributedDataParallel)
    pending = 0  # micro-batches whose gradients are accumulated but not yet stepped
    previous: dict[int, dict[str, Any]] = {}  # per dataset the last batch with clips (_stand_in)
    for micro, batch in enumerate(bar, start=state.batches):
        if max_steps and micro >= max_steps:
            break
        state.batches = micro + 1
        state.skipped += batch.get("skipped", 0)
        if seed is not None:
            seed_step(seed, micro, generator)
        steps_now = (micro + 1) % accum_steps == 0  # this micro-batch ends an accumulation
        weight = 1.0
        dataset = batch.get("dataset")
        where = f"epoch {epoch + 1}, batch {micro + 1}"
        if batch["label"].numel() == 0 and ddp:  # every clip failed to decode, on this rank only
            batch, weight = _stand_in(previous, stand_in, dataset, where), 0.0
        if batch["label"].numel() > 0:  # else (one process) nothing to learn from: counted
            # Gradients are averaged across processes only on the micro-step that steps
            # (or flushes at the end of the epoch; unknown length: every micro-step).
            sync = steps_now or total is None or micro + 1 == total
            with contextlib.nullcontext() if sync or not ddp else model.no_sync():
                step(
                    model, batch, state, weight=weight,
                    loss_divisor=_group_size(micro, accum_steps, total),
                    loss_cfg=loss_cfg if dataset is None else loss_cfg[dataset], where=where,
                )  # fmt: skip
            pending += 1
            previous[dataset or 0] = batch
        if steps_now and pending:
            _optimizer_step(model, optimizer, scheduler, scaler, clip_grad, state, where)
            pending = 0
            if on_step:
                state.time_s = time.perf_counter() - start
                on_step(state)
            if progress:
                _show_progress(bar, state, start)
    if pending:  # flush a partial accumulation at the end of the epoch
        where = f"the end of epoch {epoch + 1}"
        _optimizer_step(model, optimizer, scheduler, scaler, clip_grad, state, where)
        if progress:
            _show_progress(bar, state, start)
    bar.close()
    return state.summary(time.perf_counter() - start)


def _group_size(micro: int, accum_steps: int, total: int | None) -> int:
    """Micro-batches in the accumulation group of micro-batch ``micro`` (0-based): the gradient
    is the mean over them. ``accum_steps``, but fewer in an epoch's last, partial group (when
    the epoch's length ``total`` is known)."""
    if total is None:
        return accum_steps
    start = micro - micro % accum_steps
    return max(1, min(accum_steps, total - start))


def _progress_bar(
    loader: Iterable[dict[str, Any]],
    state: EpochProgress,
    epoch: int,
    max_steps: int,
    progress: bool,
) -> tuple[tqdm, int | None]:
    """The epoch's progress bar over ``loader`` (from ``state.batches`` on a resumed epoch) and
    the number of batches the epoch will run (None: the loader has no length)."""
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    if max_steps:
        total = min(total or max_steps, max_steps)
    bar = tqdm(loader, total=total, initial=state.batches, desc=f"epoch {epoch + 1}",
               disable=not progress_enabled(progress), mininterval=1.0)  # fmt: skip
    return bar, total


def _show_progress(bar: tqdm, state: EpochProgress, start: float) -> None:
    """After an optimizer step: the epoch's running loss, the learning rate that step used and
    clips/s on ``bar`` (``start``: the epoch's start), drawn at the bar's next refresh."""
    if state.seen:
        bar.set_postfix(
            loss=f"{state.loss_sum / state.seen:.3f}",
            lr=f"{state.lr:.2e}",
            clips_s=f"{state.seen / (time.perf_counter() - start):.1f}",
            refresh=False,
        )


def _stand_in(
    previous: dict[int, dict[str, Any]],
    make: Callable[[int], dict[str, Any]] | None,
    dataset: int | None,
    where: str,
) -> dict[str, Any]:
    """The batch a DDP process trains on, with weight 0, when all of its clips failed: the
    other processes are already in this step's gradient all-reduce and wait for this one.
    The dataset's last batch with clips in this epoch, else ``make(dataset)``'s."""
    if (dataset or 0) in previous:
        return previous[dataset or 0]
    if make is None:
        raise UserError(
            f"{where}: every video of this process's first batch failed to decode, so it has "
            "nothing to stand in for it in the other processes' gradient exchange; check the "
            "dataset with `python -m hpnet.data --config <your config> --check-decode all`"
        )
    batch = make(dataset or 0)
    return batch if dataset is None else {**batch, "dataset": dataset}


def _train_batch(
    model: nn.Module,
    batch: dict[str, Any],
    state: EpochProgress,
    *,
    transform: ClipTransform,
    loss_cfg: LossConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    generator: torch.Generator | None,
    use_pose: bool,
    loss_divisor: int,
    scaler: torch.amp.GradScaler | None,
    where: str,
    weight: float = 1.0,
) -> None:
    """Forward + backward of one batch (gradients accumulate); adds to ``state``'s sums.

    ``weight`` 0: a stand-in batch (:func:`_stand_in`) that adds nothing to the gradients or
    the sums. A batch of a joint loader (``"dataset"`` i) is scored over dataset i's labels.
    Reads nothing back: the loss and the hits stay on the device (:func:`backward_and_record`).
    """
    video, joints, labels = repeat_clips(loss_cfg.repeats, *batch_to_device(batch, device))
    video, joints = transform.train(video, joints if use_pose else None, generator)
    video, lam = mix_clips(video, loss_cfg.mixing, generator, loss_cfg.repeats) or (video, 1.0)
    label_set = {} if batch.get("dataset") is None else {"label_set": batch["dataset"]}
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)):
        out = model(video, joints, **label_set)
    loss = classification_loss(out, labels, loss_cfg)
    if lam < 1.0:  # mixed with its partners: their labels weigh 1 - lam
        partner = partners(labels, loss_cfg.repeats)
        loss = lam * loss + (1.0 - lam) * classification_loss(out, partner, loss_cfg)
        labels = labels if lam >= 0.5 else partner  # (accuracy: on the larger share)
    correct = (out["logits"].detach().argmax(1) == labels).sum()
    backward_and_record(
        loss, state, clips=labels.numel(), correct=correct, scaler=scaler, weight=weight,
        loss_divisor=loss_divisor, where=where,
    )  # fmt: skip


def backward_and_record(
    loss: torch.Tensor,
    state: EpochProgress,
    *,
    clips: int,
    correct: torch.Tensor | None,
    scaler: torch.amp.GradScaler | None,
    weight: float,
    loss_divisor: int,
    where: str,
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Queue the backward of ``loss`` (scaled by ``weight / loss_divisor``) and record the
    batch's ``clips``, loss, ``correct`` predictions (None: not a classifier) and ``extra``
    per-clip means (scalars, summed over clips into ``state.extra``) in ``state``, on the
    device: no host sync here (:func:`flush_records` reads them before the optimizer step, and
    stops on a non-finite loss)."""
    scaled = loss * (weight / loss_divisor)
    (scaler.scale(scaled) if scaler else scaled).backward()
    hits = correct.detach().float() if correct is not None else None
    means = {k: v.detach().float() for k, v in (extra or {}).items()}
    state.queued.append((loss.detach().float(), hits, clips, weight, where, means))


def flush_records(state: EpochProgress, also: torch.Tensor | None = None) -> float | None:
    """Read the queued micro-batch records of ``state`` (and the scalar ``also``, e.g. the
    gradient norm) in one host sync; stop on a non-finite loss (:class:`NonFiniteLossError`,
    naming its batch), else add them to the sums. Returns ``also``'s value."""
    queued, state.queued = state.queued, []
    values = [
        v for loss, hits, *_, means in queued for v in (loss, hits, *means.values())
        if v is not None
    ]  # fmt: skip
    values += [also.detach().float()] if also is not None else []
    if not values:
        return None
    read = iter(torch.stack(values).tolist())  # the one sync
    for _, hits, clips, weight, where, means in queued:
        value = next(read)
        correct = next(read) if hits is not None else 0.0
        extra = {key: next(read) for key in means}
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"loss is {value} at {where}: stopping before the weights "
                "are corrupted (lower train.lr, raise train.warmup_epochs, or use train.amp=bf16; "
                "resume from last.pt with train.resume=auto)"
            )
        if weight:
            state.loss_sum += value * clips
            state.correct += correct
            state.seen += clips
            for key, mean in extra.items():
                state.extra[key] = state.extra.get(key, 0.0) + mean * clips
    return next(read) if also is not None else None


def _optimizer_step(
    model, optimizer, scheduler, scaler, clip_grad: float, state, where: str
) -> None:
    """Unscale, clip, step the optimizer (through the GradScaler) and the schedule; zero the
    gradients; count the step in ``state``.

    fp16's GradScaler skips a step whose gradients overflowed; without one (fp32, bf16) a
    non-finite gradient norm stops the run before the step (:class:`NonFiniteLossError`): the
    loss can be finite while a backward overflows, and one such step turns every weight NaN
    (which the next mid-epoch ``last.pt`` would keep). One host sync per optimizer step.
    """
    if scaler is not None:
        scaler.unscale_(optimizer)
        if clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        flush_records(state)
        scaler.step(optimizer)
        scaler.update()
    else:
        _check_gradients(model, clip_grad, state, where)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    state.lr = optimizer.param_groups[0]["lr"]  # the rate this step used, before the schedule's
    scheduler.step()
    state.steps += 1


def _check_gradients(model: nn.Module, clip_grad: float, state: EpochProgress, where: str) -> None:
    """Clip the gradients to norm ``clip_grad`` (0: none; past fp32's range: in float64) and
    stop on a non-finite norm (:class:`NonFiniteLossError`), read with the losses in one sync."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params]) if params else torch.zeros(())
    value = flush_records(state, norm)
    if not math.isfinite(value) and clip_grad > 0:
        value = clip_in_float64(params, clip_grad)  # (inf again: the gradients are not finite)
    elif clip_grad > 0:
        torch.nn.utils.clip_grads_with_norm_(params, clip_grad, norm)
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"the gradient norm is {value} at {where} while the loss was finite: stopping "
            "before the optimizer step corrupts the weights (lower train.lr, set "
            "train.clip_grad, or try another train.amp; resume from last.pt with "
            "train.resume=auto)"
        )
