"""Video-level classification metrics and the confusion matrix (CSV and PNG)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch

from hpnet.atomic import make_folder, write_atomic


def classification_report(
    probs: torch.Tensor, labels: torch.Tensor, class_names: list[str]
) -> dict[str, Any]:
    """Top-1, top-5, mean class accuracy and per-class accuracy.

    probs: ``(N, C)`` per-video class probabilities (views already averaged); labels: ``(N,)``.
    Fractions in [0, 1]. Classes absent from ``labels`` are left out of the mean class accuracy
    and reported as ``None`` in ``per_class``.
    """
    n, c = probs.shape
    if n == 0:
        raise ValueError("no videos to score")
    if not torch.isfinite(probs).all():  # ranked, NaN would be a prediction of class 0
        raise ValueError("class probabilities hold NaN or inf: nothing to rank")
    # (N, k), ties in label order as predict's top-k (topk's order of ties is unspecified)
    top = probs.argsort(dim=1, descending=True, stable=True)[:, : min(5, c)]
    hit1 = top[:, 0] == labels
    hit5 = (top == labels[:, None]).any(dim=1)
    confusion = confusion_matrix(top[:, 0], labels, c)
    support = confusion.sum(dim=1)
    per_class: dict[str, float | None] = {}
    accs = []
    for k, name in enumerate(class_names):
        if support[k] > 0:
            acc = int(confusion[k, k]) / int(support[k])
            per_class[name] = acc
            accs.append(acc)
        else:
            per_class[name] = None
    return {
        "top1": float(hit1.double().mean()),  # (0.6, not float32's 0.6000000238)
        "top5": float(hit5.double().mean()),
        "mean_class_acc": float(sum(accs) / len(accs)),
        "per_class": per_class,
        "num_videos": n,
        "confusion": confusion.tolist(),
    }


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(C, C)`` int64 counts; row = true class, column = predicted class."""
    idx = labels.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def save_confusion(
    confusion: list[list[int]],
    class_names: list[str],
    out_dir: Path,
    stem: str = "confusion_matrix",
) -> None:
    """Write ``<stem>.csv`` and ``<stem>.png`` (row-normalised) to out_dir, each atomically
    (a kill keeps the previous file whole; an OS error is a one-line :class:`UserError`)."""
    make_folder(out_dir, what="folder of the confusion matrix")
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["true \\ predicted", *class_names])
    for name, row in zip(class_names, confusion, strict=True):
        w.writerow([name, *row])
    data = text.getvalue().encode("utf-8")
    write_atomic(out_dir / f"{stem}.csv", lambda f: f.write(data), what="confusion matrix")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = torch.tensor(confusion, dtype=torch.float64)
    m = m / m.sum(dim=1, keepdim=True).clamp(min=1)
    c = len(class_names)
    side = max(4.0, 0.22 * c + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(m.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(c), class_names, rotation=90, fontsize=max(4, 10 - c // 10))
    ax.set_yticks(range(c), class_names, fontsize=max(4, 10 - c // 10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if c <= 20:
        for i in range(c):
            for j in range(c):
                if m[i, j] > 0:
                    color = "white" if m[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color
                    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title("confusion matrix (row-normalised)")
    fig.tight_layout()
    try:
        write_atomic(
            out_dir / f"{stem}.png",
            lambda f: fig.savefig(f, format="png", dpi=120),
            what="confusion matrix",
        )
    finally:
        plt.close(fig)
