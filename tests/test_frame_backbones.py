"""model.arch late_fusion, lrcn and c3d: the seed study's baselines as backbones."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_backbones import _dead_parameters
from torchvision import models as tvm

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.models.c3d import C3D, C3DNet
from hpnet.models.cnn2d import FrameResNet
from hpnet.models.hpnet import HPNet, build_model
from hpnet.models.lrcn import LRCN

CLASSES = ["sit_down", "stand_up", "wave", "kick"]
SHAPES = {"late_fusion": (4, 32), "lrcn": (4, 32), "c3d": (8, 32)}  # (frames, side) tested
ARCHS = list(SHAPES)


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("text"))


def _build(text_cache: str, arch: str, *extra: str) -> HPNet:
    frames, side = SHAPES[arch]
    cfg = load_config(
        None,
        [
            f"model.arch={arch}",
            "model.depth=18",
            "model.feedback=false",
            f"data.size={side}",
            f"data.frames={frames}",
            "text.model=ViT-S-32-alt",
            "text.pretrained=",
            f"text.cache_dir={text_cache}",
            *extra,
        ],
    )
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model(cfg, CLASSES)


def _video(frames: int, side: int, b: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, frames, 3, side, side, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- the networks


def test_late_fusion_is_torchvisions_resnet_on_each_frame_averaged():
    torch.manual_seed(0)
    ref = tvm.resnet18().eval()
    ours = FrameResNet(18).eval()
    ours.model.load_state_dict({k: v for k, v in ref.state_dict().items() if "fc." not in k})
    video = _video(5, 64)  # the seed's 5 frames
    seen: list[torch.Tensor] = []
    hook = ref.layer4.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        scores = ref(video.flatten(0, 1)).unflatten(0, (2, 5))  # torchvision's own (B, T, 1000)
        fmap, pooled = ours.forward_features(video)
        got = ref.fc(pooled)
    hook.remove()
    torch.testing.assert_close(got, scores.mean(dim=1), rtol=1e-4, atol=1e-4)  # scores averaged
    torch.testing.assert_close(fmap, seen[0].permute(0, 2, 3, 1).unflatten(0, (2, 5)))
    assert fmap.shape == (2, 5, 2, 2, 512) and ours.embed_dim == ours.fmap_dim == 512


def test_lrcn_runs_an_lstm_over_the_frame_features():
    torch.manual_seed(0)
    lrcn = LRCN(18).eval()
    plain = FrameResNet(18).eval()
    plain.model.load_state_dict(lrcn.model.state_dict())
    video = _video(4, 32)
    with torch.no_grad():
        fmap, pooled = lrcn.forward_features(video)
        ref_fmap, frames = plain.frame_features(video)
        steps, _ = lrcn.lstm(frames)
        backwards = lrcn.forward_features(video.flip(1))[1]
        assert torch.allclose(
            plain(video.flip(1)), plain(video), atol=1e-5
        )  # late fusion: no order
    torch.testing.assert_close(fmap, ref_fmap)
    torch.testing.assert_close(pooled, steps.mean(dim=1))
    assert not torch.allclose(backwards, pooled, atol=1e-4)  # the LSTM reads the frame order
    assert (lrcn.fmap_dim, lrcn.embed_dim) == (512, 512) and LRCN(50).fmap_dim == 2048


def test_c3d_matches_c3d_pytorchs_layers_and_pool5_at_the_seed_size():
    torch.manual_seed(0)
    net = C3DNet().eval()
    names = {k.rsplit(".", 1)[0] for k in net.state_dict()}
    convs = ["conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b"]
    assert names == {*convs, "fc6", "fc7"}
    conv5b = torch.rand(2, 512, 2, 7, 7)  # conv5b of 16 x 112 x 112
    with torch.no_grad():
        h = F.max_pool3d(conv5b, 2, 2, padding=(0, 1, 1)).view(-1, 8192)  # the port's pool5
        expected = F.relu(net.fc7(F.relu(net.fc6(h))))
        torch.testing.assert_close(net.clip_feature(conv5b), expected)
        # 8 frames: one step left, pool5's padded spatial windows {0}, [1, 3), [3, 5), [5, 7)
        one_step = conv5b[:, :, :1]
        h = F.max_pool3d(one_step, (1, 2, 2), (1, 2, 2), padding=(0, 1, 1)).view(-1, 8192)
        expected = F.relu(net.fc7(F.relu(net.fc6(h))))
        torch.testing.assert_close(net.clip_feature(one_step), expected)
        net.train()  # one dropout before the classifier (the head's): fc7's output is whole
        pool5 = F.max_pool3d(conv5b, 2, 2, padding=(0, 1, 1)).view(-1, 8192)
        torch.manual_seed(1)
        trained = net.clip_feature(conv5b)
        torch.manual_seed(1)
        torch.testing.assert_close(trained, F.relu(net.fc7(net.dropout(F.relu(net.fc6(pool5))))))
        net.eval()
        for side in (16, 32, 48):  # maps of 1x1, 2x2 and 3x3: pooled to fc6's 1x4x4 too
            fmap, pooled = C3D().eval().forward_features(_video(8, side, b=1))
            assert fmap.shape == (1, 1, side // 16, side // 16, 512) and pooled.shape == (1, 4096)


# ------------------------------------------------------------------------ HP-Net on each arch

PLAIN = ("model.pose=false", "model.text=false")


@pytest.mark.parametrize(
    "arch, switches",
    [
        *[(arch, ()) for arch in ARCHS],
        ("late_fusion", PLAIN),  # the plain head is the same code on every arch
        *[pytest.param(arch, PLAIN, marks=pytest.mark.slow) for arch in ("lrcn", "c3d")],
    ],
)
def test_every_arch_trains_a_step_with_every_parameter_learning(text_cache, arch, switches):
    model = _build(text_cache, arch, *switches)
    frames, side = SHAPES[arch]
    video = _video(frames, side)
    joints = torch.rand(2, frames, 2, 17, 3)
    joints[..., 2] = (joints[..., 2] > 0.2).float()
    out = model(video, joints)
    assert out["logits"].shape == (2, len(CLASSES))
    assert ("aux_logits" in out) == ("model.pose=false" not in switches)
    loss = (
        out["logits"].logsumexp(1).sum() + out.get("aux_logits", out["logits"]).logsumexp(1).sum()
    )
    loss.backward()
    assert _dead_parameters(model) == []
    assert model.backbone.arch == arch


def test_layer_decay_spans_stem_stages_and_top(text_cache):
    late, c3d = _build(text_cache, "late_fusion"), _build(text_cache, "c3d")
    lrcn = _build(text_cache, "lrcn")
    assert late.num_layers == lrcn.num_layers == 4 and c3d.num_layers == 6
    assert late.layer_id("backbone.model.bn1.weight") == 0
    assert late.layer_id("backbone.model.layer2.1.conv1.weight") == 2
    assert lrcn.layer_id("backbone.lstm.weight_hh_l0") == 5 == lrcn.layer_id("head.fuse.rgb.weight")
    ids = [c3d.layer_id(f"backbone.model.{n}.weight") for n in ("conv1", "conv3b", "fc7")]
    assert ids == [0, 2, 6] and c3d.layer_id("pose_encoder.coord.weight") == 7


# ------------------------------------------------------------------------------- config checks


@pytest.mark.parametrize("arch", ARCHS)
def test_feedback_is_refused(text_cache, arch):
    with pytest.raises(UserError, match=rf"model\.feedback=true .*model\.arch={arch} ") as err:
        _build(text_cache, arch, "model.feedback=true")
    assert "\n" not in str(err.value)


def test_small_clips_and_depths_are_refused(text_cache):
    with pytest.raises(UserError, match=r"model\.arch=c3d needs data\.frames >= 8"):
        _build(text_cache, "c3d", "data.frames=4")
    with pytest.raises(UserError, match=r"data\.size >= 16"):
        _build(text_cache, "c3d", "data.size=8")
    with pytest.raises(UserError, match=r"model\.depth.*18, 34, 50, 101 or 152"):
        load_config(None, ["model.depth=20"])


# --------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("arch", ["late_fusion", "lrcn"])
def test_a_torchvision_resnet_file_loads_into_the_frame_cnn(text_cache, tmp_path, arch):
    torch.manual_seed(1)
    ref = tvm.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save({"model": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    model = _build(text_cache, arch, f"model.pretrained={path}")
    own = model.backbone.model.state_dict()
    for key, value in ref.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(own[key], value), key
    report = model.pretrained_report
    assert f"from torchvision checkpoint {path}" in report
    new = "4 new [lstm.weight_ih_l0, lstm.weight_hh_l0, " if arch == "lrcn" else "0 new []"
    assert new in report and "2 unused [fc.weight, fc.bias]" in report
    assert "backbone.model.layer4.1.bn2.weight" in model.pretrained_names
    assert not any(n.startswith("backbone.lstm.") for n in model.pretrained_names)  # new


def test_imagenet_weights_warn_of_clips_normalisation(text_cache, tmp_path, caplog):
    """A frame CNN loaded with an ImageNet ResNet but normalised as CLIP (the default) is told
    the values its weights were trained on; with those values it is not."""
    path = tmp_path / "resnet18.pth"
    torch.save(tvm.resnet18().state_dict(), path)
    with caplog.at_level("WARNING", logger="hpnet.models.normalisation"):
        _build(text_cache, "late_fusion", f"model.pretrained={path}")
    assert "set data.augment.mean=[0.485,0.456,0.406] data.augment.std=[0.229" in caplog.text
    caplog.clear()
    imagenet = ["data.augment.mean=[0.485,0.456,0.406]", "data.augment.std=[0.229,0.224,0.225]"]
    with caplog.at_level("WARNING", logger="hpnet.models.normalisation"):
        _build(text_cache, "lrcn", f"model.pretrained={path}", *imagenet)
    assert "weights were trained on" not in caplog.text


def test_a_timm_resnet_safetensors_file_loads(text_cache, tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(2)
    ref = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "model.safetensors"
    save_file(ref.state_dict(), str(path))
    model = _build(text_cache, "late_fusion", f"model.pretrained={path}")
    assert torch.equal(model.backbone.model.layer3[0].conv2.weight, ref.layer3[0].conv2.weight)
    assert "0 new []" in model.pretrained_report


def test_a_c3d_pytorch_file_loads(text_cache, tmp_path):
    torch.manual_seed(3)
    state = C3DNet().state_dict()
    state |= {"fc8.weight": torch.zeros(487, 4096), "fc8.bias": torch.zeros(487)}  # Sports-1M
    path = tmp_path / "c3d.pickle"
    torch.save(state, path)
    model = _build(text_cache, "c3d", f"model.pretrained={path}")
    assert torch.equal(model.backbone.model.conv4a.weight, state["conv4a.weight"])
    report = model.pretrained_report
    assert f"loaded 20 tensors from c3d checkpoint {path}" in report
    assert "0 new []" in report and "2 unused [fc8.weight, fc8.bias]" in report


@pytest.mark.parametrize(
    "arch, state, match",
    [
        (
            "late_fusion",
            "resnet50",
            r"torchvision's resnet18 \(model\.arch=late_fusion model\.depth=18\): layer1\.0\."
            r"conv1\.weight is \(64, 64, 1, 1\) there.*set model\.arch, model\.depth to",
        ),
        ("lrcn", "c3d", r"torchvision's resnet18 .*: conv1\.weight is \(64, 3, 3, 3, 3\) there"),
        ("c3d", "resnet18", r"model\.arch=c3d: conv1\.weight is \(64, 3, 7, 7\) there"),
        ("c3d", "r3d_18", r"model\.arch=c3d: none of its tensors.*\(set model\.arch to"),
    ],
)
def test_a_file_of_another_model_is_refused(text_cache, tmp_path, arch, state, match):
    path = tmp_path / f"{state}.pth"
    make = {"c3d": C3DNet, "r3d_18": tvm.video.r3d_18}.get(state) or getattr(tvm, state)
    torch.save(make().state_dict(), path)
    with pytest.raises(
        UserError, match=rf"weights {path} \(model\.pretrained\) do not fit {match}"
    ):
        _build(text_cache, arch, f"model.pretrained={path}")


def test_a_file_filling_few_of_the_model_tensors_is_refused(text_cache, tmp_path):
    """A file sharing a few names and shapes with the model (swin3d_t's final norm is
    mvit_v2_s's; here a ResNet-18 cut to its stem) loaded those and counted as pretrained."""
    stem = {k: v for k, v in tvm.resnet18().state_dict().items() if k.startswith(("conv1", "bn1"))}
    path = tmp_path / "stem.pth"
    torch.save(stem, path)
    with pytest.raises(
        UserError, match=rf"weights {path} \(model\.pretrained\) fill only 6 of the 120 tensors "
        r"of torchvision's resnet18 \(model.arch=late_fusion model.depth=18\) \(conv1.weight, "
        r"bn1.weight, bn1.bias, bn1.running_mean, ...\): it is another model's file, or part of "
        r"one; set model.arch, model.depth to the model the file was saved from"
    ):  # fmt: skip
        _build(text_cache, "late_fusion", f"model.pretrained={path}")


def test_weights_names_go_through_torchvision(text_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = tvm.ResNet18_Weights.IMAGENET1K_V1.url
    monkeypatch.setattr(
        "hpnet.models.tv_video_weights.probe_host", lambda host: f"cannot reach {host}: offline"
    )
    with pytest.raises(UserError) as err:  # offline: the file to download and the key to set
        _build(text_cache, "lrcn", "model.pretrained=IMAGENET1K_V1")
    assert url in str(err.value) and "model.pretrained=/path/to/resnet18-f37072fd.pth" in str(
        err.value
    )
    cached = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    ref = tvm.resnet18()
    torch.save(ref.state_dict(), cached)  # as torchvision's downloader leaves it
    model = _build(text_cache, "late_fusion", "model.pretrained=DEFAULT")
    assert torch.equal(model.backbone.model.conv1.weight, ref.conv1.weight)
    assert url in model.pretrained_report
    with pytest.raises(UserError, match=r"for model\.arch=late_fusion \(resnet18\); one of"):
        _build(text_cache, "late_fusion", "model.pretrained=KINETICS400_V1")
    with pytest.raises(
        UserError, match=r"c3d weights not found: SPORTS1M .*no weights for it: c3d-pytorch's "
        r"Sports-1M c3d\.pickle, github\.com/DavideA/c3d-pytorch"
    ):  # fmt: skip
        _build(text_cache, "c3d", "model.pretrained=SPORTS1M")


# -------------------------------------------------------------------- the commands on each arch


@pytest.mark.parametrize(
    "arch",  # c3d: 26 s, lrcn: 10 s on 2 loaded cores (C3D's checkpoint alone is 1 GB)
    ["late_fusion", *[pytest.param(arch, marks=pytest.mark.slow) for arch in ("lrcn", "c3d")]],
)
def test_a_checkpoint_of_each_arch_trains_evaluates_and_predicts(
    arch, tiny_args, shared_data, tmp_path, capsys
):
    from hpnet.evaluate import main as evaluate_main
    from hpnet.predict import main as predict_main
    from hpnet.train import main as train_main

    frames, side = SHAPES[arch]
    out = tmp_path / "run"
    args = [f"model.arch={arch}", "model.depth=18", "model.feedback=false", f"data.frames={frames}"]
    args += [f"data.size={side}", f"train.out_dir={out}", "train.max_steps=1", "train.epochs=1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train_main([*tiny_args, *args]) == 0
    checkpoint = str(out / "last.pt")
    ckpt = torch.load(checkpoint, weights_only=True)
    assert (ckpt["config"]["model"]["arch"], ckpt["config"]["model"]["depth"]) == (arch, 18)
    assert evaluate_main(["--checkpoint", checkpoint, "--out", str(tmp_path)]) == 0
    assert 0 <= json.loads((tmp_path / "eval.json").read_text())["top1"] <= 1
    clip = sorted((shared_data / "hmdb51_mini" / "golf").glob("*.avi"))[0]
    capsys.readouterr()
    assert (
        predict_main([str(clip), "--checkpoint", checkpoint, "--no-pose-estimation", "--json"]) == 0
    )
    (video,) = json.loads(capsys.readouterr().out)["videos"]
    assert video["ok"] and len(video["top"]) >= 1
    if arch == "late_fusion":  # another depth does not fit the checkpoint
        with pytest.raises(UserError, match=r"does not fit this config: model\.depth=18 -> 50"):
            evaluate_main(["--checkpoint", checkpoint, "model.depth=50"])


def _deeper(state: dict, stage: int, blocks: int) -> dict:
    """A ResNet state dict with stage ``stage`` grown to ``blocks`` blocks (copies of its last
    one): every tensor the shallower model has keeps its name and shape."""
    last = max(int(k.split(".")[1]) for k in state if k.startswith(f"layer{stage}."))
    grown = dict(state)
    for i in range(last + 1, blocks):
        for key, value in state.items():
            if key.startswith(f"layer{stage}.{last}."):
                grown[key.replace(f"layer{stage}.{last}.", f"layer{stage}.{i}.", 1)] = value
    return grown


def test_a_resnet_file_of_another_depth_is_refused_not_cut_short(text_cache, tmp_path):
    """A ResNet-34's first blocks are a ResNet-18's, names and shapes: loading it would leave
    stage 3 three blocks short and stage 4 trained to follow them. Refused, naming the depth."""
    state = _deeper(_deeper(_deeper(tvm.resnet18().state_dict(), 1, 3), 2, 4), 3, 6)
    state = _deeper(state, 4, 3)
    path = tmp_path / "resnet34.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"are a ResNet-34 or 50: blocks per stage \(3, 4, 6, 3\) "
                       r"there, \(2, 2, 2, 2\) here; set model\.depth to the file's"):  # fmt: skip
        _build(text_cache, "late_fusion", f"model.pretrained={path}")


@pytest.mark.parametrize("shape", [(2, 3, 1, 2, 2), (2, 3, 2, 3, 3), (1, 2, 1, 6, 6),
                                   (1, 2, 3, 4, 4), (1, 1, 2, 9, 5)])  # fmt: skip
def test_c3ds_adaptive_max_pool_is_torchs(shape):
    """C3D's own adaptive max pool (slices and maxima: ONNX exports it) gives torch's values,
    maps smaller than 1 x 4 x 4 repeated, larger ones binned as torch bins them."""
    from hpnet.models.c3d import adaptive_max_pool3d

    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(adaptive_max_pool3d(x, (1, 4, 4)), F.adaptive_max_pool3d(x, (1, 4, 4)))


def test_c3ds_pool_exports_to_onnx_at_any_map(tmp_path):
    """torch's adaptive_max_pool3d has no ONNX function: C3D on clips other than 16 x 112
    (a 2 x 2 or 6 x 6 map before fc6) did not export; its own pool does, and runs."""
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from hpnet.models.c3d import adaptive_max_pool3d

    class Pool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return adaptive_max_pool3d(x, (1, 4, 4))

    for side in (2, 6):
        x = torch.randn(1, 8, 1, side, side)
        path = tmp_path / f"pool{side}.onnx"
        torch.onnx.export(Pool().eval(), (x,), str(path), dynamo=True, verbose=False)
        session = ort.InferenceSession(str(path))
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        np.testing.assert_array_equal(got, F.adaptive_max_pool3d(x, (1, 4, 4)).numpy())
