"""``python -m hpnet.evaluate --checkpoint run/best.pt [--config X.yaml] [key=value ...]``.

Multi-view test (eval.views temporal clips x eval.crops spatial crops, averaged softmax) of a
trained checkpoint; writes ``eval.json`` and the confusion matrix (CSV + PNG) to ``--out``
(default: the checkpoint's folder) and prints top-1, top-5 and mean class accuracy.

``eval.json``: ``top1``, ``top5``, ``mean_class_acc`` (fractions in [0, 1]), ``per_class``
(class -> accuracy, null for classes without test videos), ``num_videos``, ``views``
(clips x crops per video), ``skipped`` (videos that failed to decode), ``checkpoint`` (its
absolute path), ``protocol`` / ``setup`` / ``config`` (what the test ran: see
:func:`hpnet.eval_report.write_run_report`), ``trained`` (how far its run had trained).
Joint runs (``data.joint``): those of the first dataset, plus ``datasets``: per dataset name
``top1``, ``top5``, ``mean_class_acc``, ``per_class``, ``num_videos``, ``skipped``, each
scored over its own labels, and ``confusion_matrix-<name>.csv`` / ``.png`` per dataset.
With a validation split (``data.val_fraction > 0``): ``val`` with those keys on the validation
videos (taken from the training list), apart from the test scores above (and per dataset).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpnet.checkpoint import load_checkpoint
from hpnet.cli import CommandParser, UserError, run_cli
from hpnet.config import (
    apply_overrides,
    config_from_dict,
    load_config,
)
from hpnet.config_cli import add_config_arguments
from hpnet.eval_report import run_dataset_tests, score_every_video, summary_line, write_run_report
from hpnet.runtime import label_sets
from hpnet.splits import warn_trained_on_test

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    from hpnet.atomic import make_folder
    from hpnet.devices import pick_device
    from hpnet.distributed import distributed_session, main_only
    from hpnet.models.from_checkpoint import model_from_checkpoint
    from hpnet.runtime import amp_dtype_for, build_run_datasets, build_transform

    parser = CommandParser(prog="python -m hpnet.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by hpnet.train")
    parser.add_argument("--out", help="folder for eval.json and the confusion matrix")
    add_config_arguments(parser)
    args = parser.parse_intermixed_args(argv)

    ckpt = load_checkpoint(args.checkpoint)
    if args.config:
        cfg = load_config(args.config, args.overrides)
    else:  # the run's own config, with the command line's overrides on top
        cfg = apply_overrides(config_from_dict(ckpt["config"]), args.overrides)
    score_every_video(cfg, args.overrides)
    device = pick_device(cfg.train.device)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    with distributed_session(device.type, cfg) as dist:
        datasets = build_run_datasets(cfg, test_views=cfg.eval.views, used=("test", "val"))
        model = model_from_checkpoint(ckpt, cfg, datasets[0].classes, source=args.checkpoint)
        main_only(dist, warn_trained_on_test, ckpt, datasets, args.checkpoint)
        main_only(dist, _warn_reordered, ckpt, datasets[0].classes, args.checkpoint)
        if len(datasets) > 1 and model.label_sets != label_sets(datasets):
            raise UserError(
                f"{args.checkpoint} was not trained on this config's data.joint datasets "
                f"({', '.join(d.name for d in datasets)}, with their classes); evaluate one "
                "dataset with data.joint=[] and its data.* keys, or use the run's own config"
            )
        # before the test, after what can refuse the checkpoint (no empty folder left then)
        make_folder(out, what="evaluation folder", folder_option="--out DIR")
        model.to(device)
        setup = (build_transform(cfg), device, amp_dtype_for(cfg.train.amp, device), dist)
        reports = run_dataset_tests(model, datasets, *setup, crops=cfg.eval.crops)
        vals = run_dataset_tests(model, datasets, *setup, crops=cfg.eval.crops, split="val")
        if dist.is_main:
            # (absolute: read back from another folder, hpnet.compare finds the run)
            where = str(Path(args.checkpoint).resolve())
            write_run_report(reports, datasets, out, where, vals, cfg, _trained(ckpt, where))
            for d, report, val in zip(datasets, reports, vals, strict=True):
                print(f"{d.name}: " * bool(d.name) + summary_line(report))
                if val:  # the validation split, apart
                    print(f"{d.name}: " * bool(d.name) + "validation " + summary_line(val))
            print(f"wrote {out / 'eval.json'} and {out / 'confusion_matrix'}*.csv/.png")
    return 0


def _warn_reordered(ckpt: dict[str, Any], classes: list[str], source: str) -> None:
    """Warn when the dataset names the checkpoint's classes in another order (a reordered
    data.classes_file): its videos' integer labels then name other classes than in training,
    and every score would be of a relabelled test."""
    trained = list(ckpt.get("classes", []))
    if classes != trained and sorted(classes) == sorted(trained):
        moved = next(i for i, (a, b) in enumerate(zip(classes, trained, strict=True)) if a != b)
        logger.warning(
            "the dataset names %s's classes in another order (label %d: %r here, %r in "
            "training): its videos' labels now name other classes than they did; if the list "
            "files were not relabelled, give data.classes_file in the training order", source,
            moved, classes[moved], trained[moved],
        )  # fmt: skip


def _trained(ckpt: dict[str, Any], checkpoint: str) -> dict[str, Any]:
    """How far the checkpoint's run had trained (``eval.json``'s ``trained``): the epochs the
    checkpoint completed ``of`` its run's ``train.epochs``, whether it was written within an
    epoch, and whether its run has finished since (a ``best.pt`` of an earlier epoch is)."""
    from hpnet.splits import trained_and_tested

    run = config_from_dict(ckpt["config"]).train
    return {
        "epochs": int(ckpt.get("epoch", 0)), "of": run.epochs,
        "mid_epoch": bool(ckpt.get("progress")),
        "run_finished": trained_and_tested(Path(checkpoint).parent, run.epochs),
    }  # fmt: skip


def cli(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    run_cli(main, argv)


if __name__ == "__main__":
    run_cli(main)
