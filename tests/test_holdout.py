"""The stratified hold-out behind data.val_fraction (and the folder dataset's test share)."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.data.datasets import build_datasets
from hpnet.data.holdout import stratified_holdout, validation_split

# 3 classes of 10, 5 and 2 videos, listed class after class
ITEMS = [(f"c{label}/v{i:02d}.avi", label) for label, n in enumerate((10, 5, 2)) for i in range(n)]
CLASSES = ["a", "b", "c"]


def _split(items, fraction, seed=0):
    keys, labels = zip(*items, strict=True)
    return validation_split(list(keys), list(labels), CLASSES, fraction, seed)


def test_each_class_gives_its_share_and_keeps_one():
    train, val = _split(ITEMS, 0.2)
    held = Counter(ITEMS[i][1] for i in val)
    assert held == {0: 2, 1: 1, 2: 1}  # round(10 * 0.2), round(5 * 0.2), at least one of 2
    assert sorted(train + val) == list(range(len(ITEMS))) and not set(train) & set(val)
    assert train == sorted(train) and val == sorted(val)  # in the list's order
    big = _split(ITEMS, 0.9)[0]
    assert Counter(ITEMS[i][1] for i in big) == {0: 1, 1: 1, 2: 1}  # one training video each


def test_the_split_depends_on_seed_and_names_only():
    train, val = _split(ITEMS, 0.3, seed=4)
    assert _split(ITEMS, 0.3, seed=4) == (train, val)
    assert _split(ITEMS, 0.3, seed=5)[1] != val
    shuffled = ITEMS[::-1]  # another listing order picks the same videos
    held = {shuffled[i][0] for i in _split(shuffled, 0.3, seed=4)[1]}
    assert held == {ITEMS[i][0] for i in val}
    grown = [*ITEMS, ("c0/v99.avi", 0)]  # a video added to class 0 moves no other video
    held_then = {ITEMS[i][0] for i in val if ITEMS[i][1] == 1}
    assert {grown[i][0] for i in _split(grown, 0.3, seed=4)[1] if grown[i][1] == 1} == held_then


def test_a_class_of_one_video_stays_in_training(caplog):
    items = [*ITEMS, ("c3/only.avi", 3)]
    with caplog.at_level(logging.WARNING):
        train, val = validation_split(*zip(*items, strict=True), [*CLASSES, "lonely"], 0.2, 0)
    assert len(items) - 1 in train and len(items) - 1 not in val
    assert "data.val_fraction=0.2" in caplog.text and "lonely" in caplog.text
    with pytest.raises(UserError, match=r"data\.val_fraction=0\.5 gives no validation video"):
        validation_split(["x", "y"], [0, 1], ["a", "b"], 0.5, 0)
    assert stratified_holdout(ITEMS, 0.0, 0) == (list(range(len(ITEMS))), [])


def test_val_fraction_is_validated():
    with pytest.raises(UserError, match=r"data\.val_fraction"):
        load_config(None, ["data.val_fraction=1"])


def test_synthetic_val_split_comes_from_the_training_clips(tmp_path):
    args = [f"data.root={tmp_path}", "data.synthetic.train_videos=12",
            "data.synthetic.test_videos=4", "data.synthetic.resolution=16",
            "data.synthetic.length=4", "data.frames=2", "data.size=16", "data.load_size=16",
            "data.synthetic.actions=[wave,kick,jump]", "data.val_fraction=0.25",
            "pose.source=groundtruth"]  # fmt: skip
    built = build_datasets(load_config(None, args), test_views=2)
    full = build_datasets(load_config(None, [*args, "data.val_fraction=0"]), test_views=2)
    assert len(built.train) == 9 and len(built.val) == 3 and full.val is None
    assert Counter(built.val.labels) == {0: 1, 1: 1, 2: 1}
    sample = built.val[0]
    assert sample["video"].shape[:2] == (2, 2)  # test mode: (V, T, 3, H, W)
    assert built.train[0]["video"].shape[0] == 2  # training mode: (T, 3, H, W)
    # the validation clips are the training clips the split names, and no longer train
    _, val = _split([(str(i), label) for i, label in enumerate(full.train.labels)], 0.25)
    for j, i in enumerate(val):
        assert (built.val.video[j] == full.train.video[i]).all()
    assert (
        len({*map(bytes, built.train.video.numpy())} & {*map(bytes, built.val.video.numpy())}) == 0
    )


def test_list_dataset_val_split_is_split_off_the_training_list(tmp_path):
    for rel, _ in ITEMS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).touch()  # never decoded here
    (tmp_path / "train.txt").write_text("".join(f"{rel} {label}\n" for rel, label in ITEMS))
    (tmp_path / "t.avi").touch()
    (tmp_path / "test.txt").write_text("t.avi 0\n")  # (a training video there is refused)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    files = {k: tmp_path / f"{k}.txt" for k in ("train", "test", "classes")}
    args = ["data.dataset=list", f"data.root={tmp_path}", f"data.train_list={files['train']}",
            f"data.test_list={files['test']}", f"data.classes_file={files['classes']}",
            "pose.source=none", "data.val_fraction=0.2", "data.seed=3"]  # fmt: skip
    built = build_datasets(load_config(None, args), test_views=3)
    _, val = _split(ITEMS, 0.2, seed=3)
    assert [r.rel for r in built.val.records] == [ITEMS[i][0] for i in val]
    assert not built.val.train and built.val.views == 3 and built.train.train
    assert {r.rel for r in built.train.records} == {rel for rel, _ in ITEMS} - {
        r.rel for r in built.val.records
    }


def _ucf_items() -> list[tuple[str, int]]:
    """UCF101-style names: 2 classes x 8 groups of 3-6 clips (clips of a group: one video)."""
    return [
        (f"{name}/v_{name}_g{g:02d}_c{c:02d}.avi", label)
        for label, name in enumerate(("Archery", "Rowing"))
        for g in range(1, 9)
        for c in range(1, 3 + (g + label) % 4 + 1)
    ]


def test_clips_of_one_source_video_are_held_out_together():
    """UCF101 / HMDB51 names say which clips come from one video: validation takes whole
    sources (none also trains), near the share per class; without the names, single clips."""
    from hpnet.config import load_config
    from hpnet.data.holdout import config_validation_split, hmdb51_source, ucf101_source

    assert ucf101_source("Rowing/v_Rowing_g08_c01.avi") == "Rowing/v_Rowing_g08"
    assert ucf101_source("Rowing/my clip.avi") == "Rowing/my clip.avi"
    assert hmdb51_source("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi") == (
        "brush_hair/April_09"
    )
    assert (
        hmdb51_source("punch/punch_u_nm_np1_ba_med_23.avi") == "punch/punch_u_nm_np1_ba_med_23.avi"
    )
    items = _ucf_items()
    keys, labels = [k for k, _ in items], [label for _, label in items]
    for dataset, grouped in (("ucf101", True), ("folder", False)):
        cfg = load_config(None, [f"data.dataset={dataset}", "data.val_fraction=0.25"])
        train, val = config_validation_split(cfg, keys, labels, ["Archery", "Rowing"])
        sources = {i: ucf101_source(keys[i]) for i in range(len(keys))}
        shared = {sources[i] for i in val} & {sources[i] for i in train}
        assert bool(shared) != grouped  # per clip, some group lands on both sides
        for label in (0, 1):
            n = labels.count(label)
            held = sum(labels[i] == label for i in val)
            assert abs(held - round(n * 0.25)) <= (3 if grouped else 0)
    hmdb = [(f"kick/{src}_kick_f_nm_np1_fr_med_{i}.avi", 0) for src in "ab" for i in range(4)]
    hmdb += [(f"kick/{src}_kick_u_cm_np1_le_bad_{i}.avi", 0) for src in "ab" for i in range(2)]
    cfg = load_config(None, ["data.dataset=hmdb51", "data.val_fraction=0.3"])
    _, val = config_validation_split(cfg, *map(list, zip(*hmdb, strict=True)), ["kick"])
    assert len({hmdb51_source(hmdb[i][0]) for i in val}) == 1 and len(val) == 6


def test_a_class_of_one_source_video_stays_in_training(caplog):
    from hpnet.data.holdout import ucf101_source

    items = [*_ucf_items(), *[(f"Surf/v_Surf_g01_c0{c}.avi", 2) for c in range(1, 5)]]
    keys, labels = zip(*items, strict=True)
    with caplog.at_level(logging.WARNING):
        _, val = validation_split(keys, labels, ["a", "b", "Surf"], 0.25, 0, ucf101_source)
    assert all(labels[i] != 2 for i in val) and {labels[i] for i in val} == {0, 1}
    assert "1 class(es) with a single source video" in caplog.text and "Surf" in caplog.text
    with pytest.raises(UserError, match="no class has training videos from 2 or more source"):
        validation_split(keys[-4:], labels[-4:], ["a", "b", "Surf"], 0.25, 0, ucf101_source)
