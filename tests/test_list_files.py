"""List-file datasets (``data.dataset=list``): what real list files hold, read as meant or
refused with the fix. No video is opened here: the records only need the files to exist."""

from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path

import pytest

from hpnet.cli import UserError
from hpnet.data.__main__ import main as data_main
from hpnet.data.list_files import list_records, read_classes_file


def _files(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()


def _list(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_video_named_with_a_hash_is_no_comment(tmp_path):
    """HMDB51's ``#2_Gum_chew_...`` names start with ``#``: a ``<path> <label>`` line is a
    video, there or missing (a missing one is said, not read as a comment); ``# ...`` and
    lines without a label are comments."""
    _files(tmp_path, "#2_Gum_chew_0.mp4", "a.mp4", "b.mp4")
    train = _list(tmp_path / "train.txt", "# my clips 2", "#no label here", "#2_Gum_chew_0.mp4 1",
                  "a.mp4 0", "#gone.mp4 1")  # fmt: skip
    test = _list(tmp_path / "test.txt", "b.mp4 1")
    with pytest.raises(UserError, match=r"1 of the 4 videos listed are missing .*: #gone.mp4"):
        list_records(train, test, tmp_path)
    got = list_records(train, test, tmp_path, allow_missing=True)
    assert [r.rel for r in got.train] == ["#2_Gum_chew_0.mp4", "a.mp4"]
    assert [r.label for r in got.train] == [1, 0] and got.listed == 4


def test_missing_videos_are_named_in_the_order_listed(tmp_path):
    _files(tmp_path, "here.mp4")
    train = _list(tmp_path / "train.txt", "m1.mp4 0", "m2.mp4 1", "here.mp4 1", "m1.mp4 0")
    with pytest.raises(UserError, match=r"missing under .*: m1.mp4, m2.mp4\. "):
        list_records(train, None, tmp_path)


def test_a_video_listed_many_times_is_counted_once(tmp_path):
    _files(tmp_path, "a.mp4", "b.mp4", "c.mp4")
    lines = ["a.mp4 0", "./a.mp4 0", f"{tmp_path}/a.mp4 0", "b.mp4 1", "nope.mp4 1", "nope.mp4 1"]
    train = _list(tmp_path / "train.txt", *lines)
    test = _list(tmp_path / "test.txt", "c.mp4 1")
    with pytest.raises(
        UserError, match=r"list: 1 of the 4 videos listed are missing .*: nope.mp4\. "
    ):
        list_records(train, test, tmp_path)
    got = list_records(train, test, tmp_path, allow_missing=True)
    assert got.listed == 4 and [r.rel for r in got.missing] == ["nope.mp4"]


def test_a_third_column_is_refused_with_the_fix(tmp_path):
    """mmaction2's rawframe lists: ``path frames label``; read as a path ``a.mp4 30`` it was
    "missing", with data.root as the fix."""
    _files(tmp_path, "a.mp4")
    train = _list(tmp_path / "train.txt", "a.mp4 30 0")
    with pytest.raises(UserError, match=r"train.txt:1: 'a.mp4 30 0' has 3 columns: a list line"):
        list_records(train, None, tmp_path)
    _files(tmp_path, "my clip 30.mp4")  # (a path with spaces that is there: read)
    _list(train, "my clip 30.mp4 0")
    assert list_records(train, None, tmp_path).train[0].rel == "my clip 30.mp4"
    _files(tmp_path, "drinking/a.mp4")  # (Kinetics: drinking/ beside "drinking beer/")
    _list(train, "drinking beer/gone.mp4 1", "a.mp4 0")
    with pytest.raises(UserError, match=r"1 of the 2 videos listed are missing .*drinking beer"):
        list_records(train, None, tmp_path)


def test_utf16_files_are_refused_with_the_fix(tmp_path):
    _files(tmp_path, "a.mp4")
    train = tmp_path / "train.txt"
    train.write_text("a.mp4 0\n", encoding="utf-16")  # (Notepad's "Unicode")
    with pytest.raises(UserError, match=r"list file .*train.txt is UTF-16 .*: save it as UTF-8"):
        list_records(train, None, tmp_path)
    classes = tmp_path / "classes.txt"
    classes.write_text("golf\npunch\n", encoding="utf-16-le")  # (no BOM: NULs tell)
    with pytest.raises(UserError, match=r"classes file .*classes.txt is UTF-16"):
        read_classes_file(classes)


@pytest.mark.parametrize("label", ["²", "٣", "-1", "one"])
def test_a_label_that_is_not_a_plain_integer_is_a_line_error(tmp_path, label):
    _files(tmp_path, "a.mp4")
    train = _list(tmp_path / "train.txt", f"a.mp4 {label}")
    with pytest.raises(UserError, match=r"train.txt:1: expected '<video path> <label>'"):
        list_records(train, None, tmp_path)


def test_one_based_labels_are_told(tmp_path, caplog):
    _files(tmp_path, "a.mp4", "b.mp4", "c.mp4")
    train = _list(tmp_path / "train.txt", "a.mp4 1", "b.mp4 2", "c.mp4 3")
    classes = _list(tmp_path / "classes.txt", "# my classes", "golf", "punch", "climb")
    with pytest.raises(
        UserError,
        match=r"uses label 3 but .* names only 3 classes \(label i is "
        r"the file's i-th name, counted from 0, blank and comment lines not "
        r"counted\) \(the labels look 1-based: 1 to 3; hpnet's are 0-based",
    ):
        list_records(train, None, tmp_path, classes)  # fmt: skip
    with caplog.at_level(logging.WARNING):
        got = list_records(train, None, tmp_path)
    assert got.classes == ["class_0", "class_1", "class_2", "class_3"]
    assert "labels run from 1 to 3: label 0 (class_0) has no video" in caplog.text
    assert "for it (the labels look 1-based: 1 to 3; hpnet's are 0-based: subtract 1)" in (
        caplog.text
    )


def test_ucf101s_class_index_as_classes_file_is_refused(tmp_path):
    indexed = _list(tmp_path / "classInd.txt", "1 ApplyEyeMakeup", "2 ApplyLipstick", "3 Archery")
    with pytest.raises(UserError, match=r"has '<index> <name>' lines \('1 ApplyEyeMakeup': "):
        read_classes_file(indexed)
    names = _list(tmp_path / "names.txt", "3 point shot", "slam dunk")  # (a name with a number)
    assert read_classes_file(names) == ["3 point shot", "slam dunk"]


def test_a_name_in_the_other_unicode_form_is_found(tmp_path):
    """A list typed on one system, files written on macOS (NFD names): the same video."""
    nfd = unicodedata.normalize("NFD", "café.mp4")
    _files(tmp_path, nfd)
    train = _list(tmp_path / "train.txt", unicodedata.normalize("NFC", "café.mp4") + " 0")
    (record,) = list_records(train, None, tmp_path).train
    assert record.path.name == nfd


def test_hpnet_data_reports_one_class_as_training_refuses_it(tmp_path, capsys):
    _files(tmp_path, "a.mp4", "b.mp4")
    args = [
        "data.dataset=list", f"data.root={tmp_path}", "pose.source=none", "data.workers=0",
        f"data.train_list={_list(tmp_path / 'train.txt', 'a.mp4 0')}",
        f"data.test_list={_list(tmp_path / 'test.txt', 'b.mp4 0')}",
    ]  # fmt: skip
    assert data_main([*args, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert "1 class (class_0): a classifier needs 2 or more" in report["class_clash"]
    assert data_main(args) == 1
    assert "CLASSES: 1 class (class_0)" in capsys.readouterr().out


def test_evaluating_with_the_classes_in_another_order_is_warned(tiny_checkpoint, tmp_path, caplog):
    """A reordered data.classes_file (here: the synthetic actions reversed) makes the test's
    integer labels name other classes than in training: said, with the first that moved."""
    import torch

    from hpnet.evaluate import main as evaluate_main

    trained = torch.load(tiny_checkpoint, weights_only=True, mmap=True)["classes"]
    reordered = ",".join(reversed(trained))
    argv = ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "ev")]
    with caplog.at_level(logging.WARNING, logger="hpnet.evaluate"):
        assert evaluate_main([*argv, f"data.synthetic.actions={reordered}"]) == 0
    said = f"label 0: {trained[-1]!r} here, {trained[0]!r} in training"
    assert "names" in caplog.text and said in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hpnet.evaluate"):
        assert evaluate_main(argv) == 0
    assert "another order" not in caplog.text


def test_a_test_needs_no_training_video(tmp_path, caplog):
    """hpnet.evaluate on a machine holding the test videos only: the missing training videos
    are said, not refused; a missing test video still is; with a validation split (taken from
    the training videos) they are needed."""
    from hpnet.data.synthetic_files import write_synthetic_videos
    from hpnet.evaluate import main as evaluate_main
    from hpnet.train import main as train_main

    root = write_synthetic_videos(
        tmp_path / "clips", num_train=6, num_test=3, resolution=32, length=8, progress=False,
        actions=["wave", "walk", "bow"],
    )  # fmt: skip
    args = [
        "data.dataset=list", f"data.root={root}", f"data.train_list={root}/train.txt",
        f"data.test_list={root}/test.txt", f"data.classes_file={root}/classes.txt",
        "pose.source=none", "model.pose=false", "model.size=tiny", "model.patch_size=8",
        "data.frames=4", "data.size=32", "data.load_size=32", "data.workers=0",
        "text.model=ViT-S-32-alt", "text.pretrained=", f"text.cache_dir={tmp_path / 'text'}",
        "train.batch_size=3", "train.epochs=1", "eval.batch_size=3", "eval.views=1",
        "eval.crops=1", f"train.out_dir={tmp_path / 'run'}",
    ]  # fmt: skip
    assert train_main(args) == 0
    train_lines = (root / "train.txt").read_text().split()
    (root / train_lines[0]).unlink()  # a training video gone
    ckpt = ["--checkpoint", str(tmp_path / "run" / "last.pt"), "--out", str(tmp_path / "ev")]
    with caplog.at_level(logging.WARNING):
        assert evaluate_main(ckpt) == 0
    assert "1 of the videos the list files list are missing under" in caplog.text
    assert "none of them a test video: a test does not need them" in caplog.text
    with pytest.raises(UserError, match=r"list: 1 of the 9 videos listed are missing"):
        evaluate_main([*ckpt, "data.val_fraction=0.34"])  # (its validation videos: needed)
    test_lines = (root / "test.txt").read_text().split()
    (root / test_lines[0]).unlink()  # and a test video
    again = f"{train_lines[2]} {train_lines[3]}\n"  # (a line twice: warned of)
    (root / "train.txt").write_text((root / "train.txt").read_text() + again)
    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.raises(UserError, match=r"2 of the 9 videos"):
        evaluate_main(ckpt)
    assert caplog.text.count("listed more than once") == 1  # (its warnings: said once)
