"""torchrun on the CPU (Gloo): 2 processes x batch 2 train exactly like 1 process x batch 4,
``hpnet.evaluate`` on 2 processes reports exactly what it reports on 1, and a process whose
whole batch failed to decode keeps step with the others."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_launch import TORCHRUN

REPO = Path(__file__).resolve().parents[1]


def _args(shared: Path, out: Path, batch: int) -> list[str]:
    """The demo config shrunk, with every random augmentation off (the ranks draw their own);
    27 training clips of 11 actions, one of each action held out for validation: 16 train."""
    return [
        "-m", "hpnet.train", "--config", str(REPO / "configs" / "demo.yaml"),
        f"data.root={shared / 'synthetic'}", "data.frames=4", "data.size=32",
        "data.load_size=32", "data.synthetic.train_videos=27", "data.synthetic.test_videos=6",
        "data.val_fraction=0.25",
        "data.synthetic.resolution=32", "data.synthetic.length=8",
        "data.augment.flip=false", "data.augment.scale_min=1.0", "data.augment.ratio_max=1.0",
        "data.augment.jitter=0.0", "data.augment.blur_prob=0.0",
        "text.model=ViT-S-32-alt", "text.pretrained=", f"text.cache_dir={shared / 'text'}",
        f"train.batch_size={batch}", "train.epochs=2", "train.eval_every=0",
        "train.warmup_epochs=0.5", "train.resume=", f"train.out_dir={out}", "eval.batch_size=4",
    ]  # fmt: skip


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, *TORCHRUN, *args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """The same run trained by 1 process x batch 4 and by 2 processes x batch 2."""
    tmp = tmp_path_factory.mktemp("ddp")
    shared = tmp / "shared"
    single, double = tmp / "single", tmp / "double"
    _run([sys.executable, *_args(shared, single, batch=4)])
    _torchrun(*_args(shared, double, batch=2))
    return single, double


def _rank_rows(folder: Path) -> list[dict]:
    """What each rank of a script wrote to ``folder/rank<r>.json`` (a file each: lines two
    processes print to one pipe can interleave), in rank order."""
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow  # (the two runs of its fixture: ~30 s; the default suite keeps to its budget)
def test_two_gloo_processes_match_one(runs):
    single, double = runs

    def losses(run: Path) -> list[float]:
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["type"] == "train"]

    assert losses(single) == pytest.approx(losses(double), rel=1e-4)
    a = torch.load(single / "last.pt", weights_only=True)
    b = torch.load(double / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 8  # 2 epochs x 4 optimizer steps
    # Float sums in another order differ by ~1e-7; AdamW divides by sqrt(v), so a coordinate
    # whose gradient is ~0 can take a step of up to lr (1e-3) the other way. Require: nearly
    # every weight within 1e-5, and none more than two such steps apart. Without gradient
    # averaging rank 0 would have trained on half the data and most weights would differ.
    diffs = torch.cat([(b["model"][n] - t).abs().flatten() for n, t in a["model"].items()])
    assert (diffs <= 1e-5).float().mean() > 0.99, f"{(diffs > 1e-5).float().mean():.2%} differ"
    assert diffs.max() < 2e-3, f"largest difference {diffs.max():.2e}"
    report = json.loads((double / "eval.json").read_text())
    assert report["num_videos"] == 6  # every test video exactly once across the 2 processes
    assert report["val"]["num_videos"] == 11  # and every validation video


@pytest.mark.slow  # (the fixture's runs, then two evaluations: ~15 s more)
def test_evaluate_on_two_processes_reports_what_one_does(runs, tmp_path):
    """Each rank scores its own share of the test videos; rank 0 writes the merged report."""
    single, _ = runs
    checkpoint = str(single / "last.pt")
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "hpnet.evaluate", "--checkpoint", checkpoint, "--out", str(one)])
    done = _torchrun("-m", "hpnet.evaluate", "--checkpoint", checkpoint, "--out", str(two))
    assert done.stdout.count("wrote ") == 1  # only rank 0 prints and writes
    a = json.loads((one / "eval.json").read_text())
    b = json.loads((two / "eval.json").read_text())
    assert a["num_videos"] == b["num_videos"] == 6
    for key in ("top1", "top5", "mean_class_acc"):
        assert b[key] == pytest.approx(a[key]), key
    assert b["per_class"] == a["per_class"]
    assert (one / "confusion_matrix.csv").read_text() == (two / "confusion_matrix.csv").read_text()
    # both ranks split the same validation videos off the training list: merged by index,
    # their scores are those of one process
    assert a["val"]["num_videos"] == b["val"]["num_videos"] == 11
    assert b["val"]["per_class"] == a["val"]["per_class"]
    assert b["val"]["top5"] == pytest.approx(a["val"]["top5"])


# Run by torchrun: 2 Gloo ranks train a tiny HP-Net through engine.train_one_epoch with DDP and
# gradient accumulation 2; rank 1's batch argv[1] is empty (every video failed to decode);
# argv[2] = 1: a stand-in maker is given (a batch of one clip, as hpnet.epoch_run makes one).
# Writes each rank's steps, clips and a checksum of its final weights to argv[3]/rank<r>.json.
EMPTY_BATCH_ON_RANK_1 = r"""
import json, sys, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from hpnet.config import load_config
from hpnet.engine import LossConfig, train_one_epoch
from hpnet.models.hpnet import build_model
from hpnet.runtime import build_transform

dist.init_process_group("gloo")
rank = dist.get_rank()
cfg = load_config(None, ["model.size=tiny", "model.patch_size=8", "data.frames=4",
                         "data.size=32", "model.text=false", "pose.persons=1"])
torch.manual_seed(0)
model = build_model(cfg, ["a", "b", "c"])
g = torch.Generator().manual_seed(rank)
batches = []
for i in range(4):
    joints = torch.rand(2, 4, 1, 17, 3, generator=g)
    batch = {"video": torch.randint(0, 255, (2, 4, 3, 36, 36), dtype=torch.uint8, generator=g),
             "joints": joints, "label": torch.randint(0, 3, (2,), generator=g), "skipped": 0}
    if rank == 1 and i == int(sys.argv[1]):
        batch = {"video": torch.empty(0, dtype=torch.uint8), "joints": torch.empty(0),
                 "label": torch.empty(0, dtype=torch.int64), "skipped": 2}
    batches.append(batch)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
stats = train_one_epoch(
    DistributedDataParallel(model), batches, transform=build_transform(cfg),
    optimizer=opt, scheduler=sched, scaler=None, loss_cfg=LossConfig(aux_weight=0.5),
    device=torch.device("cpu"), amp_dtype=None, epoch=0, accum_steps=2, progress=False,
    stand_in=(lambda d: {k: v[:1] if torch.is_tensor(v) else v for k, v in batches[2].items()})
    if sys.argv[2] == "1" else None,
)
weights = torch.cat([p.detach().flatten() for p in model.parameters()])
row = {"rank": rank, "steps": stats["steps"], "clips": stats["clips"],
       "skipped": stats["skipped"], "sum": float(weights.double().sum()),
       "abs": float(weights.double().abs().sum())}
open(f"{sys.argv[3]}/rank{rank}.json", "w").write(json.dumps(row))
dist.destroy_process_group()
"""


@pytest.mark.parametrize(
    ("empty", "maker"),
    # the earlier batch stands in (with -m slow); no earlier one: the maker's does
    [pytest.param(1, False, marks=pytest.mark.slow), (0, True)],
)
def test_a_process_with_an_empty_batch_keeps_step_with_the_others(tmp_path, empty, maker):
    script = tmp_path / "empty_batch.py"
    script.write_text(EMPTY_BATCH_ON_RANK_1)
    # without a stand-in: collectives out of step, rank 0 fails
    _torchrun(str(script), str(empty), str(int(maker)), str(tmp_path))
    rows = _rank_rows(tmp_path)
    assert [(r["steps"], r["clips"], r["skipped"]) for r in rows] == [(2, 8, 0), (2, 6, 2)]
    assert rows[0]["sum"] == rows[1]["sum"] and rows[0]["abs"] == rows[1]["abs"]  # same weights


BASELINE = ["model.arch=r2plus1d_18", "model.feedback=false"]  # a 3D CNN baseline, pose + text


@pytest.mark.slow
def test_a_baseline_trains_and_evaluates_on_two_gloo_processes(tmp_path):
    """A non-LS-ViT arch under torchrun: training runs on both ranks, and its checkpoint
    evaluated on 2 processes reports exactly what 1 process reports."""
    shared, run = tmp_path / "shared", tmp_path / "run"
    _torchrun(*_args(shared, run, batch=2), *BASELINE, "train.epochs=1")
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["config"]["model"]["arch"] == "r2plus1d_18" and ckpt["step"] == 4
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "hpnet.evaluate", "--checkpoint", str(run / "last.pt"),
          "--out", str(one)])  # fmt: skip
    _torchrun("-m", "hpnet.evaluate", "--checkpoint", str(run / "last.pt"), "--out", str(two))
    a = json.loads((one / "eval.json").read_text())
    b = json.loads((two / "eval.json").read_text())
    assert a["num_videos"] == b["num_videos"] == 6
    assert b["per_class"] == a["per_class"] and b["top1"] == pytest.approx(a["top1"])


# Run by torchrun: a BatchNorm whose statistics each rank updated on its own data (as after the
# last DDP forward of an epoch); writes each rank's running mean before and after
# hpnet.distributed.broadcast_buffers.
BUFFERS = r"""
import json, sys, torch, torch.distributed as dist
from hpnet.distributed import broadcast_buffers

dist.init_process_group("gloo")
rank = dist.get_rank()
bn = torch.nn.BatchNorm1d(3)
bn(torch.randn(8, 3) + 10 * rank)
before = bn.running_mean.tolist()
broadcast_buffers(bn)
row = {"rank": rank, "before": before, "after": bn.running_mean.tolist(),
       "batches": int(bn.num_batches_tracked)}
open(f"{sys.argv[1]}/rank{rank}.json", "w").write(json.dumps(row))
dist.destroy_process_group()
"""


@pytest.mark.slow  # (~9 s: two gloo processes; the default suite keeps to its budget)
def test_broadcast_buffers_gives_every_process_rank_0s_batchnorm_statistics(tmp_path):
    script = tmp_path / "buffers.py"
    script.write_text(BUFFERS)
    _torchrun(str(script), str(tmp_path))
    rows = _rank_rows(tmp_path)
    assert rows[0]["before"] != rows[1]["before"]  # each forward updated its own statistics
    assert rows[0]["after"] == rows[1]["after"] == rows[0]["before"]
    assert rows[0]["batches"] == rows[1]["batches"] == 1


@pytest.mark.slow  # (~15 s: two gloo processes, and torchrun's 5 s monitor)
def test_a_refusal_of_the_main_process_alone_stops_every_process_in_one_line(tmp_path):
    """Only the main process takes the run folder's lock: when another run holds it, the other
    process stops with the same one-line refusal, not in its first collective (a Gloo
    "Connection closed by peer" traceback once torchrun is slower to stop it than it is)."""
    from hpnet.run_lock import run_folder_lock

    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    with run_folder_lock(out):  # another live run
        proc = subprocess.run(
            [sys.executable, *TORCHRUN, "--monitor-interval=5", *_args(tmp_path, out, batch=2)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert said.count("hpnet: error: another run is writing to") == 2, said[-3000:]
    assert "Connection closed by peer" not in said and f"{REPO / 'hpnet'}" not in said


@pytest.mark.slow  # (~10 s: two gloo processes, and torchrun's 5 s monitor)
def test_a_splits_refusal_under_torchrun_stops_every_process_in_one_line(tmp_path):
    """``--splits`` checks every split before any process waits for the others: split lists
    missing for the dataset stop both processes with the one-line refusal (exit code 2 each;
    torchrun itself exits 1 with its summary of the failed workers), none in a collective."""
    root, out = tmp_path / "ucf101", tmp_path / "runs"
    root.mkdir()  # the videos' folder, without the official ucfTrainTestlist files
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, *TORCHRUN, "--monitor-interval=5", "-m", "hpnet.train",
         "data.dataset=ucf101", f"data.root={root}", "train.device=cpu",
         f"train.out_dir={out}", "--splits", "1,2,3"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert said.count("hpnet: error: UCF101 class index not found") == 2, said[-3000:]
    exits = re.findall(r"rank\s*:\s*(\d+).*\n\s*exitcode\s*:\s*(\d+)", said)  # torchrun's
    assert sorted(exits) == [("0", "2"), ("1", "2")], said[-3000:]  # summary, rank by rank
    assert "Connection closed" not in said and f"{REPO / 'hpnet'}" not in said
    assert not out.exists()  # refused before any split's run folder


PER_RANK = """
import os, sys
from pathlib import Path

rank = os.environ["RANK"]
if os.environ.get("PER_RANK_CWD"):  # two "machines": train.out_dir on a disk of each its own
    here = Path(os.environ["PER_RANK_CWD"]) / f"machine{rank}"
    here.mkdir(parents=True, exist_ok=True)
    os.chdir(here)
extra = os.environ.get("RANK1_EXTRA", "").split() if rank == "1" else []
sys.argv = ["hpnet.train", *sys.argv[1:], *extra]
from hpnet.train import cli

cli()
"""


@pytest.mark.slow  # (~25 s: two torchrun launches of two gloo processes)
def test_processes_that_disagree_are_refused_not_left_waiting(tmp_path):
    """Each process decides what to resume on its own: a train.out_dir only one machine sees
    had one process resume and the other start afresh, then both waited in their first
    collective forever; a config edited on one machine trained one model with mixed settings.
    Both are refused on every process, naming what differs."""
    script = tmp_path / "per_rank.py"
    script.write_text(PER_RANK)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    (tmp_path / "machine0" / "run").mkdir(parents=True)
    (tmp_path / "machine0" / "run" / "last.pt").write_bytes(b"x")  # on machine 0 only
    args = [a for a in _args(tmp_path, Path("run"), batch=2)[2:] if a != "train.resume="]
    cases = (
        ({"PER_RANK_CWD": str(tmp_path)}, ["train.resume=auto"],
         "the checkpoint the run continues is 'run/last.pt (1 bytes)' on process 0, 'none (a "
         "fresh run)' on process 1: train.out_dir must be one folder every process sees"),
        ({"RANK1_EXTRA": "train.lr=0.01 data.workers=1 eval.batch_size=2"}, [],  # (per machine)
         "train.lr is 0.001 on process 0, 0.01 on process 1: every process must be given the "
         "same config"),
    )  # fmt: skip
    for extra_env, extra, expected in cases:
        proc = subprocess.run(
            [sys.executable, *TORCHRUN, "--monitor-interval=5", str(script), *args, *extra],
            cwd=REPO, env={**env, **extra_env}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        said = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert said.count(f"hpnet: error: the processes of this run disagree: {expected}") == 2, (
            said[-3000:]
        )
    assert not (tmp_path / "run").exists()
    # a refusal of one process alone (a fresh run into a folder holding a last.pt, only on
    # machine 0) is every process's, not a Gloo traceback on the others
    proc = subprocess.run(
        [sys.executable, *TORCHRUN, "--monitor-interval=5", str(script), *args, "train.resume="],
        cwd=REPO, env={**env, "PER_RANK_CWD": str(tmp_path)}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Connection closed" not in said, said[-3000:]
    assert "hpnet: error: run/last.pt exists" in said
    assert "hpnet: error: process 0 refused: run/last.pt exists" in said


def test_a_process_group_that_cannot_form_is_said(monkeypatch):
    from hpnet.cli import UserError
    from hpnet.distributed import DistInfo, check_same_everywhere, init_distributed

    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")  # left in the shell by another job
    with pytest.raises(UserError, match=r"WORLD_SIZE=2 is set but not RANK, MASTER_ADDR, MAS"):
        init_distributed("cpu")
    monkeypatch.setattr(
        "hpnet.distributed.gather_objects", lambda values: [values, {**values, "b": 3, "c": 4}]
    )
    with pytest.raises(UserError, match=r"disagree: b is 2 on process 0, 3 on process 1; c is "
                       r"None on process 0, 4 on process 1: fix it"):  # fmt: skip
        check_same_everywhere(DistInfo(0, 2), {"a": 1, "b": 2}, "fix it")
    check_same_everywhere(DistInfo(), {"a": 1}, "one process: nothing to compare")

    from hpnet.distributed import refused_together

    monkeypatch.setattr("hpnet.distributed.gather_objects", lambda own: ["no such file", own])
    refused = pytest.raises(UserError, match=r"^process 0 refused: no such file$")
    with refused, refused_together(DistInfo(1, 2)):
        pass  # (this process had nothing to refuse)
    with pytest.raises(UserError, match=r"^mine$"), refused_together(DistInfo(1, 2)):
        raise UserError("mine")  # its own refusal, after the others heard
    monkeypatch.setattr("hpnet.distributed.gather_objects", lambda own: ["", own])
    with refused_together(DistInfo(1, 2)):
        pass  # nobody refused


ONE_PROCESS_COMMANDS = [
    ["hpnet.predict", "a.mp4", "--checkpoint", "x.pt"],
    ["hpnet.export", "--checkpoint", "x.pt", "--out", "m.onnx"],
    ["hpnet.zeroshot", "a.mp4", "--labels", "a,b"],
    ["hpnet.compare", "runs"],
]


@pytest.mark.parametrize("command", ONE_PROCESS_COMMANDS)
def test_commands_of_one_process_refuse_torchrun(command, monkeypatch, tmp_path):
    """predict / export / zero-shot on files did their whole work in every process (two JSON
    documents on one stdout)."""
    import importlib

    from hpnet.cli import UserError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    main = importlib.import_module(command[0]).main
    with pytest.raises(UserError, match=r"runs in one process \(WORLD_SIZE=2\): start it with"):
        main(command[1:])


def test_a_process_group_slow_to_form_is_said(monkeypatch, capsys):
    """A plain run in a shell holding another job's WORLD_SIZE, RANK and MASTER_*: it waits for
    processes that never come; after a while it says so, and how to stop it."""
    import time

    import hpnet.distributed as distributed

    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "10.0.0.9")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setattr(distributed, "WAIT_NOTE_S", 0.05)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: time.sleep(0.5))
    assert distributed.init_distributed("cpu").world_size == 2
    said = capsys.readouterr().err
    assert "process 0 has waited 0 s for the other processes of WORLD_SIZE=2 at 10.0.0.9:29500" in (
        said
    )
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: None)
    distributed.init_distributed("cpu")  # formed at once: nothing said
    time.sleep(0.2)
    assert capsys.readouterr().err == ""
