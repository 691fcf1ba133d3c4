"""The test scores of finished runs, read back from their folders for ``hpnet.compare``.

A run's scores are its ``eval.json`` (``hpnet.train``'s final test, ``hpnet.evaluate``,
``hpnet.zeroshot --dataset``) or, for a ``--splits`` run, its ``summary.json`` (the mean and
standard deviation over the splits). :func:`find_reports` turns a path (such a file, a run
folder, or a folder of runs) into those files; :func:`read_scores` reads one into
:class:`RunScores`: one per dataset (a joint run gives one per ``data.joint`` entry).

Besides the scores a row carries what they stand for: the report's ``protocol``, ``setup`` and
``config`` records (:mod:`hpnet.eval_report`: the settings the test ran with). A report of an
hpnet that recorded no ``config`` falls back to the run's ``config.yaml`` (beside the report,
else beside its checkpoint), which the run's last command wrote: maybe not these scores'.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpnet.cli import UserError
from hpnet.config import flat_config
from hpnet.config_types import load_yaml
from hpnet.eval_report import ZERO_SHOT_ARCH, run_started, zero_shot_setup
from hpnet.resume_from import RUN_FILES
from hpnet.splits import METRICS, REPORT, SUMMARY

Found = tuple[dict[str, Any] | None, bool, Path | None]  # settings, from config.yaml, run folder


@dataclass
class RunScores:
    """One dataset's test scores of one run (fractions in [0, 1]).

    ``keys``: what the scores stand for, dotted config keys to values (the report's protocol
    and setup; a ``--splits`` summary's ``data.split`` is its splits, ``"1,2,3"``; ``classes``:
    how many classes were scored); ``config``: every setting of the test, dotted (the report's
    record, else the run's ``config.yaml``: ``from_yaml``), None when neither is there.
    ``recorded``: False for a report from before protocol and setup were recorded. ``std``: the
    sample standard deviation over the splits (summaries only; None for a single split).
    ``test_videos``: set where ``train.max_steps`` cut the test short; ``trained``: the
    checkpoint's ``epochs`` done ``of`` ``train.epochs`` (``mid_epoch``, ``run_finished``),
    where recorded; ``class_names``: the classes scored (eval.json's ``per_class``);
    ``folders``: the training runs' folders (one per split of a summary), for their curves.
    """

    run: str
    source: Path
    scores: dict[str, float]
    videos: int
    skipped: int = 0
    std: dict[str, float | None] = field(default_factory=dict)
    val_top1: float | None = None
    test_videos: int | None = None
    keys: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    from_yaml: bool = False
    recorded: bool = True
    zero_shot: bool = False
    trained: dict[str, Any] | None = None
    class_names: tuple[str, ...] | None = None
    folders: list[Path] = field(default_factory=list)
    part: str = ""  # a joint run's dataset (its data.joint name)


def find_reports(path: str | Path) -> list[Path]:
    """The score files ``path`` names: itself (an ``eval.json`` / ``summary.json``); a folder's
    ``summary.json``, else its ``eval.json``; else every one below it, a ``--splits`` run's
    summary standing for its split folders. Empty when the folder holds none."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"run folder or report not found: {path}")
    if path.is_file():
        return [path]
    for name in (SUMMARY, REPORT):
        if (path / name).is_file():
            return [path / name]
    summaries = sorted(path.rglob(SUMMARY))
    covered = [s.parent for s in summaries]
    reports = [
        r for r in sorted(path.rglob(REPORT)) if not any(r.is_relative_to(c) for c in covered)
    ]
    return sorted([*summaries, *reports])


def unfinished_runs(path: str | Path) -> list[Path]:
    """The run folders at or below ``path`` (a ``last.pt`` or ``metrics.jsonl`` there) with no
    ``eval.json``, outside a ``--splits`` run that has its summary: runs still training, or
    stopped before their final test."""
    path = Path(path)
    if not path.is_dir():
        return []
    covered = [s.parent for s in path.rglob(SUMMARY)]
    runs = {f.parent for name in RUN_FILES for f in path.rglob(name)}
    return sorted(
        r for r in runs
        if not (r / REPORT).is_file() and not any(r.is_relative_to(c) for c in covered)
        and not is_pretraining_run(r)
    )  # fmt: skip


def is_pretraining_run(folder: Path) -> bool:
    """Whether ``folder`` holds a ``python -m hpnet.pretrain`` run (never an ``eval.json``):
    its ``last.pt`` says so, else its epoch records (no accuracy: no classes)."""
    from hpnet.curves import epoch_records
    from hpnet.models.lsvit_weights import read_pretrain_checkpoint

    if (folder / "last.pt").is_file():
        return read_pretrain_checkpoint(folder / "last.pt") is not None
    records = epoch_records(folder)
    return bool(records) and "acc" not in records[0]


def split_runs_without_summary(files: list[Path]) -> list[Path]:
    """The ``--splits`` runs whose split folders' reports are among ``files`` but that have no
    ``summary.json``: a run stopped before its last split (its splits are rows of their own)."""
    bases = {
        f.parent.parent
        for f in files
        if f.name == REPORT and re.fullmatch(r"split\d+", f.parent.name)
    }
    return sorted(b for b in bases if not (b / SUMMARY).is_file())


def read_scores(path: Path) -> list[RunScores]:
    """The rows of one ``eval.json`` or ``summary.json`` (see the module doc)."""
    data = _read_json(path)
    run = str(path.parent)
    if path.name == SUMMARY or "splits" in data:
        return [_summary_row(data, path, run)]
    _check_scores(data, path)
    found = _run_config(data, path.parent)
    datasets = data.get("datasets")
    if not isinstance(datasets, dict):  # one dataset
        return [_row(data, data, path, run, found)]
    rows = []
    for name, part in datasets.items():  # a joint run: each dataset over its own labels
        _check_scores(part, path, f"datasets.{name}.")
        rows.append(_row(data, part, path, f"{run} [{name}]", found, name))
    return rows


def _row(
    report: dict[str, Any],
    scores: dict[str, Any],
    path: Path,
    run: str,
    found: Found,
    part: str = "",
) -> RunScores:
    """A row of ``report``'s ``scores`` (its own, or a joint dataset's block, whose records
    stand for it where it has them)."""
    val, (config, from_yaml, folder) = scores.get("val"), found
    where = f"datasets.{part}.val" if part else "val"
    own = {k: scores[k] for k in ("protocol", "setup", "config") if k in scores}
    keys, recorded = _recorded_keys({**report, **own})
    if isinstance(own.get("config"), dict):
        config = own["config"]
    names = scores.get("per_class")
    if isinstance(names, dict):
        keys["classes"] = len(names)
    return RunScores(
        run=run,
        source=path,
        scores={k: float(scores[k]) for k in METRICS},
        videos=scores["num_videos"],
        skipped=scores.get("skipped") or 0,
        val_top1=_fraction(val, "top1", path, where) if isinstance(val, dict) else None,
        test_videos=scores.get("test_videos") if "max_steps" in scores else None,
        keys=keys,
        config=config,
        from_yaml=from_yaml,
        recorded=recorded,
        zero_shot=keys.get("model.arch") == ZERO_SHOT_ARCH,
        trained=_trained(report.get("trained")),
        class_names=tuple(names) if isinstance(names, dict) else None,
        folders=[folder] if folder is not None else [],
        part=part,
    )


def _summary_row(data: dict[str, Any], path: Path, run: str) -> RunScores:
    _require(data, path, ("mean", "std", "splits"))
    splits, std = data["splits"], data["std"]
    if not isinstance(splits, dict) or not splits:
        raise UserError(f"{path} lists no split: write it again with --splits")
    if not isinstance(std, dict):
        raise UserError(f"{path} is damaged: its std is not a table of scores")
    for split, part in splits.items():
        _check_scores(part, path, f"splits.{split}.")
    if not isinstance(data["mean"], dict):
        raise UserError(f"{path} is damaged: its mean is not a table of scores")
    _check_scores({**data["mean"], "num_videos": 0}, path, "mean.")
    folders = [_split_folder(path, s, p) for s, p in splits.items()]
    keys, recorded = _recorded_keys({**_zero_shot_record(folders[0]), **data})
    keys["data.split"] = ",".join(splits)
    if isinstance(data.get("classes"), int):
        keys["classes"] = data["classes"]
    config, from_yaml = data.get("config"), False
    if not isinstance(config, dict):  # (a summary of before it was recorded: a split's file)
        config, from_yaml, _ = _run_config({}, folders[0])
    if config is not None:
        config = {k: v for k, v in config.items() if k != "data.split"}  # (the summary's own)
    parts = list(splits.values())
    zero_shot = keys.get("model.arch") == ZERO_SHOT_ARCH  # (no training run: no curves)
    cut = [p for p in parts if "test_videos" in p]
    return RunScores(
        run=run,
        source=path,
        scores={k: float(data["mean"][k]) for k in METRICS},
        std={k: _number(std.get(k), path, f"std.{k}", top=None) for k in METRICS},
        videos=sum(p["num_videos"] for p in parts),
        skipped=sum(p.get("skipped") or 0 for p in parts),
        test_videos=sum(p.get("test_videos", p["num_videos"]) for p in parts) if cut else None,
        keys=keys,
        config=config,
        from_yaml=from_yaml,
        recorded=recorded,
        zero_shot=zero_shot,
        folders=[f for f in folders if f.is_dir() and not zero_shot],
    )


def _zero_shot_record(folder: Path) -> dict[str, Any]:
    """A zero-shot split's CLIP and templates (``model``, ``templates``) from its ``eval.json``,
    for a summary of an hpnet that recorded no ``setup`` in it; {} for anything else."""
    try:
        report = json.loads((folder / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(report, dict) or "templates" not in report:
        return {}
    return {k: report[k] for k in ("model", "templates") if k in report}


def _split_folder(summary: Path, split: str, part: dict[str, Any]) -> Path:
    """A split's run folder: ``split<N>`` beside the summary (where ``--splits`` puts it, also
    after the run was moved), else as the summary recorded it."""
    beside = summary.parent / f"split{split}"
    run = part.get("run")
    return Path(run) if not beside.is_dir() and isinstance(run, str) and run else beside


def _recorded_keys(report: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The protocol and setup keys of a report (an older zero-shot report's CLIP as its model),
    and whether both were recorded (older hpnet: neither)."""
    protocol, setup = report.get("protocol"), report.get("setup")
    templates = report.get("templates")
    if not isinstance(setup, dict) and "model" in report and isinstance(templates, list):
        setup = zero_shot_setup(str(report["model"]), templates)  # (an older zero-shot's)
    keys = {**(protocol if isinstance(protocol, dict) else {})}
    keys.update(setup if isinstance(setup, dict) else {})
    if keys.get("model.arch") == ZERO_SHOT_ARCH and isinstance(templates, list):
        keys.setdefault("text.templates", templates)  # (a setup recorded without them)
    return keys, isinstance(protocol, dict) and isinstance(setup, dict)


def _run_config(report: dict[str, Any], folder: Path) -> Found:
    """The settings of a report (its ``config`` record, else the flattened ``config.yaml``
    beside it or beside its checkpoint: ``from_yaml``) and its training run's folder (where
    ``metrics.jsonl`` is), None where there is none."""
    checkpoint = report.get("checkpoint")
    places = [folder]
    if isinstance(checkpoint, str) and checkpoint:
        places.append(Path(checkpoint).parent)
    run = next((p for p in places if _same_run(report, p)), None)
    if isinstance(report.get("config"), dict):
        return report["config"], False, run
    for place in places:
        try:
            tree = load_yaml((place / "config.yaml").read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if isinstance(tree, dict):
            return flat_config(tree), True, run or place
    return None, False, run


def _same_run(report: dict[str, Any], folder: Path) -> bool:
    """Whether ``folder`` holds the run ``report`` scored (its ``metrics.jsonl`` began when
    the report recorded; a report that did not record it: whether there is one)."""
    started = run_started(folder)
    recorded = (report.get("trained") or {}).get("run_started")
    if started is None:
        return False
    return recorded is None or started == recorded


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    except ValueError:
        raise UserError(
            f"{path} is not JSON: give a run folder, or an eval.json / summary.json that "
            "hpnet.train, hpnet.evaluate or hpnet.zeroshot wrote"
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not an hpnet eval.json or summary.json (not a JSON object)")
    return data


def _require(data: Any, path: Path, keys: tuple[str, ...], prefix: str = "") -> None:
    lost = [prefix + k for k in keys if not isinstance(data, dict) or k not in data]
    if lost:
        raise UserError(
            f"{path} is not an hpnet eval.json or summary.json: it has no {', '.join(lost)}"
        )


def _check_scores(scores: Any, path: Path, prefix: str = "") -> None:
    """Refuse a report whose scores are not fractions in [0, 1] or whose video counts are not
    counts (a hand-edited or damaged file), naming the key."""
    _require(scores, path, (*METRICS, "num_videos"), prefix)
    for key in METRICS:
        _fraction(scores, key, path, prefix.rstrip("."))
    for key in ("num_videos", "skipped", "test_videos"):  # (skipped: null read as 0)
        count = scores.get(key, 0) if key != "num_videos" else scores[key]
        if key == "skipped" and count is None:
            continue
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise UserError(f"{path} is damaged: {prefix}{key} is {count!r}, not a count")


def _fraction(scores: dict[str, Any], key: str, path: Path, where: str) -> float:
    """A score: a fraction in [0, 1]."""
    number = _number(scores.get(key), path, f"{where}.{key}" if where else key, top=1.0)
    return 0.0 if number is None else number  # (never None: a score is required)


def _number(value: Any, path: Path, name: str, *, top: float | None) -> float | None:
    """``value`` as a finite number in [0, ``top``]: a score (``top`` 1), else a standard
    deviation (no top; None: one split, none)."""
    if value is None and top is None:
        return None
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or not 0 <= number <= (top or math.inf):
        what = "a fraction in [0, 1] (scores are recorded as fractions: 0.5 is 50 %)"
        raise UserError(
            f"{path} is damaged: {name} is {value!r}, not "
            + (what if top is not None else "a standard deviation")
        )
    return float(number)


def _trained(value: Any) -> dict[str, Any] | None:
    """A report's ``trained`` record when it is one (its warnings only: anything else is
    left unread)."""
    if not isinstance(value, dict):
        return None
    counts = [value.get(k) for k in ("epochs", "of")]
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        return None
    return value
