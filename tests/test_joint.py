"""Joint training on two synthetic datasets with different label sets (configs/joint_demo.yaml):
config checks, the interleaved loader, per-dataset logits, the run folder, evaluate, resume."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from hpnet import engine
from hpnet import train as hpnet_train
from hpnet.cli import UserError
from hpnet.config import dataset_configs, load_config
from hpnet.data.joint import JointLoader, interleave
from hpnet.data.loader import build_loader
from hpnet.distributed import DistInfo
from hpnet.evaluate import main as evaluate_main
from hpnet.models.hpnet import build_model
from hpnet.resume import check_resumable
from hpnet.runtime import build_run_datasets, build_run_train_loader, label_sets, start_epoch
from hpnet.train import main as train_main

REPO = Path(__file__).resolve().parents[1]
EVERYDAY = ["sit_down", "stand_up", "raise_arms", "lower_arms", "wave", "walk", "bow"]
SPORTS = ["walk", "kick", "punch", "jump", "jumping_jacks", "wave"]


@pytest.fixture(scope="module")
def joint_args(tmp_path_factory) -> list[str]:
    """joint_demo.yaml shrunk to seconds: everyday 16 / 4 clips, sports 8 / 3 clips, batch 4
    (4 + 2 steps an epoch), 4 frames of 32 x 32."""
    shared = tmp_path_factory.mktemp("joint")
    return [
        "--config", str(REPO / "configs" / "joint_demo.yaml"),
        f"data.root={shared / 'synthetic'}", "data.frames=4", "data.size=32",
        "data.load_size=32", "data.synthetic.train_videos=16", "data.synthetic.test_videos=4",
        "data.joint.sports.synthetic.train_videos=8", "data.joint.sports.synthetic.test_videos=3",
        "data.synthetic.resolution=32", "data.synthetic.length=8",
        "text.model=ViT-S-32-alt", "text.pretrained=", f"text.cache_dir={shared / 'text'}",
        "train.batch_size=4", "train.epochs=1", "train.eval_every=0",
        "train.warmup_epochs=0.5", "eval.batch_size=4", "eval.views=1", "eval.crops=1",
    ]  # fmt: skip


def _cfg(args: list[str], *extra: str):
    return load_config(args[1], [*args[2:], *extra])


def _train(args: list[str], out: Path, *extra: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_main([*args, f"train.out_dir={out}", *extra])


# ----------------------------------------------------------------------------------- config


def test_joint_entries_become_one_config_per_dataset(joint_args):
    cfg = _cfg(joint_args, "data.joint.sports.root=/elsewhere")
    (a, one), (b, two) = dataset_configs(cfg)
    assert (a, b) == ("everyday", "sports")
    assert one.data.synthetic.actions == EVERYDAY and two.data.synthetic.actions == SPORTS
    assert (one.data.seed, two.data.seed) == (0, 1)
    assert (one.data.synthetic.train_videos, two.data.synthetic.train_videos) == (16, 8)
    assert two.data.root == "/elsewhere" and one.data.root != "/elsewhere"
    assert not one.data.joint and not two.data.joint
    assert dataset_configs(_cfg(joint_args, "data.joint=[]"))[0][0] == ""  # one dataset


@pytest.mark.parametrize(
    ("joint", "message"),
    [
        ("[{name: a}]", r"lists 1 dataset; joint training needs 2 or more"),
        ("[{name: a}, {name: a}]", r"names 'a' twice"),
        ("[{name: a}, {seed: 1}]", r"entry 2 has name None; each entry needs a `name`"),
        ("[{name: a/b}, {name: c}]", r"entry 1 has name 'a/b'"),
        ("[{name: a, frames: 8}, {name: c}]", r"'a' sets data\.frames; .* data\.frames once"),
        ("[{name: a, rooot: x}, {name: c}]", r"a\.rooot' \(did you mean 'data\.joint\.a\.root'"),
        ("[{name: a, split: 4}, {name: c}]", r"'a': config key 'data\.joint\.a\.split' got 4; it"),
        ("[3, {name: c}]", r"config key 'data\.joint' got 3; it must be a mapping"),
    ],
)  # fmt: skip
def test_bad_joint_entries_are_one_line_errors(joint, message):
    with pytest.raises(UserError, match=message):
        load_config(REPO / "configs" / "joint_demo.yaml", [f"data.joint={joint}"])


def test_joints_an_entry_cannot_give_are_refused_naming_it(tmp_path):
    """pose.source=groundtruth with an HMDB51 entry: refused when the datasets are built
    (the config itself loads, so that python -m hpnet.data can inspect it)."""
    from hpnet.runtime import build_run_datasets

    joint = f"[{{name: a, dataset: hmdb51, root: {tmp_path}}}, {{name: c}}]"
    cfg = load_config(REPO / "configs" / "joint_demo.yaml", [f"data.joint={joint}"])
    with pytest.raises(UserError, match=r"entry 'a': pose\.source=groundtruth only exists"):
        build_run_datasets(cfg, test_views=1)


def test_an_override_of_an_unknown_entry_names_the_entries():
    message = r"data\.joint\.ucf101\.root' names no data\.joint entry.*everyday, sports"
    with pytest.raises(UserError, match=message):
        load_config(REPO / "configs" / "joint_demo.yaml", ["data.joint.ucf101.root=/x"])


def test_an_unknown_key_of_an_entry_is_named_as_written():
    """It was named 'data.wrokers', with 'data.frames' and 'data.joint' among the keys "here"
    (keys an entry refuses)."""
    with pytest.raises(UserError) as err:
        dataset_configs(
            load_config(REPO / "configs" / "joint_demo.yaml", ["data.joint.sports.wrokers=1"])
        )
    said = str(err.value)
    assert said.startswith("unknown config key 'data.joint.sports.wrokers' (did you mean ")
    assert "'data.joint.sports.workers'?" in said
    assert "frames" not in said and ", joint" not in said and "synthetic" in said
    quoted = ["data.joint.sports.root='/a b'", "data.joint.sports.augment.randaug_n=2"]
    entries = dataset_configs(load_config(REPO / "configs" / "joint_demo.yaml", quoted))
    assert entries[1][1].data.root == "/a b"  # (quotes dropped; a dotted key of an entry: fine)
    assert entries[1][1].data.augment.randaug_n == 2


def test_a_top_level_key_every_entry_sets_is_warned_of(caplog):
    """``data.split=2`` beside entries that each set their split changed nothing, silently;
    a key only some entries set (the others take it) and the entries' own overrides are fine."""
    config = REPO / "configs" / "hmdb51_ucf101_joint.yaml"
    with caplog.at_level("WARNING", logger="hpnet.config"):
        load_config(config, ["data.split=2", "pose.cache_dir=/x", "data.workers=2"])
    assert caplog.messages == [
        "data.split is set by each data.joint entry for itself, which the run reads: set "
        "data.joint.<name>.split (e.g. data.joint.hmdb51.split=...)",
        "pose.cache_dir is set by each data.joint entry for itself, which the run reads: set "
        "data.joint.<name>.pose_cache_dir (e.g. data.joint.hmdb51.pose_cache_dir=...)",
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="hpnet.config"):  # a nested key each entry sets
        load_config(REPO / "configs" / "joint_demo.yaml", ["data.synthetic.actions=[walk,run]"])
    assert caplog.messages == [
        "data.synthetic.actions is set by each data.joint entry for itself, which the run reads: "
        "set data.joint.<name>.synthetic.actions (e.g. data.joint.everyday.synthetic.actions=...)"
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="hpnet.config"):
        load_config(REPO / "configs" / "joint_demo.yaml", ["data.seed=3"])  # sports' own only
        load_config(REPO / "configs" / "joint_demo.yaml", ["data.synthetic.test_videos=3"])
        load_config(config, ["data.joint.hmdb51.split=2", "data.joint=[]", "data.split=2"])
    assert caplog.messages == []


def test_synthetic_actions_pick_the_classes(joint_args):
    datasets = build_run_datasets(_cfg(joint_args), test_views=1)
    assert [d.classes for d in datasets] == [EVERYDAY, SPORTS]
    sports = datasets[1].train
    assert sports.labels == [i % 6 for i in range(8)]
    with pytest.raises(
        UserError, match=r"data\.joint\.sports\.synthetic\.actions=\['fly', 'wave'\]: give 2"
    ):
        cfg = _cfg(joint_args, "data.joint.sports.synthetic.actions=fly,wave")
        build_run_datasets(cfg, test_views=1)


# ----------------------------------------------------------------------------------- loader


def test_interleave_spreads_each_dataset_in_proportion():
    assert interleave([2, 4]) == [1, 0, 1, 1, 0, 1]
    assert interleave([3, 3]) == [0, 1, 0, 1, 0, 1]  # equal sizes: round-robin
    order = interleave([223, 596])  # HMDB51 / UCF101 split 1 at batch 16
    assert order.count(0) == 223 and order.count(1) == 596
    first_half = order[: len(order) // 2]
    assert abs(first_half.count(0) - 223 / 2) <= 1  # the mix is even over the epoch


class _Clips(torch.utils.data.Dataset):
    def __init__(self, n: int, label: int) -> None:
        self.n, self.label = n, label

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"video": torch.zeros(1), "joints": torch.zeros(1), "label": self.label, "index": i}


def _loaders(sizes=(12, 6), rank: int = 0, world: int = 1) -> JointLoader:
    samplers = [
        torch.utils.data.DistributedSampler(_Clips(n, 0), world, rank, shuffle=True, seed=3)
        for n in sizes
    ]
    return JointLoader(
        [
            build_loader(_Clips(n, k), batch_size=2, train=True, workers=0, sampler=s, seed=3)
            for k, (n, s) in enumerate(zip(sizes, samplers, strict=True))
        ]
    )


def _pass(loader: JointLoader, epoch: int, skip: int = 0) -> list[tuple[int, list[int]]]:
    start_epoch(loader, epoch, skip)
    return [(b["dataset"], b["index"].tolist()) for b in loader]


def test_a_resumed_pass_is_the_rest_of_the_whole_pass():
    loader = _loaders()
    whole = _pass(loader, epoch=1)
    assert len(whole) == len(loader) == 9 and [d for d, _ in whole] == interleave([6, 3])
    assert all(label == d for d, _ in whole for label in [d])
    for skip in (1, 4, 8):
        assert _pass(loader, epoch=1, skip=skip) == whole[skip:]
    assert _pass(loader, epoch=2) != whole  # another epoch, another order


def test_every_rank_takes_the_same_dataset_at_each_step():
    """DDP: the heads of different datasets are different parameters, so the gradient
    all-reduce needs every rank on the same dataset at the same step."""
    ranks = [_pass(_loaders((16, 8), rank=r, world=2), epoch=0) for r in range(2)]
    assert [d for d, _ in ranks[0]] == [d for d, _ in ranks[1]] == interleave([4, 2])
    for dataset, size in ((0, 16), (1, 8)):  # each rank its own share of each dataset
        shares = [[i for d, idx in rank if d == dataset for i in idx] for rank in ranks]
        assert sorted(shares[0] + shares[1]) == list(range(size))


def test_the_run_loader_interleaves_both_datasets(joint_args):
    cfg = _cfg(joint_args)
    datasets = build_run_datasets(cfg, test_views=1)
    loader = build_run_train_loader(datasets, DistInfo())
    start_epoch(loader, 0)
    batches = list(loader)
    assert [b["dataset"] for b in batches] == interleave([4, 2])
    for b in batches:
        assert b["label"].max() < len(datasets[b["dataset"]].classes)


# ------------------------------------------------------------------------------------ model


@pytest.mark.parametrize("text", [True, False])
def test_each_label_set_has_its_own_logits(joint_args, text):
    cfg = _cfg(joint_args, f"model.text={text}")
    sets = [("everyday", EVERYDAY), ("sports", SPORTS)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, EVERYDAY, label_sets=sets).eval()
    video, joints = torch.randn(2, 4, 3, 32, 32), torch.rand(2, 4, 2, 17, 3)
    assert model(video, joints, label_set=0)["logits"].shape == (2, 7)
    assert model(video, joints, label_set=1)["logits"].shape == (2, 6)
    assert model(video, joints)["logits"].shape == (2, 7)  # the first dataset's by default
    with model.using_label_set(1):
        assert model.class_names == SPORTS
        torch.testing.assert_close(
            model(video, joints)["logits"], model(video, joints, label_set=1)["logits"]
        )
    assert model.class_names == EVERYDAY and model(video, joints)["logits"].shape == (2, 7)
    if text:  # a shared class name has one embedding in both sets
        a, b = model.label_embeddings_0, model.label_embeddings_1
        torch.testing.assert_close(a[EVERYDAY.index("walk")], b[SPORTS.index("walk")])


# -------------------------------------------------------------------------- run end to end


def _spy_logits(monkeypatch) -> list[int]:
    """The class count of every training batch's logits."""
    widths: list[int] = []
    real = engine.classification_loss

    def spy(out, labels, cfg):
        widths.append(out["logits"].shape[1])
        assert labels.max() < out["logits"].shape[1]
        return real(out, labels, cfg)

    monkeypatch.setattr(engine, "classification_loss", spy)
    return widths


@pytest.mark.slow  # about 20 s on a free 2-core CPU (train, 2 evaluations)
@pytest.mark.parametrize("text", [True, False], ids=["text_head", "linear_heads"])
def test_joint_run_end_to_end(joint_args, tmp_path, monkeypatch, text):
    out = tmp_path / "run"
    widths = _spy_logits(monkeypatch)
    assert _train(joint_args, out, f"model.text={text}") == 0
    assert widths == [[7, 6][d] for d in interleave([4, 2])]  # each batch over its own labels

    report = json.loads((out / "eval.json").read_text())
    assert set(report["datasets"]) == {"everyday", "sports"}
    assert report["num_videos"] == 4 and list(report["per_class"]) == EVERYDAY  # first's
    sports = report["datasets"]["sports"]
    assert set(sports) >= {"top1", "top5", "mean_class_acc", "per_class", "num_videos"}
    assert sports["num_videos"] == 3 and list(sports["per_class"]) == SPORTS
    assert report["datasets"]["everyday"]["top1"] == report["top1"]
    for name in ("everyday", "sports"):
        assert (out / f"confusion_matrix-{name}.png").is_file()
        header = (out / f"confusion_matrix-{name}.csv").read_text().splitlines()[0]
        assert header.split(",")[1:] == (EVERYDAY if name == "everyday" else SPORTS)
    assert (out / "confusion_matrix.csv").is_file()
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["classes"] == EVERYDAY
    assert ckpt["label_sets"] == [["everyday", EVERYDAY], ["sports", SPORTS]]
    if not text:  # one linear layer per dataset
        assert ckpt["model"]["head.heads.1.fuse.rgb.weight"].shape[0] == 6

    # evaluate with the run's own config: both datasets, the same report
    again = tmp_path / "again"
    assert evaluate_main(["--checkpoint", str(out / "last.pt"), "--out", str(again)]) == 0
    rerun = json.loads((again / "eval.json").read_text())["datasets"]
    for name, want in report["datasets"].items():
        assert rerun[name]["per_class"] == want["per_class"]
        assert rerun[name]["top5"] == pytest.approx(want["top5"]), name
    # evaluate one dataset of the joint checkpoint, on its own (its labels only)
    alone = tmp_path / "alone"
    one = ["data.joint=[]", "data.seed=1", "data.synthetic.actions=" + ",".join(SPORTS),
           "data.synthetic.train_videos=8", "data.synthetic.test_videos=3"]  # fmt: skip
    assert evaluate_main(["--checkpoint", str(out / "last.pt"), "--out", str(alone), *one]) == 0
    single = json.loads((alone / "eval.json").read_text())
    assert "datasets" not in single and list(single["per_class"]) == SPORTS
    for key in ("top1", "top5", "mean_class_acc", "per_class"):
        assert single[key] == pytest.approx(sports[key]), key


@pytest.mark.slow  # two runs of 6 steps
def test_joint_mid_epoch_resume_gives_the_same_weights(joint_args, tmp_path, monkeypatch):
    """last.pt every optimizer step; a crash after the third step of the interleaved epoch
    (datasets 1, 0, 0 done), resume: the same weights and epoch loss as without the crash."""
    every = ["train.checkpoint_steps=1", "model.text=false", "model.drop_path=0.2"]
    whole = tmp_path / "whole"
    _train(joint_args, whole, *every)

    crashed = tmp_path / "crashed"
    real = hpnet_train.atomic_save
    saves: list[dict] = []

    def crash_after_the_third_save(obj, path):
        real(obj, path)
        saves.append(obj)
        if len(saves) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(hpnet_train, "atomic_save", crash_after_the_third_save)
    with pytest.raises(KeyboardInterrupt):
        _train(joint_args, crashed, *every)
    assert torch.load(crashed / "last.pt", weights_only=True)["progress"]["epoch"]["batches"] == 3
    monkeypatch.setattr(hpnet_train, "atomic_save", real)
    _train(joint_args, crashed, *every, "train.resume=auto")

    a = torch.load(whole / "last.pt", weights_only=True)
    b = torch.load(crashed / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 1 and a["step"] == b["step"] == 6
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=0, atol=1e-6, msg=name)

    def train_loss(run: Path) -> float:
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return next(r["loss"] for r in rows if r["type"] == "train")

    assert train_loss(crashed) == pytest.approx(train_loss(whole), rel=1e-6)


def test_resume_with_other_joint_datasets_is_refused(tmp_path):
    from hpnet.checkpoint import FORMAT_VERSION

    ckpt = {"format": FORMAT_VERSION, "classes": EVERYDAY, "config": {}}
    ckpt["label_sets"] = [["everyday", EVERYDAY], ["sports", ["walk", "kick"]]]
    sets = [("everyday", EVERYDAY), ("sports", SPORTS)]
    with pytest.raises(UserError, match=r"trained on other data\.joint datasets"):
        check_resumable(ckpt, load_config(), EVERYDAY, sets, tmp_path, DistInfo())
    ckpt["label_sets"] = sets  # the same datasets: resumable
    check_resumable(ckpt, load_config(), EVERYDAY, sets, tmp_path, DistInfo())

    from types import SimpleNamespace

    from hpnet.resume import check_same_videos

    data = [SimpleNamespace(name="everyday", train=range(6)), SimpleNamespace(name="sports",
            train=range(3))]  # fmt: skip
    check_same_videos(ckpt, data, tmp_path)  # (a checkpoint before the record: not checked)
    check_same_videos({**ckpt, "train_videos": [6, 3]}, data, tmp_path)
    with pytest.raises(UserError, match=r"trained on 6 everyday, 4 sports videos an epoch, the "
                       r"data now gives 6 everyday, 3 sports \(another data.root"):  # fmt: skip
        check_same_videos({**ckpt, "train_videos": [6, 4]}, data, tmp_path)


def test_label_sets_of_one_dataset_are_empty(joint_args):
    datasets = build_run_datasets(_cfg(joint_args, "data.joint=[]"), test_views=1)
    assert len(datasets) == 1 and label_sets(datasets) == []


@pytest.mark.slow  # two runs, one of them under torchrun
def test_two_gloo_processes_train_joint_linear_heads_like_one(joint_args, tmp_path):
    """Per-dataset linear heads under DDP: the head of the other dataset gets no gradient in a
    step (find_unused_parameters), and 2 processes x batch 2 train like 1 process x batch 4."""
    import os
    import subprocess
    import sys

    from ddp_launch import TORCHRUN

    still = ["data.augment.flip=false", "data.augment.scale_min=1.0", "data.augment.ratio_max=1.0",
             "data.augment.jitter=0.0", "data.augment.blur_prob=0.0"]  # fmt: skip
    still.append("model.text=false")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    runs = {}
    for name, batch, launch in (
        ("single", 4, []),
        ("double", 2, TORCHRUN),
    ):  # fmt: skip
        runs[name] = tmp_path / name
        cmd = [sys.executable, *launch, "-m", "hpnet.train", *joint_args, *still,
               f"train.batch_size={batch}", f"train.out_dir={runs[name]}"]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(runs["single"] / "last.pt", weights_only=True)
    b = torch.load(runs["double"] / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    diffs = torch.cat([(b["model"][n] - t).abs().flatten() for n, t in a["model"].items()])
    assert (diffs <= 1e-5).float().mean() > 0.99, f"{(diffs > 1e-5).float().mean():.2%} differ"
    assert diffs.max() < 2e-3, f"largest difference {diffs.max():.2e}"


def test_a_validation_split_per_dataset(joint_args, tmp_path):
    """data.val_fraction in one entry: that dataset alone gets a validation set; its scores go
    to metrics (val_top1_<name>) and eval.json (datasets.<name>.val), none at the top level."""
    from hpnet.epoch_report import add_top1
    from hpnet.eval_report import write_run_report
    from hpnet.metrics import classification_report

    cfg = _cfg(joint_args, "data.joint.sports.val_fraction=0.25")
    everyday, sports = build_run_datasets(cfg, test_views=1)
    assert everyday.val is None and len(everyday.train) == 16
    # 8 clips of 6 actions: the 2 actions with 2 clips give one each
    assert sorted(sports.val.labels) == [0, 1] and len(sports.train) == 6

    def report(d, ds):
        labels = torch.tensor(ds.labels)
        return {**classification_report(torch.eye(len(d.classes))[labels], labels, d.classes),
                "views": 1, "skipped": 0}  # fmt: skip

    tests = [report(d, d.test) for d in (everyday, sports)]
    vals = [None, report(sports, sports.val)]
    record: dict = {}
    add_top1(record, [everyday, sports], vals, "val")
    assert record == {"val_top1_sports": 1.0}
    written = write_run_report(tests, [everyday, sports], tmp_path, "x.pt", vals)
    on_disk = json.loads((tmp_path / "eval.json").read_text())
    assert "val" not in on_disk and "val" not in on_disk["datasets"]["everyday"]
    assert on_disk["datasets"]["sports"]["val"]["num_videos"] == 2
    assert on_disk["datasets"]["sports"]["num_videos"] == 3 and written["top1"] == 1.0
    # each dataset's protocol, its own split (the top level's was data.split of the joint
    # config itself: 1, whichever splits the entries scored)
    cfg.data.split = 3
    write_run_report(tests, [everyday, sports], tmp_path, "x.pt", vals, cfg)
    on_disk = json.loads((tmp_path / "eval.json").read_text())
    assert on_disk["protocol"] == on_disk["datasets"]["everyday"]["protocol"]
    assert on_disk["protocol"]["data.split"] == everyday.cfg.data.split == 1
    assert on_disk["datasets"]["sports"]["protocol"]["data.dataset"] == sports.cfg.data.dataset
