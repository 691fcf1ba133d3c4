"""``model.pretrained`` = the ``last.pt`` / ``best.pt`` of a ``python -m hpnet.train`` run: its
backbone.

This is how one dataset is fine-tuned from what another trained (UCF101 -> HMDB51, a joint
run -> one of its datasets): the run's ``backbone.*`` tensors go into this run's backbone, which
must be of the same ``model.arch``; the pose stream, the fusion head and the classifier start
new (their classes are another dataset's). LS-ViT's position and temporal embeddings are
resized to this run's frame size and frames (as for a VideoMAE encoder); any other tensor of
another shape is refused, naming the run's model keys. A ``python -m hpnet.pretrain`` run is not
read here (its encoder has its own loaders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from hpnet.cli import UserError
from hpnet.models.lsvit_weights import load_checkpoint_part, read_saved_dict
from hpnet.models.weights import PretrainedReport

# The model keys that shape a backbone (said when a run's backbone does not fit this one);
# the other archs have one shape each.
SHAPE_KEYS = {
    "lsvit": ("size", "patch_size", "smif_offsets"),
    "ssl_transformer": ("depth", "temporal_width", "temporal_depth"),
    **dict.fromkeys(["late_fusion", "lrcn"], ("depth",)),
}


def read_run_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` when it is an ``hpnet.train`` run's (``model`` and ``config``
    entries, no ``pretrain`` one), else None (a tag, another program's file, a pretraining run).
    Tensors are memory-mapped: telling costs no read of the weights."""
    ckpt = read_saved_dict(path)
    if ckpt is None or "pretrain" in ckpt:
        return None
    ours = isinstance(ckpt.get("model"), dict) and isinstance(ckpt.get("config"), dict)
    return ckpt if ours else None


def load_run_backbone(
    backbone: nn.Module, path: str | Path, ckpt: dict[str, Any], arch: str
) -> PretrainedReport:
    """Load the ``backbone.*`` tensors of run checkpoint ``ckpt`` into ``backbone`` (of
    ``model.arch`` ``arch``); the rest (pose stream, head) is listed as unused."""
    saved = ckpt["config"].get("model", {})
    then = saved.get("arch", "lsvit")
    if then != arch:
        raise UserError(
            f"model.pretrained={path} is a model.arch={then} run; this run builds "
            f"model.arch={arch}: set model.arch={then} (model.pretrained gives its backbone)"
        )
    return load_checkpoint_part(
        backbone, path, ckpt, prefix="backbone.",
        flavour=f"hpnet {arch} run (epoch {ckpt.get('epoch')}: backbone; heads dropped)",
        shape_keys=SHAPE_KEYS.get(arch, ()), said="its backbone does not fit this one",
        had="the run had",
    )  # fmt: skip
