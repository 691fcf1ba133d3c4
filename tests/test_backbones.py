"""model.arch: torchvision's video models wrapped as backbones, with pose pooling and text head."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest
import torch
from torchvision.models import video as tv

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.fusion.fpm import pool_at_joints, resample_joints
from hpnet.models import hpnet as hpnet_model
from hpnet.models.backbones import CELL_CENTRES, MIN_INPUT, TIME_CELLS, build_backbone
from hpnet.models.hpnet import HPNet, build_model
from hpnet.models.tv_video import FAMILIES, TorchvisionVideo
from hpnet.optim import param_groups

CLASSES = ["sit_down", "stand_up", "wave", "kick"]
# (frames, side) of the tiny clips each arch is tested on (s3d's strides need 5+ frames)
SHAPES = {
    "r3d_18": (4, 32),
    "mc3_18": (4, 32),
    "r2plus1d_18": (4, 32),
    "s3d": (8, 32),
    "swin3d_t": (4, 32),
    "mvit_v2_s": (16, 224),
}
FAST = ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "swin3d_t"]
LAST = {"r3d_18": "layer4", "mc3_18": "layer4", "r2plus1d_18": "layer4"}  # fmap's module
LAST |= {"s3d": "features", "swin3d_t": "norm", "mvit_v2_s": "norm"}


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("text"))


def _cfg(text_cache: str, arch: str, *extra: str):
    frames, side = SHAPES[arch]
    return load_config(
        None,
        [
            f"model.arch={arch}",
            "model.feedback=false",
            f"data.size={side}",
            f"data.frames={frames}",
            "text.model=ViT-S-32-alt",
            "text.pretrained=",
            f"text.cache_dir={text_cache}",
            "model.drop_path=0",  # no stochastic depth: every block learns in one step
            *extra,
        ],
    )


def _build(text_cache: str, arch: str, *extra: str) -> HPNet:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model(_cfg(text_cache, arch, *extra), CLASSES)


def _inputs(arch: str, b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    frames, side = SHAPES[arch]
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(b, frames, 3, side, side, generator=g)
    joints = torch.rand(b, frames, 2, 17, 3, generator=g)
    joints[..., 2] = (joints[..., 2] > 0.2).float()  # some joints missing
    joints[0, : frames // 2, 1, :, 2] = 0.0  # a second person who enters mid-clip
    return video, joints


# ------------------------------------------------------------------------ torchvision's own forward


def _classify(arch: str, ref: torch.nn.Module, pooled: torch.Tensor) -> torch.Tensor:
    """torchvision's classifier of ``ref`` applied to our pooled feature ``(B, D)``."""
    if arch == "s3d":  # a 1x1 convolution, then the mean over the (1, 1, 1) map
        return ref.classifier(pooled[:, :, None, None, None]).mean(dim=(2, 3, 4))
    return getattr(ref, FAMILIES[arch].classifier)(pooled)


@pytest.mark.parametrize(
    "arch, frames, side",
    [
        ("r3d_18", 4, 32),
        ("mc3_18", 4, 32),
        ("r2plus1d_18", 4, 32),
        ("swin3d_t", 4, 32),
        pytest.param("s3d", 16, 224, marks=pytest.mark.slow),  # its 2x7x7 pool needs 224
        pytest.param("mvit_v2_s", 16, 224, marks=pytest.mark.slow),
    ],
)
def test_features_and_logits_match_torchvision(arch, frames, side):
    torch.manual_seed(0)
    ref = getattr(tv, arch)().eval()
    ours = TorchvisionVideo(arch, copy.deepcopy(ref)).eval()
    video = torch.randn(2, frames, 3, side, side)
    seen: list[torch.Tensor] = []
    hook = ref.get_submodule(LAST[arch]).register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        expected = ref(video.transpose(1, 2))  # (B, 400): torchvision's own forward
        fmap, pooled = ours.forward_features(video)
        got = _classify(arch, ref, pooled)
    hook.remove()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    inner = seen[0]
    if LAST[arch] in ("layer4", "features"):  # (B, C, T', h, w) -> channels last
        inner = inner.permute(0, 2, 3, 4, 1)
    elif arch == "mvit_v2_s":  # tokens (B, 1 + T'hw, C) -> map of the patch tokens
        inner = inner[:, 1:].reshape(fmap.shape)
    torch.testing.assert_close(fmap, inner)
    assert fmap.shape[-1] == pooled.shape[-1] == ours.embed_dim


def test_drop_path_rescales_torchvisions_stochastic_depth():
    from torchvision.ops import StochasticDepth

    from hpnet.models.tv_video import build_tv_video

    model = build_tv_video("swin3d_t", drop_path=0.3)
    rates = [m.p for m in model.modules() if isinstance(m, StochasticDepth)]
    assert max(rates) == pytest.approx(0.3) and rates[0] == 0.0 and rates == sorted(rates)


def test_s3d_small_maps_are_averaged_whole():
    ours = TorchvisionVideo("s3d", tv.s3d()).eval()
    with torch.no_grad():
        fmap, pooled = ours.forward_features(torch.randn(2, 8, 3, 64, 64))
    assert fmap.shape == (2, 1, 2, 2, 1024)  # smaller than its 2x7x7 pool
    torch.testing.assert_close(pooled, fmap.mean(dim=(1, 2, 3)))


# --------------------------------------------------------------------------- HP-Net on every arch


def _dead_parameters(model: HPNet) -> list[str]:
    return [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]


PLAIN = ("model.pose=false", "model.text=false")
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "arch, switches",
    [
        *[(arch, ()) for arch in FAST],
        pytest.param("mvit_v2_s", (), marks=SLOW),
        ("r3d_18", PLAIN),
        # the plain head is the same code on every arch: the others only with -m slow
        *[pytest.param(arch, PLAIN, marks=SLOW) for arch in SHAPES if arch != "r3d_18"],
    ],
)
def test_every_arch_trains_a_step_with_every_parameter_learning(text_cache, arch, switches):
    model = _build(text_cache, arch, *switches)
    video, joints = _inputs(arch, b=1 if arch == "mvit_v2_s" else 2)
    out = model(video, joints)
    assert out["logits"].shape == (video.shape[0], len(CLASSES))
    assert ("aux_logits" in out) == (not switches)  # the pose stream's auxiliary logits
    loss = (
        out["logits"].logsumexp(1).sum() + out.get("aux_logits", out["logits"]).logsumexp(1).sum()
    )
    loss.backward()
    dead = _dead_parameters(model)
    if arch == "mvit_v2_s" and switches:  # only the class token is read (as by torchvision's
        # own head): the last block's relative positions and query pooling shape patch tokens
        last = "backbone.model.blocks.15.attn."
        dead = [n for n in dead if not (n.startswith(last) and ("rel_pos" in n or "pool" in n))]
    assert dead == []
    assert isinstance(model.backbone, TorchvisionVideo) and model.backbone.arch == arch


def test_pose_pooling_reads_the_strided_map_at_resampled_joints(text_cache):
    model = _build(text_cache, "r3d_18").eval()  # T=4 -> T'=1
    video, joints = _inputs("r3d_18")
    with torch.no_grad():
        base = model(video, joints)["logits"]
        moved = joints.clone()
        moved[:, 0, :, :, :2] = torch.rand_like(moved[:, 0, :, :, :2])  # the frame T' reads
        other = joints.clone()
        other[:, 2, :, :, :2] = torch.rand_like(other[:, 2, :, :, :2])  # a frame it does not
        assert not torch.allclose(model(video, moved)["logits"], base)
        torch.testing.assert_close(model(video, other)["logits"], base)


# (frames, side) large enough that a middle cell's receptive field stays inside the frame, and
# not a multiple of the stride (the map's size rounded up or down; s3d: not 5 frames, whose
# temporal conv backward crashes torch 2.14's CPU oneDNN at this size)
RF_SHAPES = {arch: (1, 264) for arch in ("r3d_18", "mc3_18", "r2plus1d_18")}
RF_SHAPES |= {arch: (2, 464) for arch in ("late_fusion", "lrcn", "ssl_transformer", "i3d")}
RF_SHAPES |= {"nonlocal": (2, 464), "c3d": (8, 264), "s3d": (8, 456)}


@pytest.mark.parametrize(
    "arch",
    [a if a == "r3d_18" else pytest.param(a, marks=SLOW) for a in RF_SHAPES],
)  # the others (seconds each) with -m slow
def test_cell_centres_are_where_each_cells_receptive_field_is(arch):
    """CELL_CENTRES (where the FPM reads a joint) against the backbone itself: the input
    pixels a middle cell's output depends on (its gradient's support) are centred at
    ``first + stride * i`` on both axes (attention archs, whose cells see everything, aside)."""
    frames, side = RF_SHAPES[arch]
    stride, first = CELL_CENTRES[arch]
    for lo, hi, cell in _receptive_field(arch, frames, side, (2, 3)):  # height, width
        assert lo > 0 and hi < side - 1, f"{arch}: the receptive field reaches the edge"
        assert (lo + hi + 1) / 2 == first + stride * cell, (arch, lo, hi)


def _receptive_field(
    arch: str, frames: int, side: int, axes: tuple[int, ...]
) -> list[tuple[int, int, int]]:
    """``(lo, hi, i)`` along each of the feature map's ``axes`` (1 time, 2 height, 3 width):
    the first and last frame / pixel of a ``(frames, side)`` clip that the map's middle cell i
    depends on (its gradient's support; the other axes summed over)."""
    cfg = load_config(None, [f"model.arch={arch}", f"data.size={side}", f"data.frames={frames}"])
    torch.manual_seed(0)
    backbone = build_backbone(cfg, load_weights=False).module.eval()
    video = torch.randn(1, frames, 3, side, side, requires_grad=True)
    fmap, _ = backbone.forward_features(video)  # (1, T', h, w, D)
    middle = [fmap.shape[a] // 2 for a in axes]
    index = [0, slice(None), slice(None), slice(None)]
    for a, i in zip(axes, middle, strict=True):
        index[a] = i
    fmap[tuple(index)].sum().backward()
    found = []
    for a, i in zip(axes, middle, strict=True):
        dim = {1: 1, 2: 3, 3: 4}[a]  # the clip's (1, T, 3, S, S) axis
        other = [d for d in range(video.dim()) if d != dim]
        support = (video.grad.abs().sum(dim=other) > 0).nonzero().flatten()
        found.append((support.min().item(), support.max().item(), i))
    return found


def test_pose_pooling_places_joints_by_the_archs_cells(text_cache, monkeypatch):
    """Every arch but lsvit has its cells' layout, and the FPM reads the map through it with
    the clip's frame size."""
    assert set(CELL_CENTRES) == set(TIME_CELLS) == set(MIN_INPUT)
    seen = []

    def spy(*args, **kwargs):
        seen.append((kwargs["cells"], kwargs["frame_hw"]))
        return pool_at_joints(*args, **kwargs)

    monkeypatch.setattr(hpnet_model, "pool_at_joints", spy)
    model = _build(text_cache, "r3d_18").eval()
    with torch.no_grad():
        model(*_inputs("r3d_18"))
    assert seen == [((16, 0.5), (32, 32))]


def test_resample_joints_reads_the_frame_each_step_is_centred_on():
    joints = torch.arange(16.0).view(1, 16, 1, 1, 1).expand(1, 16, 1, 17, 3).clone()

    def frames(steps: int, cells: tuple[float, float]) -> list[float]:
        return resample_joints(joints, steps, cells)[0, :, 0, 0, 0].tolist()

    assert frames(2, TIME_CELLS["r3d_18"]) == [0.0, 8.0]  # padded: step i on frame 8i
    assert frames(2, TIME_CELLS["c3d"]) == [4.0, 12.0]  # unpadded pools: mid-step
    assert frames(8, TIME_CELLS["swin3d_t"]) == [1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0]
    assert frames(3, TIME_CELLS["r3d_18"]) == [0.0, 8.0, 15.0]  # past the clip: its last frame
    assert resample_joints(joints, 16, TIME_CELLS["r3d_18"]) is joints


# (frames, side) with a middle step's temporal receptive field inside the clip, the frames not
# a multiple of the stride (mvit_v2_s, swin3d_t: attention sees the whole clip; from their layers)
TIME_RF_SHAPES = {"r3d_18": (137, 16), "r2plus1d_18": (137, 16), "i3d": (81, 8)}
TIME_RF_SHAPES |= {"nonlocal": (81, 8), "c3d": (99, 16), "s3d": (131, 32)}


@pytest.mark.parametrize(
    "arch", [a if a == "i3d" else pytest.param(a, marks=SLOW) for a in TIME_RF_SHAPES]
)
def test_time_cells_are_where_each_steps_receptive_field_is(arch):
    """TIME_CELLS (the frame whose joints the FPM reads for a step of the map) against the
    backbone: the frames a middle step's output depends on are centred at ``first + stride * i``."""
    frames, side = TIME_RF_SHAPES[arch]
    ((lo, hi, step),) = _receptive_field(arch, frames, side, (1,))
    assert lo > 0 and hi < frames - 1, f"{arch}: the receptive field reaches the clip's ends"
    stride, first = TIME_CELLS[arch]
    assert (lo + hi + 1) / 2 == first + stride * step, (arch, lo, hi)


# ------------------------------------------------------------------------------- config checks


def test_feedback_is_refused_on_a_non_token_arch(text_cache):
    with pytest.raises(UserError, match=r"model\.feedback=true .*model\.arch=r3d_18") as err:
        build_model(_cfg(text_cache, "r3d_18", "model.feedback=true"), CLASSES)
    assert "\n" not in str(err.value)
    cfg = _cfg(text_cache, "r3d_18", "model.feedback=true", "model.pose=false")
    assert cfg.model.feedback is False  # without pose pooling there is nothing to feed back


def test_model_pool_is_refused_on_other_archs(text_cache):
    with pytest.raises(UserError, match=r"model\.pool=mean .*model\.arch=mc3_18.*model\.pool=cls"):
        build_model(_cfg(text_cache, "mc3_18", "model.pool=mean"), CLASSES)


@pytest.mark.parametrize(
    "arch, extra, match",
    [
        ("mvit_v2_s", ["data.frames=8"], r"exactly 16 frames of 224x224.*data\.frames=16"),
        ("s3d", ["data.frames=4"], r"model\.arch=s3d needs data\.frames >= 6"),
        ("s3d", ["data.size=16"], r"data\.size >= 24"),
        ("s3d", ["data.frames=5"], r"s3d on data\.frames=5 kills the process.*use 6 or more"),
    ],
)
def test_clips_an_arch_cannot_take_are_refused(text_cache, arch, extra, match):
    with pytest.raises(UserError, match=match):
        build_model(_cfg(text_cache, arch, *extra), CLASSES)


def test_unknown_arch_is_a_config_error():
    with pytest.raises(UserError, match=r"model\.arch.*r3d_18"):
        load_config(None, ["model.arch=resnet3d"])


def test_layer_decay_spans_the_stem_stages_and_top(text_cache, tmp_path):
    path = tmp_path / "r3d.pth"
    torch.save(tv.r3d_18().state_dict(), path)
    model = _build(text_cache, "r3d_18", f"model.pretrained={path}")
    assert model.num_layers == 4
    assert model.layer_id("backbone.model.stem.0.weight") == 0
    assert model.layer_id("backbone.model.layer3.0.conv1.0.weight") == 3
    assert model.layer_id("head.fuse.rgb.weight") == 5
    groups = param_groups(model, lr=1.0, backbone_lr=0.1, weight_decay=0.05, layer_decay=0.5)
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["pretrained/decay/layer0"] == pytest.approx(0.1 * 0.5**5)
    assert lrs["pretrained/decay/layer4"] == pytest.approx(0.1 * 0.5)
    assert lrs["new/decay"] == 1.0


# --------------------------------------------------------------------------------- weights


def test_a_local_torchvision_file_loads_into_the_wrapped_model(text_cache, tmp_path, capsys):
    torch.manual_seed(1)
    ref = tv.mc3_18()
    path = tmp_path / "mc3.pth"
    torch.save({"state_dict": ref.state_dict()}, path)
    model = _build(text_cache, "mc3_18", f"model.pretrained={path}")
    own = model.backbone.model.state_dict()
    for key, value in ref.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(own[key], value), key
    report = model.pretrained_report
    assert f"from torchvision checkpoint {path}" in report and "activation" not in report
    assert "0 new []" in report and "2 unused [fc.weight, fc.bias]" in report
    assert "backbone.model.stem.0.weight" in model.pretrained_names


@pytest.mark.parametrize(
    "arch", ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t"]
)
def test_the_mean_and_std_of_each_archs_weights_are_torchvisions(arch):
    from torchvision.models import get_model_weights

    from hpnet.models.tv_video import WEIGHTS_MEAN_STD

    transform = get_model_weights(arch).KINETICS400_V1.transforms()
    assert WEIGHTS_MEAN_STD[arch] == (tuple(transform.mean), tuple(transform.std))


def test_a_weights_name_loads_through_torchvisions_cache(text_cache, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = tv.R3D_18_Weights.KINETICS400_V1.url
    cached = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.manual_seed(2)
    ref = tv.r3d_18()
    torch.save(ref.state_dict(), cached)  # as torchvision's downloader leaves it
    with caplog.at_level("WARNING", logger="hpnet.models.normalisation"):
        model = _build(text_cache, "r3d_18", "model.pretrained=KINETICS400_V1")
    assert torch.equal(
        model.backbone.model.layer1[0].conv1[0].weight, ref.layer1[0].conv1[0].weight
    )
    assert url in model.pretrained_report
    assert "set data.augment.mean=[0.43216,0.394666,0.37645] data.augment.std=" in caplog.text
    caplog.clear()
    kinetics = ["data.augment.mean=[0.43216,0.394666,0.37645]"]
    kinetics += ["data.augment.std=[0.22803,0.22145,0.216989]"]
    with caplog.at_level("WARNING", logger="hpnet.models.normalisation"):
        _build(text_cache, "r3d_18", "model.pretrained=KINETICS400_V1", *kinetics)
    assert "weights were trained on" not in caplog.text


def test_a_weights_name_offline_is_a_one_line_error(text_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(
        "hpnet.models.tv_video_weights.probe_host", lambda host: f"cannot reach {host}: offline"
    )
    with pytest.raises(UserError) as err:
        _build(text_cache, "r2plus1d_18", "model.pretrained=KINETICS400_V1")
    message = str(err.value)
    assert "\n" not in message and "cannot reach download.pytorch.org" in message
    assert tv.R2Plus1D_18_Weights.KINETICS400_V1.url in message
    assert "model.pretrained=/path/to/r2plus1d_18-91a641e6.pth" in message


@pytest.mark.parametrize(
    "value, match",
    [
        ("KINETICS_V9", r"no such weights for model\.arch=r3d_18; one of DEFAULT, KINETICS400_V1"),
        ("S3D_Weights.KINETICS400_V1", r"not one of model\.arch=r3d_18's R3D_18_Weights"),
        ("R2Plus1D_18_Weights.KINETICS400_V1", r"not one of model\.arch=r3d_18's R3D_18_W"),
        ("R3D_18_Weights.KINETICS_V9", r"R3D_18_Weights\.KINETICS_V9: torchvision has no such"),
        ("nowhere/r3d.pth", r"torchvision weights not found: nowhere/r3d\.pth \(model\.pretrained"),
    ],
)
def test_bad_weights_are_user_errors(text_cache, value, match):
    with pytest.raises(UserError, match=match):
        _build(text_cache, "r3d_18", f"model.pretrained={value}")


def test_a_tag_of_another_depth_names_the_network_it_is_missing_from():
    """IMAGENET1K_V2 exists for ResNet-50, not -18: the error names resnet18 (model.depth=18
    shrank a late_fusion config; the arch alone did not tell why the tag was refused)."""
    from hpnet.models.tv_video_weights import weights_entry

    assert weights_entry("late_fusion", "IMAGENET1K_V2", "resnet50").name == "IMAGENET1K_V2"
    with pytest.raises(UserError, match=r"no such weights for model\.arch=late_fusion \(resnet18"):
        weights_entry("late_fusion", "IMAGENET1K_V2", "resnet18")


@pytest.mark.parametrize(
    "state, match",
    [
        ({"stem.0.weight": torch.zeros(8, 3, 3, 3)}, r"stem\.0\.weight is \(8, 3, 3, 3\) there"),
        ({"features.0.weight": torch.zeros(1)}, r"none of its tensors is one of the model's"),
    ],
)
def test_a_file_of_another_model_is_refused(text_cache, tmp_path, state, match):
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=rf"do not fit torchvision's r3d_18: {match}.*model\.arch"):
        _build(text_cache, "r3d_18", f"model.pretrained={path}")


# -------------------------------------------------------------------- the commands on a baseline


@pytest.fixture(scope="module")
def baseline_run(tiny_args, tmp_path_factory) -> Path:
    """A tiny r2plus1d_18 HP-Net (pose + text) trained one step by the training command."""
    from hpnet.train import main as train_main

    out = tmp_path_factory.mktemp("baseline") / "run"
    args = ["model.arch=r2plus1d_18", "model.feedback=false", f"train.out_dir={out}"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train_main([*tiny_args, *args, "train.max_steps=1", "train.epochs=1"]) == 0
    return out


def test_a_baseline_checkpoint_evaluates_and_keeps_its_arch(baseline_run, tmp_path):
    from hpnet.evaluate import main as evaluate_main

    checkpoint = str(baseline_run / "last.pt")
    ckpt = torch.load(checkpoint, weights_only=True)
    assert ckpt["config"]["model"]["arch"] == "r2plus1d_18"
    assert any(k.startswith("backbone.model.layer4.") for k in ckpt["model"])
    assert evaluate_main(["--checkpoint", checkpoint, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["num_videos"] == 8 and 0 <= report["top1"] <= 1  # all: max_steps acts in runs
    with pytest.raises(UserError, match=r"does not fit this config: model\.arch=r2plus1d_18 -> "):
        evaluate_main(["--checkpoint", checkpoint, "model.arch=mc3_18"])


def test_resuming_a_baseline_with_another_arch_is_refused(tiny_args, baseline_run):
    from hpnet.train import main as train_main

    args = [f"train.out_dir={baseline_run}", "train.resume=auto", "model.feedback=false"]
    with pytest.raises(UserError, match=r"it used model\.arch=r2plus1d_18, this run has mc3_18"):
        train_main([*tiny_args, *args, "model.arch=mc3_18", "train.epochs=2"])


def test_a_baseline_checkpoint_predicts(baseline_run, shared_data, tmp_path, capsys):
    from hpnet.predict import main as predict_main

    clip = sorted((shared_data / "hmdb51_mini" / "golf").glob("*.avi"))[0]
    base = [str(clip), "--checkpoint", str(baseline_run / "last.pt"), "--no-pose-estimation"]
    capsys.readouterr()
    assert predict_main([*base, "--json"]) == 0
    (video,) = json.loads(capsys.readouterr().out)["videos"]
    assert video["ok"] and video["pose"] == "none" and len(video["top"]) >= 1
    assert 0 < sum(t["prob"] for t in video["top"]) <= 1 + 1e-4
    assert predict_main([*base, "--overlay", str(tmp_path / "x.png"), "--cam", "--json"]) == 0
    (video,) = json.loads(capsys.readouterr().out)["videos"]
    assert video["explain"] == "gradcam"  # --cam is --explain gradcam, on every arch
