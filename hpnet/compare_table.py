"""The table of ``hpnet.compare``: aligned text, markdown, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from hpnet.compare_keys import shared_keys, text_of, value_of
from hpnet.run_scores import METRICS, RunScores

NAMES = {"top1": "top-1 %", "top5": "top-5 %", "mean_class_acc": "mean class acc %"}


def render(rows: Sequence[RunScores], keys: Sequence[str], fmt: str) -> str:
    """The table in ``fmt`` (``table``, ``markdown``, ``csv``, ``json``)."""
    if fmt == "json":
        records = [{**record(r, keys), "config": r.config} for r in rows]  # (all of it)
        return json.dumps(records, indent=2) + "\n"
    if fmt == "csv":
        fields = list(dict.fromkeys(k for r in rows for k in record(r, keys)))
        out = io.StringIO()
        writer = csv.DictWriter(out, fields, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in record(r, keys).items()} for r in rows)
        return out.getvalue()
    header, body, right = _columns(rows, keys)
    same = shared_keys(rows, keys)
    said = "  ".join(f"{k}={text_of(v)}" for k, v in same.items())
    if fmt == "markdown":
        lines = [f"Same in every run: {said}", ""] if said else []
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
        lines += ["| " + " | ".join(_markdown(c) for c in line) + " |" for line in body]
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
        line = [r.run, *(text_of(value_of(r, k)) for k in keys)]
        line += [_pct(r.scores[m], r.std.get(m)) for m in METRICS]
        line += [_pct(r.val_top1)] * vals
        cut = f" of {r.test_videos}" if r.test_videos else ""
        line.append(f"{r.videos}{cut}" + (f" (+{r.skipped} skipped)" if r.skipped else ""))
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


def _markdown(cell: str) -> str:
    """``cell`` as literal text in a markdown table (``|``, ``*``, ``_``, backticks escaped)."""
    for mark in ("\\", "|", "*", "_", "`"):
        cell = cell.replace(mark, "\\" + mark)
    return cell


def _pct(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}" + (f" +- {100 * std:.2f}" if std is not None else "")


def _cell(value: Any) -> Any:
    return text_of(value) if isinstance(value, bool | list | dict) else value
