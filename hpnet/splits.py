"""The official three-split protocol: one run per split, then the mean over the splits.

HMDB51 and UCF101 are reported as the mean over their three official train/test splits.
``python -m hpnet.train ... --splits 1,2,3`` and ``python -m hpnet.zeroshot --dataset hmdb51
--splits 1,2,3`` run each split into ``<folder>/split<N>`` (one ``eval.json`` there) and write
``<folder>/summary.json``::

    {"dataset": "hmdb51", "protocol": {"data.dataset": .., "data.frames": .., "data.size": ..,
     "eval.views": .., "eval.crops": ..}, "setup": {"model.arch": .., ...},
     "config": {"train.lr": .., ...}, "classes": 51,
     "splits": {"1": {"top1": .., "top5": .., "mean_class_acc": .., "num_videos": ..,
     "skipped": .., "run": "<folder>/split1"}, ...},
     "mean": {"top1": .., "top5": .., "mean_class_acc": ..},
     "std": {...}, "std_kind": "sample (n - 1)", "num_splits": 3}

``config``: the settings (dotted keys) every split's ``eval.json`` records alike, but
``data.split``; ``classes``: the classes scored. ``skipped``: the split's test videos that
could not be decoded (``data.on_error=skip``), not in ``num_videos`` nor in the scores;
``test_videos``, only where ``train.max_steps`` cut the test short: how many the split has.
``std`` is the sample standard deviation (divisor n - 1, numpy's ``std(ddof=1)``): the spread
one would expect between splits, not only among these; ``null`` for a single split. A rerun
finishes what is unfinished: a split whose run is complete is read back, not run again (the
command says how it tells, :func:`training_finished` for training).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hpnet.atomic import write_json
from hpnet.cli import UserError, counted, quiet_logger
from hpnet.config import Config, overrides_key
from hpnet.distributed import DistInfo, gather_objects

SPLIT_DATASETS = ("hmdb51", "ucf101")  # the datasets that have official splits
SPLIT_NUMBERS = (1, 2, 3)
METRICS = ("top1", "top5", "mean_class_acc")  # averaged over the splits
STD_KIND = "sample (n - 1)"
REPORT = "eval.json"
SUMMARY = "summary.json"


def parse_splits(text: str) -> list[int]:
    """``"1,2,3"`` (or ``"all"``) -> ``[1, 2, 3]``; order kept, each split once."""
    if text.strip().lower() == "all":
        return list(SPLIT_NUMBERS)
    splits: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) not in SPLIT_NUMBERS:
            raise UserError(f"--splits {text}: give split numbers 1, 2 or 3, e.g. --splits 1,2,3")
        if int(part) in splits:
            raise UserError(f"--splits {text}: split {part} is listed twice")
        splits.append(int(part))
    return splits


def check_splits_usable(cfg: Config, overrides: Sequence[str]) -> None:
    """``--splits`` needs a dataset with official splits and replaces ``data.split``."""
    if cfg.data.dataset not in SPLIT_DATASETS:
        raise UserError(
            f"--splits needs a dataset with official splits (data.dataset=hmdb51 or ucf101); "
            f"data.dataset={cfg.data.dataset} has none: drop --splits"
        )
    if overrides_key(overrides, "data.split"):
        raise UserError("--splits sets data.split for each run: drop the data.split override")
    if cfg.data.joint:  # each entry has its own split: --splits would rerun the same ones
        names = ", ".join(str(entry.get("name", "?")) for entry in cfg.data.joint)
        raise UserError(
            f"--splits runs one dataset's official splits; data.joint trains several ({names}), "
            "each reading the split its entry names: drop --splits and run each split N with "
            "data.joint.<name>.split=N for every entry and a train.out_dir of its own"
        )


def check_split_lists(cfg: Config, splits: Sequence[int]) -> None:
    """Read the lists of every split in ``splits`` before the first one runs: a missing split
    file or listed video then stops the command at once, not after the splits before it have
    run. Text files and folder listings only; the warnings are left to each split's own run."""
    from hpnet.data.datasets import records_for_config

    with quiet_logger("hpnet.data"):
        for split in splits:
            records_for_config(with_split(cfg, split))


def split_folder(base: str | Path, split: int) -> Path:
    """Where split ``split``'s run goes: ``<base>/split<N>``."""
    return Path(base) / f"split{split}"


def with_split(cfg: Config, split: int) -> Config:
    """A copy of ``cfg`` reading official split ``split`` (``cfg`` is left as it is)."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, split=split))


def read_report(folder: Path) -> dict[str, Any] | None:
    """``<folder>/eval.json``, or None when there is none (or it cannot be read as JSON)."""
    try:
        report = json.loads((folder / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def check_protocol(folder: Path, cfg: Config, folder_option: str) -> None:
    """Refuse to reuse ``<folder>/eval.json`` when it scored another protocol than ``cfg``, a
    split's config (:func:`hpnet.eval_report.protocol`: another dataset, split, clip shape or
    views x crops), rather than average it into this run's summary. No report, or one from
    before the protocol was recorded: nothing to refuse."""
    from hpnet.eval_report import protocol

    then = (read_report(folder) or {}).get("protocol")
    if not isinstance(then, dict):
        return
    changed = [(k, then[k], v) for k, v in protocol(cfg).items() if k in then and then[k] != v]
    if changed:
        said = ", ".join(f"{k}={a} (this run: {b})" for k, a, b in changed)
        fix = f"choose another {folder_option} or delete {folder}"
        if (folder / "last.pt").is_file() and all(k.startswith("eval.") for k, _, _ in changed):
            again = " ".join(f"{k}={b}" for k, _, b in changed)  # (a rescored trained run)
            fix = (
                f"score it again as this run does (python -m hpnet.evaluate --checkpoint "
                f"{folder / 'last.pt'} {again}), or {fix}"
            )
        raise UserError(
            f"{folder / REPORT} scored {said}, not split {cfg.data.split} of this run: {fix} "
            "(python -m hpnet.evaluate writes eval.json next to its checkpoint unless given --out)"
        )


def cut_short(report: dict[str, Any], max_steps: int) -> bool:
    """Whether ``report``'s test scored part of its videos only: ``train.max_steps`` cut it
    (``hpnet.evaluate ... train.max_steps=1`` next to a split's checkpoint) where a run capped
    at ``max_steps`` would not have been cut alike. Such a score is redone, not reused."""
    return report.get("max_steps") not in (None, max_steps)


def training_finished(folder: Path, epochs: int, max_steps: int = 0) -> bool:
    """True when a training run in ``folder`` completed ``epochs`` epochs and its final test.

    The signs (written in this order by ``hpnet.train``): ``eval.json`` of its ``last.pt``,
    and in ``metrics.jsonl`` the record of epoch ``epochs`` (or later) followed by the ``test``
    record. A run killed before it wrote them, or one given more epochs since, is not finished;
    nor is one whose ``eval.json`` ``hpnet.evaluate`` replaced with a score of another
    checkpoint (``best.pt``) or of part of the test videos (:func:`cut_short`, a run capped at
    ``max_steps`` aside): resuming it redoes the final test of ``last.pt``.
    """
    report = read_report(folder)
    if report is None or not _scores_own_last(report, folder):
        return False
    return not cut_short(report, max_steps) and trained_and_tested(folder, epochs)


def trained_and_tested(folder: Path, epochs: int) -> bool:
    """Whether the run in ``folder`` trained ``epochs`` epochs (or more) and then ran its final
    test, as its ``metrics.jsonl`` says (an epoch record, then the ``test`` record)."""
    try:
        lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    trained, tested = 0, False
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("type") == "train":
            trained, tested = max(trained, int(record.get("epoch", 0))), False
        elif record.get("type") == "test":
            tested = True
    return trained >= epochs and tested


def _scores_own_last(report: dict[str, Any], folder: Path) -> bool:
    """Whether ``report`` scored ``<folder>/last.pt``, not another split's ``last.pt``
    (``hpnet.evaluate --checkpoint runs/x/split1/last.pt --out runs/x/split3``) nor a
    ``best.pt``. A recorded path that is not there from here (written from another folder)
    is judged by its folder's name."""
    recorded = Path(str(report.get("checkpoint", "last.pt"))).expanduser()
    if recorded.name != "last.pt":
        return False
    if recorded.is_file():
        return recorded.resolve() == (folder / "last.pt").resolve()
    return recorded.parent.name in ("", folder.resolve().name)


def summarize(dataset: str, reports: dict[int, dict[str, Any]], folders: dict[int, Path]) -> dict:
    """Per-split scores and their mean and sample standard deviation (see the module doc)."""
    per_split = {
        str(s): {
            **{k: r[k] for k in (*METRICS, "num_videos")},
            "skipped": int(r.get("skipped", 0)),  # undecodable: not in num_videos
            "run": str(folders[s]),
            **({"test_videos": r["test_videos"]} if "max_steps" in r else {}),  # cut short
        }
        for s, r in reports.items()
    }
    values = {k: [float(r[k]) for r in reports.values()] for k in METRICS}
    shared = [
        {k: v for k, v in r.get("protocol", {}).items() if k != "data.split"}
        for r in reports.values()
    ]
    setups = [r.get("setup") for r in reports.values()]
    configs = [r.get("config") for r in reports.values()]
    shared_config = None  # the settings every split ran with (not data.split); null: unrecorded
    if all(isinstance(c, dict) for c in configs):
        first = configs[0]
        same = [k for k in first if all(k in c and c[k] == first[k] for c in configs)]
        shared_config = {k: first[k] for k in same if k != "data.split"}
    classes = {len(r.get("per_class") or {}) for r in reports.values()}
    return {
        "dataset": dataset,
        "protocol": shared[0] if all(p == shared[0] for p in shared) else None,
        "setup": setups[0] if all(x == setups[0] for x in setups) else None,
        "config": shared_config,
        "classes": classes.pop() if len(classes) == 1 else None,
        "splits": per_split,
        "mean": {k: sum(v) / len(v) for k, v in values.items()},
        "std": {k: sample_std(v) for k, v in values.items()},
        "std_kind": STD_KIND,
        "num_splits": len(reports),
    }


def sample_std(values: Sequence[float]) -> float | None:
    """Standard deviation with divisor n - 1; None for fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def summary_text(summary: dict[str, Any]) -> str:
    """One line per split, then the mean +- std line (percentages)."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}"

    lines = [
        f"split {s}: top-1 {pct(r['top1'])} %  top-5 {pct(r['top5'])} %  "
        f"mean class acc {pct(r['mean_class_acc'])} %  ({counted(r['num_videos'], 'video')}"
        + (f", {r['skipped']} undecodable skipped" if r.get("skipped") else "")
        + (f"; of {r['test_videos']}: train.max_steps cut the test)" if "test_videos" in r
           else ")")
        for s, r in summary["splits"].items()
    ]  # fmt: skip
    mean, std = summary["mean"], summary["std"]
    names = {"top1": "top-1", "top5": "top-5", "mean_class_acc": "mean class acc"}
    scores = "  ".join(f"{names[k]} {pct(mean[k])} +- {pct(std[k])} %" for k in METRICS)
    lines.append(f"{summary['dataset']} over {summary['num_splits']} split(s): {scores}")
    return "\n".join(lines)


def write_summary(summary: dict[str, Any], path: Path, folder_option: str) -> None:
    """``summary.json``, atomically."""
    write_json(path, summary, what="split summary", folder_option=folder_option)


def run_splits(
    splits: Sequence[int],
    base: Path,
    dataset: str,
    *,
    finished: Callable[[Path], bool],
    run: Callable[[int, Path], object],
    dist: DistInfo,
    folder_option: str,
) -> dict[str, Any] | None:
    """Run each split not ``finished`` yet, then write and print ``<base>/summary.json``.

    ``run(split, folder)`` must leave ``<folder>/eval.json``. Under torchrun every rank calls
    this with the same splits; rank 0's reading of the folders decides for all (so the ranks
    never disagree on which runs happen) and rank 0 writes the summary, which it returns
    (None on the other ranks).
    """
    for i, split in enumerate(splits, 1):
        folder = split_folder(base, split)
        done = gather_objects(dist.is_main and finished(folder))[0]
        if dist.is_main:
            state = f"finished earlier, reading {folder / REPORT}" if done else f"-> {folder}"
            print(f"== {dataset} split {split} ({i}/{len(splits)}): {state}", flush=True)
        if not done:
            run(split, folder)
    if not dist.is_main:
        return None
    reports, folders = {}, {}
    for split in splits:
        folders[split] = split_folder(base, split)
        report = read_report(folders[split])
        if report is None:  # run() returned without a report: a bug, not a user error
            raise RuntimeError(f"split {split} left no {folders[split] / REPORT}")
        reports[split] = report
    summary = summarize(dataset, reports, folders)
    write_summary(summary, base / SUMMARY, folder_option)
    print(summary_text(summary))
    print(f"wrote {base / SUMMARY}")
    return summary


def warn_trained_on_test(ckpt: dict[str, Any], datasets: Sequence[Any], source: str) -> None:
    """Warn when an HMDB51 / UCF101 checkpoint trained on one official split is tested on
    another (``hpnet.evaluate --checkpoint split1/last.pt data.split=3``): that split's test
    videos are largely the checkpoint's training videos, so the score measures what it learnt,
    not how it generalises (it was silent). ``datasets``: the evaluation's
    :class:`~hpnet.runtime.RunDataset` list; per ``data.joint`` entry alike."""
    import logging

    from hpnet.config import config_from_dict, dataset_configs
    from hpnet.data.datasets import records_for_config

    try:
        trained = dict(dataset_configs(config_from_dict(ckpt.get("config") or {})))
    except (UserError, TypeError, ValueError):  # (an older or foreign config: nothing to tell)
        return
    for d in datasets:
        was, now = trained.get(d.name), d.cfg.data
        if was is None or was.data.dataset != now.dataset or was.data.split == now.split:
            continue
        if now.dataset not in ("hmdb51", "ucf101"):
            continue
        then = dataclasses.replace(d.cfg, data=dataclasses.replace(now, split=was.data.split))
        try:  # (that split's list files may not be here: only this split's are needed)
            with quiet_logger("hpnet.data.records.missing"):
                learnt = {r.rel for r in records_for_config(then, allow_missing=True).train}
        except (UserError, OSError):
            continue
        overlap = sum(r.rel in learnt for r in d.test.records)
        if overlap:
            logging.getLogger(__name__).warning(
                "%s%s trained on %s split %d: %d of the %d test videos of split %d here were "
                "its training videos, so this score measures what it learnt, not how it "
                "generalises; test it on data.split=%d%s", f"{d.name}: " * bool(d.name), source,
                now.dataset, was.data.split, overlap, len(d.test.records), now.split,
                was.data.split, " (its data.joint entry's)" * bool(d.name),
            )  # fmt: skip
