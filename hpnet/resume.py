"""A run folder's checkpoints: whether a run may continue one (which one:
:mod:`hpnet.resume_from`), restoring it, and the checkpoint dict a run writes (``last.pt`` /
``best.pt``, see :mod:`hpnet.checkpoint`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from hpnet.atomic import remove_dead_writers_temp_files, write_atomic
from hpnet.checkpoint import (
    FORMAT_VERSION,
    OUT_DIR_OPTION,
    atomic_save,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from hpnet.cli import UserError
from hpnet.config import Config, config_to_dict, flat_config, save_config
from hpnet.config_schema import arch_reads, method_reads
from hpnet.distributed import DistInfo, refused_together
from hpnet.engine import EpochProgress
from hpnet.runtime import label_sets
from hpnet.text.weights import looks_like_path


def resume_run(
    path: Path, cfg: Config, datasets: Sequence[Any], parts: tuple, dist: DistInfo, out: Path
) -> tuple[int, int, float, EpochProgress | None, dict | None]:
    """Load ``path`` into ``parts`` (model, optimizer, scheduler, scaler) and the RNGs, once
    it is found to continue a run on ``datasets`` (the run's, :class:`~hpnet.runtime.RunDataset`);
    ``(start epoch, optimizer steps of finished epochs, best top-1, mid-epoch progress, the
    metrics record of a trained epoch whose test is still to do)``."""
    model, optimizer, scheduler, scaler = parts
    ckpt = load_checkpoint(path)  # on the CPU: load_state_dict moves to the device
    sets = label_sets(datasets)
    with refused_together(dist):  # (the videos a machine sees may differ)
        check_resumable(ckpt, cfg, model.class_names, sets, path, dist)
        check_same_videos(ckpt, datasets, path)
    model.load_state_dict(ckpt["model"])
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except ValueError as err:  # other parameter groups: e.g. a run an older hpnet started
        raise UserError(
            f"cannot resume {path}: its optimizer state has other parameter groups than this "
            f"run makes for the model ({err}); the run was started by another hpnet version or "
            "with other model settings: finish it with those, or start a new run "
            "(train.resume='' and another train.out_dir)"
        ) from None
    scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    start_epoch, step, best = ckpt["epoch"], ckpt["step"], ckpt["best_top1"]
    resumed = None
    if ckpt.get("progress"):
        # Rank 0's sums, restored on every rank: under torchrun the resumed epoch's loss
        # and accuracy before the checkpoint are rank 0's share standing for each rank's.
        resumed = EpochProgress.from_dict(ckpt["progress"]["epoch"])
        step -= resumed.steps  # `step` counts the optimizer steps of finished epochs
    untested = ckpt.get("untested")
    if dist.is_main:
        where = (
            f"in epoch {start_epoch + 1} after batch {resumed.batches}"
            if resumed
            else f"after epoch {start_epoch}" + " (before its test)" * bool(untested)
        )
        print(f"resumed from {path} {where} (step {ckpt['step']})")
    return start_epoch, step, best, resumed, untested


# What a resumed run may set otherwise than the run it continues: where the files are, how fast
# and how often it works and reports, and when it stops. Any other key would make the rest of
# the run another experiment than its first epochs (the videos it trains and tests on, the
# model, the augmentation, the loss, the schedule the saved optimizer and step count follow),
# under a config.yaml that claims the new values for all of it.
# (model.pretrained and text.pretrained may move, not come or go: the first decides the
# optimizer's parameter groups, the second the text embeddings the class weights live among.)
DATA_MAY_CHANGE = ("root", "split_dir", "train_list", "test_list", "classes_file", "workers")
DATA_MAY_CHANGE += ("decoder", "on_error", "allow_missing", "max_pixels")
RESUME_MAY_CHANGE = (
    *(f"data.{key}" for key in DATA_MAY_CHANGE),
    "model.pretrained", "text.pretrained", "text.cache_dir",  # read at the start only
    "pose.cache_dir", "pose.batch", "pose.workers", "pose.device",
    "pose.precision", "train.epochs", "train.resume", "train.out_dir",
    "train.device", "train.amp", "train.checkpoint_minutes", "train.checkpoint_steps",
    "train.eval_every", "train.tensorboard", "train.compile", "train.grad_checkpointing",
    "train.threads", "eval.views", "eval.crops", "eval.batch_size",
)  # fmt: skip
JOINT_MAY_CHANGE = (*DATA_MAY_CHANGE, "pose_cache_dir")  # in a data.joint entry
WEIGHTS_MAY_MOVE = ("model.pretrained", "text.pretrained")  # (text: with model.text only)


def resume_changes(saved: dict, cfg: Config) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, cfg's value)`` for every key of the checkpoint's config that
    ``cfg`` sets otherwise and a resumed run may not change (:data:`RESUME_MAY_CHANGE`, and
    :data:`JOINT_MAY_CHANGE` in ``data.joint`` entries). A key the checkpoint does not record
    (it predates the key) ran with the key's default, and is compared as that."""
    now = flat_config(config_to_dict(cfg))
    recorded = {**flat_config(config_to_dict(Config())), **flat_config(saved)}
    arch, method = recorded["model.arch"], recorded["pretrain.method"]
    changes = []
    for key, then in recorded.items():
        if key not in now or not arch_reads(arch, key.removeprefix("model.")):
            continue  # (a key the run's arch does not read changes nothing)
        if key.startswith("pretrain.") and not method_reads(method, key.removeprefix("pretrain.")):
            continue  # (nor one its pretraining method does not read)
        was, is_ = then, now[key]
        if key in WEIGHTS_MAY_MOVE and (key != "text.pretrained" or cfg.model.text):
            was, is_ = _weights_kind(was), _weights_kind(is_)  # the same weights, moved
            if "file" in (was, is_) and "random" not in (was, is_):
                continue  # a file for a tag or another file: maybe the same weights
        elif key in RESUME_MAY_CHANGE:
            continue
        if key == "data.joint":
            was, is_ = _fixed_part(was), _fixed_part(is_)
        if was != is_:
            changes.append((key, then, now[key]))
    return changes


def _weights_kind(value: str) -> Any:
    """``"random"`` (''), ``"file"`` (a path) or ``("tag", value)``: a resumed run may give
    its weights elsewhere (a file, or a tag's downloaded file), not none for some, some for
    none, nor another tag."""
    if not value:
        return "random"
    return "file" if looks_like_path(value) else ("tag", value)


def check_run_config(folder: Path, cfg: Config) -> None:
    """Refuse ``cfg`` for run folder ``folder`` when the run there (its ``config.yaml``) is
    another experiment (:func:`resume_changes`): ``--splits`` checks every split's folder up
    front, so that no finished split of other settings is averaged into the summary. A folder
    without a readable ``config.yaml`` has nothing to refuse."""
    try:
        saved = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return
    if isinstance(saved, dict):
        refuse_changes(resume_changes(saved, cfg), f"cannot continue the run in {folder}")


def refuse_changes(
    changed: list[tuple[str, Any, Any]],
    subject: str,
    advice: str = (
        "set them as the run had them, from an override or the config file (the run's "
        "config.yaml holds them all), or start a new run in another train.out_dir"
    ),
) -> None:
    """The one-line refusal of :func:`resume_changes`' first change (the others named)."""
    if not changed:
        return
    key, then, now = changed[0]
    more = f" (and {', '.join(k for k, _, _ in changed[1:])})" if len(changed) > 1 else ""
    raise UserError(f"{subject}: it used {key}={then}, this run has {now}{more} ({advice})")


def _fixed_part(entries: list) -> list:
    """``data.joint`` entries without the keys a resume may change."""
    return [{k: v for k, v in e.items() if k not in JOINT_MAY_CHANGE} for e in entries or []]


def check_resume_early(path: Path, cfg: Config, dist: DistInfo, *, classifier: bool) -> None:
    """Before the data and the model are built: the refusals ``path``'s own record decides
    (:func:`check_record`; memory-mapped, no weights read), so that a changed setting is
    refused in a second, not after minutes of loading. A file torch cannot read is left to
    :func:`resume_run`, which says why. Every process checks (before any waits for another);
    first the main one, whether another run is still writing to ``path``'s folder."""
    from hpnet.models.lsvit_weights import read_saved_dict
    from hpnet.run_lock import check_not_held

    own = path.parent.resolve() == Path(cfg.train.out_dir).expanduser().resolve()
    if own and dist.is_main:  # (this run's lock: taken later, by the main process)
        check_not_held(path.parent)  # a run still writing there: said first
    ckpt = read_saved_dict(path)
    if ckpt is not None:
        check_record(ckpt, cfg, path, dist, classifier=classifier, early=True)


def check_record(
    ckpt: dict, cfg: Config, path: Path, dist: DistInfo, *, classifier: bool, early: bool = False
) -> None:
    """What ``ckpt``'s record refuses for this run: another format, a pretraining run
    continued as a classifier's, another process count or (mid-epoch) batch size, settings
    changed (:func:`resume_changes`; ``early``: before the model is built, with
    ``text.quick_gelu=auto`` not yet decided), more epochs than ``train.epochs``."""
    if ckpt.get("format") != FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format {ckpt.get('format')}, expected {FORMAT_VERSION}"
        )
    if ckpt.get("pretrain") and classifier:  # a classifier run asked to continue a pretraining
        raise UserError(
            f"{path} is a pretraining checkpoint (python -m hpnet.pretrain): fine-tune from it "
            f"with model.pretrained={path} in another train.out_dir"
        )
    position = ckpt.get("progress")
    if position:  # a mid-epoch checkpoint: the rest of the epoch is dealt out the same way
        then = (position["world_size"], position["batch_size"])
        now = (dist.world_size, cfg.train.batch_size)
        if then != now:
            raise UserError(
                f"cannot resume {path} mid-epoch: it ran {then[0]} process(es) x batch "
                f"{then[1]}, this run has {now[0]} x {now[1]} (use the same process count and "
                "train.batch_size)"
            )
    saved_world = ckpt.get("world_size")
    if saved_world is not None and saved_world != dist.world_size:
        raise UserError(
            f"cannot resume {path}: it ran {saved_world} process(es), this run has "
            f"{dist.world_size} (its learning-rate schedule counts the steps of "
            f"{saved_world} x train.batch_size clips): use {saved_world}"
        )
    changes = resume_changes(ckpt.get("config", {}), cfg)
    if early:  # text.quick_gelu=auto is decided as the model is built (and recorded so)
        changes = [c for c in changes if c[0] != "text.quick_gelu" or c[2] != "auto"]
    refuse_changes(changes, f"cannot resume {path}")
    trained = ckpt.get("epoch", 0) + bool(position)  # (mid-epoch: that epoch has begun)
    if trained > cfg.train.epochs:  # the last.pt, config and metrics would disagree
        begun = f"has begun epoch {trained}" if position else f"has trained {trained} epochs"
        raise UserError(
            f"cannot resume {path}: it {begun}, more than train.epochs={cfg.train.epochs} "
            f"(give train.epochs={trained} or more, or start a new run in another "
            "train.out_dir)"
        )


def check_resumable(
    ckpt: dict, cfg: Config, classes: list[str], sets: list, path: Path, dist: DistInfo
) -> None:
    """:func:`check_record`, then the classes and ``data.joint`` label sets of the run."""
    check_record(ckpt, cfg, path, dist, classifier=bool(classes))
    if ckpt.get("classes") != list(classes):
        raise UserError(f"{path} was trained on other classes than data.dataset={cfg.data.dataset}")
    if [tuple(s) for s in ckpt.get("label_sets") or []] != [tuple(s) for s in sets]:
        raise UserError(
            f"{path} was trained on other data.joint datasets (names or classes) than this run"
        )


def train_video_counts(datasets: Sequence[Any]) -> list[int]:
    """The training videos of each of a run's datasets (what its epochs are made of)."""
    return [len(d.train) for d in datasets]


def check_same_videos(ckpt: dict, datasets: Sequence[Any], path: Path) -> None:
    """Refuse to continue a run whose training videos are now another count (``data.root``
    pointed at another folder, lists or files changed): its learning-rate schedule and its
    position in the epoch count the first set's batches. A checkpoint that predates the
    record is not checked."""
    then, now = ckpt.get("train_videos"), train_video_counts(datasets)
    if then is not None and list(then) != now:
        names = [d.name for d in datasets]
        said = ", ".join(f"{n} {name}".rstrip() for n, name in zip(then, names, strict=False))
        given = ", ".join(f"{n} {name}".rstrip() for n, name in zip(now, names, strict=True))
        raise UserError(
            f"cannot resume {path}: it trained on {said} videos an epoch, the data now gives "
            f"{given} (another data.root, list or allow_missing?): point data.* at the videos "
            "the run had, or start a new run in another train.out_dir"
        )


class CheckpointClock:
    """When to write a mid-epoch ``last.pt``: every ``every_steps`` optimizer steps and/or
    ``every_minutes`` minutes after the previous checkpoint (0 turns either off)."""

    def __init__(self, every_steps: int, every_minutes: float) -> None:
        self.every_steps = every_steps
        self.every_s = every_minutes * 60
        self.last = time.monotonic()

    def due(self, step: int) -> bool:
        if self.every_steps and step % self.every_steps == 0:
            return True
        return bool(self.every_s) and time.monotonic() - self.last >= self.every_s

    def saved(self) -> None:
        self.last = time.monotonic()


def mid_epoch_saver(
    clock: CheckpointClock,
    out: Path,
    *,
    steps_per_epoch: int,
    done: int,
    dist: DistInfo,
    batch_size: int,
    checkpoint: Callable[[int, dict], dict],
    save: Callable[[dict, Path], None] = atomic_save,
) -> Callable[[EpochProgress], None]:
    """The ``on_step`` of an epoch (:func:`hpnet.engine.train_one_epoch`): when ``clock`` is
    due, ``save`` (atomically) to ``out/last.pt`` what ``checkpoint(step, progress)`` gives: the
    run's checkpoint dict at optimizer step ``step`` (``done`` before this epoch) with
    ``progress`` (where the epoch stands, the process count and batch size it was dealt out
    for)."""

    def save_if_due(progress: EpochProgress) -> None:
        if progress.batches >= steps_per_epoch or not clock.due(done + progress.steps):
            return  # (the end-of-epoch checkpoint follows anyway)
        where = {"world_size": dist.world_size, "batch_size": batch_size}
        ckpt = checkpoint(done + progress.steps, {**where, "epoch": progress.to_dict()})
        save(ckpt, out / "last.pt")
        clock.saved()

    return save_if_due


def prepare_run_folder(cfg: Config, out: Path, start_epoch: int) -> None:
    """On the main process, once a resume (if any) is accepted: remove what killed writes left
    (``*.<pid>.tmp``), write ``config.yaml`` and keep in ``metrics.jsonl`` only the records
    of the ``start_epoch`` epochs the run starts after: none for a fresh run, whose folder may
    hold the rows of a run killed before its first ``last.pt``."""
    remove_dead_writers_temp_files(out)
    save_config(cfg, out / "config.yaml")
    rewind_metrics(out / "metrics.jsonl", start_epoch)


def rewind_metrics(path: Path, epoch: int) -> None:
    """Keep the records of the first ``epoch`` epochs in ``metrics.jsonl``.

    A run resumed from ``last.pt`` redoes whatever came after it (and a kill can leave half a
    line), so the file again says exactly what the checkpoint has seen.
    """
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("type") == "train" and record.get("epoch", 0) <= epoch:
            kept.append(line + "\n")
    write_atomic(
        path, lambda f: f.write("".join(kept).encode()), what="metrics log",
        folder_option=OUT_DIR_OPTION,
    )  # fmt: skip


def run_checkpoint(
    model, optimizer, scheduler, scaler, epoch, step, best, cfg, datasets, progress=None,
    *, world_size: int = 1, untested: dict | None = None,
) -> dict:  # fmt: skip
    """The checkpoint dict (plain values); ``progress`` is set when written mid-epoch,
    ``untested`` (the epoch's metrics record) when written after an epoch, before its test.
    ``classes``: the (first) dataset's; ``label_sets``: ``[name, classes]`` per dataset of a
    joint run (None for one dataset); ``world_size``: the processes the run trains on."""
    sets = [[name, names] for name, names in label_sets(datasets)]
    return {
        "world_size": world_size,
        "format": FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch,
        "step": step,
        "best_top1": best,
        "rng": rng_state(),
        "config": config_to_dict(cfg),
        "classes": list(datasets[0].classes),
        "label_sets": sets or None,
        "train_videos": train_video_counts(datasets),
        "progress": progress,
        "untested": untested,
    }
