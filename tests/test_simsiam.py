"""SimSiam (loss, stop-gradient, collapse monitor, learning), its two-view sampler, and the
``ssl_transformer`` backbone (shapes, gradients, freezing, loading a SimSiam encoder)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.data.simsiam_views import (
    LIGHT,
    STRONG,
    SimSiamViews,
    ViewAugment,
    sample_frame_pairs,
)
from hpnet.data.synthetic import render_split
from hpnet.distributed import DistInfo, sync_batchnorm
from hpnet.fusion.head import LinearHead
from hpnet.fusion.pose_encoder import PoseEncoder
from hpnet.models.hpnet import HPNet
from hpnet.models.resnet_trunk import build_resnet_trunk
from hpnet.models.simsiam import SimSiam, collapse_std
from hpnet.models.ssl_transformer import (
    SSLTransformer,
    build_ssl_transformer,
    load_frame_encoder,
    load_simsiam_encoder,
)
from hpnet.pretrain.simsiam import build_views

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _tiny_encoder() -> nn.Module:
    """A 3-layer CNN ``(N, 3, S, S) -> (N, 64)``: SimSiam's learning curve in a few seconds."""
    layers: list[nn.Module] = []
    for cin, cout in ((3, 16), (16, 32), (32, 64)):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """32 rendered stick-figure clips, uint8 ``(32, 8, 3, 48, 48)`` (~0.3 s, in memory)."""
    video, _, _ = render_split(
        "train", num_videos=32, resolution=48, length=8, seed=0, distractor=False, progress=False
    )
    return torch.from_numpy(video)


def _simsiam_resnet18(proj_dim: int = 128) -> SimSiam:
    return SimSiam(build_resnet_trunk(18), 512, proj_dim=proj_dim, pred_dim=32, proj_layers=2)


def _simsiam_tiny(proj_dim: int = 128, proj_layers: int = 2) -> SimSiam:
    return SimSiam(_tiny_encoder(), 64, proj_dim=proj_dim, pred_dim=32, proj_layers=proj_layers)


# ------------------------------------------------------------------------------------ SimSiam


def test_loss_is_symmetric_and_a_negative_cosine() -> None:
    torch.manual_seed(0)
    model = _simsiam_tiny(proj_layers=3)
    x1, x2 = torch.randn(2, 8, 3, 32, 32).unbind(0)
    a, b = model(x1, x2), model(x2, x1)
    torch.testing.assert_close(a["loss"], b["loss"])
    torch.testing.assert_close(a["p1"], b["p2"])
    assert -1.0 <= a["loss"].item() <= 1.0
    # loss = -(cos(p1, z2) + cos(p2, z1)) / 2, mean over the batch
    cos = torch.nn.functional.cosine_similarity
    expect = -(cos(a["p1"], a["z2"]).mean() + cos(a["p2"], a["z1"]).mean()) / 2
    torch.testing.assert_close(a["loss"], expect)


class _DetachedInput(nn.Module):
    """The predictor fed a detached z: the p branch then carries no gradient back."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.inner(z.detach())


def test_gradient_reaches_z_only_through_the_predictor() -> None:
    torch.manual_seed(0)
    model = _simsiam_tiny()
    x1, x2 = torch.randn(2, 8, 3, 32, 32).unbind(0)
    model(x1, x2)["loss"].backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0  # through p, normally
    model.zero_grad(set_to_none=True)
    model.predictor = _DetachedInput(model.predictor)  # cut the p branch: only z's would remain
    model(x1, x2)["loss"].backward()
    upstream = [*model.encoder.parameters(), *model.projector.parameters()]
    assert all(p.grad is None or not p.grad.any() for p in upstream)  # z: stop-gradient
    assert all(p.grad is not None for p in model.predictor.parameters())


def test_collapse_std_is_zero_for_one_point_and_1_over_sqrt_d_when_spread() -> None:
    torch.manual_seed(0)
    assert float(collapse_std(torch.ones(64, 32) * 3.0)) == pytest.approx(0.0, abs=1e-6)
    spread = float(collapse_std(torch.randn(4096, 64)))
    assert spread == pytest.approx(1 / 64**0.5, rel=0.05)


def _pretrain(model: SimSiam, frames: torch.Tensor, mode: str, steps: int, batch: int):
    """``steps`` AdamW steps on views of the rendered clips: losses and the last collapse std."""
    views = SimSiamViews(mode, 32, MEAN, STD)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    losses = []
    for _ in range(steps):
        x1, x2 = views(frames[torch.randint(len(frames), (batch,), generator=gen)], gen)
        out = model(x1, x2)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    return losses, float(collapse_std(out["z1"]))


@pytest.mark.parametrize("mode", ["augment", "frames", "foreground"])
def test_loss_falls_on_synthetic_frames_without_collapse(frames, mode) -> None:
    torch.manual_seed(0)
    proj_dim = 128
    model = _simsiam_tiny(proj_dim)
    # foreground views (a pasted scene) are the harder match: -0.20 after 40 steps, -0.31 after 80
    steps = 80 if mode == "foreground" else 40
    losses, std = _pretrain(model, frames, mode, steps=steps, batch=16)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.2, losses
    assert std > 0.3 / proj_dim**0.5, std


@pytest.mark.parametrize("mode", ["augment", "foreground"])
def test_a_batch_left_with_one_clip_moves_nothing(frames, mode) -> None:
    """Its other videos failed: BatchNorm cannot train on one clip, so the clip runs twice with
    weight 0 (the step still happens, as DDP needs) and counts as no clip trained on."""
    from hpnet.engine import EpochProgress, flush_records
    from hpnet.pretrain.simsiam import simsiam_batch

    torch.manual_seed(0)
    model = _simsiam_tiny()
    state = EpochProgress()
    step = {"views": SimSiamViews(mode, 32, MEAN, STD), "device": torch.device("cpu")}
    step |= {"amp_dtype": None, "scaler": None, "loss_divisor": 1, "where": "batch 1"}
    simsiam_batch(model, {"video": frames[:1]}, state, generator=torch.Generator(), **step)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    flush_records(state)
    assert state.seen == 0
    simsiam_batch(model, {"video": frames[:3]}, state, generator=torch.Generator(), **step)
    flush_records(state)
    assert state.seen == 3 and any(p.grad.any() for p in model.parameters())


@pytest.mark.slow  # ~40 s on a loaded 2-core CPU (resnet18, 60 steps of 2 x 16 views)
def test_resnet18_simsiam_loss_falls_without_collapse(frames) -> None:
    torch.manual_seed(0)
    losses, std = _pretrain(_simsiam_resnet18(256), frames, "augment", steps=60, batch=16)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2, losses
    assert std > 0.3 / 256**0.5, std


# -------------------------------------------------------------------------------------- views


@pytest.mark.parametrize("mode", ["augment", "frames", "foreground"])
def test_views_are_two_different_normalised_crops(frames, mode) -> None:
    clips = frames[:8]
    views = SimSiamViews(mode, 32, MEAN, STD)
    x1, x2 = views(clips, torch.Generator().manual_seed(1))
    assert x1.shape == x2.shape == (8, 3, 32, 32) and x1.dtype == torch.float32
    assert (x1 - x2).abs().mean() > 0.05  # different views
    low, high = (0 - 0.5) / 0.25, (1 - 0.5) / 0.25  # the normalised pixel range
    assert x1.min() >= low - 1e-4 and x1.max() <= high + 1e-4
    y1, y2 = views(clips.float() / 255, torch.Generator().manual_seed(1))  # float clips in [0, 1]
    torch.testing.assert_close(y1, x1, atol=1e-4, rtol=0)
    torch.testing.assert_close(y2, x2, atol=1e-4, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["augment", "frames", "foreground"])
def test_views_on_cuda_match_the_cpu(frames, mode) -> None:
    views = SimSiamViews(mode, 32, MEAN, STD)
    cpu = views(frames[:8], torch.Generator().manual_seed(3))
    gpu = views(frames[:8].cuda(), torch.Generator().manual_seed(3))  # parameters drawn on the CPU
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(b.cpu(), a, atol=1e-3, rtol=0)


def test_frame_pairs_are_the_same_frame_or_nearby_distinct_frames() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = sample_frame_pairs(500, 8, "augment", generator=gen)
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 7
    a, b = sample_frame_pairs(500, 8, "frames", frame_gap=3, generator=gen)
    gap = (a - b).abs()
    assert gap.min() >= 1 and gap.max() <= 3 and b.min() >= 0 and b.max() <= 7
    assert set(gap.tolist()) == {1, 2, 3} and (b < a).any() and (b > a).any()
    for frames, frame_gap in ((4, 4), (3, 4), (2, 2)):  # a gap as long as the clip is cut to T - 1
        a, b = sample_frame_pairs(500, frames, "frames", frame_gap=frame_gap, generator=gen)
        gap = (a - b).abs()
        assert gap.min() >= 1 and gap.max() <= frames - 1 and b.min() >= 0 and b.max() < frames


def test_greyscale_view_has_equal_channels(frames) -> None:
    grey = ViewAugment(gray_prob=1.0, blur_prob=0.0)
    views = SimSiamViews("augment", 32, MEAN, STD, strong=grey)
    x1, _ = views(frames[:4], torch.Generator().manual_seed(0))
    torch.testing.assert_close(x1[:, 0], x1[:, 1], atol=1e-4, rtol=0)
    torch.testing.assert_close(x1[:, 1], x1[:, 2], atol=1e-4, rtol=0)


def test_strong_views_jitter_hue_as_simsiam_and_pretrain_hue_sets_it(frames) -> None:
    assert STRONG.hue == 0.1 and LIGHT.hue == 0.0  # SimSiam: ColorJitter(0.4, 0.4, 0.4, 0.1)
    cfg = load_config(None, ["pretrain.method=simsiam", "pretrain.hue=0.35", "data.size=32"])
    assert build_views(cfg).aug.hue == 0.35 and build_views(cfg).aug.scale_min == 0.2
    cfg = load_config(None, ["pretrain.method=simsiam", "pretrain.crop_scale_min=1.0"])
    assert build_views(cfg).aug.scale_min == 1.0
    colour_only = dict(scale_min=1.0, flip_prob=0.0, jitter=0.0, jitter_prob=1.0, blur_prob=0.0)
    outs = []
    for hue in (0.0, 0.35):
        views = SimSiamViews("augment", 32, MEAN, STD, strong=ViewAugment(hue=hue, **colour_only))
        outs.append(views(frames[:8], torch.Generator().manual_seed(2))[0])
    assert (outs[0] - outs[1]).abs().mean() > 0.05  # the hue moved; the crops are the same
    with pytest.raises(UserError, match=r"pretrain\.hue"):
        load_config(None, ["pretrain.hue=0.7"])


# ---------------------------------------------------------------------------- ssl_transformer


def test_forward_features_shapes_and_layers() -> None:
    model = build_ssl_transformer(18, width=128, depth=2)
    fmap, pooled = model.forward_features(torch.randn(2, 4, 3, 64, 64))
    assert fmap.shape == (2, 4, 2, 2, 128) and pooled.shape == (2, 128)
    assert model.embed_dim == 128 and model.num_layers == 4  # the encoder's stages
    assert model.layer_id("encoder.conv1.weight") == 0
    assert model.layer_id("encoder.layer4.1.bn2.weight") == 4
    for new in ("time_embed", "temporal.layers.1.linear1.weight", "norm.weight"):
        assert model.layer_id(new) == 5  # above the encoder
    assert model.no_weight_decay() <= {n for n, _ in model.named_parameters()}


def test_layer_decay_counts_down_from_the_encoders_top_stage() -> None:
    """The pretrained encoder's top stage peaks at backbone_lr x decay and its stem at
    x decay^5, however many Transformer layers (new, at lr) sit above it."""
    from hpnet.optim import param_groups

    for depth in (1, 4):
        backbone = build_ssl_transformer(18, width=64, depth=depth)
        model = HPNet(backbone, LinearHead(64, 64, 3))
        names = [n for n, _ in model.named_parameters()]
        model.pretrained_names = {n for n in names if n.startswith("backbone.encoder.")}
        groups = param_groups(model, lr=1e-3, backbone_lr=1e-4, weight_decay=0.05, layer_decay=0.5)
        peak = {id(p): g["lr"] for g in groups for p in g["params"]}
        params = dict(model.named_parameters())
        assert peak[id(params["backbone.encoder.layer4.0.conv1.weight"])] == pytest.approx(5e-5)
        assert peak[id(params["backbone.encoder.conv1.weight"])] == pytest.approx(1e-4 * 0.5**5)
        assert peak[id(params["backbone.temporal.layers.0.linear1.weight"])] == 1e-3


def test_training_step_through_hpnet_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    trunk = build_resnet_trunk(18, zero_init_residual=False)  # (zero-init blocks: no gradient)
    backbone = SSLTransformer(trunk, width=128, depth=2)
    model = HPNet(backbone, LinearHead(128, 128, 5), pose_encoder=PoseEncoder(128, 128))
    joints = torch.rand(2, 4, 2, 17, 3)
    out = model(torch.randn(2, 4, 3, 64, 64), joints)
    assert out["logits"].shape == (2, 5)
    (out["logits"].logsumexp(1).sum() + out["aux_logits"].logsumexp(1).sum()).backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not silent


def _changed_by_a_step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> set[str]:
    """The state-dict keys (weights and BN statistics) one training step on a random clip
    changes."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt.zero_grad(set_to_none=True)
    model.forward_features(torch.randn(2, 3, 3, 32, 32))[1].pow(2).sum().backward()
    opt.step()
    return {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}


def test_frozen_encoder_keeps_weights_and_bn_statistics() -> None:
    torch.manual_seed(0)
    model = build_ssl_transformer(18, width=128, depth=1, freeze=True).train()
    assert model.training and not any(m.training for m in model.encoder.modules())
    assert not any(p.requires_grad for p in model.encoder.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    changed = _changed_by_a_step(model, torch.optim.AdamW(trainable, lr=1e-2))
    assert changed and not any(k.startswith("encoder.") for k in changed)
    assert "encoder.bn1.running_mean" in model.state_dict() and "proj.weight" in changed
    model.eval().train()
    assert not model.encoder.bn1.training


def test_set_frozen_holds_the_encoder_then_lets_it_learn() -> None:
    torch.manual_seed(0)
    model = build_ssl_transformer(18, width=128, depth=1).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)  # holds the encoder throughout
    model.set_frozen(True)
    assert model.training and not model.encoder.bn1.training
    changed = _changed_by_a_step(model, opt)  # no gradient, weight decay or BN statistics
    assert "proj.weight" in changed and not any(k.startswith("encoder.") for k in changed)
    model.eval().train()
    assert not model.encoder.bn1.training  # stays frozen across train()/eval()
    model.set_frozen(False)
    assert model.encoder.bn1.training
    changed = _changed_by_a_step(model, opt)
    assert {"encoder.conv1.weight", "encoder.bn1.running_mean", "proj.weight"} <= changed
    with pytest.raises(ValueError, match="built with freeze=True"):
        build_ssl_transformer(18, width=128, depth=1, freeze=True).set_frozen(False)


def test_simsiam_checkpoint_initialises_the_frame_encoder(tmp_path) -> None:
    torch.manual_seed(0)
    simsiam = _simsiam_resnet18()
    simsiam(*torch.randn(2, 4, 3, 32, 32).unbind(0))  # BN running statistics move off init
    path = tmp_path / "last.pt"
    torch.save({"model": simsiam.state_dict(), "epoch": 3}, path)
    backbone = build_ssl_transformer(18, width=128, depth=1)
    report = load_frame_encoder(backbone, torch.load(path, weights_only=True), str(path))
    mine, theirs = backbone.encoder.state_dict(), simsiam.encoder.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert len(report.loaded) == len(mine) and not report.missing and not report.unexpected
    assert "simsiam" in str(report)
    ddp = {f"module.{k}": v for k, v in simsiam.state_dict().items()}
    assert load_simsiam_encoder(ddp).keys() == theirs.keys()
    with pytest.raises(ValueError, match="encoder"):
        load_simsiam_encoder({"proj.weight": torch.zeros(1)})
    bad = {"encoder.conv1.weight": torch.zeros(8, 3, 3, 3)}
    with pytest.raises(ValueError, match=r"conv1\.weight"):
        load_frame_encoder(backbone, bad)


def test_sync_bn_converts_every_batchnorm_in_place_under_torchrun_on_cuda() -> None:
    model = SimSiam(_tiny_encoder(), feat_dim=64, proj_dim=32, pred_dim=16)
    params, state = list(model.parameters()), model.state_dict()
    count = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    two = DistInfo(rank=0, world_size=2)
    # one process, or the CPU (torch's SyncBatchNorm runs on GPUs only): left alone
    assert not sync_batchnorm(model, DistInfo(), torch.device("cuda"))
    assert not sync_batchnorm(model, two, torch.device("cpu"))
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    # two processes on CUDA (converting runs nothing on the device)
    assert sync_batchnorm(model, two, torch.device("cuda"))
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert count >= 5 and len(norms) == count
    assert all(isinstance(m, nn.SyncBatchNorm) for m in norms)
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]  # optimizer unchanged
    after = model.state_dict()
    assert list(after) == list(state)  # checkpoints keep their keys
    assert all(torch.equal(after[k], v) for k, v in state.items())
