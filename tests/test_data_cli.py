"""``python -m hpnet.data``: the dataset report, missing and undecodable files, exit codes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from videos import write_video

from hpnet.cli import UserError
from hpnet.data.__main__ import cli, main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.realdata
def test_hmdb51_mini_reports_missing(hmdb51_mini, capsys):
    code = main(["data.dataset=hmdb51", f"data.root={hmdb51_mini}"])
    out = capsys.readouterr().out
    assert code == 1
    assert "MISSING: 6759 of 6766 listed videos" in out
    assert "5 train, 2 test" in out and "classes     51" in out
    assert "golf" in out and "data.allow_missing=true" in out
    assert "PROBLEMS FOUND" in out
    assert len(out.splitlines()) < 60  # 51 classes stay compact
    # With data.allow_missing=true the missing videos are listed but are no problem.
    code = main(["data.dataset=hmdb51", f"data.root={hmdb51_mini}", "data.allow_missing=true"])
    out = capsys.readouterr().out
    assert code == 0 and "MISSING: 6759 of 6766" in out and "result      OK" in out
    assert "allowed (data.allow_missing=true)" in out and "fix:" not in out
    # A validation share these few videos cannot give is said beside them (it stopped first).
    code = main(["data.dataset=hmdb51", f"data.root={hmdb51_mini}", "data.val_fraction=0.2"])
    out = capsys.readouterr().out
    assert code == 1 and "MISSING: 6759 of 6766" in out
    assert "VALIDATION: data.val_fraction=0.2 gives no validation video" in out


@pytest.fixture
def folder_with_bad_file(tmp_path):
    root = tmp_path / "clips"
    for split, cls, n in [("train", "wave", 10), ("train", "clap", 8), ("test", "wave", 6)]:
        write_video(root / split / cls / f"{cls}_{n}.mp4", n)
    (root / "test" / "clap").mkdir(parents=True)
    (root / "test" / "clap" / "broken (1)!.avi").write_text("not a video")
    return root


def test_check_decode_lists_the_bad_file(folder_with_bad_file, capsys):
    args = ["data.dataset=folder", f"data.root={folder_with_bad_file}", "data.frames=4"]
    assert main([*args, "data.workers=2", "--check-decode", "all"]) == 1
    out = capsys.readouterr().out
    assert "decoded     4 videos, 1 failed" in out
    bad_lines = [line for line in out.splitlines() if ".avi:" in line or ".mp4:" in line]
    assert len(bad_lines) == 1 and "test/clap/broken (1)!.avi: " in bad_lines[0]
    assert "fewer than data.frames" not in out  # 6, 8 and 10 frames
    assert main([*args, "data.workers=0", "data.frames=8", "--check-decode", "all", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["short_videos"] == 1  # wave_6: its last frame will be repeated
    assert len(report["short_names"]) == 1 and "wave" in report["short_names"][0]
    assert main([*args, "data.workers=0", "data.frames=8", "--check-decode", "all"]) == 1
    said = [x for x in capsys.readouterr().out.splitlines() if "fewer than data.frames" in x]
    assert said[0].endswith(f"(their last frame is repeated): {report['short_names'][0]}")
    assert [item["path"] for item in report["undecodable"]] == ["test/clap/broken (1)!.avi"]
    assert report["undecodable"][0]["error"]
    assert report["checked"] == 4 and report["ok"] is False and report["missing"] == []


def test_json_report_keys(folder_with_bad_file, capsys):
    (folder_with_bad_file / "test" / "clap" / "broken (1)!.avi").unlink()
    code = main(
        ["data.dataset=folder", f"data.root={folder_with_bad_file}", "data.workers=0",
         "data.frames=8", "--check-decode", "2", "--json"]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] is True
    assert report["dataset"] == "folder" and report["split"] is None
    assert report["classes"] == ["clap", "wave"] and report["num_classes"] == 2
    assert report["splits"]["train"] == {"videos": 2, "per_class": {"clap": 1, "wave": 1}}
    assert report["splits"]["test"] == {"videos": 1, "per_class": {"clap": 0, "wave": 1}}
    assert report["missing"] == [] and report["undecodable"] == []
    assert report["checked"] == 2 and report["listed"] == 3
    assert report["short_videos"] in (0, 1, 2)  # which 2 of the 3 are drawn is random


@pytest.mark.realdata
def test_missing_files_are_all_in_the_json(hmdb51_mini, capsys):
    assert main(["data.dataset=hmdb51", f"data.root={hmdb51_mini}", "data.split=3", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert len(report["missing"]) == 6759 and report["listed"] == 6766
    assert report["splits"]["train"]["videos"] == 5 and report["split"] == 3
    assert report["split_dir"].endswith("testTrainMulti_7030_splits")


@pytest.mark.parametrize(
    "argv",
    [["data.framez=4"], ["data.dataset=folder", "--check-decode", "some"], ["--nope"]],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as err:
        cli(argv)
    assert err.value.code == 2
    assert capsys.readouterr().err.strip()


def test_missing_root_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        cli(["data.dataset=folder", f"data.root={tmp_path / 'nope'}"])
    assert err.value.code == 2
    assert "data.root" in capsys.readouterr().err


def test_synthetic_dataset_report(tmp_path, capsys):
    args = ["data.dataset=synthetic", f"data.root={tmp_path}", "pose.source=groundtruth"]
    assert main([*args, "data.synthetic.train_videos=20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rendered"] is True and report["splits"]["train"]["videos"] == 20
    assert sum(report["splits"]["train"]["per_class"].values()) == 20
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "rendered in memory" in text and "on disk" not in text  # (it said "test (on disk)")
    with pytest.raises(SystemExit) as err:  # pose.source=cache reads files that are not there
        cli(["data.dataset=synthetic", f"data.root={tmp_path}", "pose.source=cache"])
    assert err.value.code == 2 and "python -m hpnet.data.synthetic " in capsys.readouterr().err
    for actions in ("wav,walk", "wave", "wave,wave"):  # refused here as training refuses them
        with pytest.raises(UserError, match=r"give 2 or more distinct actions"):
            main([*args, f"data.synthetic.actions={actions}"])
    with pytest.raises(UserError, match=r"\('wav': did you mean 'wave'\?\)"):
        main([*args, "data.synthetic.actions=wav,walk"])


def test_a_joint_config_reports_each_dataset_as_training_reads_it(tmp_path, capsys):
    """data.joint: one report per entry with the entry's own classes, counts and seed (not the
    shared top-level dataset); --json keys them by name."""
    args = ["--config", str(REPO / "configs" / "joint_demo.yaml"), f"data.root={tmp_path}"]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    everyday, sports = doc["datasets"]["everyday"], doc["datasets"]["sports"]
    assert doc["ok"] and len(everyday["classes"]) == 7 and len(sports["classes"]) == 6
    assert sports["splits"]["train"]["videos"] == 240 and sports["splits"]["test"]["videos"] == 120
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "== data.joint dataset everyday" in text and "== data.joint dataset sports" in text


def test_pose_settings_do_not_stop_inspecting_a_folder(folder_with_bad_file, capsys):
    """The demo config's pose.source=groundtruth is no reason to refuse inspecting a folder;
    building clips with joints from it still is (train stops before its run folder)."""
    from hpnet.config import load_config
    from hpnet.data.datasets import build_datasets

    args = ["data.dataset=folder", f"data.root={folder_with_bad_file}", "pose.source=groundtruth"]
    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    assert main(["--config", str(demo), *args]) == 0
    assert "classes     2" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"groundtruth only exists for data\.dataset=synthetic"):
        build_datasets(load_config(None, args))


@pytest.mark.parametrize("dataset", ["synthetic", "folder"])
def test_the_report_shows_the_validation_split_training_holds_out(dataset, tmp_path, capsys):
    from hpnet.config import load_config
    from hpnet.data.datasets import build_datasets

    if dataset == "synthetic":
        args = [
            "data.dataset=synthetic",
            f"data.root={tmp_path}",
            "pose.source=none",
            "data.synthetic.train_videos=30",
            "data.synthetic.actions=[wave,walk,jump]",
        ]
    else:  # 4 + 3 training videos, 1 + 1 test
        for split, cls, n in [
            ("train", "wave", 4),
            ("train", "clap", 3),
            ("test", "wave", 1),
            ("test", "clap", 1),
        ]:
            for i in range(n):
                write_video(tmp_path / split / cls / f"{cls}{i}.mp4", 4)
        args = ["data.dataset=folder", f"data.root={tmp_path}", "pose.source=none"]
    args += ["data.val_fraction=0.3", "data.frames=4", "data.size=32", "data.load_size=32"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    val = report["splits"]["val"]
    built = build_datasets(load_config(None, args))  # what training holds out
    assert val["videos"] == len(built.val) > 0 and val["fraction"] == 0.3
    held = [built.classes[int(label)] for label in built.val.labels]
    assert val["per_class"] == {c: held.count(c) for c in report["classes"]}
    assert report["splits"]["train"]["videos"] == len(built.train) + len(built.val)
    assert report["classes"] == built.classes
    main(args)
    text = capsys.readouterr().out
    assert f"+ {val['videos']} validation (data.val_fraction=0.3)" in text
    assert "(train/val/test)" in text


def test_an_empty_split_is_a_problem_and_training_refuses_it(tmp_path, capsys, caplog):
    """A list run without its training list: reported as a problem here, refused by training
    before anything trains (it trained 0 steps and reported a test score)."""
    from hpnet.train import main as train_main

    for name in ("a.avi", "b.avi"):
        (tmp_path / name).touch()  # never decoded: the checks come first
    (tmp_path / "test.txt").write_text("a.avi 0\nb.avi 1\n")
    args = ["data.dataset=list", f"data.root={tmp_path}", f"data.test_list={tmp_path}/test.txt",
            "pose.source=none", "data.workers=0"]  # fmt: skip
    assert main([*args, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["empty_splits"] == ["train"] and report["ok"] is False
    assert main(args) == 1 and "EMPTY: the train split has no videos" in capsys.readouterr().out
    overrides = ["--config", str(REPO / "configs" / "demo.yaml"), *args, "model.pose=false",
                 "model.text=false", f"train.out_dir={tmp_path / 'run'}"]  # fmt: skip
    with pytest.raises(UserError, match=r"the train split has no videos \(data\.train_list="):
        train_main(overrides)
    assert not (tmp_path / "run").exists()
    from hpnet.config import load_config
    from hpnet.runtime import build_loss_config, build_run_datasets, check_videos

    (tmp_path / "c.avi").touch()
    (tmp_path / "train.txt").write_text("c.avi 0\n")  # a class only the test split has
    cfg = load_config(None, [*args, f"data.train_list={tmp_path}/train.txt", "data.balance=loss"])
    with caplog.at_level("WARNING", logger="hpnet.runtime"):
        check_videos(datasets := build_run_datasets(cfg, test_views=1))
    assert "1 of 2 classes have no training video: class_1 (never learnt" in caplog.text
    with warnings.catch_warnings():  # said once: not again by the class-balanced loss
        warnings.simplefilter("error")
        loss = build_loss_config(cfg, datasets[0], torch.device("cpu"))
    assert loss.class_weights.tolist() == [1.0, 0.0]


def test_an_unlabeled_folder_is_reported_without_classes_or_a_test_split(tmp_path, capsys):
    """data.dataset=unlabeled (pretraining): every video under the root, no classes, no test
    split by design; it crashed in the class table and called the empty test split a problem."""
    for n in (6, 8):
        write_video(tmp_path / "cams" / f"c{n}.mp4", n)
    args = ["data.dataset=unlabeled", f"data.root={tmp_path}", "data.frames=4"]
    assert main([*args, "--check-decode", "all"]) == 0
    out = capsys.readouterr().out
    assert "videos      2 under data.root, without labels (pretraining)" in out
    assert "decoded     2 videos, 0 failed" in out and "result      OK" in out
    assert "EMPTY" not in out and "classes" not in out
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["empty_splits"] == [] and report["ok"] is True and report["num_classes"] == 0
    assert main([*args, "data.val_fraction=0.2"]) == 0  # (an IndexError: no labels to hold out)


def test_the_report_names_videos_without_a_pose_cache_file(tmp_path, capsys):
    """With model.pose and pose.source=cache, training stops at start on a video without a
    cache file: the check says so first (it said OK)."""
    import numpy as np

    from hpnet.pose.store import cache_path, save_joints

    for rel in ("walk/a.mp4", "walk/b.mp4", "run/c.mp4", "run/d.mp4"):
        write_video(tmp_path / "v" / rel, 6)
    for rel in ("walk/a.mp4", "run/c.mp4", "run/d.mp4"):  # walk/b.mp4 added after caching
        save_joints(cache_path(tmp_path / "pc", rel), np.ones((2, 1, 17, 3)), [0, 3], {})
    args = ["data.dataset=folder", f"data.root={tmp_path / 'v'}", "pose.source=cache",
            f"pose.cache_dir={tmp_path / 'pc'}"]  # fmt: skip
    assert main([*args, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["pose_cache_missing"] == ["walk/b.mp4"] and report["ok"] is False
    assert main(args) == 1
    assert "POSE CACHE: no file in pose.cache_dir for 1 video (the first: walk/b.mp4;" in (
        capsys.readouterr().out
    )
    none_yet = [*args[:-1], f"pose.cache_dir={tmp_path / 'new'}"]  # before the first caching
    assert main(none_yet) == 0 and "pose cache  none yet" in capsys.readouterr().out
    assert report["pose_cache_videos"] == 4
    assert main([*args, "model.pose=false", "--json"]) == 0  # no joints read: no cache needed
    assert json.loads(capsys.readouterr().out)["pose_cache_missing"] is None
    save_joints(cache_path(tmp_path / "pc", "walk/b.mp4"), np.ones((2, 1, 17, 3)), [0, 3], {})
    assert main(args) == 0  # (the line was left out)
    assert "pose cache  complete: a file for each of the 4 train/test videos" in (
        capsys.readouterr().out
    )
    # a video the cache command could not decode: no file, skipped (it said "complete" of all)
    (tmp_path / "pc" / "walk" / "b.mp4.npz").unlink()
    failure = {"rel": "walk/b.mp4", "error": "no frames"}
    (tmp_path / "pc" / "failures.json").write_text(json.dumps({"failures": [failure]}))
    assert main(args) == 0
    assert (
        "a file for each of the 3 train/test videos of 4; the other 1 the cache command could "
        "not decode (walk/b.mp4"
    ) in capsys.readouterr().out
    from hpnet.pose.same_video import video_facts

    facts = video_facts(tmp_path / "v" / "run" / "c.mp4")  # (written at the cache's size)
    save_joints(cache_path(tmp_path / "pc", "run/c.mp4"), np.ones((2, 1, 17, 3)), [0, 3], facts)
    assert main(args) == 0
    write_video(tmp_path / "v" / "run" / "c.mp4", 9)  # replaced by another clip
    capsys.readouterr()
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "POSE CACHE: 1 video replaced since its file was made (run/c.mp4)" in out
    assert "pose cache  files: a file for each" in out and "complete" not in out


def test_classes_the_text_head_refuses_are_a_problem(tmp_path, capsys):
    """``Punch/`` beside ``punch/``: training's text head refuses them at start, so the check
    says so (it said OK); a linear head tells them apart."""
    for split in ("train", "test"):
        for rel in ("Punch/a.mp4", "punch/b.mp4", "golf/c.mp4"):
            write_video(tmp_path / split / rel, 6)
    args = ["data.dataset=folder", f"data.root={tmp_path}", "pose.source=none"]
    assert main(args) == 1
    text = capsys.readouterr().out
    assert "CLASSES: the classes: 'Punch' and 'punch' are the same words" in text
    assert "PROBLEMS FOUND" in text
    assert main([*args, "model.text=false", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["class_clash"] == ""
