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
from hpnet.models.lsvit_weights import (
    LSVIT_SHAPE_KEYS,
    PRETRAIN_ENTRY,
    is_pretrain_checkpoint,
    load_checkpoint_part,
    read_saved_dict,
)
from hpnet.models.weights import PretrainedReport
from hpnet.text.weights import looks_like_path

# The model keys that shape a backbone (said when a run's backbone does not fit this one);
# the other archs have one shape each.
SHAPE_KEYS = {
    "lsvit": LSVIT_SHAPE_KEYS,
    "ssl_transformer": ("depth", "temporal_width", "temporal_depth"),
    **dict.fromkeys(["late_fusion", "lrcn"], ("depth",)),
}


def read_run_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` when it is an ``hpnet.train`` run's (a ``model`` state dict
    with ``backbone.*`` tensors and a ``config`` with its ``model`` section; no ``pretrain``
    entry), else None (a tag, another program's file, a pretraining run). Tensors are
    memory-mapped: telling costs no read of the weights."""
    return run_checkpoint_of(read_saved_dict(path))


def run_checkpoint_of(ckpt: dict[str, Any] | None) -> dict[str, Any] | None:
    """``ckpt`` (a dict :func:`read_saved_dict` read, or None) when it is an ``hpnet.train``
    run's checkpoint (see :func:`read_run_checkpoint`), else None."""
    if ckpt is None or is_pretrain_checkpoint(ckpt):
        return None
    weights, config = ckpt.get("model"), ckpt.get("config")
    if not (isinstance(weights, dict) and isinstance(config, dict)):
        return None
    ours = isinstance(config.get("model"), dict) and any(k.startswith("backbone.") for k in weights)
    return ckpt if ours else None


# Archs whose runs start each other: Wang et al. start the non-local net from I3D (the non-local
# blocks are then new; from a non-local run, an I3D leaves them unused).
FAMILIES = ({"i3d", "nonlocal"},)


def load_run_backbone(
    backbone: nn.Module, path: str | Path, ckpt: dict[str, Any], model: Any
) -> PretrainedReport:
    """Load the ``backbone.*`` tensors of run checkpoint ``ckpt`` into ``backbone`` (built for
    ``model``, the ``model`` config section); the rest (pose stream, head) is listed as unused.
    The run's arch must be ``model.arch`` (or of its family) and its :data:`SHAPE_KEYS` the
    same: ResNets of other depths share their first blocks' names and shapes, and would load
    cut short."""
    saved, arch = ckpt["config"]["model"], model.arch
    then = saved.get("arch", "lsvit")
    if then != arch and not any({then, arch} <= family for family in FAMILIES):
        raise UserError(
            f"model.pretrained={path} is a model.arch={then} run; this run builds "
            f"model.arch={arch}: set model.arch={then} (model.pretrained gives its backbone)"
        )
    return load_checkpoint_part(
        backbone, path, ckpt, prefix="backbone.",
        flavour=f"hpnet {then} run (epoch {ckpt.get('epoch')}: backbone; heads dropped)",
        shape_keys=SHAPE_KEYS.get(arch, ()), said="its backbone does not fit this one",
        had="the run had", model_cfg=model,
    )  # fmt: skip


# The arch whose backbone each ``pretrain.method``'s encoder is, and what it is (for messages).
PRETRAINED_ARCH = {
    "videomae": ("lsvit", "VideoMAE", "an LS-ViT encoder"),
    "simsiam": ("ssl_transformer", "SimSiam", "a 2D ResNet frame encoder"),
}


def check_pretrain_arch(ckpt: dict[str, Any], value: str, arch: str) -> None:
    """Refuse a ``python -m hpnet.pretrain`` run's checkpoint ``ckpt`` (at ``value``) for a
    ``model.arch`` its encoder is not the backbone of, naming the arch that loads it (the
    arch's own loader would say only that no tensor fits)."""
    method = ckpt[PRETRAIN_ENTRY].get("method", "?")
    fits, name, what = PRETRAINED_ARCH.get(method, ("", method, "an encoder"))
    if arch != fits:
        where = f"load it with model.arch={fits}" if fits else "no model.arch loads it"
        raise UserError(
            f"model.pretrained={value} is a {name} run ({what}), not a model.arch={arch} "
            f"backbone: {where}, or give model.arch={arch} its own weights ('' for random)"
        )


def check_run_path(value: str) -> None:
    """Refuse a ``model.pretrained`` that names a run that is not there, before an arch's
    loader reads it as its own kind of file: a run folder (its ``last.pt`` is the file), or a
    ``last.pt`` not written yet."""
    path = Path(value).expanduser()
    if value and path.is_dir() and (path / "last.pt").is_file():
        raise UserError(
            f"model.pretrained={value} is a run folder: give its checkpoint, "
            f"model.pretrained={path / 'last.pt'}"
        )
    if path.name == "last.pt" and not path.exists():
        raise UserError(
            f"model.pretrained={value} does not exist: it names a run's last.pt; run that run "
            "first (e.g. python -m hpnet.pretrain --config configs/hmdb51_videomae.yaml for "
            "hmdb51_videomae_finetune.yaml, configs/hmdb51_simsiam.yaml for "
            "hmdb51_ssl_transformer.yaml) or point model.pretrained at its last.pt"
        )


def with_run_hint(err: UserError, value: str) -> UserError:
    """An arch loader's refusal of a ``model.pretrained`` file that is not there, with what
    else the setting takes: a run's checkpoint (``err`` as it is for any other refusal)."""
    if not (looks_like_path(value) and not Path(value).expanduser().exists()):
        return err
    return UserError(
        f"{err}; model.pretrained also takes a run's checkpoint: the last.pt of python -m "
        "hpnet.train or python -m hpnet.pretrain"
    )
