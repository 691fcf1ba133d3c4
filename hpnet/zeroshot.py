"""``python -m hpnet.zeroshot``: zero-shot action recognition by label prompting.

Videos over any labels (a frozen CLIP: frame embeddings averaged over time vs. prompt
embeddings of the labels, see :mod:`hpnet.models.clip_video`)::

    python -m hpnet.zeroshot clip.mp4 clips/ --labels "brush hair,climb,golf" [--json]

A whole test split, scored like the literature's zero-shot protocol (top-1, top-5, mean class
accuracy; ``eval.json`` and the confusion matrix in ``--out``)::

    python -m hpnet.zeroshot --dataset hmdb51 --split 1 data.root=/data/hmdb51

``--splits 1,2,3`` scores each split into ``<out>/split<N>`` and writes ``<out>/summary.json``
(mean and standard deviation over the splits, :mod:`hpnet.splits`); a rerun skips the splits
already scored with the same CLIP and templates.

A trained HP-Net over labels it was not trained on, through its text head::

    python -m hpnet.zeroshot clip.mp4 --checkpoint runs/x/best.pt --labels "wave,clap,run"

Frames are prepared as CLIP's own preprocessing does (short side to the tower's input size S
with antialiased bicubic, in one resize from the decoded picture, then the S x S centre crop at
torchvision's offsets), for files and ``--dataset`` alike, so both give the same pixels.

``--model``/``--pretrained`` set ``text.model``/``text.pretrained`` (an open_clip name; a tag
or a local CLIP checkpoint file). ``--templates`` defaults to ``text.templates`` when the
config file or an override sets it, else to the bare class name (``bare``; ViFi-CLIP found it
best for video); ``video`` is a 5-prompt ensemble, or give your own with ``{}`` where the label
goes.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hpnet.atomic import make_folder
from hpnet.cli import CommandParser, UserError, run_cli
from hpnet.config import Config, load_config, overrides_key
from hpnet.distributed import refuse_torchrun
from hpnet.eval_report import score_every_video, summary_line
from hpnet.predictor import Predictor, predict_videos
from hpnet.text.prompts import get_templates, read_labels
from hpnet.video_cli import add_video_arguments, emit, split_inputs

OUT = {"what": "output folder", "folder_option": "--out DIR"}  # make_folder's words for --out


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m hpnet.zeroshot", description=__doc__.split("\n")[0])
    add_video_arguments(parser, videos="*", labels="labels", config="the built-in defaults")
    parser.add_argument(
        "--templates",
        action="append",
        metavar="TEMPLATE",
        help="a prompt template with {} for the label (repeat for an ensemble), or a set name: "
        "bare (default), video",
    )
    parser.add_argument("--model", help="open_clip model name (text.model), e.g. ViT-B-16")
    parser.add_argument("--pretrained", help="open_clip tag or CLIP weights file (text.pretrained)")
    parser.add_argument("--dataset", help="score a dataset's test split (data.dataset)")
    parser.add_argument("--split", type=int, help="official split number (data.split)")
    parser.add_argument(
        "--splits",
        help="score several splits, e.g. 1,2,3: <out>/split<N>/eval.json each, "
        "then <out>/summary.json (mean and std)",
    )
    parser.add_argument("--out", help="folder for eval.json and the confusion matrix (--dataset)")
    parser.add_argument("--checkpoint", help="a trained HP-Net: classify through its text head")
    return parser


def zero_shot_config(args: argparse.Namespace, overrides: Sequence[str]) -> Config:
    """The config file plus the flags (as ``text.*`` / ``data.*`` keys) plus overrides; a
    config file's ``train.max_steps`` (a smoke run's) does not cut the test short."""
    flags = []
    if args.model:
        flags.append(f"text.model={args.model}")
    if args.pretrained is not None:
        flags.append(f"text.pretrained={args.pretrained}")
    if args.dataset:
        flags.append(f"data.dataset={args.dataset}")
    if args.split is not None:
        flags.append(f"data.split={args.split}")
    file_keys: set[str] = set()  # (the file is read once: --config <(...) is a pipe)
    cfg = load_config(args.config, [*flags, *overrides], file_keys=file_keys)
    if args.templates or not (
        "text.templates" in file_keys or overrides_key(overrides, "text.templates")
    ):
        cfg.text.templates = chosen_templates(args.templates)
    score_every_video(cfg, overrides)
    return cfg


def chosen_templates(given: list[str] | None) -> list[str]:
    """``--templates`` (one set name, or templates with ``{}``) -> templates; default ``bare``."""
    spec = given or ["bare"]
    return get_templates(spec[0] if len(spec) == 1 else spec)


def clip_canvas(size: int) -> Any:
    """CLIP's preprocessing as a loader canvas: short side to ``size`` (bicubic), centre crop."""
    from hpnet.data.canvas import Canvas

    return Canvas((size, size), resize="crop", interpolation="bicubic")


def clip_predictor(cfg: Config, labels: Sequence[str]) -> tuple[Predictor, Any]:
    """A :class:`~hpnet.predictor.Predictor` around a frozen CLIP over ``labels``, and its tower."""
    from hpnet.data.transforms import ClipTransform
    from hpnet.models.clip_video import zero_shot_classifier

    model, tower = zero_shot_classifier(
        cfg.text.model,
        cfg.text.pretrained,
        labels,
        cfg.text.templates,
        text_cache_dir=cfg.text.cache_dir or None,
        quick_gelu=cfg.text.quick_gelu,
    )
    transform = ClipTransform(size=tower.image_size, mean=tower.mean, std=tower.std, flip=False)
    predictor = Predictor(
        model,
        labels,
        clip_eval_config(cfg),
        transform=transform,
        canvas=clip_canvas(tower.image_size),
        max_side=0,  # decoded straight at the scaled size: one resize, as CLIP's preprocess
        reports_pose=False,
    )
    return predictor, tower


def clip_eval_config(cfg: Config) -> Config:
    """``cfg`` with the data settings of CLIP's preprocessing (:func:`clip_canvas` at the tower's
    input size: one crop, ``eval.crops=1``, as reported) and no joints: what the zero-shot
    predictor and :func:`score_dataset` read videos with."""
    import dataclasses

    from hpnet.text.weights import clip_image_size

    size = clip_image_size(cfg.text.model)
    canvas = clip_canvas(size)
    data = dataclasses.replace(
        cfg.data,
        size=size,
        load_size=size,
        aspect=1.0,
        resize=canvas.resize,
        interpolation=canvas.interpolation,
    )
    return dataclasses.replace(
        cfg,
        data=data,
        pose=dataclasses.replace(cfg.pose, source="none"),
        eval=dataclasses.replace(cfg.eval, crops=1),  # a square canvas has one distinct crop
    )


def score_dataset(
    cfg: Config, out: Path, built: dict[tuple[str, ...], tuple[Predictor, Any]] | None = None
) -> dict[str, Any]:
    """Zero-shot top-1 / top-5 / mean class accuracy over ``cfg.data``'s test split.

    The test videos are sampled like in training (``eval.views`` clips) and prepared as CLIP's
    preprocessing (:func:`clip_canvas`: one centre crop at the tower's input size, as for
    files), without joints; the report is written to ``out`` (``eval.json``, confusion matrix)
    and returned (empty on ranks other than 0). ``built``: CLIP predictors by class list, kept
    across calls (the splits of a dataset share their classes: CLIP is built once).
    """
    from hpnet.data.datasets import build_datasets
    from hpnet.devices import pick_device
    from hpnet.distributed import distributed_session
    from hpnet.eval_report import protocol, run_test, write_report, zero_shot_setup

    cfg = clip_eval_config(cfg)
    _, test_ds, classes = build_datasets(cfg, None, test_views=cfg.eval.views)
    with distributed_session(pick_device(cfg.train.device).type, cfg) as dist:
        built = {} if built is None else built
        if tuple(classes) not in built:  # in the session: "cuda" = this rank's GPU
            built[tuple(classes)] = clip_predictor(cfg, classes)
        predictor, tower = built[tuple(classes)]
        report = run_test(
            predictor.model,
            test_ds,
            cfg,
            predictor.transform,
            predictor.device,
            predictor.amp_dtype,
            dist,
            crops=cfg.eval.crops,
        )
        if dist.is_main:
            report["model"] = f"{cfg.text.model} {tower.weights.source or 'random init'}"
            report["weights"] = tower.weights.identity()  # what --splits reruns compare
            report["templates"] = list(cfg.text.templates)
            report["pretrained"] = cfg.text.pretrained  # as given: what --splits reruns compare
            report["quick_gelu"] = cfg.text.quick_gelu
            report["protocol"] = protocol(cfg)
            report["setup"] = zero_shot_setup(report["model"], cfg.text.templates)
            write_report(report, list(classes), out)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    from hpnet.inference import check_top_k, collect_videos
    from hpnet.models.clip_video import describe

    args = _parser().parse_intermixed_args(argv)
    paths, overrides = split_inputs(args.inputs)
    check_top_k(args.top_k)
    labels = read_labels(args.labels, args.labels_file)
    if args.dataset:
        if paths or labels or args.checkpoint:
            raise UserError(
                "--dataset scores its own test videos over its own classes: "
                "drop the videos, --labels and --checkpoint"
            )
        cfg = zero_shot_config(args, overrides)
        if args.splits is not None:
            return _score_splits(cfg, args, overrides)
        split = f" split {cfg.data.split}" * (cfg.data.dataset in ("hmdb51", "ucf101"))
        name = f"zeroshot-{cfg.data.dataset}" + split.replace(" split ", "-split")
        out = make_folder(Path(args.out) if args.out else Path("runs") / name, **OUT)
        report = score_dataset(cfg, out)
        if report:  # (data.split numbers the official splits only)
            where = f"{cfg.data.dataset}{split} ({report['model']})"
            print(f"zero-shot {where}: {summary_line(report)}")
            print(f"wrote {out / 'eval.json'} and {out / 'confusion_matrix'}*.csv/.png")
        return 0
    if args.splits is not None:
        raise UserError("--splits scores a dataset's splits: give --dataset NAME with it")
    if not paths:
        raise UserError("give videos (files or folders) or --dataset NAME")
    refuse_torchrun("python -m hpnet.zeroshot on video files")
    if labels is None and not args.checkpoint:
        raise UserError('give the labels to choose from: --labels "a,b,c" or --labels-file F')
    videos = collect_videos(paths)
    if args.checkpoint:
        if args.model or args.pretrained is not None:
            raise UserError(
                "--checkpoint uses the text encoder it was trained with: drop --model/--pretrained"
            )
        if args.templates:  # else the templates the model was trained with
            templates = json.dumps(chosen_templates(args.templates))
            overrides = [*overrides, f"text.templates={templates}"]
        predictor = Predictor.from_checkpoint(
            args.checkpoint, config=args.config, overrides=overrides, labels=labels
        )
        source: dict[str, Any] = {"checkpoint": str(args.checkpoint)}
    else:
        cfg = zero_shot_config(args, overrides)
        predictor, tower = clip_predictor(cfg, labels)
        print(describe(tower), file=sys.stderr)
        source = {"clip_model": cfg.text.model, "clip_weights": tower.weights.source or "random"}
    results = predict_videos(predictor, videos, top_k=args.top_k)
    return emit(results, predictor, top_k=args.top_k, as_json=args.json, source=source)


def _score_splits(cfg: Config, args: argparse.Namespace, overrides: Sequence[str]) -> int:
    """``--dataset NAME --splits 1,2,3``: each split into ``<out>/split<N>``, then the summary."""
    from hpnet.devices import pick_device
    from hpnet.distributed import distributed_session
    from hpnet.splits import (
        check_split_lists,
        check_splits_usable,
        parse_splits,
        run_splits,
        split_folder,
        with_split,
    )

    splits = parse_splits(args.splits)
    if args.split is not None:
        raise UserError("give --split N or --splits LIST, not both")
    check_splits_usable(cfg, overrides)
    base = Path(args.out) if args.out else Path("runs") / f"zeroshot-{cfg.data.dataset}"
    make_folder(base, **OUT)  # before any scoring
    split_cfgs = {split_folder(base, s): with_split(cfg, s) for s in splits}
    weights = functools.cache(lambda: _clip_weights(cfg))  # resolved once, when first needed
    left = [  # on every rank, before any waits for the others (_scored checks the protocol)
        split for split, (folder, split_cfg) in zip(splits, split_cfgs.items(), strict=True)
        if not _scored(folder, split_cfg, weights)
    ]  # fmt: skip
    check_split_lists(cfg, left)  # (a scored split's report is read back, not its lists)

    built: dict[tuple[str, ...], tuple[Predictor, Any]] = {}  # CLIP, built once for all splits

    def run(split: int, folder: Path) -> None:
        report = score_dataset(with_split(cfg, split), folder, built)
        if report:
            print(f"zero-shot {cfg.data.dataset} split {split} ({report['model']}): "
                  f"{summary_line(report)}")  # fmt: skip

    # One process group for all splits (score_dataset's own session joins it).
    with distributed_session(pick_device(cfg.train.device).type, cfg) as dist:
        run_splits(
            splits,
            base,
            cfg.data.dataset,
            finished=lambda folder: _scored(folder, split_cfgs[folder], weights),
            run=run,
            dist=dist,
            folder_option="--out DIR",
        )
    return 0


def _clip_weights(cfg: Config) -> dict[str, Any]:
    """The identity of the CLIP weights ``cfg.text`` resolves to now (a tag: its file if it
    can be had, else random init), as :func:`score_dataset` records it."""
    from hpnet.text.weights import ClipSource

    text = cfg.text
    source = ClipSource.resolve(
        text.model, text.pretrained, quick_gelu=text.quick_gelu, towers="image and text towers"
    )
    return source.weights.identity()


def _said(weights: dict[str, Any]) -> str:
    """A weights identity in words: ``random init`` or the file with its size and time."""
    if "file" not in weights:
        tag = weights.get("tag")
        return "random init" + (f" (tag {tag} unavailable)" if tag else "")
    return f"{weights['file']} ({weights['size']} bytes, mtime_ns {weights['mtime_ns']})"


def _scored(folder: Path, cfg: Config, weights: Callable[[], dict[str, Any]]) -> bool:
    """True when ``folder`` holds a zero-shot ``eval.json`` of the same CLIP (model, setting,
    activation, and weights as resolved now: ``weights()``, asked only when the rest agrees) and
    templates and of the same protocol as ``cfg`` (a split's config: dataset, split, views, ...);
    one of other settings is refused rather than averaged with this run's. (Reports from before
    the weights' identity was recorded tell only whether their weights were random.)"""
    from hpnet.splits import check_protocol, cut_short, read_report

    report = read_report(folder)
    if report is None or cut_short(report, cfg.train.max_steps):  # (part of the videos: redone)
        return False
    check_protocol(folder, clip_eval_config(cfg), "--out DIR")
    text = cfg.text
    names = ("CLIP", "text.pretrained", "text.quick_gelu", "templates")
    now = (text.model, text.pretrained, text.quick_gelu, list(text.templates))
    then = (
        str(report.get("model", "")).split(" ")[0],
        report.get("pretrained", text.pretrained),
        report.get("quick_gelu", text.quick_gelu),
        report.get("templates"),
    )
    _refuse_changes(folder, names, then, now)
    resolved = weights()
    was_random = str(report.get("model", "")).endswith("random init")
    if "weights" in report:
        earlier = _said(report["weights"])
    elif was_random == ("file" not in resolved):
        earlier = _said(resolved)
    else:
        earlier = "random init" if was_random else "a weights file"
    _refuse_changes(folder, ("weights",), (earlier,), (_said(resolved),))
    return True


def _refuse_changes(folder: Path, names: Sequence[str], then: tuple, now: tuple) -> None:
    from hpnet.splits import REPORT

    changed = [(n, a, b) for n, a, b in zip(names, then, now, strict=True) if a != b]
    if changed:
        said = ", ".join(f"{n} {a!r} (this run: {b!r})" for n, a, b in changed)
        raise UserError(
            f"{folder / REPORT} was scored with {said}: choose another --out or delete {folder}"
        )


def cli(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
