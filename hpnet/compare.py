"""``python -m hpnet.compare RUN... [--keys K,...] [--sort top1] [--format table]``.

One table of the test scores of several runs, the best first: an ablation, baselines against
HP-Net, seeds, the splits. Each RUN is a run folder (its ``summary.json`` for a ``--splits``
run, else its ``eval.json``), one of those files, or a folder of runs (every run below it)::

    python -m hpnet.compare runs/*
    python -m hpnet.compare runs --format markdown > results.md

Columns: the run; the settings that differ between the runs, as their reports record the
test (protocol, model, every config key; paths and bookkeeping such as ``train.out_dir`` left
out, ``-`` where a run does not use one: :mod:`hpnet.compare_keys`), or ``--keys`` as given;
top-1, top-5 and mean class accuracy in % (``+-`` the standard deviation over a ``--splits``
run's splits); validation top-1 where a run held videos out; the videos scored. The recorded
protocol and model every run shares are said above the table. What the table would hide is
warned of: runs scored under different protocols (another split, clip shape, views x crops
or label set), undecodable test videos, a checkpoint of a run stopped early, runs below a
folder that have no report yet, reports of an older hpnet (settings from ``config.yaml``).
``--format csv`` / ``json`` print the recorded protocol and model, the settings shown and the
scores as fractions (``json``: each run's whole ``config`` too).
``--curves out.png`` also draws the runs' training loss and test top-1 over the epochs
(:mod:`hpnet.curves`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hpnet.cli import CommandParser, UserError, counted, run_cli
from hpnet.compare_keys import (
    NOT_USED,
    PROTOCOL_KEYS,
    UNKNOWN,
    differing_keys,
    parse_keys,
    text_of,
    value_of,
)
from hpnet.compare_table import render
from hpnet.distributed import refuse_torchrun
from hpnet.run_scores import (
    METRICS,
    RunScores,
    find_reports,
    is_pretraining_run,
    read_scores,
    split_runs_without_summary,
    unfinished_runs,
)

logger = logging.getLogger("hpnet.compare")
SORTS = (*METRICS, "val_top1", "none")


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(
        prog="python -m hpnet.compare",
        description="One table of the test scores of several runs, the best first.",
        epilog="e.g. python -m hpnet.compare runs/* --keys model.pose,model.text",
    )
    parser.add_argument(
        "runs", nargs="+", help="run folders, folders of runs, eval.json / summary.json files"
    )
    parser.add_argument(
        "--keys", help="comma-separated config keys to show (default: those that differ)"
    )
    parser.add_argument("--sort", default="top1", choices=SORTS, help="order (default: top1)")
    parser.add_argument(
        "--format", default="table", choices=("table", "markdown", "csv", "json"),
        help="table (default), markdown, csv or json, on stdout",
    )  # fmt: skip
    parser.add_argument("--curves", metavar="PNG", help="also draw the runs' learning curves")
    args = parser.parse_args(argv)
    refuse_torchrun("python -m hpnet.compare")
    if args.curves and Path(args.curves).suffix.lower() != ".png":
        raise UserError(f"--curves {args.curves}: name a .png file")
    rows = sort_rows(collect(args.runs), args.sort)
    keys = parse_keys(args.keys) if args.keys else differing_keys(rows)
    warn_about(rows, keys, args.sort)
    print(render(rows, keys, args.format), end="")
    if args.curves:
        draw_curves(rows, args.curves)
    return 0


def draw_curves(rows: Sequence[RunScores], path: str) -> None:
    """``--curves``: the training runs of the rows (a summary's splits; a re-scored
    checkpoint's run), each once and named by its folder, joint datasets apart."""
    from hpnet.curves import Curve, write_curves_png

    curves: dict[tuple[Path, str], Curve] = {}
    for r in rows:
        if not r.folders and not r.zero_shot:  # (a zero-shot test trained nothing)
            logger.warning(
                "%s: the metrics.jsonl of the run it scored is not found (moved, or another "
                "run in its folder since): not drawn", r.run,
            )  # fmt: skip
        for folder in r.folders:
            label = _shown(folder) + (f" [{r.part}]" if r.part else "")
            suffix = f"_{r.part}" if r.part else ""
            curve = Curve(label, folder, f"test_top1{suffix}", f"val_top1{suffix}")
            curves.setdefault((folder.resolve(), r.part), curve)
    if not write_curves_png(path, list(curves.values())):
        raise UserError(
            f"--curves {path}: none of the runs has a metrics.jsonl to draw (a run folder of "
            "hpnet.train holds one; an evaluation --out folder does not)"
        )
    print(f"wrote {path}", file=sys.stderr)


def collect(paths: Sequence[str]) -> list[RunScores]:
    """The rows of every score file the paths name (each file once); a folder with none is
    skipped with a warning, unless no path gave any."""
    files, empty = [], []
    for path in paths:
        found = find_reports(path)
        if not found:
            empty.append(path)
        files += [f for f in found if f.resolve() not in {g.resolve() for g in files}]
    if not files:
        raise UserError(
            f"no eval.json or summary.json in {', '.join(empty)}: a run writes eval.json when "
            "its training ends; score a checkpoint with python -m hpnet.evaluate --checkpoint "
            "RUN/last.pt"
        )
    for path in empty:  # (say, a run still training beside finished ones)
        if is_pretraining_run(Path(path)):
            logger.warning("%s: a pretraining run (no test scores): left out", path)
        else:
            logger.warning("%s: no eval.json or summary.json yet: left out", path)
    for path in paths:  # (a folder of runs: those below it not finished)
        if path in empty:
            continue  # (said above)
        for run in unfinished_runs(path):
            logger.warning("%s: no eval.json yet (still training, or stopped): left out", run)
    for base in split_runs_without_summary(files):
        logger.warning(
            "%s: a --splits run without its summary.json (stopped before its last split?): "
            "its finished splits are rows of their own; the same command again finishes it",
            base,
        )
    return [row for f in files for row in read_scores(f)]


def sort_rows(rows: list[RunScores], by: str) -> list[RunScores]:
    """``rows`` best first by ``by`` (rows without that score last), or as given (``none``)."""
    if by == "none":
        return rows

    def score(row: RunScores) -> float | None:
        return row.val_top1 if by == "val_top1" else row.scores[by]

    return sorted(rows, key=lambda r: (score(r) is None, -(score(r) or 0.0)))


def warn_about(rows: Sequence[RunScores], keys: Sequence[str], sort: str = "top1") -> None:
    """Warnings of what makes the table less than like for like, or less than it seems."""
    unlike = [
        f"{k} ({' vs '.join(sorted(v))})"
        for k in PROTOCOL_KEYS
        if len(v := {text_of(value_of(r, k)) for r in rows} - {UNKNOWN, NOT_USED}) > 1
    ]
    names = {frozenset(r.class_names) for r in rows if r.class_names is not None}
    if len({len(n) for n in names}) == 1 and len(names) > 1:
        unlike.append("the class names")  # (as many classes, other ones; an order is alike)
    if unlike:
        logger.warning(
            "the runs were not scored alike: %s differ; their scores are not like for like",
            "; ".join(unlike),
        )
    _warn_runs(
        [r for r in rows if (r.from_yaml or not r.recorded) and not r.zero_shot],
        "scored by an older hpnet, which did not record all the settings of the test: those "
        "beyond its recorded protocol and model are shown from the run's config.yaml, which "
        "its last command wrote (? for what a test may set apart: dataset, split, views, "
        "crops, when unrecorded); python -m hpnet.evaluate --checkpoint <its checkpoint> "
        "records them",
    )
    _warn_runs(
        [r for r in rows if r.config is None and not r.zero_shot
         and any(value_of(r, k) == UNKNOWN for k in keys)],
        "no config.yaml beside its report or checkpoint: its settings show as ?",
    )  # fmt: skip
    for r in rows:
        if r.test_videos is not None:
            logger.warning(
                "%s: train.max_steps cut its test: %d of %d videos scored", r.run, r.videos,
                r.test_videos,
            )  # fmt: skip
        if r.skipped:
            logger.warning(
                "%s: %s could not be decoded: not in its scores (python -m hpnet.data "
                "--check-decode all names them)", r.run, counted(r.skipped, "test video"),
            )  # fmt: skip
        done = r.trained or {}
        early = done.get("epochs", 0) < done.get("of", 0) and not done.get("run_finished")
        if done.get("mid_epoch") or early:
            logger.warning(
                "%s: scored a checkpoint %s of train.epochs=%s (its run had not finished)", r.run,
                f"within epoch {done['epochs'] + 1}" if done.get("mid_epoch")
                else f"after epoch {done['epochs']}", done["of"],
            )  # fmt: skip
    if sort == "val_top1" and all(r.val_top1 is None for r in rows):
        logger.warning("--sort val_top1: no run held out validation videos: in the given order")


def _warn_runs(rows: Sequence[RunScores], message: str) -> None:
    """One warning naming the runs of ``rows`` (each once), if any."""
    if rows:
        logger.warning("%s: %s", ", ".join(dict.fromkeys(r.run for r in rows)), message)


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when inside it (a checkpoint's recorded path
    is absolute), else as it is."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def cli(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    run_cli(main, argv)


if __name__ == "__main__":
    run_cli(main)
