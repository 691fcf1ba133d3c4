"""The official split files as users unpack them: UCF101's archives side by side, data.root one
level too high, folders differing in case, a label column in testlist, a subset classInd; a
joint entry's errors name its own keys; ``--splits`` reads every split's lists first."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.data.official_splits import read_ucf101_splits, ucf101_records

CLASSES = ("ApplyEyeMakeup", "Biking")


def _ucf101(top: Path, splits: tuple[int, ...] = (1, 2)) -> Path:
    """``top/UCF-101/<Class>/v_*.avi`` (empty files: only their presence is read) and
    ``top/ucfTrainTestlist/`` beside it, as the official archives unpack; returns the video
    root. Groups 1-2 test, 3-4 train, in every split."""
    root, lists = top / "UCF-101", top / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i} {c}\r\n" for i, c in enumerate(CLASSES, 1)))
    train, test = [], []
    for label, name in enumerate(CLASSES, 1):
        (root / name).mkdir(parents=True)
        for group in range(1, 5):
            rel = f"{name}/v_{name}_g{group:02d}_c01.avi"
            (root / rel).touch()
            (test if group <= 2 else train).append(rel if group <= 2 else f"{rel} {label}")
    for split in splits:
        (lists / f"trainlist0{split}.txt").write_text("\r\n".join(train) + "\r\n")
        (lists / f"testlist0{split}.txt").write_text("\r\n".join(test) + "\r\n")
    return root


def test_ucf101_as_its_archives_unpack(tmp_path):
    """data.root=UCF-101 finds ucfTrainTestlist/ beside it; data.root at their parent folder
    is told where the class folders are (not offered data.allow_missing first)."""
    root = _ucf101(tmp_path)
    splits = ucf101_records(root, 1)
    assert (len(splits.train), len(splits.test)) == (4, 4)
    assert {(r.rel, r.label) for r in splits.test} >= {("Biking/v_Biking_g01_c01.avi", 1)}
    with pytest.raises(UserError, match=rf"one level down: set data\.root={root}\."):
        ucf101_records(tmp_path, 1)
    (root / "Biking" / "v_Biking_g01_c01.avi").unlink()  # the lists beside the root are named
    with pytest.raises(UserError, match=r"\(the split files are .*ucfTrainTestlist/, beside"):
        ucf101_records(root, 1)
    with pytest.raises(UserError) as given:  # the folder was given: nothing to point out
        ucf101_records(root, 1, tmp_path / "ucfTrainTestlist")
    assert "beside data.root" not in str(given.value)


def test_ucf101_folders_that_differ_in_case_are_named(tmp_path):
    root = _ucf101(tmp_path)
    (root / "Biking").rename(root / "biking")
    with pytest.raises(UserError, match=r"1 class folder of the split files differs .* Biking/ "):
        ucf101_records(root, 1)


def test_what_data_root_lacks_is_said_as_it_is(tmp_path, caplog):
    """Missing videos under a data.root holding every class folder, or some of them, are not
    told to check that data.root holds the class folders; a root one level too high (or folders
    in another case) is said with data.allow_missing=true too (it hid the fix); a root above an
    HMDB51 tree is told where the tree is (not that the split folder is missing)."""
    from hpnet.data.official_splits import hmdb51_records

    root = _ucf101(tmp_path)
    (root / "Biking" / "v_Biking_g01_c01.avi").unlink()
    with pytest.raises(UserError, match=r"holds every class folder but not these videos") as err:
        ucf101_records(root, 1)
    assert "Check data.root" not in str(err.value)
    for video in (root / "Biking").iterdir():
        video.unlink()
    (root / "Biking").rmdir()
    with pytest.raises(UserError, match=r"1 of the 2 class folders are not under .*Biking/\)"):
        ucf101_records(root, 1)
    with caplog.at_level("WARNING"):
        assert ucf101_records(tmp_path, 1, allow_missing=True).train == []
    assert f"set data.root={root}." in caplog.text
    from hpnet.config import load_config
    from hpnet.data.datasets import build_datasets

    cfg = load_config(None, ["data.dataset=ucf101", f"data.root={tmp_path}", "pose.source=none",
                             "data.allow_missing=true", "model.pose=false"])  # fmt: skip
    with pytest.raises(UserError, match=rf"has no videos\. .*: set data\.root={root}\.$"):
        build_datasets(cfg)  # (the fix was in the warning line before the error only)
    top = tmp_path / "above"
    (top / "hmdb51" / "testTrainMulti_7030_splits").mkdir(parents=True)
    (top / "hmdb51" / "golf").mkdir()
    with pytest.raises(UserError, match=rf"one level down, set data\.root={top / 'hmdb51'}$"):
        hmdb51_records(top, 1)
    (top / "hmdb51" / "golf").rmdir()  # a folder of the lists alone: not the dataset's
    lists = top / "hmdb51" / "testTrainMulti_7030_splits"
    with pytest.raises(UserError, match=rf"split files are in {lists}: set data\.split_dir to it"):
        hmdb51_records(top, 1)
    caplog.clear()
    (root / "ApplyEyeMakeup").rename(root / "applyeyemakeup")  # in another case: said too
    with caplog.at_level("WARNING"):
        ucf101_records(root, 1, allow_missing=True)
    assert "ApplyEyeMakeup/ (on disk applyeyemakeup/); rename the folders" in caplog.text


def test_list_file_faults_name_the_split_files_not_data_root(tmp_path, capsys, caplog):
    """A video listed for training and testing is a fault of the split files (the error named
    data.root); one listed twice is warned of by ``python -m hpnet.data`` too (it hid it)."""
    from hpnet.data.__main__ import main as data_main

    root = _ucf101(tmp_path)
    lists = tmp_path / "ucfTrainTestlist"
    train = (lists / "trainlist01.txt").read_text()
    (lists / "trainlist01.txt").write_text(train + "Biking/v_Biking_g03_c01.avi 2\r\n")
    args = ["data.dataset=ucf101", f"data.root={root}", "pose.source=none"]
    assert data_main(args) == 0
    assert "1 train video(s) listed more than once" in caplog.text
    capsys.readouterr()
    (lists / "trainlist01.txt").write_text(train + "Biking/v_Biking_g01_c01.avi 2\r\n")
    with pytest.raises(UserError, match=r"testing: Biking/.*Fix the split files in .*list/\.$"):
        ucf101_records(root, 1)


def test_the_data_check_names_videos_no_split_file_lists(tmp_path, capsys):
    """A video added to a class folder, or a class classInd.txt leaves out, is never read:
    ``python -m hpnet.data`` says so (it said nothing); not a problem (the protocol's lists)."""
    import json

    from hpnet.data.__main__ import main as data_main

    root = _ucf101(tmp_path)
    args = ["data.dataset=ucf101", f"data.root={root}", "pose.source=none"]
    assert data_main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unlisted"] == []
    (root / "Biking" / "v_Biking_g99_c01.avi").touch()
    (root / "Surfing").mkdir()
    (root / "Surfing" / "v_Surfing_g01_c01.avi").touch()
    assert data_main(args) == 0
    assert (
        "unlisted    2 videos under data.root that no split file names, never read: "
        "Biking/v_Biking_g99_c01.avi, Surfing/v_Surfing_g01_c01.avi" in capsys.readouterr().out
    )
    above = ["data.dataset=ucf101", f"data.root={tmp_path}", "data.allow_missing=true"]
    assert data_main([*above, "pose.source=none", "--json"]) == 1  # one level too high: empty
    report = json.loads(capsys.readouterr().out)
    assert "one level down" in report["root_hint"] and report["unlisted"] is None  # (not all)


def test_ucf101_testlist_with_a_label_column(tmp_path):
    """Some copies write the label in testlist too: read (it must agree with the folder)."""
    root = _ucf101(tmp_path)
    lists = tmp_path / "ucfTrainTestlist"
    (lists / "testlist01.txt").write_text(
        "Biking/v_Biking_g01_c01.avi 2\nBiking/v_Biking_g02_c01.avi\n"
    )
    assert read_ucf101_splits(lists, 1)[2] == [
        (f"Biking/v_Biking_g0{g}_c01.avi", 1) for g in (1, 2)
    ]
    assert len(ucf101_records(root, 1).test) == 2
    (lists / "testlist01.txt").write_text("Biking/v_Biking_g01_c01.avi 1\n")
    with pytest.raises(UserError, match=r"testlist01\.txt:1: label 1 disagrees with the folder"):
        read_ucf101_splits(lists, 1)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n11 Biking\n")  # a subset, numbers kept
    with pytest.raises(UserError, match=r"classInd\.txt:2: .* renumber them"):
        read_ucf101_splits(lists, 1)


def test_a_joint_entry_error_names_the_entry_keys(tmp_path, capsys):
    """``data.joint.<name>.root``, not ``data.root`` (which a joint run does not read), in
    training's errors and in ``python -m hpnet.data``'s report."""
    from hpnet.data.__main__ import main as data_main
    from hpnet.runtime import build_run_datasets

    root = _ucf101(tmp_path / "ucf")
    config = tmp_path / "joint.yaml"
    config.write_text(
        "data:\n  joint:\n"
        "    - {name: ucf, dataset: ucf101, root: " + str(tmp_path / "ucf") + "}\n"
        "    - {name: mine, dataset: folder, root: " + str(root) + "}\n"
        "pose: {source: none}\nmodel: {pose: false, text: false}\n"
    )
    with pytest.raises(UserError) as err:
        build_run_datasets(load_config(config, []), test_views=1)
    message = str(err.value)
    assert message.startswith("data.joint entry 'ucf': UCF101 split 1")
    assert f"set data.joint.ucf.root={root}" in message
    assert "data.root" not in message.replace("data.joint.ucf.root", "")
    assert data_main(["--config", str(config)]) == 1
    report = capsys.readouterr().out
    assert f"fix: The class folders are one level down: set data.joint.ucf.root={root}." in report
    (tmp_path / "ucf" / "ucfTrainTestlist" / "classInd.txt").unlink()
    with pytest.raises(
        UserError, match=r"^data\.joint entry 'ucf': .*\(set data\.joint\.ucf\.split_dir to"
    ):
        data_main(["--config", str(config)])


def test_only_the_entry_keys_are_renamed_in_a_joint_entry_message():
    from hpnet.config import joint_entry_keys

    text = "list data.csv, folder data.root/x: set data.root. (data.frames=8, pose.cache_dir)"
    assert joint_entry_keys("u", text) == (
        "list data.csv, folder data.root/x: set data.joint.u.root. (data.frames=8, "
        "data.joint.u.pose_cache_dir)"
    )


def test_splits_reads_every_split_list_before_the_first_split_trains(tmp_path):
    from hpnet.train import main

    root = _ucf101(tmp_path, splits=(1, 2))  # no split 3 files
    out = tmp_path / "runs"
    args = ["data.dataset=ucf101", f"data.root={root}", "pose.source=none", "model.pose=false",
            "model.text=false", f"train.out_dir={out}", "train.device=cpu"]  # fmt: skip
    with pytest.raises(UserError, match=r"split file not found: .*list03\.txt"):
        main([*args, "--splits", "1,2,3"])
    assert not out.exists()  # nothing ran: split 1 did not train first


def test_a_finished_split_is_read_back_without_its_lists(tmp_path, monkeypatch):
    """Only the splits still to run need their split files (a summary is printed again from
    copied run folders, or after the dataset moved)."""
    import hpnet.train
    from hpnet.train import main

    checked = []

    class Checked(Exception):
        pass

    def record(cfg, splits):
        checked.append(list(splits))
        raise Checked

    monkeypatch.setattr(
        hpnet.train, "training_finished", lambda folder, **_: folder.name == "split3"
    )
    monkeypatch.setattr(hpnet.train, "check_split_lists", record)
    args = ["data.dataset=ucf101", f"data.root={tmp_path}", "pose.source=none",
            "model.pose=false", "model.text=false", f"train.out_dir={tmp_path}/runs"]  # fmt: skip
    with pytest.raises(Checked):
        main([*args, "--splits", "1,2,3"])
    assert checked == [[1, 2]]


def test_split_files_in_a_subfolder_of_the_root_are_pointed_to(tmp_path, capsys):
    """The lists moved into <root>/lists/: data.split_dir is what to set (not data.root, as if
    the dataset were one level down); given, the data check reads them (it refused them)."""
    from hpnet.data.__main__ import main as data_main

    root = _ucf101(tmp_path)
    lists = root / "lists" / "ucfTrainTestlist"
    (tmp_path / "ucfTrainTestlist").rename(lists.parent.mkdir() or lists)
    with pytest.raises(UserError, match=rf"split files are in {lists}: set data\.split_dir"):
        ucf101_records(root, 1)
    args = ["data.dataset=ucf101", f"data.root={root}", f"data.split_dir={lists}"]
    assert data_main([*args, "pose.source=none"]) == 0
    assert "result      OK" in capsys.readouterr().out
