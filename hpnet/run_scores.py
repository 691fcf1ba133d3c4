"""The test scores of finished runs, read back from their folders for ``hpnet.compare``.

A run's scores are its ``eval.json`` (``hpnet.train``'s final test, ``hpnet.evaluate``,
``hpnet.zeroshot --dataset``) or, for a ``--splits`` run, its ``summary.json`` (the mean and
standard deviation over the splits). :func:`find_reports` turns a path (such a file, a run
folder, or a folder of runs) into those files; :func:`read_scores` reads one into
:class:`RunScores`: one per dataset (a joint run gives one per ``data.joint`` entry).

Besides the scores a row carries what they stand for: the files' ``protocol`` and ``setup``
records (:func:`hpnet.eval_report.protocol`, :func:`~hpnet.eval_report.setup`) and the run's
training settings, its ``config.yaml`` (beside the report, else beside its checkpoint).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpnet.cli import UserError
from hpnet.config import flat_config
from hpnet.config_types import load_yaml
from hpnet.eval_report import zero_shot_setup

REPORT, SUMMARY = "eval.json", "summary.json"
METRICS = ("top1", "top5", "mean_class_acc")


@dataclass
class RunScores:
    """One dataset's test scores of one run (fractions in [0, 1]).

    ``keys``: what the scores stand for, dotted config keys to values (the report's protocol
    and setup; a ``--splits`` summary's ``data.split`` is its splits, ``"1,2,3"``); ``config``:
    the run's ``config.yaml`` flattened (:func:`~hpnet.config.flat_config`), None when not
    found; ``folders``: the training runs' folders (one per split of a summary), where it was.
    ``std``: the sample standard deviation over the splits (summaries only; None for a single
    split). ``test_videos``: set where ``train.max_steps`` cut the test short.
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
    recorded: bool = True  # False: a report from before protocol / setup were recorded
    folders: list[Path] = field(default_factory=list)  # its training run(s): config.yaml there
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


def read_scores(path: Path) -> list[RunScores]:
    """The rows of one ``eval.json`` or ``summary.json`` (see the module doc)."""
    data = _read_json(path)
    run = str(path.parent)
    if path.name == SUMMARY or "splits" in data:
        return [_summary_row(data, path, run)]
    _require(data, path, (*METRICS, "num_videos"))
    config, folder = _run_config(path.parent, data.get("checkpoint"))
    keys, recorded = _recorded_keys(data, data.get("protocol"))
    datasets = data.get("datasets")
    if not isinstance(datasets, dict):  # one dataset
        return [_row(data, path, run, keys, (config, folder), recorded)]
    rows = []
    for name, part in datasets.items():  # a joint run: each dataset over its own labels
        _require(part, path, (*METRICS, "num_videos"), f"datasets.{name}.")
        own, known = _recorded_keys(data, part.get("protocol"))
        rows.append(_row(part, path, f"{run} [{name}]", own, (config, folder), known, name))
    return rows


def _row(
    report: dict[str, Any],
    path: Path,
    run: str,
    keys: dict[str, Any],
    found: tuple[dict[str, Any] | None, Path | None],
    recorded: bool,
    part: str = "",
) -> RunScores:
    val, (config, folder) = report.get("val"), found
    return RunScores(
        run=run,
        source=path,
        scores={k: float(report[k]) for k in METRICS},
        videos=int(report["num_videos"]),
        skipped=int(report.get("skipped", 0)),
        val_top1=float(val["top1"]) if isinstance(val, dict) and "top1" in val else None,
        test_videos=report.get("test_videos") if "max_steps" in report else None,
        keys=keys,
        config=config,
        recorded=recorded,
        folders=[folder] if folder is not None else [],
        part=part,
    )


def _summary_row(data: dict[str, Any], path: Path, run: str) -> RunScores:
    _require(data, path, ("mean", "std", "splits"))
    splits = data["splits"]
    if not isinstance(splits, dict) or not splits:
        raise UserError(f"{path} lists no split: write it again with --splits")
    keys, recorded = _recorded_keys(data, data.get("protocol"))
    keys["data.split"] = ",".join(splits)
    parts = list(splits.values())
    found = [_run_config(_split_folder(path, s, p), None) for s, p in splits.items()]
    folders = [folder for _, folder in found if folder is not None]
    config = found[0][0]
    if config is not None:
        config.pop("data.split", None)  # (the summary's own: its splits)
    cut = [p for p in parts if "test_videos" in p]
    return RunScores(
        run=run,
        source=path,
        scores={k: float(data["mean"][k]) for k in METRICS},
        std={k: data["std"].get(k) for k in METRICS},
        videos=sum(int(p["num_videos"]) for p in parts),
        skipped=sum(int(p.get("skipped", 0)) for p in parts),
        test_videos=sum(int(p.get("test_videos", p["num_videos"])) for p in parts) if cut else None,
        keys=keys,
        config=config,
        recorded=recorded,
        folders=folders,
    )


def _split_folder(summary: Path, split: str, part: dict[str, Any]) -> Path:
    """A split's run folder: as the summary records it (relative to where the run started),
    else ``split<N>`` beside the summary (the run moved, or run from another folder)."""
    run = part.get("run")
    folder = Path(run) if isinstance(run, str) and run else None
    return folder if folder is not None and folder.is_dir() else summary.parent / f"split{split}"


def _recorded_keys(report: dict[str, Any], protocol: Any) -> tuple[dict[str, Any], bool]:
    """The protocol and setup keys of a report (a zero-shot report's CLIP as its model), and
    whether both were recorded (reports of hpnet before they were have neither)."""
    setup = report.get("setup")
    if not isinstance(setup, dict) and "model" in report and "templates" in report:
        setup = zero_shot_setup(str(report["model"]))  # (zeroshot --dataset's eval.json)
    keys = {**(protocol if isinstance(protocol, dict) else {})}
    keys.update(setup if isinstance(setup, dict) else {})
    return keys, isinstance(protocol, dict) and isinstance(setup, dict)


def _run_config(folder: Path, checkpoint: Any) -> tuple[dict[str, Any] | None, Path | None]:
    """The flattened ``config.yaml`` beside a report, else beside its checkpoint, and the
    folder it is in; ``(None, None)`` when neither has one."""
    places = [folder / "config.yaml"]
    if isinstance(checkpoint, str) and checkpoint:
        places.append(Path(checkpoint).parent / "config.yaml")
    for place in places:
        try:
            tree = load_yaml(place.read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if isinstance(tree, dict):
            return flat_config(tree), place.parent
    return None, None


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
