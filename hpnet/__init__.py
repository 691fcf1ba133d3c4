"""hpnet: human action recognition in video (LS-ViT + YOLO pose pooling + CLIP text head).

The commands are ``python -m hpnet.<command>`` (README.md); in Python::

    import hpnet
    clf = hpnet.load("runs/x/best.pt")      # a checkpoint, or a .pt2 / .onnx of hpnet.export
    clf.predict("clip.mp4")["top"][0]       # {"label": ..., "index": ..., "prob": ...}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpnet.cli import UserError  # what a bad argument or input raises (a message to show)

if TYPE_CHECKING:
    from hpnet.api import Classifier

__all__ = ["UserError", "load"]


def load(path: str | Path, **options: Any) -> Classifier:
    """A classifier from a checkpoint or an exported file (options: :func:`hpnet.api.load`)."""
    from hpnet.api import load as load_classifier  # imported on use: `import hpnet` stays light

    return load_classifier(path, **options)
