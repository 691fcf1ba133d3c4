"""A test split scored on every process, and the files that report it.

:func:`run_test` scores every test video once across processes (views x crops, softmax
averaged); :func:`run_dataset_tests` does it for each dataset of a run (its test or validation
split); :func:`write_run_report` writes ``eval.json`` (keys: :mod:`hpnet.evaluate`) and the
confusion matrices. Used by ``hpnet.train`` (its tests), ``hpnet.evaluate`` and
``hpnet.zeroshot``; :func:`protocol` is what ``--splits`` compares before it reuses a score.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset, Subset

from hpnet.cli import UserError, counted
from hpnet.config import Config, overrides_key
from hpnet.data.transforms import ClipTransform
from hpnet.distributed import DistInfo, gather_objects
from hpnet.metrics import classification_report, save_confusion
from hpnet.runtime import RunDataset
from hpnet.scoring import evaluate

logger = logging.getLogger(__name__)
DATASET_KEYS = ("top1", "top5", "mean_class_acc", "per_class", "num_videos", "skipped")


def run_test(
    model: torch.nn.Module,
    test_ds: Dataset,
    cfg: Config,
    transform: ClipTransform,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    dist: DistInfo,
    *,
    crops: int,
) -> dict[str, Any]:
    """Evaluate every test video exactly once across processes; the report on rank 0.

    Each process scores the videos ``rank::world_size`` (no padding duplicates); rank 0 merges
    the per-video probabilities by dataset index.
    """
    from hpnet.data.loader import build_loader

    shard = Subset(test_ds, range(dist.rank, len(test_ds), dist.world_size))
    loader = build_loader(
        shard, batch_size=cfg.eval.batch_size, train=False, workers=cfg.data.workers, seed=0
    )
    res = evaluate(
        model,
        loader,
        transform=transform,
        device=device,
        amp_dtype=amp_dtype,
        crops=crops,
        use_pose=cfg.model.pose,
        progress=dist.is_main,
        max_steps=cfg.train.max_steps,
    )
    parts = gather_objects({k: res[k] for k in ("probs", "labels", "indices", "views", "skipped")})
    if not any(p["labels"].numel() for p in parts):  # every process knows: all stop alike
        skipped = int(sum(p["skipped"] for p in parts))
        if not skipped:
            raise UserError("no test video to score: the test split is empty")
        raise UserError(
            f"no test video could be scored: all {skipped} failed to decode (data.on_error=skip "
            "skips them); check the dataset with `python -m hpnet.data --config <your config> "
            "--check-decode all`"
        )
    _refuse_non_finite(parts, cfg)
    if not dist.is_main:
        return {}
    scored = [p for p in parts if p["labels"].numel()]
    order = torch.cat([p["indices"] for p in scored]).argsort()  # the dataset's order
    probs = torch.cat([p["probs"] for p in scored])[order]
    labels = torch.cat([p["labels"] for p in scored])[order]
    classes = list(getattr(test_ds, "classes", [str(i) for i in range(probs.shape[1])]))
    report = classification_report(probs, labels, classes)
    report["views"] = max(p["views"] for p in parts)
    report["skipped"] = int(sum(p["skipped"] for p in parts))
    report["test_videos"] = len(test_ds)
    if report["num_videos"] + report["skipped"] < len(test_ds):  # a smoke run's cap cut it
        report["max_steps"] = cfg.train.max_steps
        logger.warning(
            "train.max_steps=%d: scored %d of the %d test videos", cfg.train.max_steps,
            report["num_videos"] + report["skipped"], len(test_ds),
        )  # fmt: skip
    return report


def score_every_video(cfg: Config, overrides: Sequence[str]) -> None:
    """Lift a config's ``train.max_steps`` (a smoke run's cap on its steps) off a command that
    tests, unless its own ``overrides`` set it: every test video is scored."""
    if not overrides_key(overrides, "train.max_steps"):
        cfg.train.max_steps = 0


def _refuse_non_finite(parts: list[dict[str, Any]], cfg: Config) -> None:
    """Stop every process alike when a video's class scores are NaN or infinite: ranked, they
    would count as predictions of class 0."""
    bad = sum(int((~torch.isfinite(p["probs"])).any(dim=1).sum()) for p in parts)
    if bad:
        total = sum(p["labels"].numel() for p in parts)
        raise UserError(
            f"{bad} of {total} test videos got non-finite class scores (NaN or inf): the model "
            f"overflowed (train.amp={cfg.train.amp}: try bf16 or off) or its weights hold NaN"
        )


def write_report(
    report: dict[str, Any], classes: list[str], out: Path, others: Sequence[tuple] = ()
) -> None:
    """``confusion_matrix.csv`` / ``.png`` (and ``confusion_matrix-<name>.*`` of each of
    ``others``: (name, confusion, classes)), then ``eval.json`` in ``out``: last, so that a
    report on disk means its whole evaluation is."""
    from hpnet.atomic import write_json

    save_confusion(report["confusion"], classes, out)
    for name, confusion, names in others:
        save_confusion(confusion, names, out, stem=f"confusion_matrix-{name}")
    public = {k: v for k, v in report.items() if k != "confusion"}
    write_json(out / "eval.json", public, what="evaluation report")


def run_dataset_tests(
    model: torch.nn.Module,
    datasets: Sequence[RunDataset],
    transform: ClipTransform,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    dist: DistInfo,
    *,
    crops: int,
    views: int | None = None,
    split: Literal["test", "val"] = "test",
) -> list[dict[str, Any] | None]:
    """:func:`run_test` of every dataset of a run (its ``split`` set: ``test``, or ``val`` taken
    from its training videos; ``views`` temporal views if given), dataset i over a joint model's
    label set i. Reports on rank 0 (``{}`` else); None for a dataset without a ``val`` set."""
    reports: list[dict[str, Any] | None] = []
    for i, d in enumerate(datasets):
        test_ds = getattr(d, split)
        if test_ds is None:
            reports.append(None)
            continue
        if views is not None:
            test_ds = copy.copy(test_ds)  # same clips and records, no second read
            test_ds.views = views
        joint = len(datasets) > 1
        with model.using_label_set(i) if joint else contextlib.nullcontext():  # type: ignore[operator]
            reports.append(
                run_test(model, test_ds, d.cfg, transform, device, amp_dtype, dist, crops=crops)
            )
    return reports


def _scores(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report[k] for k in DATASET_KEYS}


def protocol(cfg: Config) -> dict[str, Any]:
    """What a test score stands for besides the weights: the dataset and its split, the clip
    shape, views x crops. ``eval.json`` records it (``"protocol"``); ``--splits`` reruns
    compare it before they reuse a split's score (:func:`hpnet.splits.check_protocol`)."""
    d, e = cfg.data, cfg.eval
    return {
        "data.dataset": d.dataset, "data.split": d.split, "data.frames": d.frames,
        "data.size": d.size, "eval.views": e.views, "eval.crops": e.crops,
    }  # fmt: skip


def setup(cfg: Config) -> dict[str, Any]:
    """What model a test score is of, beside its :func:`protocol`: the arch, its pose and text
    streams, its starting weights and the training videos it held out (``eval.json``'s
    ``setup``: a baseline and HP-Net's scores told apart without their config.yaml)."""
    m = cfg.model
    return {
        "model.arch": m.arch, "model.pose": m.pose, "model.text": m.text,
        "model.pretrained": m.pretrained, "data.val_fraction": cfg.data.val_fraction,
    }  # fmt: skip


def run_started(folder: Path) -> float | None:
    """When the run in ``folder`` started: the time of the first record of its
    ``metrics.jsonl`` (None without one). ``eval.json`` records it of the checkpoint's run
    (``trained.run_started``): read back, it tells that run from one written there since."""
    import json

    try:
        with open(folder / "metrics.jsonl", encoding="utf-8") as f:
            first = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    return first.get("time") if isinstance(first, dict) else None


ZERO_SHOT_ARCH = "clip zero-shot"  # a zero-shot test's model.arch in its setup


def zero_shot_setup(model: str, templates: Sequence[str]) -> dict[str, Any]:
    """A zero-shot test's :func:`setup`: CLIP's towers (``model``: their name and weights, e.g.
    ``"ViT-B-16 openai"``) and the prompt ``templates``; no training, pose or held-out videos."""
    return {
        "model.arch": ZERO_SHOT_ARCH, "model.pose": False, "model.text": True,
        "model.pretrained": model, "data.val_fraction": 0.0, "text.templates": list(templates),
    }  # fmt: skip


def write_run_report(
    reports: Sequence[dict[str, Any]],
    datasets: Sequence[RunDataset],
    out: Path,
    checkpoint: str,
    val_reports: Sequence[dict[str, Any] | None] = (),
    cfg: Config | None = None,
    trained: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``eval.json`` (the first dataset's test report; when ``cfg`` is given its
    :func:`protocol`, :func:`setup` and ``config``: every key of its config, dotted, as this
    test ran; ``trained``: the checkpoint's ``epochs`` done ``of`` its run's ``train.epochs``,
    ``mid_epoch``, ``run_finished`` and its run's :func:`run_started`; with a validation split
    ``val``: its :data:`DATASET_KEYS` on the validation videos; with several datasets
    ``datasets``: each one's, with its own ``val``, ``protocol``, ``setup`` and ``config``) and
    the confusion matrices of the test sets; returns it."""
    vals = list(val_reports) or [None] * len(datasets)
    report = {**reports[0], "checkpoint": checkpoint}
    if cfg is not None:  # (a joint run's: the first dataset's, as the scores beside it)
        report.update(_records(datasets[0].cfg))
    if trained is not None:
        report["trained"] = {**trained, "run_started": run_started(Path(checkpoint).parent)}
    if vals[0]:
        report["val"] = _scores(vals[0])
    if len(datasets) > 1:
        report["datasets"] = {
            d.name: {
                **_scores(r), **({"val": _scores(v)} if v else {}),
                **(_records(d.cfg) if cfg is not None else {}),
            }
            for d, r, v in zip(datasets, reports, vals, strict=True)
        }  # fmt: skip
    others = [(d.name, r["confusion"], d.classes) for d, r in zip(datasets, reports, strict=True)]
    write_report(report, datasets[0].classes, out, others if len(datasets) > 1 else ())
    return report


def _records(cfg: Config) -> dict[str, Any]:
    """What a test of one dataset stands for: its :func:`protocol`, :func:`setup` and
    ``config`` (every key, dotted; a joint entry's: with its own ``data.*``)."""
    from hpnet.config import config_to_dict, flat_config

    flat = flat_config(config_to_dict(cfg))
    return {"protocol": protocol(cfg), "setup": setup(cfg), "config": flat}


def summary_line(report: dict[str, Any]) -> str:
    """Top-1, top-5 and mean class accuracy of a :func:`run_test` report, in one line."""
    return (
        f"top-1 {100 * report['top1']:.2f} %  top-5 {100 * report['top5']:.2f} %  "
        f"mean class acc {100 * report['mean_class_acc']:.2f} %  "
        f"({counted(report['num_videos'], 'video')} x {counted(report['views'], 'view')}, "
        f"{report['skipped']} skipped)"
    )
