"""hpnet.explain on every arch: Grad-CAM, activation maps and guided backpropagation, their
shapes and ranges, the model left as it was, and ``predict --explain`` on a baseline checkpoint."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.explain import (
    METHODS,
    _gradient_at,
    expand_time,
    explain_clip,
    guided_backprop,
    input_gradient,
    layer_map,
    on_pixels,
)
from hpnet.fusion.head import LinearHead
from hpnet.models.hpnet import HPNet, build_model

CLASSES = ["sit_down", "stand_up", "wave", "kick"]
# (frames, side, overrides) of the tiny model each arch is explained on; add new archs here.
TINY = {
    "lsvit": (4, 32, ["model.size=tiny", "model.patch_size=8"]),  # feedback on: joint tokens
    "r3d_18": (4, 32, ["model.feedback=false"]),  # fmap T' = 1: one map for all 4 frames
    "swin3d_t": (4, 32, ["model.feedback=false"]),  # T' = 2
    "late_fusion": (4, 32, ["model.feedback=false", "model.depth=18"]),  # T' = T: per frame
    "lrcn": (4, 32, ["model.feedback=false", "model.depth=18"]),  # pooled through an LSTM
    "c3d": (8, 32, ["model.feedback=false"]),  # pooled from fc7, not an average of the map
    "i3d": (4, 64, ["model.feedback=false"]),  # T' = 1, a 2x2 map
    # a frozen frame encoder (a linear probe): no graph through it in training, but there is
    # one for an explanation
    "ssl_transformer": (4, 32, ["model.feedback=false", "model.depth=18",
                                "model.freeze_backbone=true", "model.temporal_width=64"]),
}  # fmt: skip
# i3d's maps take ~10 s per test (a 64 px ResNet-50): with -m slow; the other archs here
ARCHS = [pytest.param(a, marks=pytest.mark.slow) if a == "i3d" else a for a in TINY]
RELU_ARCH = "r3d_18"  # an arch built of (inplace) ReLUs


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, HPNet]:
    """One tiny model per arch (random weights, a random tiny text tower)."""
    cache = tmp_path_factory.mktemp("text")
    built = {}
    for arch, (frames, side, extra) in TINY.items():
        cfg = load_config(
            None,
            [
                f"model.arch={arch}",
                f"data.size={side}",
                f"data.frames={frames}",
                "text.model=ViT-S-32-alt",
                "text.pretrained=",
                f"text.cache_dir={cache}",
                "model.drop_path=0",
                *extra,
            ],
        )
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built[arch] = build_model(cfg, CLASSES).eval()
    return built


def _inputs(arch: str) -> tuple[torch.Tensor, torch.Tensor]:
    frames, side, _ = TINY[arch]
    g = torch.Generator().manual_seed(1)
    video = torch.randn(1, frames, 3, side, side, generator=g)
    joints = torch.rand(1, frames, 2, 17, 3, generator=g)
    joints[..., 2] = 1.0
    return video, joints


def _fmap_shape(model: HPNet, video: torch.Tensor, joints: torch.Tensor) -> tuple[int, ...]:
    seen = []
    hook = model.feature_map.register_forward_hook(lambda m, i, out: seen.append(out.shape))
    with torch.no_grad():
        model(video, joints)
    hook.remove()
    return tuple(seen[0][1:4])  # (T', h, w)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arch", ARCHS)
def test_maps_have_the_layers_or_pixels_shape_in_unit_range(models, arch, method):
    model = models[arch]
    video, joints = _inputs(arch)
    heat = explain_clip(model, video, joints, target=0, method=method)
    frames, side, _ = TINY[arch]
    expected = (frames, side, side) if method == "guided" else _fmap_shape(model, video, joints)
    assert tuple(heat.shape) == expected
    assert float(heat.min()) >= 0 and float(heat.max()) == pytest.approx(1.0)
    assert float(heat.min()) < 1.0  # not one flat colour


@pytest.mark.parametrize("arch", ARCHS)
def test_gradcam_and_guided_depend_on_the_class(models, arch):
    model = models[arch]
    video, joints = _inputs(arch)
    for method in ("gradcam", "guided"):
        a, b = (explain_clip(model, video, joints, target=c, method=method) for c in (0, 1))
        assert not torch.allclose(a, b), method
    # The activation map does not depend on the class.
    a, b = (layer_map(model, video, joints, target=c, method="activation") for c in (0, 1))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradcam_without_joints_still_shows_something(models, arch):
    """Without joints the logits read the map only through the pooled feature: LS-ViT's class
    token (the tokens entering its last block), the CNNs' average pool of fmap's base tensor."""
    video, _ = _inputs(arch)
    heat = explain_clip(models[arch], video, None, target=0, method="gradcam")
    assert float(heat.max()) == pytest.approx(1.0)


def _hand_gradcam(model: HPNet, arch: str, joints: torch.Tensor | None) -> torch.Tensor:
    """Grad-CAM by hand (``relu(sum_D mean_hw(dy/dA) * A)``, over its maximum) at the layer
    it explains: r3d_18's last stage, C3D's conv5b (the base of its fmap view; fc7 reads it, so
    its gradient varies over the map), LS-ViT's patch tokens entering its last block."""
    video, _ = _inputs(arch)
    seen = []
    if arch == "lsvit":
        layer = model.backbone.blocks[-1]
        hook = layer.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    elif arch == "c3d":  # fmap (B, T', h, w, D) = conv5b.permute(...)
        hook = model.feature_map.register_forward_hook(lambda m, i, o: seen.append(o._base))
    else:
        hook = model.backbone.model.layer4.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        logits = model(video, joints)["logits"]
    finally:
        hook.remove()
    (grads,) = torch.autograd.grad(logits[0, 2], seen[0])
    if arch == "lsvit":  # (B, T, 1 + h*w + ..., D): the patch tokens after the class token
        gh, gw = model.backbone.grid_size
        acts, grads = (t[0, :, 1 : 1 + gh * gw].unflatten(1, (gh, gw)) for t in (seen[0], grads))
    else:  # (B, D, T', h, w)
        acts, grads = (t[0].permute(1, 2, 3, 0) for t in (seen[0], grads))
    cam = (acts.detach() * grads.mean(dim=(1, 2), keepdim=True)).sum(-1).clamp(min=0)
    return cam / cam.max()


@pytest.mark.parametrize("with_joints", [True, False])
@pytest.mark.parametrize("arch", ["r3d_18", "c3d", "lsvit"])
def test_gradcam_equals_grad_cam_by_hand(models, arch, with_joints):
    model = models[arch]
    video, joints = _inputs(arch)
    joints = joints if with_joints else None
    expected = _hand_gradcam(model, arch, joints)
    torch.testing.assert_close(layer_map(model, video, joints, 2, "gradcam"), expected)


def test_a_one_cell_map_is_warned_about(models, caplog, monkeypatch):
    """r3d_18 on a 16 px crop has a 1 x 1 map: Grad-CAM is all heat, the activation map none."""
    monkeypatch.setattr("hpnet.explain._WARNED_ONE_CELL", set())
    video = torch.randn(1, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with caplog.at_level("WARNING", logger="hpnet.explain"):
        heat = explain_clip(models["r3d_18"], video, None, target=0, method="gradcam")
    assert tuple(heat.shape[1:]) == (1, 1)
    assert "feature map of r3d_18 is 1 x 1 at data.size=16" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="hpnet.explain"):
        explain_clip(models["r3d_18"], _inputs("r3d_18")[0], None, target=0, method="gradcam")
    assert "1 x 1" not in caplog.text  # 32 px: a 2 x 2 map


def test_the_gradient_at_a_view_is_its_bases_laid_out_as_the_view():
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    weights = torch.randn(2, 3, 4, 5)
    base = x * 1.0
    view = base.permute(0, 2, 3, 1)[:, 1:]  # like a backbone's channels-last fmap, sliced
    loss = (base * weights).sum() + view.sum()  # read both directly and through the view
    expected = weights.permute(0, 2, 3, 1)[:, 1:] + 1
    torch.testing.assert_close(_gradient_at(loss, view), expected)
    assert _gradient_at((x * 2).sum(), view) is None


def test_guided_differs_from_the_plain_input_gradient_on_a_relu_net(models):
    model = models[RELU_ARCH]
    video, joints = _inputs(RELU_ARCH)
    with guided_backprop(model) as hooked:
        assert hooked >= 17  # the stem's ReLU and two per residual block
    plain = input_gradient(model, video, joints, 0, guided=False)
    guided = input_gradient(model, video, joints, 0)
    assert plain.shape == guided.shape == video.shape[1:]
    assert not torch.allclose(plain, guided)
    # The plain gradient is what autograd gives without any hooks.
    pixels = video.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(pixels, joints)["logits"][0, 0], pixels)
    torch.testing.assert_close(plain, expected[0])


@pytest.mark.parametrize("arch", ARCHS)
def test_guided_gates_the_backbones_own_activations(models, arch):
    """Every arch's backbone runs activation modules the guide can hook (C3D's were functional
    calls: "guided" was the plain gradient), so guided and plain gradients differ."""
    from hpnet.explain import GUIDED_ACTIVATIONS

    model = models[arch]
    assert any(isinstance(m, GUIDED_ACTIVATIONS) for m in model.backbone.modules())
    video, joints = _inputs(arch)
    plain = input_gradient(model, video, joints, 0, guided=False).flatten()
    guided = input_gradient(model, video, joints, 0).flatten()
    assert torch.nn.functional.cosine_similarity(plain, guided, dim=0) < 0.99


def test_maps_can_be_drawn_inside_inference_mode(models):
    model = models["r3d_18"]
    video, joints = _inputs("r3d_18")
    for method in METHODS:
        expected = explain_clip(model, video, joints, 0, method)
        with torch.inference_mode():
            inside = explain_clip(model, video.clone(), joints.clone(), 0, method)
        torch.testing.assert_close(inside, expected)


def _hooks(model: nn.Module) -> list[str]:
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [f"{n}.{k}" for n, m in model.named_modules() for k in kinds if getattr(m, k, None)]


@pytest.mark.parametrize("arch", ARCHS)
def test_the_model_is_left_as_it_was(models, arch):
    model = models[arch]
    video, joints = _inputs(arch)
    with torch.no_grad():
        before = model(video, joints)["logits"]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    inplace = {n: m.inplace for n, m in model.named_modules() if hasattr(m, "inplace")}
    model.train()
    modes = [m.training for m in model.modules()]  # (a frozen encoder stays in eval mode)
    try:
        for method in METHODS:
            explain_clip(model, video, joints, target=1, method=method)
        assert model.training and [m.training for m in model.modules()] == modes
    finally:
        model.eval()
    assert _hooks(model) == []
    assert {n: m.inplace for n, m in model.named_modules() if hasattr(m, "inplace")} == inplace
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    with torch.no_grad():
        torch.testing.assert_close(model(video, joints)["logits"], before, rtol=0, atol=0)
    if arch == RELU_ARCH:
        assert any(inplace.values())  # torchvision's inplace ReLUs were switched back on


def test_frames_show_their_share_of_the_strided_maps():
    maps = torch.arange(2.0).view(2, 1, 1)
    assert expand_time(maps, 5).flatten().tolist() == [0, 0, 0, 1, 1]
    assert expand_time(maps, 4).flatten().tolist() == [0, 0, 1, 1]
    assert expand_time(torch.arange(4.0).view(4, 1, 1), 4).flatten().tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("arch", ["r3d_18", "i3d", "c3d", "s3d", "swin3d_t", "mvit_v2_s"])
def test_frames_show_the_step_centred_nearest_them(arch):
    """With a strided arch's time cells, each frame shows the map step centred nearest to it,
    so the frame whose joints the FPM gives a step (resample_joints) shows that step."""
    from hpnet.fusion.fpm import resample_joints
    from hpnet.models.backbones import TIME_CELLS

    stride, first = TIME_CELLS[arch]
    frames = 16
    steps = max(1, int(frames // stride))
    shown = expand_time(torch.arange(float(steps)).view(steps, 1, 1), frames, (stride, first))
    shown = shown.flatten().long()
    clip = torch.arange(float(frames)).view(1, frames, 1, 1, 1).expand(1, frames, 1, 17, 3)
    read = resample_joints(clip, steps, (stride, first))[0, :, 0, 0, 0].long()  # (steps,)
    assert shown[read].tolist() == list(range(steps))
    centres = first + stride * torch.arange(steps)
    for t in range(frames):  # and no other step is nearer to the frame's middle
        assert abs(t + 0.5 - centres[shown[t]]) == (t + 0.5 - centres).abs().min()
    if arch == "r3d_18":  # steps at frames 0 and 8: frames 5-7 are nearer the second
        assert shown.tolist() == [0] * 5 + [1] * 11


@pytest.mark.parametrize(("cells", "size", "grid"), [((32, 0.5), 112, 4), ((16, 8.0), 100, 6)])
def test_a_cnn_map_lies_on_the_pixels_its_cells_are_centred_on(cells, size, grid):
    """A map hot in one cell peaks at that cell's centre on the crop (pixel first + stride *
    i), not where stretching the map over the crop would put it ((i + 0.5) * size / grid)."""
    stride, first = cells
    maps = torch.zeros(2, grid, grid)
    maps[0, 1, 2] = maps[1, 2, 1] = 1.0  # (row, column) per slot
    pixels = on_pixels(maps, cells, size)
    assert pixels.shape == (2, size, size)
    for t, (row, col) in enumerate([(1, 2), (2, 1)]):
        y, x = divmod(int(pixels[t].argmax()), size)
        assert abs(x + 0.5 - (first + stride * col)) <= 0.5
        assert abs(y + 0.5 - (first + stride * row)) <= 0.5


class _ClassTokenOnly(nn.Module):
    """A backbone whose pooled feature does not read its feature map (like MViT's class token)."""

    embed_dim = 8
    num_layers = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, kernel_size=2, stride=2)
        self.token = nn.Parameter(torch.randn(8))

    def forward_features(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.conv(video.transpose(1, 2)).permute(0, 2, 3, 4, 1)  # (B, T/2, S/2, S/2, 8)
        return fmap, self.token.expand(video.shape[0], -1)


def test_gradcam_of_a_map_the_logits_do_not_read_is_refused():
    model = HPNet(_ClassTokenOnly(), LinearHead(8, None, 3))
    video = torch.randn(1, 4, 3, 8, 8)
    with pytest.raises(UserError, match="explain activation or guided"):
        layer_map(model, video, None, 0, "gradcam")
    assert layer_map(model, video, None, 0, "activation").shape == (2, 4, 4)
    assert _hooks(model) == []


# ------------------------------------------------------------------------ the predict command


@pytest.fixture(scope="module")
def baseline_checkpoint(tiny_args, tmp_path_factory) -> Path:
    """r3d_18 with pose and text head, trained 1 step on the tiny synthetic actions."""
    from hpnet.train import main as train_main

    out = tmp_path_factory.mktemp("r3d")
    args = [*tiny_args, f"train.out_dir={out}", "train.epochs=1", "train.max_steps=1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train_main([*args, "model.arch=r3d_18", "model.feedback=false"]) == 0
    return out / "last.pt"


def test_predict_explain_draws_on_a_baseline_overlay(
    baseline_checkpoint, shared_data, tmp_path, capsys
):
    from PIL import Image

    from hpnet.predict import main

    clip = tmp_path / "golf.avi"
    shutil.copy(sorted((shared_data / "hmdb51_mini" / "golf").glob("*.avi"))[0], clip)
    base = [str(clip), "--checkpoint", str(baseline_checkpoint), "--no-pose-estimation"]
    strips = {}
    for method in (None, "gradcam", "activation", "guided"):
        out = tmp_path / f"{method}.png"
        capsys.readouterr()
        extra = ["--explain", method] if method else []
        assert main([*base, "--overlay", str(out), *extra, "--json"]) == 0
        video = json.loads(capsys.readouterr().out)["videos"][0]
        assert video["overlay"] == str(out) and video["explain"] == method
        strips[method] = np.asarray(Image.open(out)).astype(int)
    for method in ("gradcam", "activation", "guided"):
        assert np.abs(strips[method] - strips[None]).mean() > 1.0  # the map shows
    with pytest.raises(UserError, match="--overlay"):
        main([*base, "--explain", "guided"])
    with pytest.raises(UserError, match="choose from"):  # argparse's choices
        main([*base, "--overlay", str(tmp_path / "x.png"), "--explain", "saliency"])
    with pytest.raises(UserError, match="--cam is --explain gradcam"):
        main([*base, "--overlay", str(tmp_path / "x.png"), "--cam", "--explain", "guided"])


def test_api_explain_and_its_older_name(baseline_checkpoint, shared_data, tmp_path):
    import hpnet

    clip = sorted((shared_data / "hmdb51_mini" / "golf").glob("*.avi"))[0]
    clf = hpnet.load(baseline_checkpoint, estimate_pose=False)
    result = clf.predict(clip, overlay=str(tmp_path / "o.png"), cam=True)
    assert result["explain"] == "gradcam" and (tmp_path / "o.png").is_file()
    with pytest.raises(UserError, match="overlay"):
        clf.predict(clip, explain="guided")
    with pytest.raises(UserError, match="choose one of gradcam, activation, guided"):
        clf.predict(clip, overlay=str(tmp_path / "o.png"), explain="saliency")
    with pytest.raises(UserError, match="--cam is --explain gradcam"):
        clf.predict(clip, overlay=str(tmp_path / "o.png"), cam=True, explain="activation")
