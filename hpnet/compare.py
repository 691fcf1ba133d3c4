"""``python -m hpnet.compare RUN... [--keys K,...] [--sort top1] [--format table]``.

One table of the test scores of several runs, the best first: an ablation, baselines against
HP-Net, seeds, the splits. Each RUN is a run folder (its ``summary.json`` for a ``--splits``
run, else its ``eval.json``), one of those files, or a folder of runs (every run below it)::

    python -m hpnet.compare runs/*
    python -m hpnet.compare runs --format markdown > results.md

Columns: the run; its dataset where they differ; the settings that differ between the runs
(from the reports' protocol and setup records, then their ``config.yaml``: the training
settings; paths and bookkeeping such as ``train.out_dir`` left out), or ``--keys`` as given;
top-1, top-5 and mean class accuracy in % (``+-`` the standard deviation over a ``--splits``
run's splits); validation top-1 where a run held videos out; the videos scored. The settings
every run shares are said above the table. Runs scored under different protocols (another
split, clip shape or views x crops) are warned of: their scores are not like for like.
``--format csv`` / ``json`` print every recorded key and the scores as fractions.
``--curves out.png`` also draws the runs' training loss and test top-1 over the epochs
(:mod:`hpnet.curves`).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpnet.cli import CommandParser, UserError, run_cli
from hpnet.config import config_to_dict, flat_config
from hpnet.config_schema import Config
from hpnet.distributed import refuse_torchrun
from hpnet.eval_report import protocol
from hpnet.run_scores import METRICS, RunScores, find_reports, read_scores

logger = logging.getLogger("hpnet.compare")
NAMES = {"top1": "top-1 %", "top5": "top-5 %", "mean_class_acc": "mean class acc %"}
SORTS = (*METRICS, "val_top1", "none")
# settings that do not change what a run learns or how it is scored: never a column of their own
BOOKKEEPING = frozenset({  # (and pretrain.*: a pretraining run's, not a fine-tuning's)
    "data.root", "data.split_dir", "data.train_list", "data.test_list", "data.classes_file",
    "data.joint", "data.workers", "data.on_error", "data.allow_missing", "data.max_pixels",
    "data.decoder", "pose.cache_dir", "pose.workers", "pose.device", "pose.batch",
    "text.cache_dir", "train.out_dir", "train.resume", "train.checkpoint_minutes",
    "train.checkpoint_steps", "train.tensorboard", "train.threads", "train.device",
    "train.compile", "train.grad_checkpointing", "eval.batch_size",
})  # fmt: skip
PROTOCOL_KEYS = tuple(protocol(Config()))
UNKNOWN, NOT_USED = "?", "-"
# settings that mean nothing unless another one is set so: (key prefix, that key, its value)
ONLY_WHEN = (
    ("data.synthetic.", "data.dataset", "synthetic"), ("text.", "model.text", True),
    ("pose.", "model.pose", True), ("model.feedback", "model.pose", True),
    ("model.pose_encoder", "model.pose", True), ("model.aux_weight", "model.pose", True),
    ("model.smif", "model.arch", "lsvit"), ("model.lmi", "model.arch", "lsvit"),
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(
        prog="python -m hpnet.compare",
        description="One table of the test scores of several runs, the best first.",
        epilog="e.g. python -m hpnet.compare runs/* --keys model.pose,model.text",
    )
    parser.add_argument("runs", nargs="+", help="run folders, eval.json / summary.json files")
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
    warn_about(rows, keys)
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
        logger.warning("%s: no eval.json or summary.json yet: left out", path)
    return [row for f in files for row in read_scores(f)]


def sort_rows(rows: list[RunScores], by: str) -> list[RunScores]:
    """``rows`` best first by ``by`` (rows without that score last), or as given (``none``)."""
    if by == "none":
        return rows

    def score(row: RunScores) -> float | None:
        return row.val_top1 if by == "val_top1" else row.scores[by]

    return sorted(rows, key=lambda r: (score(r) is None, -(score(r) or 0.0)))


def parse_keys(text: str) -> list[str]:
    """``--keys``: config keys, each checked against the config's keys."""
    valid = list(flat_config(config_to_dict(Config())))
    keys = [k.strip() for k in text.split(",") if k.strip()]
    for key in keys:
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise UserError(f"--keys: unknown config key '{key}'{hint}")
    return list(dict.fromkeys(keys))


def value_of(row: RunScores, key: str) -> Any:
    """``key``'s value for ``row``: the report's record, else its config.yaml; ``?`` unknown,
    ``-`` where the run does not use it (:data:`ONLY_WHEN`: ``text.model`` without a text
    head)."""
    for prefix, switch, on in ONLY_WHEN:
        if key.startswith(prefix) and value_of(row, switch) not in (on, UNKNOWN):
            return NOT_USED
    if key in row.keys:
        return row.keys[key]
    if row.config is not None and key in row.config:
        return row.config[key]
    return UNKNOWN


def differing_keys(rows: Sequence[RunScores]) -> list[str]:
    """The settings with two or more values among the runs that record them: the reports'
    protocol and setup keys first, then the configs' (less :data:`BOOKKEEPING`)."""
    recorded = list(dict.fromkeys(k for r in rows for k in r.keys))
    configs = [
        k for r in rows for k in (r.config or {})
        if k not in BOOKKEEPING and not k.startswith("pretrain.")
    ]  # fmt: skip
    keys = []
    for key in dict.fromkeys([*recorded, *configs]):
        known = {_text(v) for r in rows if (v := value_of(r, key)) not in (UNKNOWN, NOT_USED)}
        if len(known) > 1:
            keys.append(key)
    return keys


def shared_keys(rows: Sequence[RunScores], shown: Sequence[str]) -> dict[str, Any]:
    """The protocol and setup records every run holds alike (said above the table)."""
    keys = [k for k in dict.fromkeys(k for r in rows for k in r.keys) if k not in shown]
    values = {k: {_text(value_of(r, k)) for r in rows} for k in keys}
    return {k: value_of(rows[0], k) for k, v in values.items() if len(v) == 1 and UNKNOWN not in v}


def warn_about(rows: Sequence[RunScores], keys: Sequence[str]) -> None:
    """Warnings of what makes the table less than like for like."""
    unlike = [
        f"{k} ({' vs '.join(sorted(v))})"
        for k in PROTOCOL_KEYS
        if len(v := {_text(value_of(r, k)) for r in rows} - {UNKNOWN}) > 1
    ]
    if unlike:
        logger.warning(
            "the runs were not scored alike: %s differ; their scores are not like for like",
            "; ".join(unlike),
        )
    old = [r.run for r in rows if not r.recorded]
    if old:
        logger.warning(
            "%s: scored by an older hpnet, which did not record its protocol and model: shown "
            "from the run's config.yaml (? where none); python -m hpnet.evaluate --checkpoint "
            "<its checkpoint> records them",
            ", ".join(dict.fromkeys(old)),
        )
    blind = [r.run for r in rows if r.config is None and any(k not in r.keys for k in keys)]
    if blind:
        logger.warning(
            "%s: no config.yaml beside its report or checkpoint: its settings show as ?",
            ", ".join(dict.fromkeys(blind)),
        )
    for r in rows:
        if r.test_videos is not None:
            logger.warning(
                "%s: train.max_steps cut its test: %d of %d videos scored", r.run, r.videos,
                r.test_videos,
            )  # fmt: skip


def render(rows: Sequence[RunScores], keys: Sequence[str], fmt: str) -> str:
    """The table in ``fmt`` (``table``, ``markdown``, ``csv``, ``json``)."""
    if fmt == "json":
        return json.dumps([record(r, keys) for r in rows], indent=2) + "\n"
    if fmt == "csv":
        fields = list(dict.fromkeys(k for r in rows for k in record(r, keys)))
        out = io.StringIO()
        writer = csv.DictWriter(out, fields, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in record(r, keys).items()} for r in rows)
        return out.getvalue()
    header, body, right = _columns(rows, keys)
    same = shared_keys(rows, keys)
    said = "  ".join(f"{k}={_text(v)}" for k, v in same.items())
    if fmt == "markdown":
        lines = [f"Same in every run: {said}", ""] if said else []
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = [f"same in every run: {said}"] if said else []
    for line in [header, *body]:
        cells = zip(line, widths, right, strict=True)
        lines.append("  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in cells).rstrip())
    return "\n".join(lines) + "\n"


def _columns(rows: Sequence[RunScores], keys: Sequence[str]) -> tuple[list, list, list]:
    """The header, the body and which columns are numbers (right-aligned) of the table."""
    header: list[str] = ["run", *keys, *(NAMES[m] for m in METRICS)]
    right = [False] * (1 + len(keys)) + [True] * len(METRICS)
    vals = any(r.val_top1 is not None for r in rows)
    header += ["val top-1 %"] * vals + ["videos"]
    right += [True] * vals + [True]
    body = []
    for r in rows:
        line = [r.run, *(_text(value_of(r, k)) for k in keys)]
        line += [_pct(r.scores[m], r.std.get(m)) for m in METRICS]
        line += [_pct(r.val_top1)] * vals
        line.append(str(r.videos) + (f" of {r.test_videos}" if r.test_videos else ""))
        body.append(line)
    return header, body, right


def record(row: RunScores, keys: Sequence[str]) -> dict[str, Any]:
    """``row`` as one flat record (csv, json): the run, every recorded key, the ``keys``
    shown, the scores (fractions) and their standard deviations."""
    out: dict[str, Any] = {"run": row.run, "source": str(row.source), **row.keys}
    out.update({k: value_of(row, k) for k in keys})
    out.update(row.scores)
    out.update({f"{k}_std": v for k, v in row.std.items()})
    out.update({"val_top1": row.val_top1, "videos": row.videos, "skipped": row.skipped})
    if row.test_videos is not None:
        out["test_videos"] = row.test_videos
    return out


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when inside it (a checkpoint's recorded path
    is absolute), else as it is."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _pct(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}" + (f" +- {100 * std:.2f}" if std is not None else "")


def _text(value: Any) -> str:
    """A setting as written in a config (``true``, ``''`` for an empty string)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return "''"
    if value == NOT_USED:  # (not used: not a value to quote)
        return value
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _cell(value: Any) -> Any:
    return _text(value) if isinstance(value, bool | list | dict) else value


def cli(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    run_cli(main, argv)


if __name__ == "__main__":
    run_cli(main)
