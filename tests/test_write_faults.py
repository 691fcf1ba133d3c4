"""Write faults: a full disk, a file-size limit or a permission problem while writing a file
that another run reads back (checkpoint, pose-cache file and report, text-embedding cache).

Each writer must leave the previous file byte for byte, leave no ``*.tmp`` behind and raise
one :class:`hpnet.atomic.WriteError` naming the file, the OS reason and the fix; the text cache
warns once and goes on; the pose-cache command stops with exit code 2 and one line.

The faults are real OS errors where the machine allows: a file-size limit (``RLIMIT_FSIZE``,
EFBIG) set inside a subprocess, a full 256 KiB tmpfs (ENOSPC, needs root and ``mount``), a
chmod-555 folder (EACCES; as root in a subprocess without CAP_DAC_OVERRIDE, via ``setpriv``).
Monkeypatched errors cover the wording of every errno and machines without those tricks.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hpnet.atomic
from hpnet.atomic import WriteError
from hpnet.checkpoint import atomic_save, load_checkpoint
from hpnet.cli import Terminated
from hpnet.pose.cache import main as pose_cache_main
from hpnet.pose.store import load_joints, save_joints
from hpnet.text import encoder as text_encoder
from hpnet.text.encoder import ClassTextEncoder

SMALL_TEXT = "ViT-S-32-alt"  # the smallest open_clip text tower, random init
RANDOM_YOLO = ["pose.weights=yolo11n-pose.yaml", "pose.imgsz=64", "pose.conf=0.00001"]
ENV = {
    **os.environ,
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "0",
    "YOLO_VERBOSE": "False",
    "HF_HUB_OFFLINE": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}
FSIZE_LIMIT = 4096  # bytes: the old files are smaller, every new one is larger

# Overwrites the files of _old_files() with larger ones and adds a text-cache entry, in a fresh
# process; argv: the folder and a file-size limit (0: none). Prints {writer: error message} and
# the text cache's warnings. The text tower is stubbed (seconds saved; the cache write is real).
WRITERS = r"""
import json, logging, resource, signal, sys
from pathlib import Path

folder, limit = Path(sys.argv[1]), int(sys.argv[2])
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

import numpy as np
import torch

from hpnet.atomic import WriteError
from hpnet.checkpoint import atomic_save
from hpnet.pose.store import save_joints
from hpnet.text.encoder import ClassTextEncoder

ClassTextEncoder._compute = lambda self, prompts: torch.eye(len(prompts), 256)
result = {}
try:
    ckpt = {"model": {"w": torch.randn(20000)}, "config": {}, "epoch": 2}
    atomic_save(ckpt, folder / "run" / "last.pt")
except WriteError as err:
    result["checkpoint"] = str(err)
rng = np.random.default_rng(0)
try:
    keypoints = rng.random((200, 2, 17, 3))
    save_joints(folder / "pose" / "cls" / "v.mp4.npz", keypoints, np.arange(200), {"stride": 1})
except WriteError as err:
    result["pose"] = str(err)
warnings = []
handler = logging.Handler()
handler.emit = lambda record: warnings.append(record.getMessage())
logging.getLogger("hpnet.text.encoder").addHandler(handler)
labels = [f"action number {i}" for i in range(40)]
encoder = ClassTextEncoder("ViT-S-32-alt", "", cache_dir=folder / "text")
embeddings = encoder.encode_texts(labels)
encoder.encode_texts(labels[::-1])  # a second failed write: no second warning
result["text_warnings"] = warnings
result["text_returned"] = torch.equal(embeddings, torch.eye(40, 256))
print(json.dumps(result))
"""

# Runs `python -m hpnet.pose.cache ARGS` under a file-size limit; argv: the limit, then ARGS.
LIMITED_POSE_CACHE = r"""
import resource, runpy, signal, sys

limit = int(sys.argv.pop(1))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv[0] = "hpnet.pose.cache"
runpy.run_module("hpnet.pose.cache", run_name="__main__", alter_sys=True)
"""

# Runs `torchrun ARGS` (and so its workers) under a file-size limit; argv: the limit, then ARGS.
LIMITED_TORCHRUN = LIMITED_POSE_CACHE.replace("hpnet.pose.cache", "torch.distributed.run")


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def text_entry(tmp_path_factory) -> tuple[str, bytes]:
    """Name and bytes of a valid text-cache file (the embeddings of "wave"), made once."""
    folder = tmp_path_factory.mktemp("text")
    ClassTextEncoder(SMALL_TEXT, "", cache_dir=folder).encode_texts(["wave"])
    (path,) = folder.glob("*.pt")
    return path.name, path.read_bytes()


def _old_files(folder: Path, text_entry: tuple[str, bytes]) -> dict[Path, bytes]:
    """A small valid checkpoint, pose-cache file and text-cache file; returns their bytes."""
    ckpt = {"model": {"w": torch.zeros(4)}, "config": {}, "epoch": 1}
    atomic_save(ckpt, folder / "run" / "last.pt")
    save_joints(
        folder / "pose" / "cls" / "v.mp4.npz", np.zeros((2, 1, 17, 3)), np.arange(2), {"stride": 1}
    )
    (folder / "text").mkdir()
    (folder / "text" / text_entry[0]).write_bytes(text_entry[1])
    return _snapshot(folder)


def _snapshot(folder: Path) -> dict[Path, bytes]:
    """Every file's bytes, but the runs' lock files (``.lock*``: whose pid holds the folder)."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    return {p: p.read_bytes() for p in files if not p.name.startswith(".lock")}


def _assert_intact(folder: Path, before: dict[Path, bytes]) -> None:
    """The same files with the same bytes (so no temp file and no new file), and they load."""
    assert _snapshot(folder) == before
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert load_checkpoint(folder / "run" / "last.pt")["epoch"] == 1
    assert load_joints(folder / "pose" / "cls" / "v.mp4.npz").keypoints.shape == (2, 1, 17, 3)
    (text_file,) = (folder / "text").glob("*.pt")
    assert torch.load(text_file, weights_only=True)["prompts"] == [["wave"]]


def _expected(folder: Path, reason: str, fix: str | None = None) -> dict[str, str]:
    """The messages of the checkpoint and pose writers for an OS ``reason``."""
    ckpt, pose = folder / "run" / "last.pt", folder / "pose" / "cls" / "v.mp4.npz"
    ckpt_fix = fix.format(folder=ckpt.parent) if fix else None
    pose_fix = fix.format(folder=pose.parent) if fix else None
    return {
        "checkpoint": f"could not write checkpoint {ckpt}: {reason}; the previous last.pt is "
        f"intact; {ckpt_fix} or choose another folder with train.out_dir=DIR",
        "pose": f"could not write pose cache file {pose}: {reason}; the previous v.mp4.npz is "
        f"intact; {pose_fix} or choose another folder with pose.cache_dir=DIR",
    }


def _check_writers(folder: Path, result: dict, reason: str, fix: str) -> None:
    expected = _expected(folder, reason, fix)
    assert result["checkpoint"] == expected["checkpoint"]
    assert result["pose"] == expected["pose"]
    (warning,) = result["text_warnings"]  # once, though two writes failed
    assert warning.startswith(f"could not write text embedding cache file {folder / 'text'}/")
    assert f": {reason}; nothing was written; " in warning
    assert warning.endswith(
        "or choose another folder with text.cache_dir=DIR; going on without caching text "
        "embeddings (set text.cache_dir= to turn the cache off)"
    )
    assert result["text_returned"]  # the embeddings are returned all the same


def _run_writers(folder: Path, limit: int = 0, prefix: list[str] | None = None) -> dict:
    cmd = [*(prefix or []), sys.executable, "-c", WRITERS, str(folder), str(limit)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def _unprivileged_prefix(probe: Path) -> list[str]:
    """A command prefix under which a chmod-555 folder is really unwritable (skips if none)."""
    prefix: list[str] = []
    if os.geteuid() == 0:  # root ignores file permissions: drop the capabilities that allow it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): cannot drop DAC caps")
        caps = "-dac_override,-dac_read_search,-fowner"
        prefix = [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]
    probe.mkdir()
    probe.chmod(0o555)
    try:
        cmd = [*prefix, sys.executable, "-c", f"open({str(probe / 'x')!r}, 'w')"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    finally:
        probe.chmod(0o755)
    if proc.returncode == 0 or "PermissionError" not in proc.stderr:
        how = "as root under setpriv" if prefix else "as a normal user"
        pytest.skip(f"a chmod-555 folder stays writable {how}: {proc.stderr.strip()[-200:]}")
    return prefix


@pytest.fixture
def full_tmpfs(tmp_path):
    """A 256 KiB tmpfs mounted at ``tmp_path / 'disk'`` (root only); unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mount = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except FileNotFoundError:
        pytest.skip("no mount command: cannot make a small file system for a real ENOSPC")
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a real ENOSPC: {mount.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True, timeout=30)


def _fill(disk: Path) -> None:
    """Write zeros to ``disk/filler`` until the file system is full."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two small real videos, ``a/one.mp4`` and ``b/two.mp4``."""
    from videos import write_video

    root = tmp_path_factory.mktemp("videos")
    write_video(root / "a" / "one.mp4", 10, (48, 64))
    write_video(root / "b" / "two.mp4", 10, (48, 64))
    return root


def _old_pose_cache(out: Path) -> dict[Path, bytes]:
    """A valid cache file for a/one.mp4 made with other settings (so a run redoes it)."""
    save_joints(out / "a" / "one.mp4.npz", np.zeros((1, 1, 17, 3)), [0], {"stride": 99})
    return _snapshot(out)


# ----------------------------------------------------------------------------- real OS errors


def test_file_size_limit_efbig_keeps_previous_files(tmp_path, text_entry):
    before = _old_files(tmp_path, text_entry)
    result = _run_writers(tmp_path, limit=FSIZE_LIMIT)
    fix = "raise the file-size limit (ulimit -f)"
    _check_writers(tmp_path, result, "File too large [EFBIG]", fix)
    _assert_intact(tmp_path, before)


def test_permission_denied_keeps_previous_files(tmp_path, text_entry):
    prefix = _unprivileged_prefix(tmp_path / "probe")
    folder = tmp_path / "files"
    before = _old_files(folder, text_entry)
    locked = [folder / "run", folder / "pose" / "cls", folder / "text"]
    for path in locked:
        path.chmod(0o555)
    try:
        result = _run_writers(folder, prefix=prefix)
    finally:
        for path in locked:
            path.chmod(0o755)
    _check_writers(folder, result, "Permission denied [EACCES]", "make {folder} writable")
    assert f"make {folder / 'text'} writable" in result["text_warnings"][0]
    _assert_intact(folder, before)


def test_full_disk_enospc_keeps_previous_files(full_tmpfs, text_entry, monkeypatch, caplog):
    _old_files(full_tmpfs, text_entry)
    _fill(full_tmpfs)
    before = _snapshot(full_tmpfs)
    expected = _expected(full_tmpfs, "No space left on device [ENOSPC]", "free disk space")
    with pytest.raises(WriteError) as caught:
        ckpt = {"model": {"w": torch.randn(20000)}, "config": {}, "epoch": 2}
        atomic_save(ckpt, full_tmpfs / "run/last.pt")
    assert str(caught.value) == expected["checkpoint"] and caught.value.is_storage_error
    keypoints = np.random.default_rng(0).random((200, 2, 17, 3))
    with pytest.raises(WriteError) as caught:
        save_joints(full_tmpfs / "pose/cls/v.mp4.npz", keypoints, np.arange(200), {"stride": 1})
    assert str(caught.value) == expected["pose"]
    monkeypatch.setattr(text_encoder, "_UNWRITABLE_WARNED", set())
    monkeypatch.setattr(ClassTextEncoder, "_compute", lambda self, p: torch.eye(len(p), 256))
    with caplog.at_level(logging.WARNING, logger="hpnet.text.encoder"):
        encoder = ClassTextEncoder(SMALL_TEXT, "", cache_dir=full_tmpfs / "text")
        encoder.encode_texts([f"action number {i}" for i in range(40)])
    (warning,) = [r.getMessage() for r in caplog.records]
    assert ": No space left on device [ENOSPC]; nothing was written; free disk space" in warning
    _assert_intact(full_tmpfs, before)


@pytest.mark.slow  # (as the full-disk case: with -m slow)
def test_pose_cache_command_stops_on_a_file_size_limit(videos, tmp_path):
    """EFBIG is no video's fault: exit 2 with one line, not a failure per video."""
    out = tmp_path / "cache"
    before = _old_pose_cache(out)
    cmd = [sys.executable, "-c", LIMITED_POSE_CACHE, "256", "--videos", str(videos)]
    # no decoding workers: the limit would also stop torch sharing their frames (in /dev/shm)
    cmd += ["--out", str(out), "--no-progress", *RANDOM_YOLO, "pose.workers=0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"hpnet: error: could not write pose cache file {out / 'a' / 'one.mp4.npz'}: File too "
        "large [EFBIG]; the previous one.mp4.npz is intact; raise the file-size limit "
        "(ulimit -f) or choose another folder with --out DIR"
    ]
    assert "failed" not in proc.stdout
    assert _snapshot(out) == before  # no failures.json, no b/two.mp4.npz, no temp file
    assert load_joints(out / "a" / "one.mp4.npz").meta["stride"] == 99


@pytest.mark.slow  # two torchrun processes, ~25 s: with -m slow
def test_torchrun_rank0_checkpoint_error_stops_every_rank_and_keeps_last_pt(tiny_args, tmp_path):
    """Under torchrun only rank 0 writes: its failed write must end the whole job (not leave
    rank 1 waiting in a collective) with the one-line message, and keep the previous last.pt,
    from which the run then resumes once the fault is gone."""
    from ddp_launch import TORCHRUN_FLAGS

    out = tmp_path / "run"

    def torchrun(epochs: int, limit: int = resource.RLIM_INFINITY) -> subprocess.CompletedProcess:
        launch = [*TORCHRUN_FLAGS, "-m", "hpnet.train"]
        run = [*tiny_args, "train.batch_size=2", f"train.epochs={epochs}", "train.resume=auto"]
        cmd = [sys.executable, "-c", LIMITED_TORCHRUN, str(limit), *launch, *run]
        env = {**ENV, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        cmd += [f"train.out_dir={out}"]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    first = torchrun(epochs=1)
    assert first.returncode == 0, first.stderr[-3000:]
    before = (out / "last.pt").read_bytes()
    assert len(before) > 2**20
    failed = torchrun(epochs=2, limit=2**20)  # epoch 2's last.pt (> 1 MiB) cannot be written
    assert failed.returncode != 0
    message = (
        f"hpnet: error: could not write checkpoint {out / 'last.pt'}: File too large [EFBIG]; "
        "the previous last.pt is intact; raise the file-size limit (ulimit -f) or choose "
        "another folder with train.out_dir=DIR"
    )
    assert message in failed.stderr.splitlines()
    assert "exitcode  : 2" in failed.stderr  # rank 0 stopped with the user-error code
    assert (out / "last.pt").read_bytes() == before
    assert not list(out.glob("*.tmp"))
    resumed = torchrun(epochs=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2


@pytest.mark.slow  # (~11 s: a real cache run onto a full disk)
def test_pose_cache_command_stops_on_a_full_disk(videos, full_tmpfs):
    """ENOSPC, with a decoding worker process running: exit 2 with one line, nothing changed."""
    out = full_tmpfs / "cache"
    _old_pose_cache(out)
    _fill(full_tmpfs)
    before = _snapshot(full_tmpfs)
    cmd = [sys.executable, "-m", "hpnet.pose.cache", "--videos", str(videos), "--out", str(out)]
    cmd += ["--no-progress", *RANDOM_YOLO, "pose.workers=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"hpnet: error: could not write pose cache file {out / 'a' / 'one.mp4.npz'}: No space "
        "left on device [ENOSPC]; the previous one.mp4.npz is intact; free disk space or choose "
        "another folder with --out DIR"
    ]
    assert _snapshot(full_tmpfs) == before
    assert load_joints(out / "a" / "one.mp4.npz").meta["stride"] == 99


# ----------------------------------------------------------------------------- monkeypatched


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.ENOSPC, "free disk space or choose"),
        (errno.EDQUOT, "free space in your quota or choose"),
        (errno.EFBIG, "raise the file-size limit (ulimit -f) or choose"),
        (errno.EACCES, "make {folder} writable or choose"),
        (errno.EPERM, "make {folder} writable or choose"),
        (errno.EROFS, "({folder} is on a read-only file system); the previous last.pt is intact; "),
        (errno.EIO, "the previous last.pt is intact; choose"),
    ],
)
def test_failed_write_message_per_errno(tmp_path, monkeypatch, code, fix):
    path = tmp_path / "run" / "last.pt"
    atomic_save({"model": {}, "epoch": 1}, path)
    old = path.read_bytes()

    def fail_fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(hpnet.atomic.os, "fsync", fail_fsync)
    with pytest.raises(WriteError) as caught:
        atomic_save({"model": {}, "epoch": 2}, path)
    message = str(caught.value)
    name = errno.errorcode[code]
    assert message.startswith(f"could not write checkpoint {path}: {os.strerror(code)} [{name}]")
    assert fix.format(folder=path.parent) in message
    assert message.endswith("choose another folder with train.out_dir=DIR")
    assert "\n" not in message
    assert caught.value.is_storage_error == (code != errno.EIO)
    assert path.read_bytes() == old
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_other_exceptions_pass_unchanged_and_leave_no_temp_file(tmp_path):
    path = tmp_path / "run" / "last.pt"
    atomic_save({"model": {}, "epoch": 1}, path)
    old = path.read_bytes()

    def bad_write(f) -> None:
        f.write(b"half")
        raise ValueError("not serialisable")

    with pytest.raises(ValueError, match="not serialisable"):
        hpnet.atomic.write_atomic(path, bad_write)
    assert path.read_bytes() == old
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("name", ["x" * 240 + ".mp4.npz", "\u00f1" * 123 + ".mp4.npz"])
def test_a_name_too_long_for_its_temp_file_is_written(tmp_path, name):
    """A pose cache file named after a long video name: the name fits in 255 bytes, the temp
    file ``<name>.<pid>.tmp`` did not ("File name too long", the video skipped on each rerun).
    A leftover of a killed writer is still found and removed."""
    from hpnet.atomic import remove_stale_temp_files, temp_name

    path = tmp_path / name
    hpnet.atomic.write_atomic(path, lambda f: f.write(b"joints"))
    assert path.read_bytes() == b"joints" and [p.name for p in tmp_path.iterdir()] == [name]
    left = temp_name(path).with_name(temp_name(path).name.replace(f".{os.getpid()}.", ".7."))
    left.write_bytes(b"half")  # (pid 7: a killed run's)
    assert len(left.name.encode()) <= 255 and remove_stale_temp_files(path) == 1
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, Terminated])
def test_an_interrupt_mid_torch_save_stops_as_that_interrupt(tmp_path, interrupt):
    """Ctrl-C (or SIGTERM) while torch.save writes its records: the zip writer's close raises
    a RuntimeError ("unexpected pos") over the interrupt, which became a traceback and exit 1;
    the command must see the interrupt itself (its clean stop), the old file intact."""
    path = tmp_path / "run" / "last.pt"
    atomic_save({"model": {}, "epoch": 1}, path)
    old = path.read_bytes()
    checkpoint = {"a": torch.zeros(100_000), "b": torch.ones(100_000)}

    def interrupted_save(f) -> None:
        class Interrupting:  # the file, until a signal lands mid-records (the 3rd write)
            writes = 0

            def write(self, data: bytes) -> int:
                self.writes += 1
                if self.writes == 3:
                    raise interrupt()
                return f.write(data)

            def flush(self) -> None:
                f.flush()

        torch.serialization.save(checkpoint, Interrupting())  # (torch's, not Ultralytics')

    bare = tmp_path / "bare.pt"
    with pytest.raises(RuntimeError, match="unexpected pos"), bare.open("wb") as f:
        interrupted_save(f)  # torch's own behaviour
    with pytest.raises(interrupt) as caught:
        hpnet.atomic.write_atomic(path, interrupted_save)
    assert type(caught.value) is interrupt
    assert path.read_bytes() == old
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_checkpoints_are_written_by_torchs_own_save(tmp_path, monkeypatch):
    """Ultralytics (imported by the pose model) replaces ``torch.save`` with a wrapper that
    retries a RuntimeError into the same half-written file, a Ctrl-C mid-save included:
    checkpoints and text caches do not go through whatever ``torch.save`` has become."""

    def replaced(*args, **kwargs):
        raise AssertionError("torch.save as another library replaced it")

    monkeypatch.setattr(torch, "save", replaced)
    atomic_save({"model": {"w": torch.ones(3)}, "epoch": 2}, tmp_path / "last.pt")
    assert torch.equal(
        torch.load(tmp_path / "last.pt", weights_only=True)["model"]["w"], torch.ones(3)
    )


def test_best_pt_is_a_copy_that_later_last_pt_writes_leave_alone(tmp_path):
    """best.pt is a byte copy of the last.pt just written (no second serialisation), its own
    file: a later last.pt, or an edit of either, leaves the other as it was."""
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    atomic_save({"model": {}, "config": {}, "epoch": 1}, last)
    hpnet.atomic.copy_atomic(last, best)
    assert best.read_bytes() == last.read_bytes() and best.stat().st_ino != last.stat().st_ino
    atomic_save({"model": {}, "config": {}, "epoch": 2}, last)
    assert load_checkpoint(best)["epoch"] == 1 and load_checkpoint(last)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_text_cache_write_failure_warns_once_and_goes_on(tmp_path, monkeypatch, caplog):
    def fail_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(hpnet.atomic.os, "fsync", fail_fsync)
    monkeypatch.setattr(text_encoder, "_UNWRITABLE_WARNED", set())
    encoder = ClassTextEncoder(SMALL_TEXT, "", cache_dir=tmp_path / "text")
    with caplog.at_level(logging.WARNING, logger="hpnet.text.encoder"):
        first = encoder.encode_texts(["wave", "clap"])
        encoder.encode_texts(["climb"])
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"could not write text embedding cache file {tmp_path / 'text'}/")
    assert warning.endswith(
        ".pt: No space left on device [ENOSPC]; nothing was written; free disk space or choose "
        "another folder with text.cache_dir=DIR; going on without caching text embeddings "
        "(set text.cache_dir= to turn the cache off)"
    )
    assert list((tmp_path / "text").iterdir()) == []
    plain = ClassTextEncoder(SMALL_TEXT, "", cache_dir=None).encode_texts(["wave", "clap"])
    assert torch.equal(first, plain)


def test_pose_cache_command_storage_error_stops_other_write_errors_are_per_video(
    videos, tmp_path, monkeypatch
):
    """A name too long for the file system (real ENAMETOOLONG) is that video's failure; a full
    disk (monkeypatched ENOSPC) stops the run with a WriteError, keeping every file as it was."""
    root = tmp_path / "videos"
    shutil.copytree(videos, root)
    long_name = "x" * 248 + ".mp4"  # fits; its cache file <name>.npz does not (256 > 255)
    shutil.copy(root / "a" / "one.mp4", root / long_name)
    out = tmp_path / "cache"
    args = ["--videos", str(root), "--out", str(out), "--no-progress", *RANDOM_YOLO]
    assert pose_cache_main([*args, "pose.workers=0"]) == 1
    report = json.loads((out / "failures.json").read_text())
    assert (report["videos"], report["cached"], report["failed"]) == (3, 2, 1)
    (failure,) = report["failures"]
    assert failure["rel"] == long_name
    assert failure["error"] == (
        f"could not write pose cache file {out / long_name}.npz: File name too long "
        "[ENAMETOOLONG]; nothing was written; shorten the file name or choose another folder "
        "with --out DIR"
    )
    before = _snapshot(out)

    def fail_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(hpnet.atomic.os, "fsync", fail_fsync)
    with pytest.raises(WriteError) as caught:
        pose_cache_main([*args, "pose.workers=0", "pose.stride=2"])  # other settings: redo all
    assert str(caught.value) == (  # the first video, not the report after three failures
        f"could not write pose cache file {out / 'a' / 'one.mp4.npz'}: No space left on device "
        "[ENOSPC]; the previous one.mp4.npz is intact; free disk space or choose another folder "
        "with --out DIR"
    )
    assert _snapshot(out) == before


def test_a_file_where_a_folder_belongs_is_a_one_line_error_before_the_work(
    tmp_path, tiny_checkpoint
):
    """A run, evaluation or overlay folder named where a file is (or below one): a one-line
    error naming the file and the option, before any video is scored (was a traceback, for
    --overlay and evaluate --out after the whole test set)."""
    from hpnet.atomic import make_folder
    from hpnet.cli import UserError
    from hpnet.evaluate import main as evaluate_main
    from hpnet.predict import main as predict_main

    afile = tmp_path / "afile"
    afile.write_text("x")
    for folder in (afile, afile / "run"):
        with pytest.raises(UserError, match=rf"run folder {folder}: {afile} is a file, not a "
                           r"folder: choose another train\.out_dir=DIR"):  # fmt: skip
            make_folder(folder, what="run folder", folder_option="train.out_dir=DIR")
    assert make_folder(tmp_path / "a" / "b").is_dir()
    with pytest.raises(UserError, match=r"afile is a file, not a folder: choose another --overlay"):
        predict_main(["v.mp4", "--checkpoint", "x.pt", "--overlay", f"{afile}/o.png"])
    with pytest.raises(UserError, match=r"evaluation folder .*afile is a file.*--out DIR"):
        evaluate_main(["--checkpoint", str(tiny_checkpoint), "--out", str(afile)])


def test_a_folder_where_an_output_file_belongs_is_refused_before_the_work(tmp_path):
    """--overlay, --timeline, export --out or a pose preview naming an existing folder, or a
    folder below a file, or a --pose-cache that is no folder: one line before the checkpoint
    loads (x.pt does not exist; these were tracebacks after the work, or a cache silently
    unused)."""
    import hpnet
    from hpnet.atomic import make_file_folder
    from hpnet.cli import UserError
    from hpnet.export import main as export_main
    from hpnet.overlay import write_overlay
    from hpnet.predict import main as predict_main

    taken = tmp_path / "o.mp4"
    taken.mkdir()
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(UserError, match=rf"cannot write overlay {taken}: it is a folder: choose "
                       r"another --overlay$"):  # fmt: skip
        predict_main(["v.mp4", "--checkpoint", "x.pt", "--overlay", str(taken)])
    plot = tmp_path / "plot.png"
    plot.mkdir()
    with pytest.raises(UserError, match=r"cannot write timeline plot .*plot\.png: it is a folder"):
        predict_main(["v.mp4", "--checkpoint", "x.pt", "--window", "2", "--timeline", str(plot)])
    (tmp_path / "m.pt2").mkdir()
    with pytest.raises(UserError, match=r"cannot write export .*m\.pt2: it is a folder: choose "
                       r"another --out$"):  # fmt: skip
        export_main(["--checkpoint", "x.pt", "--out", str(tmp_path / "m.pt2")])
    with pytest.raises(UserError, match=r"afile is a file, not a folder: choose another --out$"):
        export_main(["--checkpoint", "x.pt", "--out", str(afile / "m.onnx")])
    with pytest.raises(UserError, match=r"it is a folder"):  # the Python API's writer too
        write_overlay(taken, [np.zeros((8, 8, 3), np.uint8)])
    assert make_file_folder(tmp_path / "new" / "p.png") == tmp_path / "new" / "p.png"
    assert (tmp_path / "new").is_dir() and not (tmp_path / "new" / "p.png").exists()
    for cache, state in ((tmp_path / "nocache", "not found"), (afile, "is a file, not a folder")):
        with pytest.raises(UserError, match=rf"pose cache folder {state}: {cache} \(give the"):
            hpnet.load("x.pt", pose_cache=str(cache))
    with pytest.raises(UserError, match=r"x\.pt"):  # a folder, or '', passes on to the load
        hpnet.load("x.pt", pose_cache="")
