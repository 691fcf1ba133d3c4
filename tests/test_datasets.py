"""Datasets: split-file parsers (HMDB51, UCF101, folder, list), clips, bad videos, loaders."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from videos import write_video

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.data.balance import class_balanced_sampler
from hpnet.data.datasets import VideoClipDataset, build_datasets, loader_canvas
from hpnet.data.folder_records import folder_records
from hpnet.data.list_files import list_records
from hpnet.data.loader import EpochSampler, build_loader, collate_clips
from hpnet.data.official_splits import (
    HMDB51_CLASSES,
    hmdb51_records,
    read_hmdb51_splits,
    read_ucf101_splits,
    ucf101_records,
)
from hpnet.data.records import VideoRecord

# Split tags (split 1, 2, 3) of the 7 real clips in hmdb51_mini (SOURCES.md).
MINI_TAGS = {
    "climb": (1, 2, 1),
    "shoot_bow": (1, 2, 1),
    "punch": (2, 1, 1),
    "brush_hair": (1, 1, 2),
    "swing_baseball": (1, 2, 1),
    "golf": (1, 1, 2),
    "climb_stairs": (2, 1, 1),
}


# ------------------------------------------------------------------------------------ HMDB51


@pytest.mark.realdata
def test_hmdb51_split_files_give_official_counts(hmdb51_mini):
    split_dir = hmdb51_mini / "testTrainMulti_7030_splits"
    for split in (1, 2, 3):
        entries = read_hmdb51_splits(split_dir, split)
        assert list(entries) == list(HMDB51_CLASSES)
        tags = [tag for rows in entries.values() for _, tag in rows]
        assert (tags.count(1), tags.count(2), tags.count(0)) == (3570, 1530, 1666)
        for rows in entries.values():  # 70 train / 30 test in every class
            assert [t for _, t in rows].count(1) == 70 and [t for _, t in rows].count(2) == 30
        names = [name for rows in entries.values() for name, _ in rows]
        assert len(set(names)) == 6766 and all(n.endswith(".avi") for n in names)


@pytest.mark.realdata
def test_hmdb51_full_tree_gives_3570_1530(hmdb51_mini, tmp_path):
    """Every listed file present (empty stand-ins, odd characters and all): no error."""
    split_dir = hmdb51_mini / "testTrainMulti_7030_splits"
    for name, rows in read_hmdb51_splits(split_dir, 1).items():
        (tmp_path / name).mkdir()
        for video, _ in rows:
            (tmp_path / name / video).touch()
    train, test, classes = hmdb51_records(tmp_path, 1, split_dir)
    assert (len(train), len(test)) == (3570, 1530)
    assert classes == sorted(classes) and len(classes) == 51
    odd = [r for r in train + test if any(c in r.rel for c in "()!+,[]#&;")]
    assert odd and all(r.path.is_file() for r in odd)
    assert all(r.rel == f"{classes[r.label]}/{r.path.name}" for r in train + test)
    assert all(r.path == tmp_path / r.rel for r in train + test)


@pytest.mark.realdata
def test_hmdb51_mini_missing_videos_are_an_error(hmdb51_mini):
    with pytest.raises(UserError) as err:
        hmdb51_records(hmdb51_mini, 1)
    message = str(err.value)
    assert "6759 of the 6766 videos" in message
    assert "data.allow_missing=true" in message
    assert "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_1.avi" in message  # first few named
    assert "\n" not in message


@pytest.mark.realdata
@pytest.mark.parametrize("split", [1, 2, 3])
def test_hmdb51_mini_allow_missing_finds_the_seven_clips(hmdb51_mini, split, caplog):
    classes_txt = (hmdb51_mini / "classes.txt").read_text().split()
    with caplog.at_level(logging.WARNING, logger="hpnet.data.records"):
        splits = hmdb51_records(hmdb51_mini, split, allow_missing=True)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "6759" in warnings[0].getMessage()
    assert len(splits.missing) == 6759 and splits.listed == 6766
    assert splits.classes == classes_txt
    found = {}
    for tag, records in ((1, splits.train), (2, splits.test)):
        for r in records:
            found[splits.classes[r.label]] = tag
            assert r.label == classes_txt.index(r.path.parent.name)
            assert r.path.is_file()
    assert found == {name: tags[split - 1] for name, tags in MINI_TAGS.items()}


@pytest.mark.realdata
def test_hmdb51_missing_split_file_names_file_and_setting(hmdb51_mini, tmp_path):
    split_dir = tmp_path / "splits"
    shutil.copytree(hmdb51_mini / "testTrainMulti_7030_splits", split_dir)
    (split_dir / "golf_test_split2.txt").unlink()
    hmdb51_records(tmp_path, 1, split_dir, allow_missing=True)  # split 1 is complete
    with pytest.raises(UserError, match=r"golf_test_split2\.txt.*data\.split_dir"):
        hmdb51_records(tmp_path, 2, split_dir, allow_missing=True)
    with pytest.raises(UserError, match=r"split folder not found.*data\.split_dir"):
        hmdb51_records(tmp_path, 1, allow_missing=True)  # default <root>/testTrainMulti_7030_splits
    for records in (hmdb51_records, ucf101_records):  # a root that is not there: said first
        with pytest.raises(UserError, match=r"data\.root .*nowhere is not a folder"):
            records(tmp_path / "nowhere", 1)
    bad = split_dir / "golf_test_split1.txt"
    bad.write_text(bad.read_text() + "some_video.avi 7 \n")
    with pytest.raises(UserError, match=r"golf_test_split1\.txt:\d+: expected"):
        hmdb51_records(tmp_path, 1, split_dir, allow_missing=True)


# ------------------------------------------------------------------------------------ UCF101


@pytest.mark.realdata
def test_ucf101_official_lists(shared_data, tmp_path):
    split_dir = shared_data / "ucf101_splits"
    classes, train, test = read_ucf101_splits(split_dir, 1)
    assert (len(classes), len(train), len(test)) == (101, 9537, 3783)
    assert [(len(read_ucf101_splits(split_dir, s)[1])) for s in (2, 3)] == [9586, 9624]
    splits = ucf101_records(tmp_path, 1, split_dir, allow_missing=True)
    assert splits.listed == 9537 + 3783 and len(splits.missing) == 13320
    rows = dict(train + test)
    assert rows["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"] == 0
    assert rows["YoYo/v_YoYo_g01_c01.avi"] == 100  # a test video: label from its folder
    assert classes[rows["HandstandPushups/v_HandStandPushups_g01_c01.avi"]] == "HandstandPushups"
    with pytest.raises(UserError, match="13320 of the 13320"):
        ucf101_records(tmp_path, 1, split_dir)


@pytest.mark.realdata
def test_ucf101_label_must_match_folder(shared_data, tmp_path):
    for f in (shared_data / "ucf101_splits").iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 1\r\n")
    with pytest.raises(UserError, match=r"trainlist01\.txt:1: label 1 disagrees"):
        read_ucf101_splits(tmp_path, 1)
    with pytest.raises(UserError, match=r"testlist04\.txt not found|split must be"):
        read_ucf101_splits(tmp_path, 4)


# ------------------------------------------------------------------------------ folder / list


def _touch(root: Path, rels: list[str]) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")


def test_folder_holdout_is_stratified_and_deterministic(tmp_path):
    _touch(tmp_path, [f"wave/v{i}.mp4" for i in range(10)] + [f"clap/c{i}!.AVI" for i in range(5)])
    _touch(tmp_path, ["wave/notes.txt", "wave/.hidden.mp4", "clap/sub/deep.webm", "solo/one.mkv"])
    splits = folder_records(tmp_path, test_fraction=0.3, seed=0)
    assert splits.classes == ["clap", "solo", "wave"]
    per = {c: [0, 0] for c in splits.classes}
    for side, records in enumerate((splits.train, splits.test)):
        for r in records:
            per[splits.classes[r.label]][side] += 1
            assert r.path == tmp_path / r.rel
    assert per == {"clap": [4, 2], "solo": [1, 0], "wave": [7, 3]}
    again = folder_records(tmp_path, test_fraction=0.3, seed=0)
    assert again.test == splits.test
    other = folder_records(tmp_path, test_fraction=0.3, seed=1)
    assert {r.rel for r in other.test} != {r.rel for r in splits.test}
    _touch(tmp_path, ["wave/v10.mp4"])  # adding a video does not reshuffle the others
    grown = folder_records(tmp_path, test_fraction=0.3, seed=0)
    assert len({r.rel for r in splits.test} - {r.rel for r in grown.test}) <= 1


def test_folder_train_test_layout_and_empty(tmp_path):
    _touch(tmp_path, ["train/a/1.mp4", "train/b/2.mov", "test/a/3.mpeg", "test/c/4.m4v"])
    train, test, classes = folder_records(tmp_path)
    assert classes == ["a", "b", "c"]
    assert [(r.rel, r.label) for r in train] == [("train/a/1.mp4", 0), ("train/b/2.mov", 1)]
    assert [(r.rel, r.label) for r in test] == [("test/a/3.mpeg", 0), ("test/c/4.m4v", 2)]
    (tmp_path / "empty" / "x").mkdir(parents=True)
    with pytest.raises(UserError, match="no videos found"):
        folder_records(tmp_path / "empty")
    with pytest.raises(UserError, match=r"data\.root"):
        folder_records(tmp_path / "nope")


def test_folders_without_videos_are_no_classes(tmp_path, caplog):
    """An empty class folder, or the ground-truth pose_cache/ that python -m hpnet.data.synthetic
    writes beside the class folders, was a class no video has (a phantom output of the model)."""
    _touch(
        tmp_path / "flat",
        [
            "wave/1.mp4",
            "wave/2.mp4",
            "clap/3.mp4",
            "pose_cache/wave/1.mp4.npz",
            "stray.mp4",
            "._stray.mp4",
        ],
    )
    (tmp_path / "flat" / "empty").mkdir()
    with caplog.at_level(logging.WARNING, logger="hpnet.data"):
        flat = folder_records(tmp_path / "flat")
    assert flat.classes == ["clap", "wave"] and {r.label for r in flat.train + flat.test} == {0, 1}
    assert "folders without videos are no classes: empty, pose_cache" in caplog.text
    # a video in the root itself: left out, and now said (it was silent)
    assert (
        f"{tmp_path / 'flat'}: 1 video directly in it, in no class folder, left out: "
        "stray.mp4" in caplog.text  # (not the hidden ._stray.mp4: 1 video)
    )
    _touch(tmp_path / "split", ["train/a/1.mp4", "test/b/2.mp4", "train/c/x.txt"])
    (tmp_path / "split" / "test" / "c").mkdir()
    split = folder_records(tmp_path / "split")
    assert split.classes == ["a", "b"] and [r.label for r in split.test] == [1]


def test_folder_datasets_read_what_users_keep_videos_in(tmp_path, caplog):
    """Phone and camcorder files, linked folders (a link back up read once), one class for two
    Unicode forms of its name; a folder starting with _ is said to be left out."""
    import unicodedata

    nfc, nfd = (unicodedata.normalize(form, "café") for form in ("NFC", "NFD"))
    _touch(tmp_path / "real", ["x.mp4"])
    _touch(tmp_path, [f"train/{nfc}/1.3gp", "train/walk/2.MTS", "train/walk/3.wmv",
                      f"test/{nfd}/4.m2ts", "test/walk/5.flv", "train/_misc/6.mp4"])  # fmt: skip
    (tmp_path / "train" / "walk" / "linked").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "up").symlink_to(tmp_path / "real")  # a loop
    with caplog.at_level("WARNING", logger="hpnet.data.records"):
        train, test, classes = folder_records(tmp_path)
    assert classes == [nfc, "walk"] and [(r.rel, r.label) for r in test] == [
        (f"test/{nfd}/4.m2ts", 0),
        ("test/walk/5.flv", 1),
    ]
    assert [r.rel for r in train] == [
        f"train/{nfc}/1.3gp",
        "train/walk/2.MTS",
        "train/walk/3.wmv",
        "train/walk/linked/x.mp4",
    ]
    assert "folders whose names start with _ are not read (no class): _misc" in caplog.text
    # one file reached twice (a link to it beside its linked folder; a test/ link to a train/
    # video): two samples, one maybe a test video of its own training video; now read once
    (tmp_path / "train" / "walk" / "x_again.mp4").symlink_to(tmp_path / "real" / "x.mp4")
    (tmp_path / "test" / "walk" / "2_again.MTS").symlink_to(tmp_path / "train/walk/2.MTS")
    caplog.clear()
    with caplog.at_level("WARNING", logger="hpnet.data"):
        once, once_test, _ = folder_records(tmp_path)
    assert once == train and once_test == test
    assert "2 videos are the same file as another one (through links), left out: " in caplog.text
    assert "train/walk/x_again.mp4 (= train/walk/linked/x.mp4)" in caplog.text
    assert "test/walk/2_again.MTS (= train/walk/2.MTS)" in caplog.text
    for extra in ("train/walk/x_again.mp4", "test/walk/2_again.MTS"):
        (tmp_path / extra).unlink()
    # a link to nothing: left out, said (it was listed, then "undecodable: file not found")
    (tmp_path / "train" / "walk" / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    with caplog.at_level("WARNING", logger="hpnet.data.records"):
        again, _, _ = folder_records(tmp_path)
    assert again == train
    assert "1 video file(s) under" in caplog.text and "are links to nothing" in caplog.text
    assert f"left out: {tmp_path / 'train' / 'walk' / 'gone.mp4'}" in caplog.text
    # both forms in one folder of classes (no split folders): one class, every video of it
    _touch(tmp_path / "flat", [f"{nfc}/1.mp4", f"{nfd}/2.mp4", "walk/3.mp4", "walk/4.mp4"])
    (tmp_path / "flat" / "walk" / "up").symlink_to(tmp_path / "flat")  # a link to the root
    (tmp_path / "flat" / "walk" / "5.mp4").symlink_to(tmp_path / "flat/walk/3.mp4")  # (once)
    flat = folder_records(tmp_path / "flat", test_fraction=0.5)
    assert flat.classes == [nfc, "walk"]
    rels = sorted(r.rel for r in flat.train + flat.test)
    assert rels == sorted([f"{nfc}/1.mp4", f"{nfd}/2.mp4", "walk/3.mp4", "walk/4.mp4"])


def test_folder_split_folders_are_not_taken_for_classes(tmp_path, caplog):
    """<root>/train + <root>/val would be two classes "train" and "val": refused; a val/ beside
    train/ and test/ is named as unread."""
    _touch(tmp_path / "tv", ["train/a/1.mp4", "val/a/2.mp4"])
    with pytest.raises(UserError, match=r"folders named train, val: .* rename the held-out"):
        folder_records(tmp_path / "tv")
    _touch(tmp_path / "tvt", ["train/a/1.mp4", "val/a/2.mp4", "test/a/3.mp4"])
    with caplog.at_level("WARNING"):
        train, test, classes = folder_records(tmp_path / "tvt")
    assert classes == ["a"] and len(train) == len(test) == 1 and "val/ is not read" in caplog.text
    _touch(tmp_path / "caps", ["Train/walk/1.mp4", "Train/run/2.mp4", "Test/run/3.mp4"])
    train, test, classes = folder_records(tmp_path / "caps")  # (were classes Test and Train)
    assert classes == ["run", "walk"] and [r.rel for r in test] == ["Test/run/3.mp4"]
    assert [(r.rel, r.label) for r in train] == [("Train/run/2.mp4", 0), ("Train/walk/1.mp4", 1)]
    _touch(tmp_path / "tv2", ["Training/a/1.mp4", "Validation/a/2.mp4"])
    with pytest.raises(UserError, match=r"folders named Training, Validation: "):
        folder_records(tmp_path / "tv2")


def test_list_files(tmp_path):
    root = tmp_path / "videos"
    _touch(root, ["my clips/a b.mp4", "c.avi"])
    outside = tmp_path / "elsewhere" / "d e.mkv"
    _touch(tmp_path, ["elsewhere/d e.mkv"])
    train_list = tmp_path / "train.txt"
    train_list.write_text(f"# path label\nmy clips/a b.mp4  2\n\n{outside} 0\r\n")
    test_list = tmp_path / "test.txt"
    test_list.write_text(f"c.avi 1\n{root / 'c.avi'}\t1\n")
    train, test, classes = list_records(train_list, test_list, root)
    assert classes == ["class_0", "class_1", "class_2"]
    assert [(r.rel, r.label) for r in train] == [("my clips/a b.mp4", 2), (str(outside)[1:], 0)]
    assert train[1].path == outside
    assert [(r.rel, r.path) for r in test] == [("c.avi", root / "c.avi")]  # listed twice: once
    names = tmp_path / "names.txt"
    names.write_text("sit\nstand\nwave\n")
    assert list_records(train_list, None, root, names).classes == ["sit", "stand", "wave"]
    names.write_text("sit\nstand\n")
    with pytest.raises(UserError, match=r"label 2.*names only 2"):
        list_records(train_list, None, root, names)
    test_list.write_text("c.avi\n")
    with pytest.raises(UserError, match=r"test\.txt:1: expected"):
        list_records(None, test_list, root)
    test_list.write_text("gone.avi 0\nc.avi 0\n")
    with pytest.raises(UserError, match=r"1 of the 2 videos.*gone\.avi"):
        list_records(None, test_list, root)
    assert len(list_records(None, test_list, root, allow_missing=True).test) == 1
    # The same video named relative to a relative root, absolutely, and through "..": one rel
    # (the pose cache's key), and nothing outside the cache folder.
    (root / "sub").mkdir()
    test_list.write_text(f"sub/../c.avi 0\n{root / 'c.avi'} 0\n../elsewhere/d e.mkv 0\n")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        rels = [r.rel for r in list_records(None, test_list, "videos").test]
    finally:
        os.chdir(cwd)
    assert rels == ["c.avi", str(outside)[1:]]


def test_a_list_dataset_without_class_names_is_said_to_the_text_head(tmp_path, caplog):
    from hpnet.data.datasets import records_for_config

    _touch(tmp_path, ["a.mp4", "b.mp4"])
    (tmp_path / "train.txt").write_text("a.mp4 0\nb.mp4 1\n")
    args = ["data.dataset=list", f"data.root={tmp_path}", f"data.train_list={tmp_path}/train.txt"]
    with caplog.at_level(logging.WARNING, logger="hpnet.data.datasets"):
        records_for_config(load_config(None, [*args, "model.text=false"]))  # a linear head
        assert "classes_file" not in caplog.text
        assert records_for_config(load_config(None, args)).classes == ["class_0", "class_1"]
    assert "without data.classes_file: the classes are named class_0" in caplog.text


@pytest.mark.realdata
def test_a_video_listed_for_training_and_testing_is_refused(hmdb51_mini, tmp_path, caplog):
    """A test video listed for training too (by any of its names) would be scored after being
    trained on: an error naming it. One listed twice on one side is used once; twice with two
    labels is an error."""
    root = tmp_path / "videos"
    _touch(root, ["a.mp4", "b.mp4", "c.mp4"])
    train_list, test_list = tmp_path / "train.txt", tmp_path / "test.txt"
    train_list.write_text("a.mp4 0\nb.mp4 1\na.mp4 0\n")
    test_list.write_text(f"c.mp4 1\n{root / 'b.mp4'} 1\n")
    with pytest.raises(UserError, match=r"list: 1 video\(s\) are listed for both .*: b\.mp4"):
        list_records(train_list, test_list, root)
    test_list.write_text("c.mp4 1\n")
    with caplog.at_level("WARNING"):
        train = list_records(train_list, test_list, root).train
    assert [r.rel for r in train] == ["a.mp4", "b.mp4"] and "listed more than once" in caplog.text
    train_list.write_text("a.mp4 0\na.mp4 1\n")
    with pytest.raises(UserError, match=r"a\.mp4 is listed twice for train, with labels 0 and 1"):
        list_records(train_list, test_list, root)
    # HMDB51: a video tagged 1 (train) and 2 (test) in its split file
    split_dir = tmp_path / "splits"
    shutil.copytree(hmdb51_mini / "testTrainMulti_7030_splits", split_dir)
    golf = split_dir / "golf_test_split1.txt"
    first = golf.read_text().split()[0]
    golf.write_text(golf.read_text() + f"{first} 2\n{first} 1\n")
    with pytest.raises(UserError, match=rf"HMDB51 split 1: 1 video.*: golf/{re.escape(first)}"):
        hmdb51_records(hmdb51_mini, 1, split_dir, allow_missing=True)


# ------------------------------------------------------------------------------ clip loading


def _index_joints(record: VideoRecord, indices: np.ndarray, info) -> np.ndarray:
    """A joint source that writes each sampled frame index + 1 into joint 0's confidence (to read
    back; the joint sits at the frame centre, so no canvas crop removes it)."""
    joints = np.zeros((*indices.shape, 1, 17, 3), dtype=np.float32)
    joints[..., 0, 0, :] = 0.5
    joints[..., 0, 0, 2] = indices + 1
    return joints


def _clips(records, **kw) -> VideoClipDataset:
    args = {"frames": 4, "train": False, "views": 1, "canvas_hw": (16, 20), "seed": 0}
    args["resize"] = "crop"  # the test videos are flat grey: no black borders to average in
    return VideoClipDataset(records, **(args | kw))


def test_clip_shapes_frames_and_joints(tmp_path):
    path = write_video(tmp_path / "a" / "v.mp4", 20)
    record = VideoRecord(path, 3, "a/v.mp4")
    sample = _clips([record], frames=8, train=True, persons=2)[0]
    assert sample["video"].shape == (8, 3, 16, 20) and sample["video"].dtype == torch.uint8
    assert sample["joints"].shape == (8, 2, 17, 3) and not sample["joints"].any()
    assert (sample["label"], sample["index"]) == (3, 0)
    test = _clips([record], frames=5, views=2, joint_source=_index_joints)[0]
    assert test["video"].shape == (2, 5, 3, 16, 20) and test["joints"].shape == (2, 5, 1, 17, 3)
    indices = test["joints"][..., 0, 0, 2].long() - 1  # (V, T) as sampled
    grey = test["video"].float().mean(dim=(2, 3, 4))  # (V, T): frame k is grey 8 * k
    assert torch.allclose(grey, 8.0 * indices, atol=6)
    assert (indices[0] < indices[1]).all()  # the second view sits later in each segment


def _bad_inputs(tmp_path: Path, real_clip: Path) -> tuple[list[VideoRecord], set[str]]:
    """Good and bad videos in a tmp folder; returns the records and the rels of the bad ones."""
    root = tmp_path / "bad_inputs"
    write_video(root / "good" / "long.mp4", 24)
    write_video(root / "good" / "other.avi", 12)
    write_video(root / "good" / "single.mp4", 1)  # valid: padded to T by repeating it
    (root / "bad").mkdir()
    (root / "bad" / "zero.avi").write_bytes(b"")
    (root / "bad" / "text.avi").write_text("this is not a video\n" * 20)
    data = real_clip.read_bytes()
    # A real clip cut to a third is a shorter video (its frame count comes from the packets
    # found); cut inside the header it has no frame at all.
    (root / "good" / "truncated.avi").write_bytes(data[: len(data) // 3])
    (root / "bad" / "header_only.avi").write_bytes(data[:2000])
    rels = [
        "good/long.mp4", "bad/zero.avi", "good/other.avi", "bad/text.avi", "good/single.mp4",
        "bad/header_only.avi", "good/truncated.avi", "bad/missing.mp4",
    ]  # fmt: skip
    records = [VideoRecord(root / rel, i % 2, rel) for i, rel in enumerate(rels)]
    return records, {rel for rel in rels if rel.startswith("bad/")}


@pytest.fixture(scope="module")
def real_clip(shared_data) -> Path:
    return next((shared_data / "hmdb51_mini" / "golf").glob("*.avi"))


@pytest.mark.realdata
@pytest.mark.parametrize("workers", [0, 2])
def test_bad_videos_are_skipped_and_counted(tmp_path, real_clip, workers, caplog):
    records, bad = _bad_inputs(tmp_path, real_clip)
    ds = _clips(records, frames=6, views=2)
    loader = build_loader(ds, batch_size=3, train=False, workers=workers, seed=0)
    with caplog.at_level(logging.WARNING, logger="hpnet.data.datasets"):
        for _ in range(2):  # two epochs: each bad file is logged once, counted every time
            skipped, kept = 0, []
            for batch in loader:
                skipped += batch["skipped"]
                kept += batch["index"].tolist()
                assert batch["video"].shape[1:] == (2, 6, 3, 16, 20) or not len(batch["label"])
            assert skipped == len(bad) == 4
            assert sorted(records[i].rel for i in kept) == sorted({r.rel for r in records} - bad)
    assert {r.rel: n for r, n in ds.failed()} == dict.fromkeys(bad, 2)
    if workers == 0:  # worker processes log in their own process
        logged = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
        assert len(logged) == 4 and all(any(b in m for b in bad) for m in logged)
    single = ds[records.index(next(r for r in records if r.rel == "good/single.mp4"))]
    assert single["video"].shape == (2, 6, 3, 16, 20)
    assert (single["video"] == single["video"][0, 0]).all()  # one frame, repeated


@pytest.mark.realdata
def test_on_error_raise(tmp_path, real_clip):
    from hpnet.data.decode import VideoDecodeError

    records, bad = _bad_inputs(tmp_path, real_clip)
    ds = _clips(records, on_error="raise")
    for i, record in enumerate(records):
        if record.rel in bad:
            with pytest.raises(VideoDecodeError, match=record.path.name.replace(".", r"\.")):
                ds[i]
        else:
            assert ds[i]["video"].shape == (1, 4, 3, 16, 20)


def test_collate_clips_drops_none():
    def sample(i: int) -> dict:
        video = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
        return {"video": video, "joints": torch.zeros(4, 1, 17, 3), "label": i % 3, "index": i}

    batch = collate_clips([None, sample(1), sample(2), None])
    assert batch["skipped"] == 2 and batch["video"].shape == (2, 4, 3, 8, 8)
    assert batch["label"].tolist() == [1, 2] and batch["label"].dtype == torch.int64
    assert batch["index"].tolist() == [1, 2] and batch["joints"].shape == (2, 4, 1, 17, 3)
    empty = collate_clips([None, None])
    assert empty["skipped"] == 2 and len(empty["label"]) == 0 and len(empty["index"]) == 0


def _epoch_indices(loader) -> dict[int, list[int]]:
    """``{sample index: sampled frame indices}`` of one pass over a loader of _index_joints."""
    out = {}
    for batch in loader:
        for index, joints in zip(batch["index"].tolist(), batch["joints"], strict=True):
            out[index] = (joints[:, 0, 0, 2].long() - 1).tolist()
    return out


def test_train_sampling_reproducible_across_workers_and_new_each_epoch(tmp_path):
    path = write_video(tmp_path / "v.mp4", 48, size=(16, 16))
    records = [VideoRecord(path, 0, f"v{i}.mp4") for i in range(6)]
    runs = {}
    for workers in (0, 2):
        ds = _clips(records, train=True, frames=4, joint_source=_index_joints, seed=7)
        loader = build_loader(ds, batch_size=2, train=True, workers=workers, seed=7)
        runs[workers] = [_epoch_indices(loader) for _ in range(2)]  # epochs 0, 1 (auto)
        loader.sampler.set_epoch(1)  # explicit epoch, as on resume
        assert _epoch_indices(loader) == runs[workers][1]
    assert runs[0] == runs[2]  # same draws whatever the worker count
    first, second = runs[0]
    assert sorted(first) == list(range(6))
    assert first != second  # new offsets each epoch
    assert len({tuple(v) for v in first.values()}) > 1  # samples do not share a stream
    for values in first.values():  # TSN: one frame in each quarter of the 48 frames
        assert [v // 12 for v in values] == [0, 1, 2, 3]


def test_class_balanced_repeats_sample_their_own_frames(tmp_path):
    """A rare clip the balanced sampler draws many times in a pass gets new frames each time
    (the repeats travel as draw keys), the same ones again on a rerun of the epoch."""
    path = write_video(tmp_path / "v.mp4", 120, size=(16, 16))
    records = [VideoRecord(path, 0, f"v{i}.mp4") for i in range(11)]
    records.append(VideoRecord(path, 1, "rare.mp4"))  # 1 clip of class 1: half of the draws
    ds = _clips(records, train=True, frames=4, joint_source=_index_joints, seed=2)
    sampler = class_balanced_sampler(ds.labels, seed=5)
    loader = build_loader(ds, batch_size=1, train=True, workers=0, sampler=sampler, seed=5)

    def rare_draws() -> list[tuple[int, ...]]:
        got = []
        for batch in loader:
            if batch["index"].item() == 11:
                got.append(tuple((batch["joints"][0, :, 0, 0, 2].long() - 1).tolist()))
        return got

    loader.sampler.set_epoch(3)
    first = rare_draws()
    assert len(first) >= 3 and len(set(first)) == len(first)
    loader.sampler.set_epoch(3)
    assert rare_draws() == first


def test_epoch_sampler_and_loader_options(tmp_path):
    ds = _clips([VideoRecord(tmp_path / f"{i}.mp4", 0, f"{i}.mp4") for i in range(10)])
    sampler = EpochSampler(ds, seed=3)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(10)) and first != second and ds.epoch == 1
    sampler.set_epoch(0)
    assert list(sampler) == first and ds.epoch == 0
    balanced = class_balanced_sampler(ds.labels, seed=0)  # keeps (and advances) its own epoch
    wrapped = EpochSampler(ds, seed=3, sampler=balanced)
    balanced.set_epoch(5)
    assert len(list(wrapped)) == 10 and ds.epoch == 5
    list(wrapped)
    assert ds.epoch == 6
    wrapped.set_epoch(2)  # forwarded
    list(wrapped)
    assert ds.epoch == 2
    train = build_loader(ds, batch_size=4, train=True, workers=0, seed=0)
    assert train.drop_last and len(train) == 2 and isinstance(train.sampler, EpochSampler)
    small = build_loader(ds, batch_size=16, train=True, workers=0, seed=0)
    assert not small.drop_last and len(small) == 1  # never an empty epoch
    test = build_loader(ds, batch_size=4, train=False, workers=2, seed=0)
    assert not test.drop_last and len(test) == 3 and test.persistent_workers
    assert test.pin_memory == torch.cuda.is_available()


# -------------------------------------------------------------------------------- from Config


@pytest.mark.realdata
def test_build_datasets_hmdb51_decodes_nothing_until_asked(hmdb51_mini, monkeypatch):
    cfg = load_config(
        None,
        ["data.dataset=hmdb51", f"data.root={hmdb51_mini}", "data.allow_missing=true",
         "data.frames=4", "data.size=56", "eval.views=2", "pose.source=none", "pose.persons=2"],
    )  # fmt: skip

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded at construction")

    monkeypatch.setattr("hpnet.data.datasets.open_video", no_decoding)
    start = time.perf_counter()
    train_ds, test_ds, classes = build_datasets(cfg)
    assert time.perf_counter() - start < 2
    monkeypatch.undo()
    assert (len(train_ds), len(test_ds), len(classes)) == (5, 2, 51)
    assert train_ds.canvas_hw == loader_canvas(56) == (64, 85)
    sample = test_ds[0]
    assert sample["video"].shape == (2, 4, 3, 64, 85)
    assert sample["joints"].shape == (2, 4, 2, 17, 3)
    assert classes[sample["label"]] == test_ds.records[0].path.parent.name
    with pytest.raises(UserError, match="6759"):
        build_datasets(load_config(None, ["data.dataset=hmdb51", f"data.root={hmdb51_mini}"]))


def _synthetic_cfg(root: Path, *overrides: str):
    return load_config(
        None,
        ["data.dataset=synthetic", f"data.root={root}", "data.frames=4", "data.size=28",
         "data.aspect=1.0", "data.synthetic.train_videos=6", "data.synthetic.test_videos=3",
         "data.synthetic.resolution=32", "data.synthetic.length=8", "eval.views=2", *overrides],
    )  # fmt: skip


def test_build_datasets_synthetic_joints_by_pose_source(tmp_path):
    cfg = _synthetic_cfg(tmp_path, "pose.source=groundtruth")
    train_ds, test_ds, classes = build_datasets(cfg)
    assert (len(train_ds), len(test_ds)) == (6, 3) and len(classes) >= 8
    sample = train_ds[0]
    assert sample["video"].shape == (4, 3, 32, 32) and sample["joints"].shape == (4, 2, 17, 3)
    assert sample["joints"][:, 0, :, 2].gt(0).any()  # the actor's joints are there
    assert test_ds[1]["video"].shape == (2, 4, 3, 32, 32)
    _, none_ds, _ = build_datasets(_synthetic_cfg(tmp_path, "pose.source=none"), test_views=1)
    assert none_ds[1]["video"].shape == (1, 4, 3, 32, 32) and not none_ds[1]["joints"].any()
    with pytest.raises(UserError, match=r"write them with python -m hpnet\.data\.synthetic "):
        build_datasets(_synthetic_cfg(tmp_path, "pose.source=cache"))


def test_build_datasets_synthetic_files_with_the_pose_cache(tmp_path, caplog):
    from hpnet.data.synthetic import write_synthetic_videos
    from hpnet.pose.store import JointCache

    root = write_synthetic_videos(
        tmp_path / "syn", num_train=2, num_test=2, resolution=32, length=8
    )
    cfg = _synthetic_cfg(root, "pose.source=cache", "data.seed=5", "data.synthetic.fps=30")
    joints = JointCache(root / "pose_cache", persons=2)
    with caplog.at_level("WARNING", logger="hpnet.data.synthetic_files"):
        train_ds, test_ds, _ = build_datasets(cfg, joint_source=joints)
    assert isinstance(test_ds, VideoClipDataset) and (len(train_ds), len(test_ds)) == (2, 2)
    # the files are read as written, which is not what data.synthetic.* says (6 + 3 clips)
    differ = "train 2 (asked: 6), test 2 (asked: 3), fps 15.0 (asked: 30.0), seed 0 (asked: 5)"
    assert differ in caplog.text
    command = f"python -m hpnet.data.synthetic {root} --train 6 --test 3 --resolution 32 "
    assert command + "--length 8 --fps 30.0 --seed 5 (then" in caplog.text
    caplog.clear()
    asked = ["data.synthetic.train_videos=2", "data.synthetic.test_videos=2"]
    with caplog.at_level("WARNING", logger="hpnet.data.synthetic_files"):
        build_datasets(_synthetic_cfg(root, "pose.source=cache", *asked), joint_source=joints)
    assert "holds synthetic clips" not in caplog.text
    with caplog.at_level("WARNING", logger="hpnet.data.datasets"):  # the files go unread
        build_datasets(_synthetic_cfg(root, "pose.source=groundtruth", *asked))
    assert f"{root} holds synthetic clips written as files, but pose.source=groundtruth" in (
        caplog.text
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="hpnet.data.datasets"):  # once a folder and process
        build_datasets(_synthetic_cfg(root, "pose.source=groundtruth", *asked))
    assert "holds synthetic clips" not in caplog.text
    (root / "synthetic.json").unlink()  # files of an interrupted or older writer
    with caplog.at_level("WARNING", logger="hpnet.data.synthetic_files"):
        build_datasets(_synthetic_cfg(root, "pose.source=cache", *asked), joint_source=joints)
    assert "settings unknown (no synthetic.json" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="hpnet.data.datasets"):
        rendered = build_datasets(_synthetic_cfg(tmp_path / "mem", "pose.source=groundtruth"))[1]
    assert "holds synthetic clips" not in caplog.text
    for i in range(2):  # the same clip, from the file + cache and rendered in memory
        from_files, in_memory = test_ds[i], rendered[i]
        assert from_files["label"] == in_memory["label"]
        assert from_files["video"].shape == in_memory["video"].shape == (2, 4, 3, 32, 32)
        assert torch.allclose(from_files["joints"], in_memory["joints"])


def test_loader_workers_never_free_garbage_that_needs_the_parents_threads(tmp_path):
    """Cyclic garbage whose finalizer needs a lock another thread holds (as a PyAV reformatter
    needs its FFmpeg slice threads) is collected before the workers fork: freed in a worker,
    it waited forever for a thread the fork did not copy (a test split hung so)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import gc, threading, time
        import torch
        from hpnet.data.loader import ForkSafeLoader

        gc.disable()  # only the collections below, at known moments
        lock = threading.Lock()

        class NeedsTheThread:
            def __del__(self):
                with lock:
                    pass

        def garbage():
            held = NeedsTheThread()
            held.cycle = held

        garbage()

        def hold():
            with lock:
                time.sleep(1.0)

        threading.Thread(target=hold).start()
        time.sleep(0.2)  # the lock is held while the worker forks

        class Collects(torch.utils.data.Dataset):
            def __len__(self):
                return 1

            def __getitem__(self, index):
                gc.collect()  # a worker's collector frees what it inherited
                return torch.zeros(1)

        print(next(iter(ForkSafeLoader(Collects(), num_workers=1))).tolist())
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "[[0.0]]", done.stderr


def test_loader_workers_are_at_most_the_usable_cpus_said_once(monkeypatch, caplog):
    """data.workers=8 on 2 CPUs: 2 loader processes, one warning for every loader built so
    (torch warned per loader, in the middle of the progress bar)."""
    from hpnet.data import loader

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # (the affinity, not the machine, counts)
    monkeypatch.setattr(loader, "_SAID_WORKERS", set())
    ds = list(range(6))
    with caplog.at_level("WARNING", logger="hpnet.data.loader"):
        sizes = [build_loader(ds, batch_size=2, train=t, workers=8) for t in (True, False)]
        assert build_loader(ds, batch_size=2, train=False, workers=2).num_workers == 2
    assert [one.num_workers for one in sizes] == [2, 2]
    assert caplog.messages == [
        "data.workers=8 is more than the 2 CPUs this process may use: 2 loader processes"
    ]


def test_a_folder_dataset_given_one_folder_too_high_or_low_is_told_so(tmp_path, caplog):
    """data.root above the class folders made one class of them all (and a 100 % test top-1):
    said when listing, refused by training; data.root at a class folder, or videos outside
    class folders, said 'no videos found'."""
    from hpnet.runtime import build_run_datasets, check_videos

    _touch(tmp_path / "outer", ["mine/walk/1.mp4", "mine/run/2.mp4", "mine/run/3.mp4"])
    with caplog.at_level("WARNING", logger="hpnet.data.folder_records"):
        assert folder_records(tmp_path / "outer").classes == ["mine"]
    assert "one class folder, mine/, whose folders run, walk hold the videos" in caplog.text
    assert f"set data.root={tmp_path / 'outer' / 'mine'}" in caplog.text
    cfg = load_config(None, ["data.dataset=folder", f"data.root={tmp_path / 'outer'}",
                             "pose.source=none", "model.pose=false"])  # fmt: skip
    with pytest.raises(UserError, match=r"has 1 class \(mine\): a classifier needs 2 or more"):
        check_videos(build_run_datasets(cfg, test_views=1))
    assert folder_records(tmp_path / "outer" / "mine").classes == ["run", "walk"]
    with pytest.raises(UserError, match=r"run holds 2 videos outside class folders"):
        folder_records(tmp_path / "outer" / "mine" / "run")
    _touch(tmp_path / "flat", ["train/1.mp4", "test/2.mp4"])  # split folders without classes
    with pytest.raises(UserError, match=r"flat holds 2 videos outside class folders"):
        folder_records(tmp_path / "flat")
    caplog.clear()
    _touch(tmp_path / "one", ["fall/s1/1.mp4", "fall/s2/2.mp4", "fall/3.mp4"])  # its own too
    with caplog.at_level("WARNING", logger="hpnet.data.folder_records"):
        assert folder_records(tmp_path / "one").classes == ["fall"]
    assert "one class folder" not in caplog.text


def test_pose_settings_that_read_no_joints_are_said_as_they_are(tmp_path, caplog):
    """model.pose=true on pose.source=none trains the pose stream on missing joints (silent);
    model.pose=false beside pose.source=cache reads no joints (it warned "joints are zeros")."""
    from hpnet.runtime import build_run_datasets

    _touch(tmp_path, ["walk/1.mp4", "run/2.mp4"])
    base = ["data.dataset=folder", f"data.root={tmp_path}", f"pose.cache_dir={tmp_path}/pc"]
    with caplog.at_level("WARNING"):
        build_run_datasets(load_config(None, [*base, "pose.source=none"]), test_views=1)
    assert caplog.messages == [
        "model.pose=true with pose.source=none: every joint is missing, so the pose stream "
        "gets nothing to pool; set pose.source=cache (after python -m hpnet.pose.cache "
        "--config ...) or model.pose=false"
    ]
    caplog.clear()
    with caplog.at_level("WARNING"):
        for source in ("cache", "none"):
            cfg = load_config(None, [*base, f"pose.source={source}", "model.pose=false"])
            build_run_datasets(cfg, test_views=1)
    assert caplog.messages == []


@pytest.mark.parametrize("dataset", ["hmdb51", "ucf101", "folder", "unlabeled"])
def test_an_empty_data_root_is_refused_not_read_as_the_current_folder(dataset, tmp_path):
    from hpnet.data.datasets import records_for_config

    _touch(tmp_path, ["walk/a.mp4", "run/b.mp4"])  # (videos a current-folder read would find)
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        with pytest.raises(UserError, match=r"data.root is empty: set data.root=DIR"):
            records_for_config(load_config(None, [f"data.dataset={dataset}", "data.root="]))
        with pytest.raises(UserError, match=r"data.root is empty"):
            records_for_config(load_config(None, [f"data.dataset={dataset}", "data.root=' '"]))
        here = records_for_config(load_config(None, ["data.dataset=unlabeled", "data.root=."]))
        assert sorted(r.rel for r in here.train) == ["run/b.mp4", "walk/a.mp4"]
    finally:
        os.chdir(cwd)
