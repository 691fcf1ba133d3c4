"""model.arch=i3d / nonlocal: ResNet-50 inflated to 3D, non-local blocks, 2D weights inflated."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18, resnet50

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.models.hpnet import HPNet, build_model
from hpnet.models.i3d import I3D, NonLocal3d, build_i3d
from hpnet.models.i3d_weights import load_i3d_weights

CLASSES = ["sit_down", "stand_up", "wave", "kick"]
FRAMES, SIDE = 8, 32  # T' = 2: res4's non-local blocks attend over 2 keys, not 1
NON_LOCAL_BRANCH = ("theta", "phi", "g", "out")  # what a zero-scale output batch norm blocks


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module")
def resnet2d() -> torch.nn.Module:
    """torchvision's ResNet-50, random, with batch norms that are not the identity."""
    torch.manual_seed(0)
    ref = resnet50().eval()
    g = torch.Generator().manual_seed(1)
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=g) + 0.5
            m.bias.data = torch.randn(c, generator=g) * 0.1
            m.running_mean = torch.randn(c, generator=g) * 0.1
            m.running_var = torch.rand(c, generator=g) + 0.5
    return ref


@pytest.fixture(scope="module")
def file2d(resnet2d, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet2d.state_dict().items()}}, path)
    return path


def _cfg(text_cache: str, arch: str, *extra: str):
    return load_config(
        None,
        [
            f"model.arch={arch}",
            "model.feedback=false",
            f"data.size={SIDE}",
            f"data.frames={FRAMES}",
            "text.model=ViT-S-32-alt",
            "text.pretrained=",
            f"text.cache_dir={text_cache}",
            *extra,
        ],
    )


def _build(text_cache: str, arch: str, *extra: str) -> HPNet:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model(_cfg(text_cache, arch, *extra), CLASSES)


# ------------------------------------------------------------------------- the inflation check


def _features2d(ref: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """torchvision ResNet-50 up to ``layer4``: ``(B, 3, S, S)`` -> ``(B, 2048, h, w)``."""
    x = ref.maxpool(ref.relu(ref.bn1(ref.conv1(image))))
    return ref.layer4(ref.layer3(ref.layer2(ref.layer1(x))))


def test_an_inflated_i3d_sees_a_repeated_frame_as_the_2d_network_sees_it(resnet2d, file2d):
    """Temporal padding is zeros (as in the paper): the clip's borders differ from a constant
    video, and each zero-padded temporal convolution carries that one step further in; 76
    frames leave the middle of the T' = 19 map untouched, where I3D must equal the 2D net."""
    model = build_i3d("i3d").eval()
    report = load_i3d_weights(model, str(file2d))
    assert len(report.inflated) == 53  # every convolution: stem, 48 in blocks, 4 downsamples
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    video = image[:, None].expand(1, 76, 3, 32, 32)  # one frame, 76 times
    with torch.no_grad():
        fmap, pooled = model.forward_features(video)  # (1, 19, 1, 1, 2048)
        expected = _features2d(resnet2d, image).permute(0, 2, 3, 1)  # (1, 1, 1, 2048)
    assert fmap.shape == (1, 19, 1, 1, 2048)
    scale = expected.abs().max().item()
    torch.testing.assert_close(fmap[:, 9], expected, rtol=1e-4, atol=1e-5 * scale)
    assert not torch.allclose(fmap[:, 0], expected, rtol=1e-3, atol=1e-3 * scale)  # zero pad
    torch.testing.assert_close(pooled, fmap.mean(dim=(1, 2, 3)))


def test_the_layout_strides_time_by_4_and_space_by_32():
    model = build_i3d("i3d").eval()
    with torch.no_grad():
        fmap, pooled = model.forward_features(torch.randn(1, 16, 3, 112, 112))
    assert fmap.shape == (1, 4, 4, 4, 2048) and pooled.shape == (1, model.embed_dim)
    kernels = {n: tuple(m.kernel_size) for n, m in model.named_modules() if "conv1" in n}
    assert kernels["conv1"] == (5, 7, 7)
    assert kernels["layer3.0.conv1"] == (3, 1, 1) and kernels["layer3.1.conv1"] == (1, 1, 1)
    assert kernels["layer4.0.conv1"] == (1, 1, 1) and kernels["layer4.1.conv1"] == (3, 1, 1)
    # parameter names are torchvision's: a 2D state dict maps name for name (fc aside)
    own = set(model.state_dict())
    assert {k for k in resnet50().state_dict() if not k.startswith("fc.")} == own


# ------------------------------------------------------------------------------ non-local blocks


def test_a_non_local_block_starts_as_the_identity_and_attends_with_weights_summing_to_1():
    torch.manual_seed(0)
    block = NonLocal3d(16).train()
    x = torch.randn(2, 16, 3, 5, 5)
    attn, values = block.attention(x)
    assert attn.shape == (2, 3 * 5 * 5, 3 * 3 * 3)  # keys max-pooled 1x2x2, ceil mode
    assert values.shape == (2, 27, 8)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 75))
    torch.testing.assert_close(block(x), x)  # zero-scale output batch norm
    torch.nn.init.ones_(block.bn.weight)
    assert not torch.allclose(block(x), x)


def test_nonlocal_at_init_computes_what_i3d_computes():
    torch.manual_seed(0)
    nl = build_i3d("nonlocal").eval()
    plain = build_i3d("i3d").eval()
    result = plain.load_state_dict(nl.state_dict(), strict=False)
    assert result.missing_keys == []
    assert {k.split(".non_local.")[0] for k in result.unexpected_keys} == {
        "layer2.1", "layer2.3", "layer3.1", "layer3.3", "layer3.5"
    }  # fmt: skip
    video = torch.randn(1, FRAMES, 3, SIDE, SIDE)
    with torch.no_grad():
        torch.testing.assert_close(nl(video), plain(video))


# ---------------------------------------------------------------------- HP-Net on both archs


def _dead_parameters(model: HPNet) -> list[str]:
    return [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]


def _step(model: HPNet, switches: tuple[str, ...]) -> list[str]:
    """One forward/backward on a tiny batch; the trainable parameters left without gradient."""
    g = torch.Generator().manual_seed(0)
    video = torch.randn(2, FRAMES, 3, SIDE, SIDE, generator=g)
    joints = torch.rand(2, FRAMES, 2, 17, 3, generator=g)
    joints[..., 2] = (joints[..., 2] > 0.2).float()
    joints[0, : FRAMES // 2, 1, :, 2] = 0.0  # a second person who enters mid-clip
    model.zero_grad(set_to_none=True)
    out = model(video, joints)
    assert out["logits"].shape == (2, len(CLASSES))
    assert ("aux_logits" in out) == (not switches)
    loss = (
        out["logits"].logsumexp(1).sum() + out.get("aux_logits", out["logits"]).logsumexp(1).sum()
    )
    loss.backward()
    return _dead_parameters(model)


def test_at_init_the_non_local_branches_wait_for_their_batch_norm_scale():
    """A non-local block starts as the identity: its zero-scale batch norm passes no gradient
    to the branch behind it (theta, phi, g, out) until the first update of that scale."""
    torch.manual_seed(0)
    backbone = build_i3d("nonlocal").train()
    backbone(torch.randn(2, FRAMES, 3, SIDE, SIDE)).square().sum().backward()
    dead = [n for n, p in backbone.named_parameters() if not p.grad.abs().sum() > 0]
    assert len(dead) == 5 * (len(NON_LOCAL_BRANCH) + 1)  # + theta's bias
    assert all(n.split(".")[-2] in NON_LOCAL_BRANCH for n in dead)


def test_non_local_attention_starts_spread_out():
    """Scaled scores and N(0, 0.01) convolutions (the authors' released models): at init each
    query spreads its attention over the keys instead of one of them taking it all (a
    saturated softmax, where theta and phi would get no gradient)."""
    torch.manual_seed(0)
    backbone = build_i3d("nonlocal").train()
    spread: dict[str, tuple[float, int]] = {}

    def watch(name):
        def hook(module, inputs, output):
            attn = module.attention(inputs[0])[0]  # (B, N, M)
            spread[name] = float(attn.max(-1).values.mean()), attn.shape[-1]

        return hook

    for name, module in backbone.named_modules():
        if isinstance(module, NonLocal3d):
            module.register_forward_hook(watch(name))
    with torch.no_grad():
        backbone(torch.randn(2, 8, 3, 64, 64))
    assert len(spread) == 5
    for name, (top, keys) in spread.items():
        assert top < 2.0 / keys, (name, top, keys)  # near 1 / M: no key dominates


@pytest.mark.parametrize("arch", ["i3d", "nonlocal"])
@pytest.mark.parametrize("switches", [(), ("model.pose=false", "model.text=false")])
def test_both_archs_train_a_step_with_every_parameter_learning(text_cache, arch, switches):
    model = _build(text_cache, arch, *switches)
    assert isinstance(model.backbone, I3D) and model.backbone.arch == arch
    for m in model.modules():  # as after a first update (see the test above)
        if isinstance(m, NonLocal3d):
            torch.nn.init.constant_(m.bn.weight, 0.1)
    assert _step(model, switches) == []


def test_layer_decay_spans_stem_stages_and_top(text_cache):
    model = _build(text_cache, "nonlocal", "model.pose=false")
    assert model.num_layers == 4
    assert model.layer_id("backbone.conv1.weight") == model.layer_id("backbone.bn1.bias") == 0
    assert model.layer_id("backbone.layer1.0.conv1.weight") == 1
    assert model.layer_id("backbone.layer3.1.non_local.theta.weight") == 3
    assert model.layer_id("head.fuse.rgb.weight") == 5


def test_feedback_is_refused(text_cache):
    with pytest.raises(UserError, match=r"model\.feedback=true .*model\.arch=nonlocal") as err:
        build_model(_cfg(text_cache, "nonlocal", "model.feedback=true"), CLASSES)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------- weights


def test_a_2d_file_is_inflated_and_reported(text_cache, resnet2d, file2d, caplog):
    with caplog.at_level("WARNING", logger="hpnet.models.normalisation"):
        model = _build(text_cache, "nonlocal", f"model.pretrained={file2d}", "model.pose=false")
    # ImageNet weights under CLIP's normalisation (the default) are told the values to set
    assert "set data.augment.mean=[0.485,0.456,0.406] data.augment.std=[0.229" in caplog.text
    conv = model.backbone.layer1[0].conv1.weight  # (64, 64, 3, 1, 1) from (64, 64, 1, 1)
    torch.testing.assert_close(
        conv, resnet2d.layer1[0].conv1.weight.unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3
    )
    assert torch.equal(model.backbone.bn1.running_var, resnet2d.bn1.running_var)
    report = model.pretrained_report
    assert f"from 2D ResNet-50 checkpoint {file2d}" in report
    assert "inflated 53 [conv1.weight, layer1.0.conv1.weight," in report
    assert "2 unused [fc.weight, fc.bias]" in report
    # 5 blocks x (theta weight and bias, phi, g, out, bn weight, bias, running mean, var):
    # torch does not count a batch norm's num_batches_tracked as missing
    assert "45 new [layer2.1.non_local.theta.weight, layer2.1.non_local.theta.bias," in report
    assert "backbone.layer4.2.conv3.weight" in model.pretrained_names
    assert not any("non_local" in n for n in model.pretrained_names)


def test_torchvision_resnet50_weights_names_are_inflated(
    text_cache, resnet2d, tmp_path, monkeypatch
):
    """model.pretrained=IMAGENET1K_V2 (torchvision's ResNet-50 weights) for i3d said "I3D
    weights not found": now fetched as for late_fusion (offline: the URL and the key to set)
    and inflated like a file."""
    from torchvision.models import ResNet50_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(
        "hpnet.models.tv_video_weights.probe_host", lambda host: f"cannot reach {host}: offline"
    )
    url = ResNet50_Weights.IMAGENET1K_V2.url
    name = url.rsplit("/", 1)[1]
    with pytest.raises(UserError, match=rf"{url} and set model.pretrained=/path/to/{name}"):
        _build(text_cache, "i3d", "model.pretrained=IMAGENET1K_V2")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / name
    cached.parent.mkdir(parents=True)
    torch.save(resnet2d.state_dict(), cached)  # as torchvision's downloader leaves it
    model = _build(text_cache, "i3d", "model.pretrained=IMAGENET1K_V2", "model.pose=false")
    torch.testing.assert_close(
        model.backbone.conv1.weight, resnet2d.conv1.weight.unsqueeze(2).repeat(1, 1, 5, 1, 1) / 5
    )
    assert f"from 2D ResNet-50 checkpoint {url}" in model.pretrained_report
    with pytest.raises(UserError, match=r"no such weights for model\.arch=i3d \(resnet50\)"):
        _build(text_cache, "i3d", "model.pretrained=KINETICS400_V1")


def test_a_deeper_2d_resnet_is_refused_not_cut_short(text_cache, resnet2d, tmp_path):
    """A ResNet-101's first 6 blocks of res4 have a ResNet-50's names and shapes: inflating
    them would give a res5 trained to follow 23 blocks. Refused, naming the depth."""
    state = resnet2d.state_dict()
    for i in range(6, 23):
        state |= {k.replace("layer3.5.", f"layer3.{i}.", 1): v for k, v in
                  resnet2d.state_dict().items() if k.startswith("layer3.5.")}  # fmt: skip
    path = tmp_path / "resnet101.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"are a ResNet-101: blocks per stage \(3, 4, 23, 3\) there"
                       r".*model\.arch=i3d inflates a ResNet-50"):  # fmt: skip
        _build(text_cache, "i3d", f"model.pretrained={path}")


def test_a_3d_file_round_trips(tmp_path):
    torch.manual_seed(3)
    saved = build_i3d("nonlocal")
    path = tmp_path / "nonlocal.pth"
    torch.save(saved.state_dict(), path)
    model = build_i3d("nonlocal")
    report = load_i3d_weights(model, str(path))
    assert report.inflated == [] and report.missing == [] and report.unexpected == []
    assert str(report).startswith(f"loaded {len(saved.state_dict())} tensors from nonlocal")
    for key, value in saved.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    # an hpnet checkpoint of that arch: its backbone's tensors
    run = {f"backbone.{k}": v for k, v in saved.state_dict().items()} | {"head.w": torch.ones(1)}
    torch.save({"model": run, "classes": ["a"]}, path)
    report = load_i3d_weights(build_i3d("i3d"), str(path))
    assert report.unexpected == [k for k in saved.state_dict() if ".non_local." in k]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: resnet18().state_dict(), r"layer1\.0\.conv1\.weight is \(64, 64, 3, 3\) there"),
        (lambda: {"fc.weight": torch.zeros(2, 2)}, r"none of its tensors is one of the model's"),
    ],
)
def test_a_file_of_another_model_is_refused(text_cache, tmp_path, make, match):
    path = tmp_path / "other.pth"
    torch.save(make(), path)
    with pytest.raises(
        UserError, match=rf"{path} \(model\.pretrained\) do not fit model\.arch=i3d .*{match}"
    ):
        _build(text_cache, "i3d", f"model.pretrained={path}")
    with pytest.raises(  # (the file to download, as late_fusion's offline message)
        UserError, match=r"model.arch=i3d weights not found: nowhere\.pth \(model\.pretrained; "
        r"download https://download\.pytorch\.org/models/resnet50-0676ba61\.pth and set "
        r"model\.pretrained=/path/to/resnet50-0676ba61\.pth, or"
    ):  # fmt: skip
        _build(text_cache, "i3d", "model.pretrained=nowhere.pth")


# -------------------------------------------------------------------- checkpoints and commands


def test_a_checkpoint_rebuilds_its_arch(text_cache):
    from hpnet.config import config_to_dict
    from hpnet.models.from_checkpoint import model_from_checkpoint

    switches = ("model.pose=false", "model.text=false")
    cfg = _cfg(text_cache, "nonlocal", *switches)
    model = _build(text_cache, "nonlocal", *switches).eval()
    for m in model.modules():  # not the identity any more, as after training
        if isinstance(m, NonLocal3d):
            torch.nn.init.constant_(m.bn.weight, 0.5)
    ckpt = {"model": model.state_dict(), "classes": CLASSES, "config": config_to_dict(cfg)}
    rebuilt = model_from_checkpoint(ckpt, _cfg(text_cache, "nonlocal", *switches)).eval()
    video = torch.randn(1, FRAMES, 3, SIDE, SIDE)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(video)["logits"], model(video)["logits"])
    with pytest.raises(UserError, match=r"does not fit this config: model\.arch=nonlocal -> i3d"):
        model_from_checkpoint(ckpt, _cfg(text_cache, "i3d", *switches))


@pytest.mark.slow  # ~25 s on 2 loaded cores: ResNet-50 in 3D, trained and evaluated
def test_a_trained_i3d_run_evaluates_and_keeps_its_arch(tiny_args, file2d, tmp_path, capsys):
    from hpnet.evaluate import main as evaluate_main
    from hpnet.train import main as train_main

    out = tmp_path / "run"
    args = ["model.arch=i3d", "model.feedback=false", f"model.pretrained={file2d}"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = train_main([*tiny_args, *args, f"train.out_dir={out}", "train.max_steps=1"])
    assert code == 0
    assert "model.pretrained: loaded 318 tensors from 2D ResNet-50" in capsys.readouterr().out
    checkpoint = str(out / "last.pt")
    ckpt = torch.load(checkpoint, weights_only=True)
    assert ckpt["config"]["model"]["arch"] == "i3d"
    assert "backbone.layer1.0.conv1.weight" in ckpt["model"]
    assert evaluate_main(["--checkpoint", checkpoint, "--out", str(tmp_path)]) == 0
    assert 0 <= json.loads((tmp_path / "eval.json").read_text())["top1"] <= 1
