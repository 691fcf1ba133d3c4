"""torchrun detection and the few collective operations the training loop needs.

Launched with ``torchrun --nproc_per_node=N -m hpnet.train ...`` the environment carries RANK,
WORLD_SIZE and LOCAL_RANK; this module starts the process group (NCCL on CUDA, Gloo on CPU) and
offers reductions that are no-ops in a single process.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from hpnet.cli import UserError
from hpnet.config import Config, config_to_dict, flat_config

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # global rank of this process
    world_size: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine (picks the GPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Start the process group when launched by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    unset = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if unset:  # (a WORLD_SIZE left in the shell: torchrun sets all four)
        raise UserError(
            f"WORLD_SIZE={world} is set but not {', '.join(unset)}: launch the command with "
            f"torchrun --nproc_per_node {world} -m ..., or unset WORLD_SIZE to run one process"
        )
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        note = threading.Timer(WAIT_NOTE_S, _say_waiting, (rank, world))
        note.daemon = True
        note.start()
        try:
            dist.init_process_group(backend=backend)
        finally:
            note.cancel()
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


WAIT_NOTE_S = 30.0  # how long process group start-up may take before it is said


def _say_waiting(rank: int, world: int) -> None:
    """Said when the process group has not formed after :data:`WAIT_NOTE_S` (a process that
    never started, or WORLD_SIZE/RANK/MASTER_* left in the environment by another job)."""
    where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    print(
        f"hpnet: process {rank} has waited {WAIT_NOTE_S:.0f} s for the other processes of "
        f"WORLD_SIZE={world} at {where} (launched by torchrun? a WORLD_SIZE left in the "
        "environment makes a plain run wait here: stop it with kill, unset WORLD_SIZE)",
        file=sys.stderr,
        flush=True,
    )


def refuse_torchrun(what: str) -> None:
    """Refuse a command (``what``: e.g. "python -m hpnet.predict") launched by torchrun that
    does its whole work in every process: each would print and write the same results (two
    JSON documents on one stdout)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or "1")
    if world > 1:
        raise UserError(
            f"{what} runs in one process (WORLD_SIZE={world}): start it with python, not "
            "torchrun (torchrun splits training, pretraining, evaluation, zero-shot scoring of "
            "a --dataset and the pose cache); a WORLD_SIZE left in the shell by another job: "
            "unset it"
        )


def shutdown_distributed() -> None:
    """Destroy the process group while the interpreter is fully alive.

    Objects that hold it (a DDP reducer sits in a reference cycle) are collected first: freed
    later, during interpreter shutdown, Gloo's worker threads can abort the process
    ("terminate called without an active exception") after a run that finished fine.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session(device_type: str, cfg: Config | None = None) -> Iterator[DistInfo]:
    """``init_distributed`` for the length of a command: on success every rank waits for the
    others (rank 0 writes the reports last), then the group is destroyed on every exit path.
    ``cfg``: the command's config, which every process must have alike
    (:func:`check_same_everywhere`).

    A command that leaves the group to interpreter shutdown can abort at exit under torchrun
    (pytorch/pytorch#190489), turning a finished run into a failed one. A session opened inside
    another (one per split of ``--splits``) joins the outer one's group and leaves it standing.
    """
    outer = dist.is_available() and dist.is_initialized()
    info = init_distributed(device_type)
    try:
        if cfg is not None:
            flat = flat_config(config_to_dict(cfg))
            shared = {k: v for k, v in flat.items() if k not in PER_PROCESS_KEYS}
            check_same_everywhere(info, shared, SAME_CONFIG)
        yield info
        barrier()
    finally:
        if not outer:
            shutdown_distributed()


def main_only(info: DistInfo, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``fn(*args, **kwargs)`` on the main process alone (what a run does once: make and lock
    its folder, write its config), its outcome shared: when it fails there, every process stops.

    Otherwise the main process exits with its one-line refusal while the others walk into
    their first collective and die there with a Gloo/NCCL traceback ("Connection closed by
    peer"). The main process raises its own exception, the others a :class:`UserError` with
    its message. Returns ``fn``'s result on the main process, None on the others."""
    if not info.enabled:
        return fn(*args, **kwargs)
    result, failure = None, None
    if info.is_main:
        try:
            result = fn(*args, **kwargs)
        except Exception as err:  # shared below, then raised here as it was
            failure = err
    said = [None if failure is None else _said(failure)]
    dist.broadcast_object_list(said, src=0)
    if failure is not None:
        raise failure
    if said[0] is not None:
        raise UserError(said[0])
    return result


def _said(err: Exception) -> str:
    """What the other processes say when the main process failed with ``err``."""
    if isinstance(err, UserError):
        return str(err)
    return f"process 0 stopped ({type(err).__name__}: {err}); its traceback says where"


# Keys a process may set otherwise than the others: where its machine keeps the files (the same
# files, mounted elsewhere), and how fast it works. (data.joint entries are compared whole.)
PER_PROCESS_KEYS = frozenset({
    "data.root", "data.split_dir", "data.train_list", "data.test_list", "data.classes_file",
    "data.workers", "model.pretrained", "text.pretrained", "text.cache_dir", "pose.cache_dir",
    "pose.weights", "pose.batch", "pose.workers", "pose.device", "train.out_dir",
    "train.resume", "train.device", "train.threads", "eval.batch_size",
})  # fmt: skip
SAME_CONFIG = (
    "every process must be given the same config and overrides (several machines: the same files)"
)


def check_same_everywhere(info: DistInfo, values: Mapping[str, Any], advice: str) -> None:
    """Refuse, on every process, when some process's ``values`` (e.g. its flat config) are not
    process 0's, naming the first keys that differ: processes that disagree (a config edited on
    one machine, a run folder only one of them sees) train one model with mixed settings, or
    wait for each other forever. Nothing in a single process."""
    if not info.enabled:
        return
    every = gather_objects(dict(values))
    first = every[0]
    for rank, other in enumerate(every[1:], start=1):
        keys = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
        if keys:
            shown = "; ".join(
                f"{k} is {first.get(k)!r} on process 0, {other.get(k)!r} on process {rank}"
                for k in keys[:3]
            )
            more = f" (and {len(keys) - 3} more)" if len(keys) > 3 else ""
            raise UserError(f"the processes of this run disagree: {shown}{more}: {advice}")


@contextlib.contextmanager
def refused_together(info: DistInfo) -> Iterator[None]:
    """Run checks that may refuse (:class:`UserError`) on one process and not another (a file
    only one machine sees): when any process refuses, every process does (the others with
    that process's message) instead of meeting a collective the refusing one never reaches
    (a Gloo "Connection closed by peer" traceback, or a wait until NCCL's timeout)."""
    own: UserError | None = None
    try:
        yield
    except UserError as err:
        if not info.enabled:
            raise
        own = err
    if not info.enabled:
        return
    said = gather_objects("" if own is None else str(own))
    if own is not None:
        raise own
    first = next(((rank, text) for rank, text in enumerate(said) if text), None)
    if first is not None:
        raise UserError(f"process {first[0]} refused: {first[1]}")


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a list of numbers over all processes (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (a one-element list in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(model: torch.nn.Module, src: int = 0) -> None:
    """Set every process's buffers (BatchNorm running statistics) to process ``src``'s, in
    place; nothing in one process. DDP copies rank 0's buffers at the start of each forward, so
    after the last one of an epoch each process holds its own update: this makes the model the
    processes evaluate the one rank 0 saves."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src)


def sync_batchnorm(model: torch.nn.Module, info: DistInfo, device: torch.device) -> bool:
    """Turn ``model``'s BatchNorm layers into SyncBatchNorm (in place: the same parameters and
    buffers, so state-dict keys and optimizer groups are unchanged): their batch statistics are
    then taken over the global batch of all processes, as SimSiam's recipe does. Only under
    torchrun on CUDA (torch's SyncBatchNorm runs on GPUs only); returns whether it did."""
    if not (info.enabled and device.type == "cuda"):
        return False
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if converted is not model:  # a bare BatchNorm module: nothing else to hold it
        raise TypeError("sync_batchnorm: the model itself is a BatchNorm layer")
    return True


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
