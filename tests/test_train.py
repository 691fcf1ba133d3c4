"""The training command end to end on tiny synthetic data: run folder, resume, guards, configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from crash import assert_same_weights, crash_after_saves

from hpnet import engine, run_folder
from hpnet import train as hpnet_train
from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.distributed import DistInfo
from hpnet.resume import CheckpointClock
from hpnet.train import main

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], out: Path, *extra: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main([*args, f"train.out_dir={out}", *extra])


def test_tensorboard_missing_is_said_before_the_run_folder_is_made(
    tiny_args, tmp_path, monkeypatch
):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    with pytest.raises(UserError, match=r"pip install 'hpnet\[tensorboard\]'"):
        _run(tiny_args, tmp_path / "run", "train.tensorboard=true")
    assert not (tmp_path / "run").exists()  # (it was made, with config.yaml, before the error)


def test_two_step_run_writes_the_run_folder(tiny_args, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(tiny_args, out, "train.max_steps=2", "train.epochs=1", "eval.views=2") == 0
    # max_steps also caps the evaluation: 2 batches of 4 test videos
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "best.pt", "eval.json"):
        assert (out / name).is_file(), name
    assert (out / "confusion_matrix.csv").is_file() and (out / "confusion_matrix.png").is_file()
    report = json.loads((out / "eval.json").read_text())
    assert set(report) >= {"top1", "top5", "mean_class_acc", "per_class", "num_videos", "views"}
    assert 0 <= report["top1"] <= report["top5"] <= 1
    assert report["views"] == 2
    assert report["setup"] == {  # what model scored it (a baseline's eval.json said nothing)
        "model.arch": "lsvit", "model.pose": True, "model.text": True, "model.pretrained": "",
        "data.val_fraction": 0.0,
    }  # fmt: skip
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in lines] == ["train", "test"]
    assert lines[0]["clips"] == 8  # 2 steps x batch 4
    ckpt = torch.load(out / "last.pt", weights_only=True)  # plain values only
    assert ckpt["epoch"] == 1 and ckpt["config"]["data"]["frames"] == 4
    printed = capsys.readouterr().out
    assert "test top-1" in printed and "run folder" in printed
    # what it trains on, said at the start (counts: only at the end, the test's)
    assert printed.splitlines()[0].startswith("data: 16 train / 8 test videos, ")
    assert printed.splitlines()[0].endswith(" classes; 2 steps an epoch")

    from hpnet.evaluate import main as evaluate_main

    again = tmp_path / "again"
    assert evaluate_main(["--checkpoint", str(out / "last.pt"), "--out", str(again)]) == 0
    rerun = json.loads((again / "eval.json").read_text())
    assert rerun["num_videos"] == 8 and rerun["views"] == 2 * 1  # eval.views=2 x eval.crops=1
    for extra, videos in (([], 8), (["train.max_steps=1"], 2)):  # 4 batches of 2 unless capped
        args = ["--checkpoint", str(out / "last.pt"), "eval.batch_size=2"]  # options between
        assert evaluate_main([*args, "--out", str(tmp_path / "b2"), *extra]) == 0
        b2 = json.loads((tmp_path / "b2" / "eval.json").read_text())
        assert b2["num_videos"] == videos and b2["test_videos"] == 8
        assert b2.get("max_steps") == (1 if extra else None)  # (recorded when it cut the test)
    assert (again / "confusion_matrix.png").is_file()
    with pytest.raises(UserError, match=r"does not fit this config: data\.frames=4 -> 8"):
        evaluate_main(["--checkpoint", str(out / "last.pt"), "data.frames=8"])
    # another model with the same weights (the head would read another feature): refused too;
    # a key that acts only in training is no other model
    with pytest.raises(UserError, match=r"does not fit this config: model\.pool=cls -> mean"):
        evaluate_main(["--checkpoint", str(out / "last.pt"), "model.pool=mean"])
    with pytest.raises(UserError, match=r"does not fit this config: model\.arch=lsvit -> r3d_18"):
        evaluate_main(["--checkpoint", str(out / "last.pt"), "model.arch=r3d_18"])  # (not feedback)
    args = ["--checkpoint", str(out / "last.pt"), "--out", str(tmp_path / "d")]
    assert evaluate_main([*args, "model.dropout=0.5", "model.drop_path=0.3"]) == 0


def test_refuses_to_overwrite_a_run(tiny_args, tmp_path):
    out = tmp_path / "run"
    _run(tiny_args, out, "train.max_steps=1", "train.epochs=1", "train.resume=")
    with pytest.raises(UserError, match=r"train\.resume=auto"):
        _run(tiny_args, out, "train.max_steps=1", "train.epochs=1", "train.resume=")


def test_a_checkpoint_is_not_continued_into_another_runs_folder(tiny_args, tmp_path):
    """``train.resume=PATH`` into a folder holding another run would overwrite its last.pt and
    config and mix its metrics rows with the checkpoint's: refused; into its own folder (named
    by path) or a new one it continues."""
    first, second = tmp_path / "first", tmp_path / "second"
    one_step = ["train.max_steps=1", "train.epochs=1", "eval.views=1"]
    _run(tiny_args, first, *one_step, "train.resume=")
    _run(tiny_args, second, *one_step, "train.resume=", "train.lr=0.01")
    before = (second / "last.pt").read_bytes()
    with pytest.raises(UserError, match=rf"train\.out_dir={second} holds another run \(last\.pt"):
        _run(tiny_args, second, *one_step, f"train.resume={first / 'last.pt'}")
    assert (second / "last.pt").read_bytes() == before
    own = [*one_step, f"train.resume={first / 'last.pt'}"]
    assert _run(tiny_args, first, *own) == 0  # its own folder: nothing more to train
    third = tmp_path / "third"
    assert _run(tiny_args, third, *own[:-2], "train.epochs=2", own[-1]) == 0
    records = [json.loads(line) for line in (third / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "train"] == [2]


def test_a_checkpoint_in_an_epoch_past_train_epochs_is_refused(tiny_args, tmp_path):
    """A mid-epoch last.pt has begun its epoch: lowering train.epochs to the epochs before it
    would test weights partway into an epoch the run says it never trained."""
    out = tmp_path / "run"
    _run(tiny_args, out, "train.max_steps=1", "train.epochs=1", "eval.views=1", "train.resume=")
    ckpt = torch.load(out / "last.pt", weights_only=False)
    ckpt["progress"] = {"world_size": 1, "batch_size": ckpt["config"]["train"]["batch_size"],
                        "epoch": {"batches": 1, "steps": 1}}  # fmt: skip
    torch.save(ckpt, out / "last.pt")  # as if killed one step into epoch 2
    with pytest.raises(UserError, match=r"it has begun epoch 2, more than train\.epochs=1"):
        _run(tiny_args, out, "train.max_steps=1", "train.epochs=1", "train.resume=auto")


def test_resume_with_another_model_shape_is_refused(tiny_args, tmp_path, monkeypatch):
    """Before the data and the model are built (a minute's loading on a real dataset)."""
    from hpnet import train

    out = tmp_path / "run"
    _run(tiny_args, out, "train.max_steps=1", "train.epochs=1", "train.resume=")
    with monkeypatch.context() as patch:
        patch.setattr(train, "build_run_datasets", lambda *a, **k: pytest.fail("data built"))
        with pytest.raises(UserError, match=r"it used data\.frames=4, this run has 8"):
            _run(tiny_args, out, "train.max_steps=1", "train.resume=auto", "data.frames=8")


def test_the_early_resume_check_leaves_quick_gelu_auto_to_the_model(tmp_path):
    """text.quick_gelu=auto is decided (and recorded) as the model is built: before that, a
    checkpoint that recorded 'true' is no change; anything else is."""
    from hpnet.checkpoint import FORMAT_VERSION
    from hpnet.config import config_to_dict, load_config
    from hpnet.distributed import DistInfo
    from hpnet.resume import check_resume_early

    saved = config_to_dict(load_config(None, ["text.quick_gelu=true"]))
    path = tmp_path / "last.pt"
    torch.save({"format": FORMAT_VERSION, "config": saved, "epoch": 1}, path)
    one = DistInfo()
    check_resume_early(path, load_config(None, []), one, classifier=True)  # auto: undecided
    with pytest.raises(UserError, match=r"it used text\.quick_gelu=true, this run has false"):
        check_resume_early(path, load_config(None, ["text.quick_gelu=false"]), one, classifier=True)


def test_another_runs_finished_checkpoint_needs_epochs_left_to_continue(tiny_args, tmp_path):
    """Its folder would get a test and an eval.json naming a last.pt that is not there."""
    out, other = tmp_path / "run", tmp_path / "other"
    _run(tiny_args, out, "train.max_steps=1", "train.epochs=1", "train.resume=")
    resume = [f"train.resume={out / 'last.pt'}", "train.max_steps=1"]
    with pytest.raises(UserError, match=r"has trained 1 epoch \(train\.epochs=1 trains none"):
        _run(tiny_args, other, *resume, "train.epochs=1")
    assert not other.exists()  # the folder it made for the run is gone again
    with pytest.raises(UserError, match=r"has trained 1 epoch"):  # and every folder it made
        _run(tiny_args, tmp_path / "deep" / "er", *resume, "train.epochs=1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    (tmp_path / "mine").mkdir()  # a folder of the user's, reached through .. of a new one
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a" / "b")  # and .. of a link: a/, not ./
    for out_dir in (tmp_path / "new" / ".." / "mine" / "run", tmp_path / "link" / ".." / "c"):
        with pytest.raises(UserError, match=r"has trained 1 epoch"):
            _run(tiny_args, out_dir, *resume, "train.epochs=1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "link", "mine", "run"]
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b"]
    assert not any((tmp_path / "mine").iterdir())
    other.mkdir()  # a folder that was there before the run stays
    with pytest.raises(UserError, match=r"has trained 1 epoch"):
        _run(tiny_args, other, *resume, "train.epochs=1")
    assert [p.name for p in other.iterdir()] == [".lock"]


def test_an_epoch_whose_every_video_failed_to_decode_stops_the_run(
    tiny_args, tmp_path, monkeypatch
):
    """Nothing was learned: an error before last.pt is written, not a run that goes on."""

    def nothing_decoded(run, epoch, *args, **kwargs):
        return {"clips": 0, "skipped": 3, "steps": 0, "loss": 0.0, "acc": 0.0}

    monkeypatch.setattr(hpnet_train, "run_epoch", nothing_decoded)
    with pytest.raises(UserError, match=r"epoch 1: all 3 videos it read failed to decode"):
        _run(tiny_args, tmp_path / "run", "train.epochs=1")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_under_torchrun_a_failed_collective_still_says_which_checkpoint_is_kept(tmp_path, capsys):
    """Another process died: the main one fails in a collective (a RuntimeError), and is told,
    as on Ctrl-C, that last.pt is kept; one process's RuntimeError is a bug, not a note."""
    from hpnet.data.decode_errors import VideoDecodeError
    from hpnet.distributed import DistInfo
    from hpnet.run_folder import interrupt_note

    (tmp_path / "last.pt").write_bytes(b"")
    cases = [  # a rerun would meet a bad video or the memory limit again: no note
        (2, RuntimeError("Connection closed by peer"), True),
        (1, RuntimeError("Connection closed by peer"), False),
        (2, VideoDecodeError("x.mp4", "no video stream"), False),
        (2, torch.OutOfMemoryError("CUDA out of memory"), False),
    ]
    for world, error, noted in cases:
        with pytest.raises(RuntimeError), interrupt_note(tmp_path, DistInfo(0, world)):
            raise error
        said = capsys.readouterr().err
        assert ("last.pt is kept: run the same command with train.resume=auto" in said) == noted
    # the main process alone says it, and only of a last.pt there is
    for folder, rank in ((tmp_path, 1), (tmp_path / "empty", 0)):
        with pytest.raises(RuntimeError), interrupt_note(folder, DistInfo(rank, 2)):
            raise RuntimeError("Connection closed by peer")
        assert capsys.readouterr().err == ""


def test_what_the_other_processes_say_when_the_main_one_failed():
    from hpnet.distributed import DistInfo, _said, main_only
    from hpnet.epoch_report import check_epoch_learned

    assert _said(UserError("refused")) == "refused"
    assert _said(ValueError("x")) == "process 0 stopped (ValueError: x); its traceback says where"
    assert main_only(DistInfo(), lambda a, b=0: a + b, 1, b=2) == 3  # one process: just runs
    check_epoch_learned({"clips": 0, "skipped": 0}, 0)  # an empty epoch: nothing failed


def test_resume_with_other_videos_is_refused(tiny_args, tmp_path):
    """The keys that choose the training and test videos (split, seeds of hold-outs and of the
    synthetic data) cannot change on resume: the run would train on its old test videos."""
    out = tmp_path / "run"
    _run(tiny_args, out, "train.max_steps=1", "train.epochs=1", "train.resume=")
    for key, then, now in [("data.split", 1, 2), ("data.test_fraction", 0.3, 0.5)]:
        with pytest.raises(UserError, match=rf"it used {key}={then}, this run has {now}"):
            _run(tiny_args, out, "train.max_steps=1", "train.resume=auto", f"{key}={now}")


def test_resume_refuses_any_other_experiment_and_takes_where_and_when(tiny_args, tmp_path):
    """Only where the files are, how it runs and reports, and when it stops may change on
    resume: another augmentation, regulariser, loss or synthetic set would make the rest of
    the run another experiment (bench scripts reusing finished runs reported stale numbers)."""
    out = tmp_path / "run"
    _run(tiny_args, out, "train.max_steps=1", "train.epochs=1", "train.resume=")
    for override in [
        "data.synthetic.train_videos=20",
        "model.drop_path=0.5",
        "train.label_smoothing=0",
        "data.augment.flip=false",
        "train.warmup_epochs=1",
        "train.max_steps=2",  # the steps of every epoch, which the schedule counts
    ]:
        key = override.split("=")[0].replace(".", r"\.")
        with pytest.raises(UserError, match=rf"cannot resume .*it used {key}="):
            _run(tiny_args, out, "train.max_steps=1", "train.resume=auto", override)
    with pytest.raises(
        UserError, match=r"used model\.drop_path=.* \(and train\.clip_grad\)"
    ) as err:
        _run(
            tiny_args, out, "train.resume=auto", "train.max_steps=1", "model.drop_path=0.5",
            "train.clip_grad=3",
        )  # fmt: skip
    assert str(err.value).endswith(  # (a value may come from the config file: not "drop")
        "(set them as the run had them, from an override or the config file (the run's "
        "config.yaml holds them all), or start a new run in another train.out_dir)"
    )
    config = (out / "config.yaml").read_text()
    assert "drop_path: 0.5" not in config  # a refused resume leaves the run's config as it was
    resumed = [
        "train.resume=auto", "train.epochs=2", "train.max_steps=1", "data.workers=0",
        "eval.views=1", "train.checkpoint_steps=1", f"text.cache_dir={tmp_path / 'text'}",
    ]  # fmt: skip
    assert _run(tiny_args, out, *resumed) == 0
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
    with pytest.raises(UserError, match=r"has trained 2 epochs, more than train\.epochs=1"):
        _run(tiny_args, out, *resumed, "train.epochs=1")


def test_resume_from_a_run_folder_names_its_last_pt(tmp_path):
    from hpnet.resume_from import resume_path

    cfg = load_config(None, [f"train.resume={tmp_path}"])
    with pytest.raises(UserError, match=r"train\.resume=.* is a folder: give .*/last\.pt"):
        resume_path(cfg, tmp_path / "out")
    cfg = load_config(None, ["train.resume=yes"])  # not a file: the values that are no files
    with pytest.raises(UserError, match=r"=yes: no such checkpoint file \(train\.resume=auto"):
        resume_path(cfg, tmp_path / "out")


def test_a_folder_that_continues_a_checkpoint_is_resumed_by_the_same_setting(tmp_path):
    """``train.resume=A/last.pt train.out_dir=B``, once B holds a last.pt of its own (the run was
    stopped), again or from ``--config B/config.yaml``: B's last.pt (it was refused as
    "another run"); a folder another run wrote is still refused."""
    from hpnet.config import save_config
    from hpnet.resume_from import resume_path

    first, second = tmp_path / "a" / "last.pt", tmp_path / "b"
    first.parent.mkdir()
    second.mkdir()
    first.write_bytes(b"x")
    cfg = load_config(None, [f"train.resume={first}", f"train.out_dir={second}"])
    assert resume_path(cfg, second) == first  # (nothing in b yet)
    save_config(cfg, second / "config.yaml")
    (second / "last.pt").write_bytes(b"y")
    assert resume_path(cfg, second) == second / "last.pt"
    (first.parent / "other.pt").write_bytes(b"z")  # another checkpoint named there: no
    other = load_config(None, [f"train.resume={first.parent / 'other.pt'}"])
    with pytest.raises(UserError, match="holds another run"):
        resume_path(other, second)
    (second / "last.pt").unlink()  # (nothing of its own to resume yet: the given file)
    assert resume_path(cfg, second) == first
    (second / "last.pt").write_bytes(b"y")
    save_config(load_config(None, ["train.resume=auto"]), second / "config.yaml")
    with pytest.raises(UserError, match="holds another run"):
        resume_path(cfg, second)


def test_what_a_resume_may_change():
    from hpnet.config import config_to_dict
    from hpnet.resume import resume_changes

    b = '{"name": "b", "dataset": "folder"}'
    joint = f'[{{"name": "a", "root": "/a", "workers": 1}}, {b}]'
    base = ["model.pretrained=/old/clip.pt", f"data.joint={joint}", "train.amp=bf16"]
    saved = config_to_dict(load_config(None, base))
    moved = f'[{{"name": "a", "root": "/new/a", "workers": 4, "decoder": "pyav"}}, {b}]'
    same = ["model.pretrained=/new/clip.pt", f"data.joint={moved}", "train.amp=fp16"]
    assert resume_changes(saved, load_config(None, same)) == []
    none = load_config(None, [*base, "model.pretrained="])  # fewer optimizer groups
    assert [k for k, _, _ in resume_changes(saved, none)] == ["model.pretrained"]
    moved_text = load_config(None, [*same, "text.pretrained=/elsewhere/clip.pt"])
    assert resume_changes(saved, moved_text) == []  # saved: the default tag 'openai'
    random_text = load_config(None, [*same, "text.pretrained="])  # other class embeddings
    assert [k for k, _, _ in resume_changes(saved, random_text)] == ["text.pretrained"]
    no_text = load_config(None, [*same, "text.pretrained=", "model.text=false"])
    assert [k for k, _, _ in resume_changes(saved, no_text)] == ["model.text"]  # not read then
    other_tag = load_config(None, [*same, "text.pretrained=laion2b_s34b_b88k"])  # other weights
    assert [k for k, _, _ in resume_changes(saved, other_tag)] == ["text.pretrained"]
    unread = load_config(None, [*same, "model.depth=18"])  # LS-ViT reads no model.depth
    assert resume_changes(saved, unread) == []
    seeded = f'[{{"name": "a", "root": "/a", "seed": 3}}, {b}]'
    other = load_config(None, [*base, f"data.joint={seeded}"])
    assert [k for k, _, _ in resume_changes(saved, other)] == ["data.joint"]
    # a key the checkpoint predates ran with its default: compared as that
    older = {**saved, "train": {k: v for k, v in saved["train"].items() if k != "base_batch"}}
    assert resume_changes(older, load_config(None, base)) == []
    scaled = load_config(None, [*base, "train.base_batch=256"])
    assert resume_changes(older, scaled) == [("train.base_batch", 0, 256)]


def test_resume_with_another_optimizer_setting_or_batch_is_refused(tiny_args, tmp_path):
    """The saved optimizer and schedule come back as saved: a new train.lr (weight decay,
    betas, ...) would be recorded in config.yaml but not used, and another batch size or
    process count would run the schedule's step count against another total."""
    out = tmp_path / "run"
    _run(tiny_args, out, "train.max_steps=1", "train.epochs=1", "train.resume=")
    lr = load_config(tiny_args[1], tiny_args[2:]).train.lr
    for key, now in [("train.lr", lr * 10), ("train.batch_size", 2), ("train.betas", "[0.9,0.95]")]:
        with pytest.raises(UserError, match=rf"it used {key}=.*start a new run"):
            _run(tiny_args, out, "train.max_steps=1", "train.resume=auto", f"{key}={now}")
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["world_size"] == 1
    ckpt["world_size"] = 2  # as if written by two processes
    torch.save(ckpt, out / "last.pt")
    with pytest.raises(UserError, match=r"it ran 2 process\(es\), this run has 1"):
        _run(tiny_args, out, "train.max_steps=1", "train.resume=auto", "train.epochs=2")


def test_confusion_csv_is_utf8_in_any_locale(tmp_path):
    """Class names outside ASCII are written as UTF-8 even where the locale's encoding is
    ASCII (it used to fail at the end of training, after the run's last epoch)."""
    code = (  # the name escaped: argv is ASCII in the C locale
        "import sys; from pathlib import Path; from hpnet.metrics import save_confusion; "
        "save_confusion([[1, 0], [0, 1]], ['caf\\u00e9', 'jump'], Path(sys.argv[1]))"
    )
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, check=True)
    text = (tmp_path / "confusion_matrix.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "true \\ predicted,café,jump"


def test_resume_gives_the_same_weights(tiny_args, tmp_path, monkeypatch):
    """Crash after epoch 1, resume with train.resume=auto: same final weights as no crash."""
    whole = tmp_path / "whole"
    _run(tiny_args, whole)

    crashed = tmp_path / "crashed"
    real = engine.train_one_epoch
    calls = {"n": 0}

    def crash_in_second_epoch(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the process dies here; last.pt holds epoch 1
        return real(*a, **kw)

    monkeypatch.setattr("hpnet.epoch_run.train_one_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_args, crashed)
    assert torch.load(crashed / "last.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr("hpnet.epoch_run.train_one_epoch", real)
    _run(tiny_args, crashed, "train.resume=auto")

    a = torch.load(whole / "last.pt", weights_only=True)
    b = torch.load(crashed / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"]
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=0, atol=1e-6, msg=name)


def test_a_run_killed_between_its_best_and_last_writes_keeps_its_best(
    tiny_args, tmp_path, monkeypatch
):
    """Killed just after an epoch's first checkpoint write: the rerun's best.pt is the one an
    uninterrupted run writes (before, last.pt came first and best.pt was never written)."""
    whole = tmp_path / "whole"
    _run(tiny_args, whole, "train.epochs=1")
    crashed = tmp_path / "crashed"
    crash_after_saves(monkeypatch, hpnet_train, 1)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_args, crashed, "train.epochs=1")
    monkeypatch.undo()
    leftovers = [crashed / "config.yaml.4000001.tmp", crashed / "eval.json.4000002.tmp"]
    for leftover in leftovers:  # what writes killed at other moments leave
        leftover.write_text("half")
    assert _run(tiny_args, crashed, "train.epochs=1", "train.resume=auto") == 0
    first, second = assert_same_weights(whole / "best.pt", crashed / "best.pt")
    assert first["epoch"] == second["epoch"] == 1 and second["best_top1"] == first["best_top1"]
    rows = [_metric_rows(run) for run in (whole, crashed)]  # the killed run's row not repeated
    assert rows[0] == rows[1] == [("train", 1), ("test", None)]
    assert not any(leftover.exists() for leftover in leftovers)


def test_a_run_killed_in_an_epochs_test_resumes_with_that_test(tiny_args, tmp_path, monkeypatch):
    """last.pt is written before an epoch's test too: a run killed in epoch 2's test resumes
    with that test, without training epoch 2 again, and ends as an uninterrupted run."""
    whole = tmp_path / "whole"
    _run(tiny_args, whole)
    killed = tmp_path / "killed"
    real_test = hpnet_train.evaluate_epoch
    tests = []

    def killed_in_the_second_test(*args, **kwargs):
        tests.append(1)
        if len(tests) == 2:
            raise KeyboardInterrupt
        return real_test(*args, **kwargs)

    monkeypatch.setattr(hpnet_train, "evaluate_epoch", killed_in_the_second_test)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_args, killed)
    monkeypatch.undo()
    trained = []
    real_epoch = engine.train_one_epoch
    monkeypatch.setattr(
        "hpnet.epoch_run.train_one_epoch", lambda *a, **k: trained.append(1) or real_epoch(*a, **k)
    )
    _run(tiny_args, killed, "train.resume=auto")
    assert trained == []  # epoch 2 was kept, only its test redone
    for name in ("last.pt", "best.pt"):
        first, second = assert_same_weights(whole / name, killed / name)
        assert (first["epoch"], first["best_top1"]) == (second["epoch"], second["best_top1"])
    assert _metric_rows(whole) == _metric_rows(killed)
    rows = [[json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            for run in (whole, killed)]  # fmt: skip
    assert [r.get("test_top1") for r in rows[0]] == [r.get("test_top1") for r in rows[1]]


def _metric_rows(run: Path) -> list[tuple[str, int | None]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["type"], r.get("epoch")) for r in map(json.loads, lines)]


def test_the_confusion_matrix_is_written_before_the_report(tmp_path, monkeypatch):
    """eval.json last: a run killed while writing the confusion matrix has no report, so a
    rerun of --splits does not take the evaluation for finished."""
    from hpnet import eval_report as evaluate

    report = {"top1": 1.0, "confusion": [[1, 0], [0, 1]]}

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "save_confusion", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate.write_report(report, ["a", "b"], tmp_path)
    assert not (tmp_path / "eval.json").exists()
    monkeypatch.undo()
    evaluate.write_report(report, ["a", "b"], tmp_path, [("x", [[2]], ["c"])])
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"eval.json", *(f"confusion_matrix{s}" for s in (".csv", ".png", "-x.csv",
                                                                      "-x.png"))}  # fmt: skip


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_resume_on_cuda(tiny_args, tmp_path, amp, capsys):
    """last.pt of a CUDA run (RNG states, optimizer, GradScaler) resumes on CUDA."""
    out = tmp_path / "run"
    cuda = ["train.device=cuda", f"train.amp={amp}", "train.resume=auto"]
    assert _run(tiny_args, out, *cuda, "train.epochs=1") == 0
    assert _run(tiny_args, out, *cuda, "train.epochs=2") == 0
    assert "resumed from" in capsys.readouterr().out
    assert torch.load(out / "last.pt", map_location="cpu", weights_only=True)["epoch"] == 2


def _same_weights(a: dict, b: dict) -> None:
    assert a["epoch"] == b["epoch"] and a["step"] == b["step"]
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=0, atol=1e-6, msg=name)


OTHER_OPTIONS = ["train.optimizer=sgd", "train.schedule=exponential", "train.lr_gamma=0.5",
                 "data.val_fraction=0.2", "data.synthetic.train_videos=20",
                 "data.synthetic.actions=[wave,kick,jump,bow]"]  # fmt: skip


@pytest.mark.parametrize(
    "options", [[], pytest.param(OTHER_OPTIONS, marks=pytest.mark.slow, id="sgd-exp-val")]
)
def test_mid_epoch_resume_gives_the_same_weights_and_metrics(
    tiny_args, tmp_path, monkeypatch, options
):
    """last.pt every optimizer step; crash in the middle of epoch 2, resume: same weights, same
    metrics.jsonl (the half-finished epoch is logged once), same epoch loss. Also with SGD, the
    exponential schedule and a validation split (20 - 4 = 16 clips left to train on)."""
    every = ["train.checkpoint_steps=1", "data.augment.jitter=0.3", "model.drop_path=0.2"]
    every += options
    whole = tmp_path / "whole"
    _run(tiny_args, whole, *every)

    crashed = tmp_path / "crashed"
    real = hpnet_train.atomic_save
    saves: list[dict] = []

    def crash_after_the_sixth_save(obj, path):
        real(obj, path)
        saves.append(obj)
        if len(saves) == 6:  # epoch 1: 3 mid-epoch, 1 before its test, 1 end; 2: batch 1
            raise KeyboardInterrupt

    monkeypatch.setattr(hpnet_train, "atomic_save", crash_after_the_sixth_save)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_args, crashed, *every)
    ckpt = torch.load(crashed / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["progress"]["epoch"]["batches"] == 1
    assert ckpt["progress"]["world_size"] == 1 and ckpt["progress"]["batch_size"] == 4
    with (crashed / "metrics.jsonl").open("a") as f:
        f.write('{"type": "train", "epoch": 2, "lo')  # what a kill mid-write would leave
    monkeypatch.setattr(hpnet_train, "atomic_save", real)
    _run(tiny_args, crashed, *every, "train.resume=auto")

    a = torch.load(whole / "last.pt", weights_only=True)
    b = torch.load(crashed / "last.pt", weights_only=True)
    assert a["epoch"] == 2 and a["progress"] is None and b["progress"] is None
    _same_weights(a, b)

    def records(run):
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("time", "time_s", "clips_per_s")}
                for r in rows]  # fmt: skip

    got, want = records(crashed), records(whole)
    assert [r["type"] for r in got] == ["train", "train", *["val"] * bool(options), "test"]
    for r, w in zip(got, want, strict=True):
        assert r.pop("type") == w.pop("type") and r == pytest.approx(w, rel=1e-6)


def test_mid_epoch_checkpoints_need_the_same_batch_size(tiny_args, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = hpnet_train.atomic_save

    def crash_on_the_first_save(obj, path):
        real(obj, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(hpnet_train, "atomic_save", crash_on_the_first_save)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_args, out, "train.checkpoint_steps=1")
    monkeypatch.setattr(hpnet_train, "atomic_save", real)
    with pytest.raises(UserError, match=r"mid-epoch: it ran 1 process\(es\) x batch 4"):
        _run(tiny_args, out, "train.checkpoint_steps=1", "train.resume=auto", "train.batch_size=2")


def test_checkpoint_clock():
    clock = CheckpointClock(every_steps=3, every_minutes=0)
    assert [s for s in range(1, 10) if clock.due(s)] == [3, 6, 9]
    timed = CheckpointClock(every_steps=0, every_minutes=1)
    assert not timed.due(1)
    timed.last -= 61  # a minute and a second since the last checkpoint
    assert timed.due(2)
    timed.saved()
    assert not timed.due(3)


def test_the_loop_reads_the_device_once_per_optimizer_step(tiny_args, tmp_path, monkeypatch):
    """Losses, hits and the gradient norm of every micro-batch of a step come back in one
    read (each read waits for the GPU to drain): 2 steps of 2 micro-batches, 2 reads."""
    from conftest import count_device_reads

    reads = count_device_reads(monkeypatch, engine.__file__)
    extra = ["train.max_steps=4", "train.epochs=1", "train.accum_steps=2", "train.eval_every=0"]
    assert _run(tiny_args, tmp_path / "run", *extra) == 0
    assert reads == [("engine.py", "tolist")] * 2
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    (train,) = [r for r in rows if r["type"] == "train"]
    assert train["clips"] == 16 and train["steps"] == 2 and 0 < train["loss"] < 20


def test_non_finite_loss_stops_the_run(tiny_args, tmp_path, monkeypatch):
    def nan_loss(out, labels, cfg):
        return out["logits"].sum() * float("nan")

    monkeypatch.setattr(engine, "classification_loss", nan_loss)
    with pytest.raises(engine.NonFiniteLossError, match="loss is nan"):
        _run(tiny_args, tmp_path / "nan", "train.max_steps=1", "train.epochs=1")


class _OverflowingBackward(torch.autograd.Function):
    """Adds 0 to the loss; its backward sends an infinite gradient into the logits."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor) -> torch.Tensor:
        ctx.shape = logits.shape
        return logits.sum() * 0

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return torch.full(ctx.shape, float("inf"))


@pytest.mark.parametrize("clip", ["0", "1.0"])
def test_non_finite_gradient_stops_before_the_step(tiny_args, tmp_path, monkeypatch, clip):
    """A finite loss whose backward overflows (fp32 / bf16: no GradScaler to skip the step)
    stops the run at that step; the mid-epoch last.pt of the step before keeps finite
    weights, so the run can resume from it."""
    calls = []
    loss_fn = engine.classification_loss

    def overflow_on_second_batch(out, labels, cfg):
        calls.append(1)
        loss = loss_fn(out, labels, cfg)
        return loss + _OverflowingBackward.apply(out["logits"]) if len(calls) == 2 else loss

    monkeypatch.setattr(engine, "classification_loss", overflow_on_second_batch)
    out = tmp_path / "overflow"
    message = r"gradient norm is (inf|nan) at epoch 1, batch 2"
    with pytest.raises(engine.NonFiniteLossError, match=message):
        _run(
            tiny_args, out, "train.max_steps=3", "train.epochs=1", "train.checkpoint_steps=1",
            f"train.clip_grad={clip}",
        )  # fmt: skip
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 1
    assert all(v.isfinite().all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("switch", ["model.pose=false", "model.text=false", "data.balance=loss"])
def test_switches_train(tiny_args, tmp_path, switch):
    assert _run(tiny_args, tmp_path / "run", "train.max_steps=1", "train.epochs=1", switch) == 0


def test_an_unwritable_run_file_is_a_one_line_error(tiny_args, tmp_path):
    from hpnet.atomic import WriteError

    out = tmp_path / "run"
    (out / "metrics.jsonl").mkdir(parents=True)  # a real OS error (EISDIR) on the first log
    with pytest.raises(WriteError, match=r"could not write metrics log .*metrics\.jsonl: Is a dir"):
        _run(tiny_args, out, "train.max_steps=1", "train.epochs=1")


def test_a_second_run_in_the_same_folder_is_refused_while_the_first_runs(tiny_args, tmp_path):
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as held:  # what a live run (another process) holds
        held.write("4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # flock locks belong to the open file: a second open of the same file conflicts
        with pytest.raises(UserError, match=r"another run is writing to .*run \(pid 4242\)"):
            _run(tiny_args, out, "train.max_steps=1", "train.epochs=1")
    assert not (out / "last.pt").exists()
    assert _run(tiny_args, out, "train.max_steps=1", "train.epochs=1") == 0  # lock released
    assert (out / ".lock").read_text().strip() == str(os.getpid())


def test_a_resume_while_the_run_still_writes_says_so_first(tiny_checkpoint, tmp_path):
    """train.resume=auto into a folder whose run (of 2 processes, say) is still writing: the
    run writing there is said, not first the process count its last.pt was made with."""
    import fcntl
    import shutil

    from hpnet.config import load_config
    from hpnet.distributed import DistInfo
    from hpnet.resume import check_resume_early

    out = tmp_path / "run"
    shutil.copytree(tiny_checkpoint.parent, out)
    cfg = load_config(out / "config.yaml", [f"train.out_dir={out}", "train.resume=auto"])
    with pytest.raises(UserError, match=r"it ran 1 process\(es\), this run has 2"):
        check_resume_early(out / "last.pt", cfg, DistInfo(0, 2), classifier=True)
    with open(out / ".lock", "w") as held:
        held.write("4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match=r"another run is writing to .*run \(pid 4242\)"):
            check_resume_early(out / "last.pt", cfg, DistInfo(0, 2), classifier=True)
        with pytest.raises(UserError, match=r"it ran 1 process"):  # (the others: their own)
            check_resume_early(out / "last.pt", cfg, DistInfo(1, 2), classifier=True)
    check_resume_early(out / "last.pt", cfg, DistInfo(), classifier=True)  # (free: resumes)


def test_a_probe_of_the_lock_is_no_run_holding_it(tmp_path):
    """Another command's probe (check_not_held: the lock held shared for an instant) does
    not refuse a run starting then: it retries before it says the folder is busy."""
    import fcntl
    import threading

    from hpnet.run_lock import run_folder_lock

    (tmp_path / ".lock").write_text("99999\n")  # (a long-finished run's pid)
    with open(tmp_path / ".lock", "rb") as probe:
        fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        threading.Timer(0.08, fcntl.flock, (probe, fcntl.LOCK_UN)).start()
        with run_folder_lock(tmp_path):
            assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())


def test_an_empty_first_batch_under_ddp_is_a_one_line_error(monkeypatch):
    """With nothing to stand in for it, the process stops at once (not a hang in the others'
    gradient all-reduce) and says how to find the bad videos."""
    monkeypatch.setattr(engine, "DistributedDataParallel", torch.nn.Module)  # "this is DDP"
    empty = {"video": torch.empty(0), "joints": torch.empty(0), "label": torch.empty(0)}
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(UserError, match=r"first batch failed to decode.*--check-decode all"):
        engine.train_one_epoch(
            model, [{**empty, "skipped": 4}], transform=None, optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0), scaler=None,
            loss_cfg=engine.LossConfig(), device=torch.device("cpu"), amp_dtype=None, epoch=0,
            progress=False,
        )  # fmt: skip


def test_the_stand_in_without_an_earlier_batch_is_the_first_clip_that_decodes(tiny_args):
    """What hpnet.epoch_run gives a DDP process whose first batch failed: one clip, shaped as
    the loader's, from the first training video that decodes; none decoding: the fix named."""
    from hpnet.data.loader import first_clip_batch
    from hpnet.runtime import build_run_datasets, build_run_train_loader

    cfg = load_config(tiny_args[1], tiny_args[2:])
    (data,) = build_run_datasets(cfg, test_views=1)
    batch = next(iter(build_run_train_loader([data], DistInfo())))
    stand_in = first_clip_batch(data.train)
    assert stand_in["video"].shape == (1, *batch["video"].shape[1:])
    assert stand_in["joints"].shape == (1, *batch["joints"].shape[1:])
    assert torch.equal(stand_in["video"][0], data.train[0]["video"])

    class Failing(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int):
            return None if index < 2 else data.train[0]

    assert torch.equal(first_clip_batch(Failing())["video"][0], data.train[0]["video"])
    Failing.__getitem__ = lambda self, index: None
    with pytest.raises(UserError, match=r"none of the first 3 training videos decodes"):
        first_clip_batch(Failing())


# Holds the run lock of argv[1], forks a worker that outlives it (like a DataLoader worker whose
# trainer was SIGKILLed), says "locked", then waits to be killed.
LOCK_THEN_FORK = r"""
import multiprocessing, sys, time
from hpnet.run_lock import run_folder_lock

with run_folder_lock(sys.argv[1]):
    worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
    worker.start()
    print(worker.pid, flush=True)
    time.sleep(60)
"""


def test_a_killed_runs_lock_is_free_though_its_workers_linger(tmp_path):
    import signal
    import subprocess
    import sys

    from hpnet.run_lock import run_folder_lock

    proc = subprocess.Popen(
        [sys.executable, "-c", LOCK_THEN_FORK, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    worker = int(proc.stdout.readline())
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with run_folder_lock(tmp_path):  # the worker still lives, and holds no lock
            os.kill(worker, 0)
    finally:
        os.kill(worker, signal.SIGKILL)


def test_a_warmup_as_long_as_the_run_is_reported(tiny_args, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="hpnet.runtime"):
        short = ["train.max_steps=1", "train.epochs=1"]
        _run(tiny_args, tmp_path / "a", *short)  # warmup 0.5 of 1 epoch
        said = [r for r in caplog.records if r.name == "hpnet.runtime" and "warmup" in r.message]
        assert not said
        _run(tiny_args, tmp_path / "b", *short, "train.warmup_epochs=1")
    (record,) = [r for r in caplog.records if r.name == "hpnet.runtime" and "warmup" in r.message]
    assert "never reaches train.lr" in record.getMessage()


def test_sgd_with_a_step_schedule_trains(tiny_args, tmp_path):
    out = tmp_path / "run"
    extra = ["train.optimizer=sgd", "train.schedule=step", "train.lr_gamma=0.5",
             "train.step_epochs=1", "train.warmup_epochs=0", "train.max_steps=2"]  # fmt: skip
    assert _run(tiny_args, out, *extra) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in lines if r["type"] == "train"]
    # halved after each epoch of 2 steps; a record says the rate its epoch used (it said the
    # next epoch's: 5e-4 for the first, and a last epoch's rate no step used)
    assert lrs == pytest.approx([1e-3, 1e-3 * 0.5])
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["config"]["train"]["optimizer"] == "sgd"
    assert all("momentum_buffer" in s for s in ckpt["optimizer"]["state"].values())
    with pytest.raises(UserError, match=r"it used train\.optimizer=sgd, this run has adamw"):
        _run(tiny_args, out, *extra[1:], "train.resume=auto", "train.epochs=3")


def test_a_validation_split_is_scored_apart(tiny_args, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(tiny_args, out, "data.val_fraction=0.25", "train.max_steps=2") == 0
    report = json.loads((out / "eval.json").read_text())
    # 16 clips of 11 actions: the 5 actions with 2 clips give one each to validation
    assert report["val"]["num_videos"] == 5 and report["num_videos"] == 8
    assert set(report["val"]) >= {"top1", "top5", "mean_class_acc", "per_class"}
    assert 0 <= report["val"]["top1"] <= report["val"]["top5"] <= 1
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in lines] == ["train", "train", "val", "test"]
    assert all("val_top1" in r and "test_top1" in r for r in lines[:2])
    assert lines[2]["top1"] == report["val"]["top1"] and lines[3]["top1"] == report["top1"]
    assert lines[0]["clips"] == 8  # 2 steps x batch 4 of the 11 clips left to train on
    printed = capsys.readouterr().out
    assert "val top-1" in printed and "test top-1" in printed

    from hpnet.evaluate import main as evaluate_main

    again = tmp_path / "again"
    assert evaluate_main(["--checkpoint", str(out / "last.pt"), "--out", str(again)]) == 0
    rerun = json.loads((again / "eval.json").read_text())
    assert rerun["val"]["num_videos"] == 5 and "validation top-1" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"data\.val_fraction=0\.25, this run has 0\.0"):
        _run(tiny_args, out, "train.resume=auto", "train.epochs=3")


def test_a_checkpoint_with_other_optimizer_groups_is_refused_in_one_line(tiny_args, tmp_path):
    """A run whose optimizer groups this hpnet makes otherwise (an older hpnet started it)
    is refused with the way out, not a traceback from torch."""
    out = tmp_path / "run"
    _run(tiny_args, out, "train.max_steps=1", "train.epochs=1", "train.eval_every=0")
    ckpt = torch.load(out / "last.pt", weights_only=False)
    groups = ckpt["optimizer"]["param_groups"]
    groups[0]["params"] = groups[0]["params"][:-1]  # one parameter fewer in the first group
    torch.save(ckpt, out / "last.pt")
    with pytest.raises(UserError, match=r"its optimizer state has other parameter groups"):
        _run(tiny_args, out, "train.max_steps=1", "train.epochs=2", "train.resume=auto")


@pytest.mark.parametrize("resume", ["", "auto"])
def test_a_run_that_finished_while_this_one_started_is_not_overwritten(
    tiny_args, tmp_path, monkeypatch, resume
):
    """Two commands started into one empty folder: the one that gets the folder's lock second
    finds the other's last.pt and stops (it started fresh and overwrote the run before)."""
    from hpnet.atomic import make_folder

    out = tmp_path / "run"

    def make_folder_as_the_other_run_finishes(folder, **kwargs):
        make_folder(folder, **kwargs)
        (folder / "last.pt").write_bytes(b"the other run's")

    monkeypatch.setattr(run_folder, "make_folder", make_folder_as_the_other_run_finishes)
    message = "appeared while this run was starting" if resume else "last.pt exists: continue"
    with pytest.raises(UserError, match=message):
        _run(tiny_args, out, f"train.resume={resume}", "train.max_steps=1")
    assert (out / "last.pt").read_bytes() == b"the other run's"
    assert not (out / "config.yaml").exists()


def test_ctrl_c_says_which_checkpoint_is_kept_and_how_to_continue(
    tiny_args, tmp_path, monkeypatch, capsys
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hpnet_train, "_final_test", interrupted)  # after last.pt is written
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_args, out, "train.max_steps=1", "train.epochs=1")
    said = capsys.readouterr().err
    assert f"hpnet: {out / 'last.pt'} is kept: run the same command with train.resume=auto" in said


def test_pretraining_keys_given_to_training_are_warned_of(caplog):
    """A pretraining config (or run's config.yaml) given to hpnet.train trains from random
    weights: its pretrain.* keys are named, and a plain config says nothing."""
    with caplog.at_level("WARNING", logger="hpnet.train"):
        hpnet_train._check_run_config(load_config(None, []))
        assert caplog.messages == []
        hpnet_train._check_run_config(load_config(None, ["pretrain.mask_ratio=0.75"]))
    (said,) = caplog.messages
    assert said.startswith("pretrain.mask_ratio=0.75: read by python -m hpnet.pretrain only")
    assert said.endswith("set model.pretrained=<its run>/last.pt)")
    caplog.clear()
    with caplog.at_level("WARNING", logger="hpnet.train"):  # a run that starts from one
        hpnet_train._check_run_config(
            load_config(None, ["pretrain.mask_ratio=0.75", "model.pretrained=x/last.pt"])
        )
    assert caplog.messages[0].endswith("this run trains a classifier")


def test_finite_gradients_whose_norm_overflows_fp32_are_clipped_not_stopped():
    """Gradients of ~1e30 each (BatchNorm over a 1x1 map of a tiny i3d clip) are finite, but
    their fp32 norm is inf: with train.clip_grad the norm is taken in float64 and they are
    clipped (the run stopped, telling to clip what was clipped); without it, it stops."""
    layer = torch.nn.Linear(100, 100)
    for size in (1e30, 1e37):  # (1e37: even the float64 norm is past fp32's range)
        for p in layer.parameters():
            p.grad = torch.full_like(p, size)
        engine._check_gradients(layer, 1.0, engine.EpochProgress(), "batch 1")
        norm = torch.cat([p.grad.flatten() for p in layer.parameters()]).double().norm()
        assert norm.item() == pytest.approx(1.0, rel=1e-4)  # clipped to train.clip_grad
    for p in layer.parameters():
        p.grad = torch.full_like(p, 1e30)
    with pytest.raises(engine.NonFiniteLossError, match="gradient norm is inf at batch 1"):
        engine._check_gradients(layer, 0.0, engine.EpochProgress(), "batch 1")
    layer.weight.grad[0, 0] = float("inf")  # not finite itself: stopped, clipping or not
    with pytest.raises(engine.NonFiniteLossError, match="gradient norm is inf"):
        engine._check_gradients(layer, 1.0, engine.EpochProgress(), "batch 1")
