"""``pretrain.method=simsiam`` through ``python -m hpnet.pretrain`` (metrics, exact resume) and
``model.arch=ssl_transformer`` through train, evaluate and predict, fine-tuned from that run."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from crash import assert_same_weights, crash_after_saves

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.models.hpnet import build_model
from hpnet.pretrain import run as pretrain_run
from hpnet.pretrain.setup import check_pretrain_config

REPO = Path(__file__).resolve().parents[1]
# ResNet-18, 4 frames of 32x32, a small projector: a step takes well under a second
SIMSIAM = [
    "--config",
    str(REPO / "configs" / "simsiam_demo.yaml"),
    "pretrain.proj_dim=64",
    "pretrain.pred_dim=16",
]
SSL = ["model.arch=ssl_transformer", "model.depth=18", "model.feedback=false"]
SSL += ["model.temporal_width=64", "model.temporal_depth=1"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def simsiam_args(tiny_args) -> list[str]:
    shared = [a for a in tiny_args[2:] if a.split("=")[0].startswith(("data.", "train."))]
    return [*SIMSIAM, *shared, "train.warmup_epochs=0"]


def _run(args: list[str], out: Path, *extra: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pretrain_run.main([*args, f"train.out_dir={out}", *extra])


def _train(args: list[str], out: Path, *extra: str) -> int:
    from hpnet.train import main as train_main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_main([*args, f"train.out_dir={out}", *extra])


@pytest.fixture(scope="module")
def simsiam_run(simsiam_args, tmp_path_factory) -> Path:
    """A 2-step SimSiam run (batch 4 of the 16 tiny clips)."""
    out = tmp_path_factory.mktemp("simsiam") / "run"
    assert _run(simsiam_args, out, "train.epochs=1", "train.max_steps=2") == 0
    return out


def _encoder(state: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def test_a_simsiam_run_writes_its_checkpoint_and_the_collapse_std(simsiam_run):
    ckpt = torch.load(simsiam_run / "last.pt", weights_only=True)
    assert ckpt["pretrain"] == {"method": "simsiam"} and ckpt["step"] == 2
    assert ckpt["config"]["model"]["depth"] == 18
    assert any(k.startswith("predictor.") for k in ckpt["model"])
    assert len(_encoder(ckpt["model"], "encoder.")) > 50
    (row,) = [json.loads(x) for x in (simsiam_run / "metrics.jsonl").read_text().splitlines()]
    assert -1 <= row["loss"] <= 1 and row["clips"] == 8
    assert 0 < row["collapse_std"] <= 1  # spread out: about 1/sqrt(64) = 0.125


def test_a_simsiam_step_reads_the_device_once(simsiam_args, tmp_path, monkeypatch):
    """The collapse std comes back with the step's loss, in the engine's one read per step."""
    from conftest import count_device_reads

    from hpnet import engine
    from hpnet.models import simsiam as simsiam_model
    from hpnet.pretrain import simsiam as simsiam_step

    files = (engine.__file__, simsiam_model.__file__, simsiam_step.__file__)
    reads = count_device_reads(monkeypatch, *files)
    assert _run(simsiam_args, tmp_path / "run", "train.epochs=1", "train.max_steps=2") == 0
    assert reads == [("engine.py", "tolist")] * 2
    (row,) = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert 0 < row["collapse_std"] <= 1


def test_a_simsiam_run_resumed_mid_epoch_ends_with_the_same_weights(
    simsiam_args, tmp_path, monkeypatch
):
    every = ["train.checkpoint_steps=1", "train.epochs=2", "data.synthetic.train_videos=8"]
    every += ["train.batch_size=4", "pretrain.simsiam_views=frames"]  # 2 steps an epoch
    whole = tmp_path / "whole"
    assert _run(simsiam_args, whole, *every) == 0

    crashed = tmp_path / "crashed"
    crash_after_saves(monkeypatch, pretrain_run, 3)  # epoch 1: 1 mid + 1 end; 2: after batch 1
    with pytest.raises(KeyboardInterrupt):
        _run(simsiam_args, crashed, *every)
    ckpt = torch.load(crashed / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["progress"]["epoch"]["batches"] == 1
    assert ckpt["progress"]["epoch"]["extra"]["collapse_std"] > 0
    monkeypatch.undo()
    assert _run(simsiam_args, crashed, *every, "train.resume=auto") == 0

    a, b = assert_same_weights(whole / "last.pt", crashed / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 4
    rows = [json.loads(x) for x in (crashed / "metrics.jsonl").read_text().splitlines()]
    wrows = [json.loads(x) for x in (whole / "metrics.jsonl").read_text().splitlines()]
    for key in ("loss", "collapse_std"):
        assert rows[-1][key] == pytest.approx(wrows[-1][key], abs=1e-5)
    with pytest.raises(UserError, match=r"it used pretrain.proj_dim=64, this run has 32"):
        _run(simsiam_args, crashed, *every, "train.resume=auto", "pretrain.proj_dim=32")
    with pytest.raises(UserError, match=r"it used model.depth=18, this run has 34"):
        _run(simsiam_args, crashed, *every, "train.resume=auto", "model.depth=34")
    # the predictor's constant lr makes optimizer groups of its own: a change is refused, and a
    # checkpoint from before the option (no key) counts as a decayed predictor
    with pytest.raises(UserError, match=r"it used pretrain.fix_pred_lr=True, this run has False"):
        _run(simsiam_args, crashed, *every, "train.resume=auto", "pretrain.fix_pred_lr=false")
    del ckpt["config"]["pretrain"]["fix_pred_lr"]
    torch.save(ckpt, crashed / "last.pt")
    with pytest.raises(UserError, match=r"it used pretrain.fix_pred_lr=False, this run has True"):
        _run(simsiam_args, crashed, *every, "train.resume=auto")


@pytest.fixture(scope="module")
def frozen_run(tiny_args, simsiam_run, tmp_path_factory) -> Path:
    """ssl_transformer fine-tuned one step from the SimSiam run, frame encoder frozen."""
    out = tmp_path_factory.mktemp("ssl") / "run"
    pretrained = f"model.pretrained={simsiam_run / 'last.pt'}"
    args = [*tiny_args, *SSL, pretrained, "model.freeze_backbone=true"]
    assert _train(args, out, "train.epochs=1", "train.max_steps=1") == 0
    return out


def test_fine_tuning_loads_the_simsiam_encoder_and_reports_it(
    tiny_args, simsiam_run, tmp_path, capsys, caplog
):
    pretrained = f"model.pretrained={simsiam_run / 'last.pt'}"
    cfg = load_config(tiny_args[1], [*tiny_args[2:], *SSL, pretrained])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, ["a", "b", "c"])
    report = model.pretrained_report
    assert "hpnet simsiam pretraining" in report and "predictor dropped" in report
    ckpt = torch.load(simsiam_run / "last.pt", weights_only=True)
    saved = _encoder(ckpt["model"], "encoder.")
    own = model.backbone.encoder.state_dict()
    assert own.keys() == saved.keys()
    for key, tensor in saved.items():
        assert torch.equal(own[key], tensor), key
    dropped = [k for k in ckpt["model"] if not k.startswith("encoder.")]
    assert f"loaded {len(saved)} tensors" in report and f"{len(dropped)} unused" in report
    temporal = [k for k in model.backbone.state_dict() if not k.startswith("encoder.")]
    assert f"{len(temporal)} new [" in report and len(temporal) > 4  # the Transformer over time
    grey = ["data.augment.mean=[0.5,0.5,0.5]", "data.augment.std=[0.25,0.25,0.25]"]
    with caplog.at_level("WARNING", logger="hpnet.models.normalisation"):
        build_model(load_config(tiny_args[1], [*tiny_args[2:], *SSL, pretrained, *grey]), ["a"])
    assert "were trained on mean [0.4814" in caplog.text  # (the SimSiam run's normalisation)
    foreign = {"model": {"encoder.x": torch.zeros(2)}, "pretrain": {"method": "simsiam"}}
    torch.save(foreign, tmp_path / "foreign.pt")
    nothing = f"model.pretrained={tmp_path / 'foreign.pt'}"
    with pytest.raises(UserError, match=r"none of its encoder tensors fits this one"):
        build_model(load_config(tiny_args[1], [*tiny_args[2:], *SSL, nothing]), ["a"])

    capsys.readouterr()
    assert _train([*tiny_args, *SSL, pretrained], tmp_path / "ft", "train.max_steps=1") == 0
    assert "model.pretrained: loaded" in capsys.readouterr().out
    tuned = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)["model"]
    tuned = _encoder(tuned, "backbone.encoder.")
    assert not torch.equal(tuned["conv1.weight"], saved["conv1.weight"])  # not frozen: learns


def test_freeze_backbone_keeps_the_encoder_through_training(frozen_run, simsiam_run):
    ckpt = torch.load(frozen_run / "last.pt", weights_only=True)
    assert ckpt["config"]["model"]["arch"] == "ssl_transformer" and ckpt["step"] == 1
    saved = _encoder(torch.load(simsiam_run / "last.pt", weights_only=True)["model"], "encoder.")
    trained = _encoder(ckpt["model"], "backbone.encoder.")
    assert trained.keys() == saved.keys()
    for key, tensor in saved.items():  # weights and BN running statistics alike
        assert torch.equal(trained[key], tensor), key


@pytest.mark.slow  # (~10 s: two epochs of ssl_transformer)
def test_freeze_backbone_epochs_trains_the_head_first_then_the_encoder(
    tiny_args, simsiam_run, tmp_path, monkeypatch, capsys
):
    from hpnet import train as train_module

    args = [*tiny_args, *SSL, f"model.pretrained={simsiam_run / 'last.pt'}"]
    args += ["model.freeze_backbone_epochs=1", "train.max_steps=1", "train.eval_every=0"]
    saved = _encoder(torch.load(simsiam_run / "last.pt", weights_only=True)["model"], "encoder.")
    whole = tmp_path / "whole"
    assert _train(args, whole) == 0
    assert "epoch 2: the frame encoder is fine-tuned from here on" in capsys.readouterr().out

    crashed = tmp_path / "crashed"
    crash_after_saves(monkeypatch, train_module, 1)  # killed once epoch 1's last.pt is written
    with pytest.raises(KeyboardInterrupt):
        _train(args, crashed)
    monkeypatch.undo()
    first = torch.load(crashed / "last.pt", weights_only=True)
    assert first["epoch"] == 1
    held = _encoder(first["model"], "backbone.encoder.")
    for key, tensor in saved.items():  # epoch 1: weights and BN statistics as loaded
        assert torch.equal(held[key], tensor), key
    assert _train(args, crashed, "train.resume=auto") == 0  # epoch 2 after a restart
    last, _ = assert_same_weights(whole / "last.pt", crashed / "last.pt")
    tuned = _encoder(last["model"], "backbone.encoder.")
    assert not torch.equal(tuned["conv1.weight"], saved["conv1.weight"])  # epoch 2: learns
    assert not torch.equal(tuned["bn1.running_mean"], saved["bn1.running_mean"])
    head = [k for k in last["model"] if not k.startswith("backbone.encoder.")]
    assert any(not torch.equal(first["model"][k], last["model"][k]) for k in head)


def test_an_ssl_transformer_checkpoint_evaluates_and_predicts(
    frozen_run, shared_data, tmp_path, capsys
):
    from hpnet.evaluate import main as evaluate_main
    from hpnet.predict import main as predict_main

    checkpoint = str(frozen_run / "last.pt")
    assert evaluate_main(["--checkpoint", checkpoint, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["num_videos"] == 8 and 0 <= report["top1"] <= 1  # all: max_steps acts in runs

    clip = sorted((shared_data / "hmdb51_mini" / "golf").glob("*.avi"))[0]
    capsys.readouterr()
    base = [str(clip), "--checkpoint", checkpoint, "--no-pose-estimation", "--json"]
    assert predict_main(base) == 0
    (video,) = json.loads(capsys.readouterr().out)["videos"]
    assert video["ok"] and len(video["top"]) >= 1
    assert 0 < sum(t["prob"] for t in video["top"]) <= 1 + 1e-4


def test_settings_that_cannot_work_are_refused(tiny_args, simsiam_args, simsiam_run, tmp_path):
    last = simsiam_run / "last.pt"
    cfg_args = [*tiny_args[2:], *SSL]
    with pytest.raises(UserError, match=r"model.feedback=true needs token blocks"):
        _train([*tiny_args, *SSL, "model.feedback=true"], tmp_path / "a")
    with pytest.raises(UserError, match=r"model.arch=lsvit has none: leave them unset"):
        _train([*tiny_args, "model.freeze_backbone_epochs=1"], tmp_path / "e")
    with pytest.raises(UserError, match=r"for the first epochs only: set one of them"):
        _train([*tiny_args, *SSL, "model.freeze_backbone=true", "model.freeze_backbone_epochs=1"],
               tmp_path / "f")  # fmt: skip
    with pytest.raises(UserError, match=r"covers all train.epochs=2: set model.freeze_backbone"):
        _train([*tiny_args, *SSL, "model.freeze_backbone_epochs=2"], tmp_path / "g")
    with pytest.raises(UserError, match=r"set model.arch=ssl_transformer"):
        _run(simsiam_args, tmp_path / "b", "model.arch=lsvit")
    with pytest.raises(UserError, match=r"model.pretrained=''"):
        _run(simsiam_args, tmp_path / "c", f"model.pretrained={last}")
    from hpnet.evaluate import main as evaluate_main

    with pytest.raises(UserError, match=r"is a pretraining checkpoint .*model.pretrained=PATH"):
        evaluate_main(["--checkpoint", str(last), "--out", str(tmp_path / "ev")])
    assert not (tmp_path / "ev").exists()  # a refused evaluation leaves no folder
    with pytest.raises(UserError, match=r"--preview shows VideoMAE"):
        _run(simsiam_args, simsiam_run, "--preview", "1")
    with pytest.raises(UserError, match=r"needs data.frames >= 3, got 2"):
        _run(simsiam_args, tmp_path / "d", "pretrain.simsiam_views=foreground", "data.frames=2")
    with pytest.raises(UserError, match=r"needs data.frames >= 2 \(e.g. 8\), got 1"):
        _run(simsiam_args, tmp_path / "d", "pretrain.simsiam_views=frames", "data.frames=1")
    with pytest.raises(UserError, match=r"train.batch_size must be 2 or more, got 1"):
        _run(simsiam_args, tmp_path / "e", "train.batch_size=1")
    with pytest.raises(UserError, match=r"is a ResNet-18 \(SimSiam\).*model.depth=34"):
        build_model(
            load_config(tiny_args[1], [*cfg_args, f"model.pretrained={last}", "model.depth=34"]),
            ["a", "b"],
        )
    other = tmp_path / "other.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, other)
    with pytest.raises(UserError, match=r"other.pt .* do not fit torchvision's resnet18 .*=18"):
        build_model(load_config(tiny_args[1], [*cfg_args, f"model.pretrained={other}"]), ["a", "b"])
    lsvit = [*tiny_args[2:], "model.size=tiny", "model.patch_size=8", f"model.pretrained={last}"]
    with pytest.raises(UserError, match=r"is a SimSiam run .*model.arch=ssl_transformer"):
        build_model(load_config(tiny_args[1], lsvit), ["a", "b"])
    for arch in ("late_fusion", "i3d"):  # (they said only that none of its tensors fits)
        other = [*tiny_args[2:], f"model.arch={arch}", "model.feedback=false"]
        other.append(f"model.pretrained={last}")
        with pytest.raises(
            UserError, match=rf"is a SimSiam run \(a 2D ResNet frame encoder\), not a "
            rf"model.arch={arch} backbone: load it with model.arch=ssl_transformer"
        ):  # fmt: skip
            build_model(load_config(tiny_args[1], other), ["a", "b"])
    with pytest.raises(UserError, match=r"model.temporal_width"):
        load_config(tiny_args[1], [*cfg_args, "model.temporal_width=100"])


def test_a_torchvision_resnet_file_initialises_the_frame_encoder(tiny_args, tmp_path, caplog):
    """... and a run normalising otherwise than ImageNet is warned of (it was silent, where
    late_fusion and lrcn given the same file warn)."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    state = resnet18().state_dict()
    torch.save(state, tmp_path / "resnet18.pt")
    cfg = load_config(
        tiny_args[1], [*tiny_args[2:], *SSL, f"model.pretrained={tmp_path}/resnet18.pt"]
    )
    with warnings.catch_warnings(), caplog.at_level("WARNING", "hpnet.models.normalisation"):
        warnings.simplefilter("ignore")
        model = build_model(cfg, ["a", "b"])
    (said,) = [m for m in caplog.messages if "were trained on mean" in m]
    assert "ssl_transformer's" in said and "data.augment.mean=[0.485,0.456,0.406]" in said
    assert (
        "torchvision" in model.pretrained_report
        and "2 unused [fc.weight, fc.bias]" in model.pretrained_report
    )
    for key, tensor in model.backbone.encoder.state_dict().items():
        assert torch.equal(tensor, state[key]), key
    assert "backbone.encoder.conv1.weight" in model.pretrained_names


@pytest.mark.slow  # two torchrun processes start torch each: ~20 s
def test_simsiam_on_two_gloo_processes_logs_the_collapse_std(simsiam_args, tmp_path):
    import os
    import subprocess
    import sys

    from ddp_launch import TORCHRUN

    out = tmp_path / "run"
    cmd = [sys.executable, *TORCHRUN, "-m", "hpnet.pretrain", *simsiam_args, f"train.out_dir={out}"]
    cmd += ["train.epochs=1", "train.max_steps=2", "train.batch_size=2"]
    env = {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["clips"] == 8 and 0 < row["collapse_std"] <= 1  # 2 ranks x 2 steps x 2 clips


def test_augment_views_on_videos_are_told_to_decode_one_frame(caplog):
    """simsiam_views=augment uses one frame of each clip: decoding 8 of them is waste it is told
    of (the shipped HMDB51 recipe decodes one); the rendered clips cost nothing to decode."""
    recipe = Path(__file__).parents[1] / "configs" / "hmdb51_simsiam.yaml"
    assert load_config(recipe).data.frames == 1
    for frames, dataset, told in [
        (8, "hmdb51", True),
        (1, "hmdb51", False),
        (8, "synthetic", False),
    ]:
        caplog.clear()
        cfg = load_config(recipe, [f"data.frames={frames}", f"data.dataset={dataset}"])
        with caplog.at_level("WARNING", logger="hpnet.pretrain.setup"):
            check_pretrain_config(cfg)
        assert ("set data.frames=1" in caplog.text) == told, (frames, dataset)


@pytest.mark.parametrize("freeze", ["model.freeze_backbone=true", "model.freeze_backbone_epochs=1"])
def test_freezing_a_random_frame_encoder_is_warned_of(freeze, caplog):
    """A frozen frame encoder without model.pretrained trains a Transformer on random features
    (silent before); with the pretraining run's weights nothing is said."""
    from hpnet.train import _check_run_config

    cfg = load_config(None, [*SSL, freeze, "train.epochs=2"])
    _check_run_config(cfg)
    assert "freezes a randomly initialised frame encoder" in caplog.text
    caplog.clear()
    _check_run_config(load_config(None, [*SSL, freeze, "train.epochs=2", "model.pretrained=x.pt"]))
    assert "randomly initialised" not in caplog.text
