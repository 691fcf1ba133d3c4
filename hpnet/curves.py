"""``hpnet.compare --curves out.png``: the learning curves of runs, from their ``metrics.jsonl``.

Two panels over epochs: the training loss, and the test top-1 (solid) with the validation
top-1 (dashed, where a run held videos out) at the epochs a run evaluated. One colour per run;
a ``--splits`` run draws each split, a joint run each dataset's top-1 (``<run folder>
[<dataset>]``), named by the folder of the training run (where ``metrics.jsonl`` is).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("hpnet.compare")


@dataclass
class Curve:
    """One line set: ``label`` in the legend, its run ``folder`` (``metrics.jsonl``) and the
    record keys of its test and validation top-1 (``test_top1_<name>`` for a joint dataset)."""

    label: str
    folder: Path
    test_key: str = "test_top1"
    val_key: str = "val_top1"


def epoch_records(folder: Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``<folder>/metrics.jsonl`` in order (the last of an epoch
    written twice wins); unreadable lines (a run killed mid-write) are left out."""
    try:
        lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    epochs: dict[int, dict[str, Any]] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        train = isinstance(record, dict) and record.get("type", "train") == "train"
        if train and "epoch" in record:
            epochs[int(record["epoch"])] = record
    return [epochs[e] for e in sorted(epochs)]


def write_curves_png(path: str | Path, curves: list[Curve]) -> int:
    """Draw ``curves`` (see the module doc) to ``path``, atomically; returns how many had
    epochs to draw (a run without a ``metrics.jsonl`` is warned of and left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from hpnet.atomic import write_atomic

    fig, (loss_ax, top_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.get_cmap("tab10")
    drawn, lossed = 0, set()
    for curve in curves:
        records = epoch_records(curve.folder)
        if not records:
            where = curve.folder / "metrics.jsonl"
            logger.warning("%s: no epochs in %s: not drawn", curve.label, where)
            continue
        colour = colours(drawn % 10)
        drawn += 1
        epochs = [r["epoch"] for r in records]
        if curve.folder not in lossed:  # (a joint run's datasets share one loss)
            lossed.add(curve.folder)
            losses = [r.get("loss") for r in records]
            loss_ax.plot(epochs, losses, marker=".", color=colour, label=curve.label)
        for key, style in ((curve.test_key, "-"), (curve.val_key, "--")):
            kept = [r for r in records if r.get(key) is not None]
            if kept:
                name = curve.label + (" (val)" if style == "--" else "")
                xs, ys = [r["epoch"] for r in kept], [100 * r[key] for r in kept]
                top_ax.plot(xs, ys, style, marker="o", color=colour, label=name)
    loss_ax.set(title="training loss", xlabel="epoch")
    top_ax.set(title="test top-1 % (dashed: validation)", xlabel="epoch")
    for ax in (loss_ax, top_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        if drawn:
            write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100), what="curves")
    finally:
        plt.close(fig)
    return drawn
