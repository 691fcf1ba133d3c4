"""``python -m hpnet.export``: torch.export and ONNX files that compute what the eager model
computes, carry their labels and input layout, and refuse wrongly shaped input."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import hpnet
from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.export import export_model, load_exported, main
from hpnet.models.hpnet import build_model

TINY = ["data.frames=4", "data.size=32", "data.load_size=32", "text.model=ViT-S-32-alt"]
CLASSES = ["walk", "wave", "jump", "sit", "clap"]


def _model(pose: bool) -> tuple[torch.nn.Module, object]:
    cfg = load_config("configs/demo.yaml", [*TINY, f"model.pose={str(pose).lower()}"])
    torch.manual_seed(0)
    embeddings = F.normalize(torch.randn(len(CLASSES), 256), dim=-1)
    model = build_model(cfg, CLASSES, class_embeddings=embeddings, load_weights=False)
    return model.eval(), cfg


def _inputs(batch: int, pose: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(batch)
    video = torch.randn(batch, 4, 3, 32, 32, generator=g)
    joints = torch.rand(batch, 4, 2, 17, 3, generator=g) if pose else None
    return video, joints


@pytest.mark.slow  # (~16 s with pose, ~6 s without: the default suite keeps to its budget)
@pytest.mark.parametrize("pose", [True, False], ids=["pose", "rgb"])
def test_pt2_matches_eager_for_any_batch_and_refuses_wrong_shapes(tmp_path, pose, monkeypatch):
    model, cfg = _model(pose)
    out = tmp_path / ("model.pt2" if pose else "Model.PT2")  # the suffix in any case
    meta = export_model(model, cfg, out)
    assert meta["labels"] == CLASSES and meta["uses_pose"] is pose
    exported = load_exported(out)
    assert exported.labels == CLASSES and exported.meta["size"] == 32
    for batch in (1, 3):  # exported with a batch of 2: the batch dimension is dynamic
        video, joints = _inputs(batch, pose)
        with torch.no_grad():
            eager = model(video, joints)["logits"]
        got = exported(video, joints)
        assert got.shape == (batch, len(CLASSES))
        torch.testing.assert_close(got, eager, atol=1e-4, rtol=0)
    video, joints = _inputs(2, pose)
    with pytest.raises(ValueError, match=r"takes video of shape \(B, 4, 3, 32, 32\), got"):
        exported(torch.randn(2, 4, 3, 40, 40), joints)
    with pytest.raises(ValueError, match=r"takes video as floats, got torch.uint8: normalise"):
        exported(video.to(torch.uint8), joints)  # (it ran on the raw frames)
    from_numpy = exported(video.numpy(), None if joints is None else joints.numpy())
    torch.testing.assert_close(from_numpy, exported(video, joints))  # numpy arrays are taken
    with monkeypatch.context() as patch:  # (a .pt2's batch dimension runs to 4096)
        patch.setattr("hpnet.exported.MAX_BATCH", 1)
        with pytest.raises(ValueError, match=r"takes at most 1 clips a call .*got 2"):
            exported(video, joints)
    if pose:
        with pytest.raises(ValueError, match=r"takes joints of shape \(B, 4, 2, 17, 3\)"):
            exported(video, None)
        with pytest.raises(ValueError, match=r"video and joints hold 2 and 1 clips"):
            exported(video, joints[:1])  # (a torch.export guard's AssertionError)
        cases = {  # (x, confidence) of one joint -> what is said
            (float("nan"), 0.5): "NaN or inf", (50.0, 0.5): "joints reach 50",
            (0.5, 2.0): r"confidences must be in \[0, 1\]",
        }  # fmt: skip
        for (x, confidence), said in cases.items():
            wrong = joints.clone()
            wrong[0, 0, 0, 0, 0], wrong[0, 0, 0, 0, 2] = x, confidence
            with pytest.raises(ValueError, match=said):
                exported(video, wrong)
    else:
        with pytest.raises(ValueError, match="exported without pose"):
            exported(video, torch.rand(2, 4, 2, 17, 3))
    assert hpnet.load(out, overrides=["pose.persons=3"] * (not pose)).labels == CLASSES
    from hpnet.predict import main as predict_main

    with pytest.raises(UserError, match=r"--explain needs the model's layers: .* is exported"):
        predict_main(["v.mp4", "--checkpoint", str(out), "--overlay", "o.png", "--cam"])


@pytest.mark.slow
def test_onnx_matches_eager_with_onnx_runtime(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    model, cfg = _model(pose=True)
    out = tmp_path / "model.onnx"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_model(model, cfg, out)
    assert not [w for w in caught if "axis name" in str(w.message)]  # (one "batch" axis)
    assert "[torch.onnx]" not in capsys.readouterr().out  # (torch's step lines, not ours)
    exported = load_exported(out)
    assert exported.labels == CLASSES and exported.meta["uses_pose"]
    video, joints = _inputs(3, True)
    with torch.no_grad():
        eager = model(video, joints)["logits"]
    torch.testing.assert_close(exported(video, joints), eager, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"\(B, 4, 3, 32, 32\)"):
        exported(torch.randn(3, 4, 3, 32, 40), joints)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_command_exports_a_checkpoint_with_its_labels(tiny_args, tmp_path, capsys):
    from hpnet.checkpoint import load_checkpoint
    from hpnet.config import config_from_dict
    from hpnet.models.from_checkpoint import model_from_checkpoint
    from hpnet.train import main as train_main

    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train_main([*tiny_args, f"train.out_dir={run}", "train.max_steps=1"]) == 0
    capsys.readouterr()
    out = tmp_path / "exported" / "model.pt2"
    assert main(["--checkpoint", str(run / "last.pt"), "--out", str(out)]) == 0
    assert "joints (B, 4, 2, 17, 3) -> logits (B, 11)" in capsys.readouterr().out
    ckpt = load_checkpoint(run / "last.pt")
    model = model_from_checkpoint(ckpt, config_from_dict(ckpt["config"])).eval()
    exported = load_exported(out)
    assert exported.labels == ckpt["classes"]
    video, joints = _inputs(2, True)
    with torch.no_grad():
        eager = model(video, joints)["logits"]
    torch.testing.assert_close(exported(video, joints), eager, atol=1e-4, rtol=0)
    with pytest.raises(UserError, match=r"give a \.pt2 .* or \.onnx"):
        main(["--checkpoint", str(run / "last.pt"), "--out", str(tmp_path / "m.zip")])
    with pytest.raises(UserError, match="exported model not found"):
        load_exported(tmp_path / "missing.pt2")


def test_an_lstm_backbone_exports_without_torchs_notes(tmp_path, caplog):
    """lrcn's nn.LSTM sets its ``_flat_weights`` while traced: torch said so in a UserWarning
    on the user's screen; the export is right (its logits are the eager ones) and quiet."""
    cfg = load_config(
        "configs/demo.yaml",
        [*TINY, "model.arch=lrcn", "model.depth=18", "model.feedback=false", "model.pose=false"],
    )
    torch.manual_seed(0)
    embeddings = F.normalize(torch.randn(len(CLASSES), 256), dim=-1)
    model = build_model(cfg, CLASSES, class_embeddings=embeddings, load_weights=False).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_model(model, cfg, tmp_path / "lrcn.pt2")
    assert [str(w.message) for w in caught] == []
    video, _ = _inputs(2, pose=False)
    with torch.no_grad():
        eager = model(video, None)["logits"]
    exported = load_exported(tmp_path / "lrcn.pt2")
    torch.testing.assert_close(exported(video), eager, atol=1e-4, rtol=0)
