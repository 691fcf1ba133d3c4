"""``--splits``: one run per official split, the summary over them, and reruns that finish what
a kill left unfinished (training and zero-shot, on the real mini HMDB51 tree)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from ddp_launch import TORCHRUN

from hpnet import zeroshot
from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.splits import (
    parse_splits,
    sample_std,
    summarize,
    summary_text,
    training_finished,
)
from hpnet.train import main as train_main
from hpnet.zeroshot import clip_predictor

REPO = Path(__file__).resolve().parents[1]
TEST_VIDEOS = {"1": 2, "2": 3, "3": 2}  # the mini tree's test clips per split (SOURCES.md)


# ------------------------------------------------------------------------------------ units


def test_parse_splits():
    assert parse_splits("1,2,3") == [1, 2, 3]
    assert parse_splits(" 3, 1 ") == [3, 1]
    assert parse_splits("all") == [1, 2, 3]
    for bad in ("0", "4", "1,x", "", "1,,2"):
        with pytest.raises(UserError, match="give split numbers 1, 2 or 3"):
            parse_splits(bad)
    with pytest.raises(UserError, match="split 2 is listed twice"):
        parse_splits("2,1,2")


def test_summary_mean_and_sample_std_by_hand():
    reports = {
        1: {"top1": 0.5, "top5": 0.8, "mean_class_acc": 0.4, "num_videos": 10},
        2: {"top1": 0.6, "top5": 0.9, "mean_class_acc": 0.4, "num_videos": 12, "skipped": 2},
        3: {"top1": 0.7, "top5": 1.0, "mean_class_acc": 0.7, "num_videos": 11},
    }
    folders = {s: Path(f"runs/x/split{s}") for s in reports}
    summary = summarize("hmdb51", reports, folders)
    # mean_class_acc: mean 0.5, deviations -0.1 -0.1 0.2, squares sum 0.06, / (3 - 1) = 0.03
    assert summary["mean"] == pytest.approx({"top1": 0.6, "top5": 0.9, "mean_class_acc": 0.5})
    expected_std = {"top1": 0.1, "top5": 0.1, "mean_class_acc": math.sqrt(0.03)}
    assert summary["std"] == pytest.approx(expected_std)
    assert summary["std_kind"] == "sample (n - 1)" and summary["num_splits"] == 3
    assert summary["splits"]["2"] == {
        "top1": 0.6, "top5": 0.9, "mean_class_acc": 0.4, "num_videos": 12, "skipped": 2,
        "run": str(Path("runs/x/split2")),
    }  # fmt: skip
    assert summary["splits"]["1"]["skipped"] == 0
    assert "top-1 60.00 +- 10.00 %" in summary_text(summary)
    assert "(12 videos, 2 undecodable skipped)" in summary_text(summary)
    assert "(10 videos)" in summary_text(summary)
    one = summarize("ucf101", {2: reports[2]}, folders)
    assert one["std"] == {"top1": None, "top5": None, "mean_class_acc": None}
    assert "top-1 60.00 +- n/a %" in summary_text(one)
    assert sample_std([1.0, 3.0]) == pytest.approx(math.sqrt(2))
    cut = {**reports[2], "test_videos": 30, "max_steps": 1}  # train.max_steps cut its test
    short = summarize("ucf101", {2: cut}, folders)
    assert short["splits"]["2"]["test_videos"] == 30
    assert "(12 videos, 2 undecodable skipped; of 30: train.max_steps cut the test)" in (
        summary_text(short)
    )
    assert "test_videos" not in summary["splits"]["2"]  # (whole tests: as before)


def _write_run(
    folder: Path, records: list[dict], report: bool = True, checkpoint: str | None = None
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if report:
        scored = {} if checkpoint is None else {"checkpoint": str(folder / checkpoint)}
        (folder / "eval.json").write_text(json.dumps({"top1": 0.5, **scored}))


def test_a_run_is_finished_after_its_last_epoch_and_final_test(tmp_path):
    train = [{"type": "train", "epoch": e} for e in (1, 2)]
    test = {"type": "test", "top1": 0.5}
    _write_run(tmp_path / "done", [*train, test])
    assert training_finished(tmp_path / "done", epochs=2)
    assert not training_finished(tmp_path / "done", epochs=3)  # given more epochs since
    _write_run(tmp_path / "no_report", [*train, test], report=False)
    assert not training_finished(tmp_path / "no_report", epochs=2)
    _write_run(tmp_path / "killed_before_test_record", train)
    assert not training_finished(tmp_path / "killed_before_test_record", epochs=2)
    _write_run(tmp_path / "older_report", [train[0], test])  # eval.json of a 1-epoch run
    assert not training_finished(tmp_path / "older_report", epochs=2)
    assert not training_finished(tmp_path / "absent", epochs=1)
    _write_run(tmp_path / "final", [*train, test], checkpoint="last.pt")
    assert training_finished(tmp_path / "final", epochs=2)
    _write_run(tmp_path / "evaluated_best", [*train, test], checkpoint="best.pt")
    assert not training_finished(tmp_path / "evaluated_best", epochs=2)  # not last.pt's test
    # another split's last.pt scored into this folder (evaluate --out runs/x/split3): not its
    # own test, though the file name is last.pt (its score was averaged as split 3's)
    (tmp_path / "split1").mkdir()
    (tmp_path / "split1" / "last.pt").write_bytes(b"x")
    _write_run(tmp_path / "split3", [*train, test], checkpoint="../split1/last.pt")
    assert not training_finished(tmp_path / "split3", epochs=2)
    (tmp_path / "split3" / "last.pt").write_bytes(b"x")
    _write_run(tmp_path / "split3", [*train, test], checkpoint="last.pt")
    assert training_finished(tmp_path / "split3", epochs=2)
    report = tmp_path / "split3" / "eval.json"  # recorded from another folder, not there now
    report.write_text(json.dumps({"top1": 0.5, "checkpoint": "elsewhere/split1/last.pt"}))
    assert not training_finished(tmp_path / "split3", epochs=2)
    report.write_text(json.dumps({"top1": 0.5, "checkpoint": "elsewhere/split3/last.pt"}))
    assert training_finished(tmp_path / "split3", epochs=2)


# ----------------------------------------------------------------------------- argument errors


def test_splits_need_a_dataset_with_splits(tiny_args, tmp_path):
    with pytest.raises(UserError, match=r"data\.dataset=synthetic has none: drop --splits"):
        train_main([*tiny_args, "--splits", "1,2", f"train.out_dir={tmp_path}"])
    assert not any(tmp_path.iterdir())


def test_splits_refuse_a_joint_run(tmp_path):
    """A joint run's entries each name their split: --splits would train split 1 three times
    under three labels."""
    config = REPO / "configs" / "hmdb51_ucf101_joint.yaml"
    with pytest.raises(UserError, match=r"data\.joint trains several \(hmdb51, ucf101\)"):
        train_main(["--config", str(config), "--splits", "1,2", f"train.out_dir={tmp_path}"])
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["data.split=2"], r"drop the data\.split override"),
        (["train.resume=runs/x/last.pt"], r"drop train\.resume=runs/x/last\.pt"),
        (["--splits", "1,4"], r"--splits 1,4: give split numbers"),
    ],
)
def test_splits_argument_errors(hmdb51_mini, tmp_path, extra, message):
    with pytest.raises(UserError, match=message):
        train_main(["--splits", "1,2", *_train_args(hmdb51_mini, tmp_path), *extra])


def test_zeroshot_splits_argument_errors(hmdb51_mini, tmp_path):
    with pytest.raises(UserError, match="give --dataset NAME with it"):
        zeroshot.main(["clip.mp4", "--labels", "a,b", "--splits", "1,2"])
    with pytest.raises(UserError, match="give --split N or --splits LIST, not both"):
        zeroshot.main(["--dataset", "hmdb51", "--split", "1", "--splits", "1,2"])
    with pytest.raises(UserError, match=r"data\.dataset=synthetic has none"):
        zeroshot.main(["--dataset", "synthetic", "--splits", "1,2"])


# ---------------------------------------------------------------------- training, end to end


def _train_args(hmdb51_mini: Path, tmp: Path) -> list[str]:
    """A tiny RGB model on the mini HMDB51 tree (4-5 train / 2-3 test clips): 1 epoch of 2-3
    steps, ``last.pt`` after every step (so a kill can leave a split mid-epoch)."""
    return [
        "--config", str(REPO / "configs" / "demo.yaml"), "data.dataset=hmdb51",
        f"data.root={hmdb51_mini}", "data.allow_missing=true", "pose.source=none",
        "model.pose=false", "model.text=false", "model.patch_size=16", "data.frames=4",
        "data.size=32", "data.load_size=32", "data.workers=0", "train.batch_size=2",
        "train.epochs=1", "train.eval_every=0", "train.warmup_epochs=0.5",
        "train.checkpoint_steps=1", "eval.batch_size=4",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "trained, tested, overlap",
    [(1, 3, "2 of the 2"), (1, 2, "3 of the 3"), (2, 1, "2 of the 2"), (1, 1, "")],
)
def test_a_checkpoint_tested_on_another_split_is_warned_of(
    hmdb51_mini, tmp_path, caplog, trained, tested, overlap
):
    """hpnet.evaluate of a split-1 checkpoint with data.split=3 scored its own training videos
    (the mini tree's split-3 test clips are split-1 training clips) without a word."""
    from hpnet.config import config_to_dict
    from hpnet.runtime import build_run_datasets
    from hpnet.splits import warn_trained_on_test

    args = _train_args(hmdb51_mini, tmp_path)
    ckpt = {"config": config_to_dict(load_config(args[1], [*args[2:], f"data.split={trained}"]))}
    cfg = load_config(args[1], [*args[2:], f"data.split={tested}"])
    datasets = build_run_datasets(cfg, test_views=1, used=("test",))
    caplog.clear()
    with caplog.at_level("WARNING", logger="hpnet.splits"):
        warn_trained_on_test(ckpt, datasets, "run/last.pt")
    said = [r.getMessage() for r in caplog.records if r.name == "hpnet.splits"]
    if not overlap:
        assert said == []
        return
    assert said == [
        f"run/last.pt trained on hmdb51 split {trained}: {overlap} test videos of split "
        f"{tested} here were its training videos, so this score measures what it learnt, not "
        f"how it generalises; test it on data.split={trained}"
    ]
    # the trained split's list files not here (only the tested one's are needed): no warning,
    # and no refusal (it stopped hpnet.evaluate)
    lists = tmp_path / "lists"
    lists.mkdir()
    for f in (hmdb51_mini / "testTrainMulti_7030_splits").glob(f"*_split{tested}.txt"):
        (lists / f.name).symlink_to(f)
    cfg.data.split_dir = str(lists)
    datasets[0].cfg.data.split_dir = str(lists)
    caplog.clear()
    warn_trained_on_test(ckpt, datasets, "run/last.pt")
    assert not [r for r in caplog.records if r.name == "hpnet.splits"]


def test_a_split_folder_scored_under_another_protocol_is_refused(hmdb51_mini, tmp_path):
    """A split folder whose eval.json scored another dataset, split or views (another run's
    folder, or hpnet.evaluate writing next to the checkpoint) is not averaged into this run's
    summary: refused before anything trains, naming what differs."""
    out = tmp_path / "runs"
    (out / "split2").mkdir(parents=True)
    protocol = {"data.dataset": "ucf101", "data.split": 2, "data.frames": 2, "eval.views": 1}
    (out / "split2" / "eval.json").write_text(json.dumps({"top1": 0.5, "protocol": protocol}))
    with pytest.raises(UserError, match=r"split2/eval\.json scored data\.dataset=ucf101 \(this"):
        train_main(["--splits", "1,2", *_train_args(hmdb51_mini, tmp_path), f"train.out_dir={out}"])
    assert not (out / "split1").exists()


def _train(args: list[str], out: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train_main([*args, f"train.out_dir={out}", "--splits", "1,2,3"]) == 0


def _scores(summary: dict) -> dict:
    """The summary without the run folders (which differ between two base folders) and the
    settings the runs share (their batch sizes and folders differ)."""
    splits = {s: {k: v for k, v in r.items() if k != "run"} for s, r in summary["splits"].items()}
    return {**{k: v for k, v in summary.items() if k != "config"}, "splits": splits}


def _report(folder: Path) -> dict:
    """The scores of a split's ``eval.json`` (not the checkpoint path, which names the folder)."""
    report = json.loads((folder / "eval.json").read_text())
    return {k: report[k] for k in ("top1", "top5", "mean_class_acc", "per_class", "num_videos")}


@pytest.fixture
def no_confusion_png(monkeypatch):
    """Skip the 51-class confusion matrix files (about 2 s each here; tested in test_train)."""
    monkeypatch.setattr("hpnet.eval_report.save_confusion", lambda *a, **k: None)


def test_train_splits_killed_mid_split_resume_to_the_same_summary(
    hmdb51_mini, tmp_path, monkeypatch, capsys, no_confusion_png
):
    """Split 1 done, split 2 killed after its first step's last.pt, split 3 never started;
    the rerun reads split 1 back, resumes split 2, runs split 3: as if never interrupted."""
    args = _train_args(hmdb51_mini, tmp_path)
    whole = tmp_path / "whole"
    _train(args, whole)
    reference = json.loads((whole / "summary.json").read_text())
    assert {s: r["num_videos"] for s, r in reference["splits"].items()} == TEST_VIDEOS
    assert reference["splits"]["2"]["run"] == str(whole / "split2")
    capsys.readouterr()

    import hpnet.train

    real_save = hpnet.train.atomic_save

    def killed_in_split2(ckpt: dict, path: Path) -> None:
        real_save(ckpt, path)
        if path.parent.name == "split2" and ckpt["progress"]:  # the mid-epoch last.pt
            raise KeyboardInterrupt

    monkeypatch.setattr(hpnet.train, "atomic_save", killed_in_split2)
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _train(args, killed)
    assert (killed / "split1" / "eval.json").is_file()
    assert not (killed / "split2" / "eval.json").exists() and not (killed / "split3").exists()
    assert not (killed / "summary.json").exists()
    split1_mtime = (killed / "split1" / "last.pt").stat().st_mtime_ns
    monkeypatch.setattr(hpnet.train, "atomic_save", real_save)
    capsys.readouterr()

    _train(args, killed)
    out = capsys.readouterr().out
    assert "hmdb51 split 1 (1/3): finished earlier" in out
    assert f"resumed from {killed / 'split2' / 'last.pt'} in epoch 1 after batch 1" in out
    assert f"hmdb51 split 3 (3/3): -> {killed / 'split3'}" in out
    assert (killed / "split1" / "last.pt").stat().st_mtime_ns == split1_mtime  # not retrained
    assert _scores(json.loads((killed / "summary.json").read_text())) == _scores(reference)
    for split in ("split1", "split2", "split3"):
        assert _report(killed / split) == _report(whole / split)

    # Everything finished: a third run trains nothing and writes the same summary again.
    before = {p: p.stat().st_mtime_ns for p in killed.glob("split*/*.pt")}
    _train(args, killed)
    assert capsys.readouterr().out.count("finished earlier") == 3
    assert {p: p.stat().st_mtime_ns for p in killed.glob("split*/*.pt")} == before
    assert _scores(json.loads((killed / "summary.json").read_text())) == _scores(reference)
    # Other settings are another experiment: refused up front, not averaged with these splits.
    with pytest.raises(UserError, match=r"continue the run in .*split1: it used train\.lr="):
        _train([*args, "train.lr=0.123"], killed)
    assert {p: p.stat().st_mtime_ns for p in killed.glob("split*/*.pt")} == before


def _run_stopping_on_timeout(cmd: list[str], env: dict, timeout: float) -> tuple[int, str, str]:
    """Run ``cmd``; past ``timeout`` (ranks that never meet hang) stop it with SIGTERM, which
    torchrun passes on to its workers (a SIGKILL would leave them running)."""
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:6])}... still running after {timeout} s: {stderr[-2000:]}")
    return proc.returncode, stdout, stderr


def _one_and_two_processes(module: str, args, tmp_path: Path) -> list[dict]:
    """``python -m module`` in 1 process (batch 2) and under torchrun in 2 (batch 1 each):
    the two ``summary.json`` s; ``args(out, batch)`` gives each run's arguments."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    summaries = []
    for name, launch, batch in (("one", [], 2), ("two", TORCHRUN, 1)):
        out = tmp_path / name
        cmd = [sys.executable, *launch, "-m", module, *args(out, batch)]
        code, stdout, stderr = _run_stopping_on_timeout(cmd, env, timeout=300)
        assert code == 0, stderr[-3000:]
        assert stdout.count("== hmdb51 split") == 2  # rank 0 alone prints
        summaries.append(json.loads((out / "summary.json").read_text()))
    assert list(summaries[1]["splits"]) == ["1", "3"]
    return summaries


@pytest.mark.slow
def test_train_splits_under_torchrun_match_one_process(hmdb51_mini, tmp_path):
    """2 Gloo ranks x batch 1 loop the same splits in one process group and train and score
    like 1 process x batch 2 (augmentation off: the ranks would draw their own; 2 steps, as
    5 clips make 2 full batches of 2 but 3 rounds of 1 per rank)."""
    args = [
        *_train_args(hmdb51_mini, tmp_path), "data.augment.flip=false",
        "data.augment.scale_min=1.0", "data.augment.ratio_max=1.0", "data.augment.jitter=0.0",
        "train.max_steps=2", "--splits", "1,3",
    ]  # fmt: skip
    summaries = _one_and_two_processes(
        "hpnet.train",
        lambda out, batch: [*args, f"train.batch_size={batch}", f"train.out_dir={out}"],
        tmp_path,
    )
    assert _scores(summaries[1]) == _scores(summaries[0])
    for split in ("split1", "split3"):
        one, two = (torch.load(tmp_path / n / split / "last.pt") for n in ("one", "two"))
        assert one["step"] == two["step"] == 2
        for name, tensor in one["model"].items():
            # (Adam turns float noise in tiny gradients into up to ~2e-5 here; training on
            # other clips than one process moves weights by ~1e-3 per step)
            torch.testing.assert_close(two["model"][name], tensor, rtol=0, atol=1e-4, msg=name)


# ------------------------------------------------------------------------------------ zero-shot


def test_zeroshot_splits_rescore_only_what_is_missing(
    hmdb51_mini, tmp_path, capsys, no_confusion_png, monkeypatch
):
    built = []  # CLIP is built once for the three splits (they share their classes)
    monkeypatch.setattr(
        zeroshot, "clip_predictor", lambda *a: built.append(a) or clip_predictor(*a)
    )
    out = tmp_path / "zs"
    args = [
        "--dataset", "hmdb51", "--splits", "1,2,3", f"data.root={hmdb51_mini}",
        "data.allow_missing=true", "--model", "ViT-S-32-alt", "--pretrained", "",
        f"text.cache_dir={tmp_path / 'text'}", "data.frames=2", "eval.views=1", "eval.crops=1",
        "data.workers=0", "--out", str(out),
    ]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-CLIP warning
        assert zeroshot.main(args) == 0
        first = json.loads((out / "summary.json").read_text())
        assert {s: r["num_videos"] for s, r in first["splits"].items()} == TEST_VIDEOS
        for split, report in first["splits"].items():
            scored = json.loads((out / f"split{split}" / "eval.json").read_text())
            assert report["top1"] == scored["top1"] and report["run"] == str(out / f"split{split}")
        mean_top5 = sum(r["top5"] for r in first["splits"].values()) / 3
        assert first["mean"]["top5"] == pytest.approx(mean_top5)
        assert len(built) == 1

        kept = {s: (out / s / "eval.json").stat().st_mtime_ns for s in ("split1", "split3")}
        (out / "split2" / "eval.json").unlink()  # as if killed while scoring split 2
        capsys.readouterr()
        assert zeroshot.main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished earlier") == 2 and "zero-shot hmdb51 split 2" in printed
    assert {s: (out / s / "eval.json").stat().st_mtime_ns for s in kept} == kept
    assert json.loads((out / "summary.json").read_text()) == first

    with pytest.raises(UserError, match=r"split1/eval\.json was scored with templates \["):
        zeroshot.main([*args, "--templates", "video"])  # not averaged with other prompts
    with pytest.raises(UserError, match=r"scored with text\.pretrained '' \(this run: 'laion"):
        zeroshot.main([*args, "--pretrained", "laion2b_s34b_b88k"])  # nor with other weights
    with pytest.raises(UserError, match=r"split1/eval\.json scored eval\.views=1 \(this run: 2\)"):
        zeroshot.main([*args, "eval.views=2"])  # nor with another protocol
    other = [a.replace("hmdb51", "ucf101") if a == "hmdb51" else a for a in args]
    with pytest.raises(UserError, match=r"scored data\.dataset=hmdb51 \(this run: ucf101\)"):
        zeroshot.main([*other, "data.split_dir=/nowhere"])  # nor another dataset's


@pytest.mark.slow
def test_zeroshot_splits_under_torchrun_match_one_process(hmdb51_mini, tmp_path):
    """Each split's session joins the one process group of the command: 2 ranks score each
    split's videos between them and write the summary one process writes."""
    args = [
        "--dataset", "hmdb51", "--splits", "1,3", f"data.root={hmdb51_mini}",
        "data.allow_missing=true", "--model", "ViT-S-32-alt", "--pretrained", "",
        f"text.cache_dir={tmp_path / 'text'}", "data.frames=2", "eval.views=1", "eval.crops=1",
        "data.workers=0",
    ]  # fmt: skip
    one, two = _one_and_two_processes(
        "hpnet.zeroshot",
        lambda out, batch: [*args, f"eval.batch_size={batch}", "--out", str(out)],
        tmp_path,
    )
    assert _scores(two) == _scores(one)


def test_a_split_scored_with_other_views_is_told_to_score_it_again(tmp_path):
    """A trained split whose eval.json another ``hpnet.evaluate`` rewrote with other views is
    scored again (the fix that keeps the training), not deleted; a split of other data is."""
    from hpnet.config import load_config
    from hpnet.eval_report import protocol
    from hpnet.splits import check_protocol

    cfg = load_config(None, ["data.dataset=hmdb51", "data.split=1", "eval.views=1"])
    folder = tmp_path / "split1"
    folder.mkdir()
    scored = {**protocol(cfg), "eval.views": 2}
    (folder / "eval.json").write_text(json.dumps({"protocol": scored}))
    with pytest.raises(UserError, match=r"delete .*split1 \(python"):  # no checkpoint to rescore
        check_protocol(folder, cfg, "train.out_dir")
    (folder / "last.pt").touch()
    again = rf"hpnet\.evaluate --checkpoint {folder / 'last.pt'} eval\.views=1\), or choose"
    with pytest.raises(UserError, match=again):
        check_protocol(folder, cfg, "train.out_dir")
    (folder / "eval.json").write_text(json.dumps({"protocol": {**scored, "data.split": 2}}))
    with pytest.raises(UserError) as err:
        check_protocol(folder, cfg, "train.out_dir")
    assert "hpnet.evaluate --checkpoint" not in str(err.value) and "delete" in str(err.value)
    (folder / "eval.json").write_text(json.dumps({"protocol": protocol(cfg)}))
    check_protocol(folder, cfg, "train.out_dir")  # the same protocol: reused


def test_a_split_whose_test_max_steps_cut_short_is_scored_again(tmp_path):
    """``hpnet.evaluate --checkpoint splitN/last.pt train.max_steps=1`` rewrote eval.json with 3
    of the split's 7 test videos: the summary averaged it in, silently. Such a split is no
    finished one now (its final test is redone), unless this run caps its tests alike (a smoke
    run read back); the summary records the splits' shared protocol."""
    from hpnet.config import load_config
    from hpnet.eval_report import protocol
    from hpnet.splits import summarize

    cfg = load_config(None, ["data.dataset=hmdb51", "data.split=1"])
    folder = tmp_path / "split1"
    folder.mkdir()
    report = {"protocol": protocol(cfg), "num_videos": 3, "skipped": 0, "test_videos": 7}
    (folder / "metrics.jsonl").write_text('{"type": "train", "epoch": 1}\n{"type": "test"}\n')
    (folder / "eval.json").write_text(json.dumps(report))
    assert training_finished(folder, epochs=1)  # (no cap recorded: every video was scored)
    (folder / "eval.json").write_text(json.dumps({**report, "max_steps": 1}))
    assert not training_finished(folder, epochs=1)
    assert training_finished(folder, epochs=1, max_steps=1)
    scores = {"top1": 0.5, "top5": 1.0, "mean_class_acc": 0.5, "num_videos": 7}
    other = {"protocol": {**protocol(cfg), "eval.views": 9}}
    summary = summarize("hmdb51", {1: {**scores, **report}}, {1: folder})
    assert summary["protocol"] == {k: v for k, v in protocol(cfg).items() if k != "data.split"}
    both = summarize(
        "hmdb51", {1: {**scores, **report}, 2: {**scores, **other}}, {1: folder, 2: folder}
    )
    assert both["protocol"] is None  # (splits scored alike only: check_protocol refuses others)
    arch = {"setup": {"model.arch": "c3d"}}  # the model the splits scored: shared, or None
    assert summarize("hmdb51", {1: {**scores, **arch}}, {1: folder})["setup"] == arch["setup"]
    mixed = {1: {**scores, **arch}, 2: {**scores, "setup": {"model.arch": "i3d"}}}
    assert summarize("hmdb51", mixed, {1: folder, 2: folder})["setup"] is None
