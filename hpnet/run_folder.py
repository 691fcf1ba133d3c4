"""The folder a training or pretraining run writes (``train.out_dir``): opened once the data and
the model are there (made, locked, checked again), left as it was when a run stops before
writing anything in it, and noted on an interrupt (which ``last.pt`` is kept).

Under torchrun the main process alone opens it; :func:`~hpnet.distributed.main_only` makes the
others stop with its refusal rather than in their first collective.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from hpnet.atomic import make_folder
from hpnet.checkpoint import OUT_DIR_OPTION
from hpnet.cli import UserError, counted
from hpnet.config import Config
from hpnet.distributed import DistInfo, main_only
from hpnet.epoch_report import tensorboard_writer
from hpnet.resume_from import is_own_checkpoint, resume_path
from hpnet.run_lock import LOCK_NAME, run_folder_lock


def open_run_folder(
    held: contextlib.ExitStack,
    cfg: Config,
    out: Path,
    resume_from: Path | None,
    dist: DistInfo,
    pretrained_report: str = "",
) -> None:
    """On the main process: check that TensorBoard can be had, make ``out`` and take its lock
    (kept by ``held``), check again what :func:`~hpnet.resume.resume_path` decided as
    ``resume_from``, then say what ``model.pretrained`` loaded (not when resuming: the
    weights come from the checkpoint). Every process raises when one of these fails. The
    folders of ``out``'s path this run made are removed again when the run stops before
    writing anything in it (a refused resume leaves no empty folder)."""

    def open_folder() -> None:
        tensorboard_writer(cfg)  # (no tensorboard package: said before the folder is made)
        # its real path, as mkdir -p reaches it (new/../mine is mine: no new/ made on the way)
        real = Path(os.path.realpath(out))
        made = _first_missing(real)
        make_folder(real, what="run folder", folder_option=OUT_DIR_OPTION)
        held.enter_context(run_folder_lock(real))  # one run at a time writes here
        if made is not None:  # (runs before the lock is let go: no other run can have it)
            held.push(_remove_if_unused(real, made))
        # two commands started into one empty folder both found it so: the one that got the
        # lock second would overwrite the other's finished run
        if resume_path(cfg, out) != resume_from:  # (resume="" raises "last.pt exists" itself)
            raise UserError(
                f"{out}/last.pt appeared while this run was starting (another run wrote it): "
                "continue that run with train.resume=auto, or start this one in another "
                "train.out_dir"
            )
        if pretrained_report and resume_from is None:
            print(f"model.pretrained: {pretrained_report}")

    main_only(dist, open_folder)


def _first_missing(folder: Path) -> Path | None:
    """The first folder of ``folder``'s path (a real path: no ``..``, no links) that is not
    there (``folder`` itself or one of its parents), None when ``folder`` is."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            return missing
        missing = path
    return missing


def _remove_if_unused(out: Path, made: Path) -> Callable[..., bool]:
    """An exit callback: when the block failed and left only the lock in ``out``, remove it
    and the folders above it up to ``made``, each while empty."""

    def remove(exc_type: type[BaseException] | None, *_: object) -> bool:
        if exc_type is not None:
            with contextlib.suppress(OSError):  # (a file appeared: the folder stays)
                if [p.name for p in out.iterdir()] == [LOCK_NAME]:
                    (out / LOCK_NAME).unlink()
                    for folder in (out, *out.parents):
                        folder.rmdir()  # (not empty: OSError, the rest stays)
                        if folder == made:
                            break
        return False

    return remove


def check_continues(resume_from: Path, out: Path, done: int, epochs: int, use: str) -> None:
    """Refuse another run's checkpoint that has no epoch left to train here: the new folder
    would get no last.pt of its own (training: an eval.json naming a file that is not there;
    pretraining: a fine-tuning hint naming one). ``use``: how else to use the checkpoint."""
    if not is_own_checkpoint(out, resume_from):
        raise UserError(
            f"train.resume={resume_from} has trained {counted(done, 'epoch')} "
            f"(train.epochs={epochs} trains none more): raise train.epochs to train it on in "
            f"{out}, or {use}"
        )


@contextlib.contextmanager
def interrupt_note(out: Path, dist: DistInfo) -> Iterator[None]:
    """On Ctrl-C or SIGTERM in the block, say (main process) which checkpoint is kept and how
    to continue from it; the interrupt goes on (the command then says it stopped). Under
    torchrun the same for a RuntimeError: how a collective fails when another process died."""
    try:
        yield
    except (KeyboardInterrupt, RuntimeError) as err:
        if isinstance(err, RuntimeError) and not (dist.enabled and _lost_peers(err)):
            raise
        if dist.is_main and (out / "last.pt").is_file():
            print(
                f"hpnet: {out / 'last.pt'} is kept: run the same command with "
                "train.resume=auto to continue from it",
                file=sys.stderr,
            )
        raise


def _lost_peers(err: RuntimeError) -> bool:
    """Whether ``err`` may be a collective failing because another process died (Gloo raises
    a plain RuntimeError), not one of the errors a rerun would meet again: a video that
    stops a ``data.on_error=raise`` run, running out of memory."""
    from hpnet.data.decode_errors import VideoDecodeError

    return not isinstance(err, VideoDecodeError | torch.OutOfMemoryError)
