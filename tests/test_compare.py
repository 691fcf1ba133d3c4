"""``python -m hpnet.compare``: the test scores of several runs in one table."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from pathlib import Path

import pytest

from hpnet.cli import UserError
from hpnet.compare import main
from hpnet.config import config_to_dict, flat_config
from hpnet.config_schema import Config
from hpnet.config_types import dump_yaml
from hpnet.eval_report import protocol, setup


def _report(top1: float, **extra) -> dict:
    """An eval.json as hpnet.train writes it (protocol and setup of the default config)."""
    cfg = Config()
    return {
        "top1": top1, "top5": min(1.0, top1 + 0.25), "mean_class_acc": top1 / 2,
        "per_class": dict.fromkeys("abcd", top1), "num_videos": 8, "views": 6, "skipped": 0,
        "checkpoint": "x/last.pt",
        "protocol": protocol(cfg), "setup": setup(cfg), **extra,
    }  # fmt: skip


def _run(folder: Path, report: dict, **config: object) -> Path:
    """A run folder: ``eval.json`` and a ``config.yaml`` with ``config``'s dotted keys set."""
    folder.mkdir(parents=True)
    (folder / "eval.json").write_text(json.dumps(report))
    tree = config_to_dict(Config())
    for key, value in config.items():
        section, name = key.split(".")
        tree[section][name] = value
    (folder / "config.yaml").write_text(dump_yaml(tree))
    return folder


def _table(capsys, *argv: object) -> list[str]:
    assert main([str(a) for a in argv]) == 0
    return capsys.readouterr().out.splitlines()


def test_real_runs_best_first_with_the_settings_that_differ(tiny_checkpoint, tmp_path, capsys):
    """A real run folder (eval.json of hpnet.train: its settings recorded) against its
    ablation twin: the columns are the settings that differ as the reports record them (not
    as a later command left config.yaml), what they share is said above, the best first."""
    real = tiny_checkpoint.parent
    twin = tmp_path / "no_pose"
    twin.mkdir()
    report = json.loads((real / "eval.json").read_text())
    assert report["config"]["model.pose"] is True and report["config"]["train.seed"] == 0
    started = json.loads((real / "metrics.jsonl").read_text().splitlines()[0])["time"]
    assert report["trained"] == {
        "epochs": 1, "of": 1, "mid_epoch": False, "run_finished": True, "run_started": started
    }  # fmt: skip
    report["setup"]["model.pose"] = False
    report["config"].update({"data.seed": 7, "train.seed": 7})
    report["top1"] = report["top1"] / 2  # the worse one (a tie keeps the order given)
    (twin / "eval.json").write_text(json.dumps(report))
    config = (real / "config.yaml").read_text().replace("seed: 0", "seed: 99")
    (twin / "config.yaml").write_text(config)  # (a later command's: not these scores')
    lines = _table(capsys, real, twin)
    assert lines[0].startswith("same in every run: data.dataset=synthetic  data.split=1")
    assert "model.arch=lsvit" in lines[0] and "model.pose" not in lines[0]
    header = lines[1].split()
    assert header[:3] == ["run", "model.pose", "data.seed"]  # (train.seed also differs)
    assert "train.seed" in header and "train.out_dir" not in header  # (bookkeeping: never)
    first, second = lines[2].split(), lines[3].split()
    assert second[:2] == [str(twin), "false"] and second[2:4] == ["7", "7"]
    assert first[:2] == [str(real), "true"]
    assert first[-4:] == [
        f"{200 * report['top1']:.2f}", f"{100 * report['top5']:.2f}",
        f"{100 * report['mean_class_acc']:.2f}", str(report["num_videos"]),
    ]  # fmt: skip


def test_a_checkpoint_scored_again_shows_how(
    tiny_checkpoint, tmp_path, capsys, caplog, monkeypatch
):
    """``hpnet.evaluate`` with test settings of its own (another resize, fewer views) records
    them: its row differs from the run's where the test did; a checkpoint of a run stopped
    early is said. Read from another working folder, the run is found (absolute path)."""
    from hpnet.evaluate import main as evaluate_main

    again = tmp_path / "again"
    argv = ["--checkpoint", str(tiny_checkpoint), "--out", str(again), "data.resize=stretch"]
    assert evaluate_main([*argv, "train.epochs=3"]) == 0  # (not the run's: its own are read)
    report = json.loads((again / "eval.json").read_text())
    assert report["config"]["data.resize"] == "stretch"
    assert report["checkpoint"] == str(tiny_checkpoint.resolve())
    trained = {k: report["trained"][k] for k in ("epochs", "of", "mid_epoch", "run_finished")}
    assert trained == {"epochs": 1, "of": 1, "mid_epoch": False, "run_finished": True}
    report["trained"].update(of=3, run_finished=False)  # (as a run stopped after epoch 1)
    (again / "eval.json").write_text(json.dumps(report))
    capsys.readouterr()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        lines = _table(capsys, tiny_checkpoint.parent, again, "--keys", "data.resize")
    assert sorted(line.split()[1] for line in lines[2:]) == ["pad", "stretch"]
    assert f"{again}: scored a checkpoint after epoch 1 of train.epochs=3" in caplog.text
    assert f"{tiny_checkpoint.parent}: scored" not in caplog.text
    png = tmp_path / "c.png"
    assert main([str(again), "--curves", str(png)]) == 0  # (the run's metrics.jsonl)
    assert png.is_file()
    report["trained"]["run_started"] += 1  # another run in that folder since: not its curves
    (again / "eval.json").write_text(json.dumps(report))
    with pytest.raises(UserError, match=r"none of the runs has a metrics.jsonl to draw"):
        main([str(again), "--curves", str(png)])


def test_a_splits_summary_is_one_row_with_its_spread(tmp_path, capsys):
    """A ``--splits`` folder is its summary.json (mean +- std), not its split folders; its
    settings come from a split's config.yaml."""
    base = tmp_path / "runs" / "three"
    for split in (1, 2, 3):
        _run(base / f"split{split}", _report(0.1 * split), **{"train.lr": 0.01})
    summary = {
        "dataset": "hmdb51", "protocol": {k: v for k, v in protocol(Config()).items()
                                          if k != "data.split"},
        "setup": setup(Config()), "std_kind": "sample (n - 1)", "num_splits": 3,
        "splits": {str(s): {"top1": 0.1 * s, "top5": 0.5, "mean_class_acc": 0.05 * s,
                            "num_videos": 10 + s, "skipped": 0, "run": str(base / f"split{s}")}
                   for s in (1, 2, 3)},
        "mean": {"top1": 0.2, "top5": 0.5, "mean_class_acc": 0.1},
        "std": {"top1": 0.1, "top5": 0.0, "mean_class_acc": 0.05},
    }  # fmt: skip
    (base / "summary.json").write_text(json.dumps(summary))
    _run(tmp_path / "runs" / "one", _report(0.5))
    lines = _table(capsys, tmp_path / "runs")
    assert lines[1].split()[:3] == ["run", "data.split", "train.lr"]
    assert len(lines) == 4  # the summary and the other run: no split folder of its own
    three = lines[3]
    assert three.split()[:3] == [str(base), "1,2,3", "0.01"]
    assert "20.00 +- 10.00" in three and "10.00 +- 5.00" in three
    assert three.endswith(" 36")  # videos of the three splits


def test_joint_run_gives_a_row_per_dataset_and_unlike_protocols_are_warned(
    tmp_path, capsys, caplog
):
    own = {**protocol(Config()), "data.dataset": "ucf101", "data.frames": 8}
    first = {**protocol(Config()), "data.dataset": "hmdb51"}
    report = _report(
        0.6,
        protocol=first,
        datasets={
            "hmdb51": {**_report(0.6), "protocol": first},
            "ucf101": {**_report(0.9), "protocol": own},
        },
    )
    joint = _run(tmp_path / "joint", report)
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        lines = _table(capsys, joint)
    rows = [line.split() for line in lines[2:]]
    assert [r[:3] for r in rows] == [
        [str(joint), "[ucf101]", "ucf101"], [str(joint), "[hmdb51]", "hmdb51"]
    ]  # fmt: skip
    assert lines[1].split()[1:3] == ["data.dataset", "data.frames"]
    said = caplog.text
    assert "not scored alike: data.dataset (hmdb51 vs ucf101); data.frames (16 vs 8)" in said


def test_old_and_zero_shot_reports(tmp_path, capsys, caplog):
    """A report from before protocol and setup were recorded shows its config.yaml's values
    (``?`` without one) and says how to record them; a zero-shot report of then shows its CLIP
    as the model."""
    old = _report(0.3)
    del old["protocol"], old["setup"]
    _run(tmp_path / "old", old, **{"model.pose": False})
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "eval.json").write_text(json.dumps(old))  # (no config.yaml)
    zero = {k: v for k, v in _report(0.2).items() if k != "setup"}
    zero.update(model="ViT-B-16 openai", templates=["{}"])
    (tmp_path / "zs").mkdir()
    (tmp_path / "zs" / "eval.json").write_text(json.dumps(zero))  # (no config.yaml: no need)
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        lines = _table(
            capsys, *(tmp_path / n for n in ("old", "bare", "zs")), "--sort", "none",
            "--keys", "model.arch,model.pose",
        )  # fmt: skip
    assert lines[0] == "same in every run: classes=4"  # (the file's own; nothing else known)
    assert lines[1].split()[:3] == ["run", "model.arch", "model.pose"]
    assert lines[2].split()[1:3] == ["lsvit", "false"]  # from config.yaml
    assert lines[3].split()[1:3] == ["?", "?"]
    assert lines[4].split()[1:4] == ["clip", "zero-shot", "false"]
    older = f"{tmp_path / 'old'}, {tmp_path / 'bare'}: scored by an older hpnet"
    assert older in caplog.text and "python -m hpnet.evaluate --checkpoint" in caplog.text
    assert f"{tmp_path / 'bare'}: no config.yaml beside its report" in caplog.text
    assert f"{tmp_path / 'zs'}:" not in caplog.text


def test_formats_csv_json_markdown(tmp_path, capsys):
    a = _run(tmp_path / "a", _report(0.25, val={"top1": 0.5}), **{"train.lr": 0.1})
    b = _run(tmp_path / "b", _report(0.75, test_videos=20, max_steps=2))
    rows = list(csv.DictReader(io.StringIO("\n".join(_table(capsys, a, b, "--format", "csv")))))
    assert [r["run"] for r in rows] == [str(b), str(a)]
    assert rows[0]["top1"] == "0.75" and rows[1]["val_top1"] == "0.5"
    assert rows[1]["train.lr"] == "0.1" and rows[0]["model.pose"] == "true"
    assert rows[0]["test_videos"] == "20" and rows[1]["test_videos"] == ""
    records = json.loads("\n".join(_table(capsys, a, b, "--format", "json", "--keys", "data.seed")))
    assert records[0]["data.seed"] == 0 and records[1]["val_top1"] == 0.5
    assert records[1]["source"] == str(a / "eval.json")
    md = _table(capsys, a, b, "--format", "markdown")
    assert md[0].startswith("Same in every run: data.dataset=synthetic") and md[1] == ""
    assert md[2] == (
        "| run | train.lr | top-1 % | top-5 % | mean class acc % | val top-1 % | videos |"
    )
    assert md[3] == "|---|---|---:|---:|---:|---:|---:|"
    a, b = (str(p).replace("_", "\\_") for p in (a, b))  # (literal in markdown: escaped)
    assert md[4] == f"| {b} | 0.0005 | 75.00 | 100.00 | 37.50 | - | 8 of 20 |"
    assert md[5] == f"| {a} | 0.1 | 25.00 | 50.00 | 12.50 | 50.00 | 8 |"


@pytest.mark.parametrize("by", ["top1", "val_top1", "none"])
def test_sort(tmp_path, capsys, by):
    a = _run(tmp_path / "a", _report(0.75))
    b = _run(tmp_path / "b", _report(0.25, val={"top1": 0.5}))
    c = _run(tmp_path / "c", _report(0.5))
    lines = _table(capsys, a, b, c, "--sort", by)
    order = {"top1": [a, c, b], "val_top1": [b, a, c], "none": [a, b, c]}[by]
    assert [line.split()[0] for line in lines[2:]] == [str(p) for p in order]


def test_explicit_keys_and_a_folder_named_twice(tmp_path, capsys):
    a = _run(tmp_path / "a", _report(0.5), **{"train.epochs": 3})
    lines = _table(capsys, a, a / "eval.json", "--keys", "train.epochs, model.size")
    assert lines[1].split()[:3] == ["run", "train.epochs", "model.size"]
    assert len(lines) == 3 and lines[2].split()[1:3] == ["3", "base"]


def test_errors_name_the_path_and_the_fix(tmp_path, capsys, caplog):
    run = _run(tmp_path / "run", _report(0.5))
    (tmp_path / "waiting").mkdir()
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        _table(capsys, run, tmp_path / "waiting")
    assert f"{tmp_path / 'waiting'}: no eval.json or summary.json yet: left out" in caplog.text
    with pytest.raises(UserError, match=r"no eval.json or summary.json in .*waiting: a run"):
        main([str(tmp_path / "waiting")])
    with pytest.raises(UserError, match=r"run folder or report not found: .*nope"):
        main([str(tmp_path / "nope")])
    with pytest.raises(UserError, match=r"config.yaml is not JSON: give a run folder"):
        main([str(run / "config.yaml")])
    (tmp_path / "other.json").write_text(json.dumps({"top1": 0.5}))
    with pytest.raises(UserError, match=r"other.json is not an hpnet .* no top5, mean_class_acc"):
        main([str(tmp_path / "other.json")])
    with pytest.raises(UserError, match=r"--keys: unknown config key 'model.psoe' \(did you mean"):
        main([str(run), "--keys", "model.psoe"])
    with pytest.raises(UserError, match="--sort"):
        main([str(run), "--sort", "best"])


def test_every_bookkeeping_key_is_a_config_key():
    from hpnet.compare_keys import BOOKKEEPING

    assert set(flat_config(config_to_dict(Config()))) >= BOOKKEEPING


def test_a_summary_whose_split_folders_moved_is_still_read(tmp_path, capsys):
    """summary.json records its split folders as the run was started (maybe relative to
    another folder); the one beside it is read then."""
    base = tmp_path / "moved"
    _run(base / "split1", _report(0.5), **{"train.epochs": 9})
    summary = {
        "dataset": "hmdb51", "protocol": None, "setup": None, "num_splits": 1,
        "splits": {"1": {"top1": 0.5, "top5": 0.5, "mean_class_acc": 0.5, "num_videos": 4,
                         "run": "somewhere/else/split1"}},
        "mean": {"top1": 0.5, "top5": 0.5, "mean_class_acc": 0.5},
        "std": {"top1": None, "top5": None, "mean_class_acc": None},
    }  # fmt: skip
    (base / "summary.json").write_text(json.dumps(summary))
    records = json.loads(
        "\n".join(_table(capsys, base, "--format", "json", "--keys", "train.epochs"))
    )
    assert records[0]["train.epochs"] == 9 and records[0]["top1_std"] is None
    assert records[0]["data.split"] == "1"


def _metrics(folder: Path, *records: dict) -> None:
    lines = [json.dumps({"type": "train", **r}) for r in records]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_epoch_records_order_and_damage(tmp_path):
    """Per-epoch records in order: a resumed epoch's later record wins; the final ``test``
    record and a line cut by a kill are left out; no metrics.jsonl: none."""
    from hpnet.curves import epoch_records

    assert epoch_records(tmp_path) == []

    lines = [
        {"type": "train", "epoch": 2, "loss": 2.0},
        {"type": "train", "epoch": 1, "loss": 3.0},
        {"type": "train", "epoch": 2, "loss": 1.5},  # (epoch 2 again, after a resume)
        {"type": "test", "top1": 0.5},
    ]
    text = "\n".join(json.dumps(r) for r in lines) + '\n{"type": "train", "epo'
    (tmp_path / "metrics.jsonl").write_text(text)
    assert [(r["epoch"], r["loss"]) for r in epoch_records(tmp_path)] == [(1, 3.0), (2, 1.5)]


def test_curves_png_of_runs_splits_and_joint_datasets(tmp_path, capsys, caplog, monkeypatch):
    import hpnet.curves as curves

    drawn: list = []
    monkeypatch.setattr(curves, "epoch_records", _spy(curves.epoch_records, drawn))
    a = _run(tmp_path / "a", _report(0.5, val={"top1": 0.25}))
    _metrics(a, {"epoch": 1, "loss": 2.0, "test_top1": 0.25, "val_top1": 0.2},
             {"epoch": 2, "loss": 1.0, "test_top1": 0.5, "val_top1": 0.25})  # fmt: skip
    joint = _run(tmp_path / "j", _report(0.4, datasets={"x": _report(0.4), "y": _report(0.3)}))
    _metrics(joint, {"epoch": 1, "loss": 1.0, "test_top1_x": 0.4, "test_top1_y": 0.3})
    lost = _run(tmp_path / "lost", _report(0.1))  # (no metrics.jsonl: warned, not drawn)
    splits = tmp_path / "s"
    for split in (1, 2):
        _metrics(_run(splits / f"split{split}", _report(0.45)), {"epoch": 1, "loss": 1.0})
    summary = {
        "splits": {str(s): {**_report(0.45), "run": str(splits / f"split{s}")} for s in (1, 2)},
        "mean": _report(0.45), "std": {"top1": 0.0, "top5": 0.0, "mean_class_acc": 0.0},
    }  # fmt: skip
    (splits / "summary.json").write_text(json.dumps(summary))
    again = tmp_path / "again"  # (a's checkpoint scored again elsewhere: a's curves, once)
    again.mkdir()
    (again / "eval.json").write_text(json.dumps(_report(0.6, checkpoint=str(a / "last.pt"))))
    png = tmp_path / "out" / "curves.png"
    runs = [str(p) for p in (lost, a, joint, splits, again)]
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        assert main([*runs, "--curves", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in capsys.readouterr().err
    assert [f.name for f in drawn] == ["a", "split1", "split2", "j", "j", "lost"]  # best first
    assert f"{lost}: no epochs in {lost / 'metrics.jsonl'}: not drawn" in caplog.text
    with pytest.raises(UserError, match=r"--curves .*: none of the runs has a metrics.jsonl"):
        main([str(lost), "--curves", str(tmp_path / "none.png")])
    assert not (tmp_path / "none.png").exists()
    with pytest.raises(UserError, match=r"--curves c.jpg: name a .png file"):
        main([str(a), "--curves", "c.jpg"])


def test_curves_lines_are_the_records(tmp_path):
    """What is drawn: the loss per epoch, test top-1 % where evaluated, val dashed."""
    import matplotlib.pyplot as plt

    from hpnet.curves import Curve, write_curves_png

    _metrics(tmp_path, {"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0, "test_top1": 0.5,
                                                   "val_top1": 0.25})  # fmt: skip
    figures: list = []
    original = plt.subplots

    def keep(*args, **kwargs):
        fig, axes = original(*args, **kwargs)
        figures.append(axes)
        return fig, axes

    plt.subplots = keep
    try:
        assert write_curves_png(tmp_path / "c.png", [Curve("run", tmp_path)]) == 1
    finally:
        plt.subplots = original
    loss_ax, top_ax = figures[0]
    (loss,) = loss_ax.lines
    assert list(loss.get_xdata()) == [1, 2] and list(loss.get_ydata()) == [2.0, 1.0]
    test, val = top_ax.lines
    assert list(test.get_ydata()) == [50.0] and test.get_linestyle() == "-"
    assert list(val.get_ydata()) == [25.0] and val.get_linestyle() == "--"
    assert val.get_label() == "run (val)"


def _spy(function, calls: list):
    def spy(folder):
        calls.append(folder)
        return function(folder)

    return spy


def test_settings_a_run_does_not_use_are_no_difference(tmp_path, capsys):
    """``text.model`` of a run without a text head, ``data.synthetic.*`` of an HMDB51 run:
    ``-``, and no column unless runs that use them differ."""
    rgb = _report(0.5)
    rgb["setup"]["model.text"] = False
    a = _run(tmp_path / "a", rgb, **{"text.model": "RN50", "model.text": False})
    b = _run(tmp_path / "b", _report(0.25), **{"text.model": "ViT-B-16"})
    header = _table(capsys, a, b)[1].split()
    assert "model.text" in header and "text.model" not in header
    c = _run(tmp_path / "c", _report(0.1), **{"text.model": "ViT-L-14"})
    lines = _table(capsys, a, b, c, "--keys", "text.model,data.synthetic.length")
    assert [line.split()[1:3] for line in lines[2:]] == [
        ["-", "32"], ["ViT-B-16", "32"], ["ViT-L-14", "32"]
    ]  # fmt: skip
    hmdb = _report(0.9)
    hmdb["protocol"]["data.dataset"] = "hmdb51"
    d = _run(tmp_path / "d", hmdb, **{"data.dataset": "hmdb51"})
    lines = _table(capsys, d, c, "--keys", "data.synthetic.length")
    assert [line.split()[1] for line in lines[1:]] == ["data.synthetic.length", "-", "32"]


@pytest.mark.parametrize(
    "damage, said",
    [
        ({"top5": None}, "top5 is None, not a fraction in [0, 1]"),
        ({"top1": "n/a"}, "top1 is 'n/a', not a fraction"),
        ({"top1": 55.0}, "top1 is 55.0, not a fraction in [0, 1] (scores are recorded as"),
        ({"top1": float("nan")}, "top1 is nan, not a fraction"),
        ({"num_videos": None}, "num_videos is None, not a count"),
        ({"val": {"top1": 2}}, "val.top1 is 2, not a fraction"),
        ({"skipped": "n/a"}, "skipped is 'n/a', not a count"),
        ({"test_videos": -3, "max_steps": 2}, "test_videos is -3, not a count"),
    ],
)
def test_a_damaged_report_is_refused_naming_the_key(tmp_path, damage, said):
    report = _report(0.5)
    report.update(damage)
    run = _run(tmp_path / "run", report)
    with pytest.raises(UserError, match=re.escape(f"{run / 'eval.json'} is damaged: {said}")):
        main([str(run)])


@pytest.mark.parametrize(
    "damage, said",
    [
        (lambda s: s.update(std=None), "its std is not a table of scores"),
        (lambda s: s["mean"].pop("top5"), "it has no mean.top5"),
        (lambda s: s["splits"]["1"].pop("num_videos"), "it has no splits.1.num_videos"),
        (lambda s: s["std"].update(top1=-1), "std.top1 is -1, not a standard deviation"),
        (lambda s: s.update(mean=None), "its mean is not a table of scores"),
        (lambda s: s["splits"]["2"].update(skipped=1.5), "splits.2.skipped is 1.5, not a count"),
    ],
)
def test_a_damaged_summary_is_refused_naming_the_key(tmp_path, damage, said):
    summary = {
        "splits": {"1": {**_report(0.5), "run": "x"}, "2": {**_report(0.5), "run": "y"}},
        "mean": _report(0.5), "std": {"top1": 0.0, "top5": 0.0, "mean_class_acc": 0.0},
    }  # fmt: skip
    damage(summary)
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(UserError, match=re.escape(said)):
        main([str(tmp_path)])


def test_what_a_table_would_hide_is_said(tmp_path, capsys, caplog):
    """Undecodable test videos, unfinished runs below a folder of runs, a --splits run that
    stopped before its summary, label sets of different sizes (a joint run's datasets)."""
    runs = tmp_path / "runs"
    _run(runs / "broken", _report(0.5, skipped=1))
    (runs / "training").mkdir()
    (runs / "training" / "last.pt").write_bytes(b"")
    _run(runs / "stopped" / "split1", _report(0.25))
    (runs / "stopped" / "split2").mkdir()
    (runs / "stopped" / "split2" / "metrics.jsonl").write_text("")
    small = _report(0.75)
    small["per_class"] = {"a": 1.0, "b": 0.5}
    _run(runs / "joint", _report(0.75, datasets={"few": small}))
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        lines = _table(capsys, runs, "--sort", "none")
    rows = {line.split()[0]: line for line in lines[2:]}
    assert rows[str(runs / "broken")].endswith(" 8 (+1 skipped)")
    assert lines[1].split()[:2] == ["run", "classes"]
    assert rows[f"{runs / 'joint'}"].split()[1:3] == ["[few]", "2"]
    said = caplog.text
    assert f"{runs / 'broken'}: 1 test video could not be decoded: not in its scores" in said
    assert f"{runs / 'training'}: no eval.json yet (still training, or stopped)" in said
    assert f"{runs / 'stopped' / 'split2'}: no eval.json yet" in said
    assert f"{runs / 'stopped'}: a --splits run without its summary.json" in said
    assert "not scored alike: classes (2 vs 4)" in said


def test_zero_shot_rows_use_no_training_settings(tmp_path, capsys, caplog):
    zero = _report(0.2)
    zero.update(setup=None, model="ViT-B-16 openai", templates=["a video of {}."])
    (tmp_path / "zs").mkdir()
    (tmp_path / "zs" / "eval.json").write_text(json.dumps(zero))
    trained = _run(tmp_path / "t", _report(0.5), **{"train.lr": 0.1})
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        lines = _table(capsys, trained, tmp_path / "zs", "--keys", "train.lr,text.templates")
    assert lines[2].split()[1] == "0.1" and lines[3].split()[1:3] == ["-", '["a']
    assert "no config.yaml" not in caplog.text


def test_an_old_report_leaves_what_a_test_may_set_unknown(tmp_path, capsys):
    """config.yaml holds the run's eval.views, not necessarily its test's: ``?``."""
    old = _report(0.3)
    del old["protocol"], old["setup"]
    run = _run(tmp_path / "old", old, **{"eval.views": 7})
    lines = _table(capsys, run, "--keys", "eval.views,data.frames")
    assert lines[2].split()[1:3] == ["?", "16"]


def test_keys_and_sort_mistakes_are_said(tmp_path, capsys, caplog):
    run = _run(tmp_path / "run", _report(0.5))
    with pytest.raises(UserError, match=r"--keys ',': give config keys, e.g. --keys model"):
        main([str(run), "--keys", ","])
    with pytest.raises(UserError, match=r"--keys: 'model' is a section; give its keys, e.g. "):
        main([str(run), "--keys", "model"])
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        _table(capsys, run, "--sort", "val_top1")
    assert "--sort val_top1: no run held out validation videos" in caplog.text


def test_a_summary_of_splits_scored_before_and_after_config_was_recorded(tmp_path, capsys):
    """hpnet.splits.summarize and compare together: a summary whose splits all recorded their
    config carries what they share; one with a split of an older hpnet records none, and its
    settings come from a split's config.yaml (with the warning), not from nothing."""
    from hpnet.splits import summarize

    new = _report(0.5, config={"train.lr": 0.01, "data.split": 1, "data.seed": 3})
    old = {k: v for k, v in _report(0.25).items() if k != "config"}
    for name, second in (("both", {**new, "config": {**new["config"], "data.split": 2}}),
                         ("mixed", old)):  # fmt: skip
        base = tmp_path / name
        folders = {1: base / "split1", 2: base / "split2"}
        _run(folders[1], new, **{"train.lr": 0.02})
        _run(folders[2], second, **{"train.lr": 0.02})
        summary = summarize("hmdb51", {1: new, 2: second}, folders)
        (base / "summary.json").write_text(json.dumps(summary))
    assert json.loads((tmp_path / "both" / "summary.json").read_text())["config"] == {
        "train.lr": 0.01, "data.seed": 3
    }  # fmt: skip
    assert json.loads((tmp_path / "mixed" / "summary.json").read_text())["config"] is None
    lines = _table(capsys, tmp_path / "both", tmp_path / "mixed", "--keys", "train.lr,data.split")
    rows = {line.split()[0]: line.split()[1:3] for line in lines[2:]}
    both, mixed = str(tmp_path / "both"), str(tmp_path / "mixed")
    assert rows == {both: ["0.01", "1,2"], mixed: ["0.02", "1,2"]}


@pytest.mark.parametrize(
    "trained, said",
    [
        ({"epochs": 17, "of": 200, "mid_epoch": False, "run_finished": False},
         "scored a checkpoint after epoch 17 of train.epochs=200 (its run had not finished)"),
        ({"epochs": 17, "of": 200, "mid_epoch": True, "run_finished": False},
         "scored a checkpoint within epoch 18 of train.epochs=200"),
        ({"epochs": 50, "of": 200, "mid_epoch": False, "run_finished": True}, None),  # best.pt
        ({"epochs": 200, "of": 200, "mid_epoch": False, "run_finished": True}, None),
        ({"mid_epoch": True}, None),  # (damaged: not read)
    ],
)  # fmt: skip
def test_a_checkpoint_of_a_run_stopped_early_is_said(tmp_path, capsys, caplog, trained, said):
    run = _run(tmp_path / "run", _report(0.5, trained=trained))
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        _table(capsys, run)
    assert (f"{run}: {said}" in caplog.text) if said else ("scored a" not in caplog.text)


def test_a_joint_entrys_own_settings_stand_for_its_row(tmp_path, capsys, caplog):
    """A data.joint entry sets its own data.* keys: its block's records, not the first's."""
    x = _report(0.5, config={"data.resize": "stretch", "data.val_fraction": 0.2})
    x["setup"]["data.val_fraction"] = 0.2
    y = _report(0.5, config={"data.resize": "pad", "data.val_fraction": 0.0})
    y["per_class"] = dict.fromkeys("wxyz", 0.5)  # (as many classes as x, other ones)
    joint = _run(tmp_path / "j", {**x, "datasets": {"x": x, "y": y}})  # (the first's on top)
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        lines = _table(capsys, joint, "--keys", "data.resize,data.val_fraction", "--sort", "none")
    assert [line.split()[2:4] for line in lines[2:]] == [["stretch", "0.2"], ["pad", "0.0"]]
    assert "not scored alike: the class names differ" in caplog.text
    caplog.clear()
    y["per_class"] = dict.fromkeys("dcba", 0.5)  # (x's classes in another order: alike)
    (joint / "eval.json").write_text(json.dumps({**x, "datasets": {"x": x, "y": y}}))
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        _table(capsys, joint)
    assert "class names" not in caplog.text


def test_pretraining_runs_are_no_unfinished_runs(tmp_path, capsys, caplog):
    """A hpnet.pretrain folder never has an eval.json: below a folder of runs it is not said
    to be unfinished (its last.pt says what it is; without one, its epochs have no accuracy)."""
    import torch

    from hpnet.models.lsvit_weights import PRETRAIN_ENTRY

    runs = tmp_path / "runs"
    _run(runs / "done", _report(0.5))
    (runs / "mae").mkdir()
    torch.save({PRETRAIN_ENTRY: {"method": "videomae"}}, runs / "mae" / "last.pt")
    (runs / "simsiam").mkdir()
    _metrics(runs / "simsiam", {"epoch": 1, "loss": -0.5})
    (runs / "training").mkdir()
    _metrics(runs / "training", {"epoch": 1, "loss": 2.0, "acc": 0.25})
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        _table(capsys, runs)
    assert f"{runs / 'training'}: no eval.json yet" in caplog.text
    assert "mae" not in caplog.text and "simsiam" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):  # (runs/*: given as such)
        _table(capsys, *sorted(runs.iterdir()))
    assert f"{runs / 'mae'}: a pretraining run (no test scores): left out" in caplog.text
    assert f"{runs / 'training'}: no eval.json or summary.json yet" in caplog.text


def test_a_zero_shot_splits_summary_keeps_its_templates(tmp_path, capsys, caplog):
    from hpnet.eval_report import zero_shot_setup
    from hpnet.splits import summarize

    rows = {}
    for name, templates in (("plain", ["{}"]), ("video", ["a video of {}."])):
        report = _report(0.5, setup=zero_shot_setup("ViT-B-16 openai", templates))
        del report["checkpoint"]
        base = tmp_path / name
        summary = summarize("hmdb51", {1: report, 2: report}, {1: base / "s1", 2: base / "s2"})
        for split in ("split1", "split2"):  # (as zeroshot --splits leaves them: no curves)
            (base / split).mkdir(parents=True)
            (base / split / "eval.json").write_text(json.dumps(report))
        (base / "summary.json").write_text(json.dumps(summary))
        rows[str(base)] = templates
    trained = _run(tmp_path / "t", _report(0.1))  # (its curves: the zero-shot ones have none)
    _metrics(trained, {"epoch": 1, "loss": 1.0})
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        lines = _table(
            capsys, *rows, trained, "--curves", str(tmp_path / "c.png"), "--format", "json"
        )
    records = json.loads("\n".join(lines))
    assert {r["run"]: r["text.templates"] for r in records[:2]} == rows
    assert "metrics.jsonl" not in caplog.text  # (zero-shot: no curves, no warning)


def test_a_zero_shot_summary_of_an_older_hpnet_is_told_by_its_splits(tmp_path, capsys, caplog):
    """Before zero-shot reports recorded a setup, their --splits summary had none: the CLIP
    and templates are read from a split's eval.json (not shown as an unknown trained model)."""
    report = {**_report(0.25), "model": "ViT-B-16 openai", "templates": ["{}"]}
    del report["setup"], report["checkpoint"]
    base = tmp_path / "zs"
    for split in ("split1", "split2"):
        (base / split).mkdir(parents=True)
        (base / split / "eval.json").write_text(json.dumps(report))
    summary = {
        "dataset": "hmdb51", "protocol": report["protocol"], "setup": None,
        "splits": {s: {**report, "run": str(base / f"split{s}")} for s in ("1", "2")},
        "mean": _report(0.25), "std": {"top1": 0.0, "top5": 0.0, "mean_class_acc": 0.0},
    }  # fmt: skip
    (base / "summary.json").write_text(json.dumps(summary))
    with caplog.at_level(logging.WARNING, logger="hpnet.compare"):
        records = json.loads("\n".join(_table(capsys, base, "--format", "json")))
    assert records[0]["model.arch"] == "clip zero-shot" and records[0]["text.templates"] == ["{}"]
    assert records[0]["model.pretrained"] == "ViT-B-16 openai"
    assert "older hpnet" not in caplog.text and "no config.yaml" not in caplog.text


def test_settings_an_arch_does_not_read_and_bookkeeping_are_no_difference(tmp_path, capsys):
    """model.size of a late_fusion run, model.depth of an LS-ViT run: ``-`` (config_schema's
    ARCH_KEYS); train.eval_every (when to test on the way) is no column; markdown cells are
    literal text (``*`` and ``_`` escaped)."""
    baseline = _report(0.25)
    baseline["setup"]["model.arch"] = "late_fusion"
    a = _run(tmp_path / "a_*lf*", baseline, **{"model.arch": "late_fusion", "model.depth": 18,
                                               "train.eval_every": 4})  # fmt: skip
    b = _run(tmp_path / "b", _report(0.5), **{"model.size": "tiny"})
    lines = _table(capsys, a, b, "--keys", "model.size,model.depth", "--sort", "none")
    assert [line.split()[1:3] for line in lines[2:]] == [["-", "18"], ["tiny", "-"]]
    header = _table(capsys, a, b)[1].split()
    assert "model.arch" in header and "train.eval_every" not in header
    assert "model.size" not in header and "model.depth" not in header  # (one value each)
    md = _table(capsys, a, b, "--format", "markdown", "--sort", "none")
    assert md[4].startswith("| " + str(a).replace("_", "\\_").replace("*", "\\*") + " | ")
