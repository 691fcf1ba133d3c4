"""Which checkpoint a training or pretraining run continues from (``train.resume``: ``auto``,
a path or ``''``), and whether a run folder already holds a run."""

from __future__ import annotations

from pathlib import Path

import yaml

from hpnet.cli import UserError
from hpnet.config import Config
from hpnet.config_types import load_yaml
from hpnet.distributed import DistInfo, check_same_everywhere, refused_together


def resume_path(cfg: Config, out: Path, dist: DistInfo | None = None) -> Path | None:
    """The checkpoint run folder ``out`` continues from (None: a fresh run): its own
    ``last.pt`` (``train.resume=auto``, or the path of a checkpoint it already continues), the
    file ``train.resume`` names, or a refusal that says what to set. Under torchrun (``dist``)
    every process must find the same one (a ``train.out_dir`` on a disk only one machine
    sees: one process resumed, another started afresh, and both waited for each other)."""
    with refused_together(dist or DistInfo()):
        path = _resume_path(cfg, out)
    if dist is not None:
        found = "none (a fresh run)" if path is None else f"{path} ({path.stat().st_size} bytes)"
        check_same_everywhere(dist, {"the checkpoint the run continues": found}, SHARED_OUT_DIR)
    return path


SHARED_OUT_DIR = (
    "train.out_dir must be one folder every process sees (several machines: a shared disk)"
)


def _resume_path(cfg: Config, out: Path) -> Path | None:
    r = cfg.train.resume
    if not r:
        if (out / "last.pt").exists():
            raise UserError(_run_there(out / "last.pt"))
        return None
    if r == "auto":
        return out / "last.pt" if (out / "last.pt").exists() else None
    path = Path(r)
    if path.is_dir():  # a run folder
        raise UserError(
            f"train.resume={r} is a folder: give {path / 'last.pt'} (or train.resume=auto "
            f"with train.out_dir={r})"
        )
    if not path.is_file():
        raise UserError(
            f"train.resume={r}: no such checkpoint file (train.resume=auto continues "
            f"{out / 'last.pt'} when it is there, '' starts a fresh run)"
        )
    if is_own_checkpoint(out, path):
        return path
    if _continues(out, path):  # (the same command again, or --config OUT/config.yaml; the
        return out / "last.pt"  # main process then prints "resumed from OUT/last.pt ...")
    other = [name for name in RUN_FILES if (out / name).is_file()]
    if other:  # its last.pt, config and metrics would be overwritten by another run's
        raise UserError(
            f"train.resume={r}, but train.out_dir={out} holds another run ({', '.join(other)}): "
            "give train.out_dir a new folder to continue that checkpoint in, or continue the "
            "folder's own run with train.resume=auto"
        )
    return path


RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl")  # a folder holding one holds a run


def _run_there(last: Path) -> str:
    """What to do about run folder ``last.pt`` when a run starts in its folder: a training
    run's is continued with ``train.resume=auto``; a pretraining run's also by the command
    that made it, or fine-tuned from (it is no training run to continue)."""
    from hpnet.models.lsvit_weights import read_pretrain_checkpoint

    if read_pretrain_checkpoint(last) is None:
        return (
            f"{last} exists: continue that run with train.resume=auto, or start a new one in "
            "another train.out_dir"
        )
    return (
        f"{last} exists, a pretraining run's: continue it with python -m hpnet.pretrain ... "
        f"train.resume=auto, or fine-tune from it (model.pretrained={last}) or start a new run "
        "in another train.out_dir"
    )


def is_own_checkpoint(out: Path, path: Path) -> bool:
    """Whether ``path`` is run folder ``out``'s own ``last.pt`` (the same file, by any name)."""
    own = out / "last.pt"
    return own.is_file() and own.samefile(path)


def _continues(out: Path, path: Path) -> bool:
    """Whether run folder ``out`` is the continuation of checkpoint ``path``: a run started
    with ``train.resume=<path>`` (the same file) wrote its ``config.yaml`` and a ``last.pt``."""
    try:
        saved = load_yaml((out / "config.yaml").read_text(encoding="utf-8"))
        given = Path(saved["train"]["resume"])
        return (out / "last.pt").is_file() and given.is_file() and given.samefile(path)
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        return False
