"""LS-ViT backbone: shapes, gradients, ablations, time order, pretrained weight loading."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn as nn

from hpnet.cli import UserError
from hpnet.models.lsvit import LSViT, build_lsvit
from hpnet.models.lsvit_weights import load_pretrained
from hpnet.models.motion import (
    LongTermMotion,
    ShortTermMotion,
    frame_differences,
    shifted_in_time,
)

B, T, S, P, D = 2, 4, 32, 8, 32  # batch, frames, image side, patch, width
N = (S // P) ** 2


def tiny(**kwargs) -> LSViT:
    args = dict(img_size=S, patch_size=P, num_frames=T, embed_dim=D, depth=2, num_heads=2)
    return build_lsvit("tiny", **{**args, **kwargs})


def clip_batch(b: int = B, t: int = T, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, t, 3, S, S, generator=torch.Generator().manual_seed(seed))


def randomise_motion(model: LSViT, seed: int = 0) -> None:
    """Give the identity-initialised motion parts random weights (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "smif" in name or "lmi" in name or "temporal_pos" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


# ------------------------------------------------------------------------------------- modules


def test_frame_differences_edges_and_direction():
    x = torch.arange(4.0).view(1, 4, 1, 1, 1).expand(1, 4, 3, 2, 2)  # frame t has value t
    d = frame_differences(x, [1, 2])
    assert d.shape == (1, 4, 12, 2, 2)
    assert d[0, :, 0, 0, 0].tolist() == [1, 1, 1, 0]  # |x[t+1]-x[t]|, clamped at the end
    assert d[0, :, 3, 0, 0].tolist() == [0, 1, 1, 1]  # |x[t]-x[t-1]|, clamped at the start
    assert d[0, :, 6, 0, 0].tolist() == [2, 2, 1, 0]
    assert frame_differences(x[:, :1], [1, 2]).abs().sum() == 0  # T = 1: no motion
    assert shifted_in_time(x, -5)[0, :, 0, 0, 0].tolist() == [0, 0, 0, 0]


def test_smif_offsets_past_the_clip_are_warned_of_once(caplog):
    """``model.smif_offsets=[20]`` on 8 frames compared each frame with the clip's edge; so
    does 7 (clamped at the last frame from the first on: the same maps as 8)."""
    from hpnet.config import load_config
    from hpnet.models.backbones import check_model_config
    from hpnet.models.motion import frame_differences

    clip = torch.randn(1, 8, 3, 4, 4)
    assert torch.equal(frame_differences(clip, [7]), frame_differences(clip, [8]))
    assert not torch.equal(frame_differences(clip, [6]), frame_differences(clip, [7]))
    with caplog.at_level("WARNING", logger="hpnet.models.backbones"):
        for ok in ("[1,2]", "[6]"):
            check_model_config(load_config(None, ["data.frames=8", f"model.smif_offsets={ok}"]))
        check_model_config(
            load_config(None, ["data.frames=8", "model.smif=false", "model.smif_offsets=[9]"])
        )
        assert not caplog.records
        for _ in range(2):
            check_model_config(load_config(None, ["data.frames=8", "model.smif_offsets=[1,7]"]))
    assert len(caplog.records) == 1 and "smif_offsets=[1, 7] reach the ends" in caplog.text
    assert "use offsets below 7" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="hpnet.models.backbones"):  # no offset is short enough
        check_model_config(load_config(None, ["data.frames=2", "model.smif_offsets=[1]"]))
    assert "set model.smif=false, or data.frames of 3 or more" in caplog.text


def test_smif_shape_and_zero_init():
    smif = ShortTermMotion([1, 2], D, P)
    smif.init_weights()
    out = smif(clip_batch())
    assert out.shape == (B, T, N, D)
    assert out.abs().sum() == 0  # a pretrained patch embedding starts unchanged
    assert smif(clip_batch(t=1)).shape == (B, 1, N, D)
    with pytest.raises(ValueError, match="offsets"):
        ShortTermMotion([0], D, P)


@pytest.mark.parametrize("length", [1, 2, 1 + N, 1 + N + 17])
@pytest.mark.parametrize("frames", [1, T])
def test_lmi_any_token_count_is_identity_at_init(length, frames):
    lmi = LongTermMotion(D)
    lmi.init_weights()
    x = torch.randn(B, frames, length, D)
    y = lmi(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6)
    assert lmi.excite(x).shape == (B, frames, 1, D)


@pytest.mark.parametrize("length", [1, 1 + N, 1 + N + 34])
def test_blocks_accept_extra_tokens(length):
    model = tiny()
    x = torch.randn(B, T, length, D)
    for block in model.blocks:
        x = block(x)
    assert x.shape == (B, T, length, D)
    assert model.norm(x).shape == (B, T, length, D)


# -------------------------------------------------------------------------------------- model


def test_model_shapes():
    model = tiny(num_classes=5).eval()
    x = clip_batch()
    assert model.grid_size == (S // P, S // P) and model.embed_dim == D
    assert model.num_prefix_tokens == 1
    assert model.embed(x).shape == (B, T, 1 + N, D)
    tokens = model.forward_features(x)
    assert tokens.shape == (B, T, 1 + N, D)
    assert model.forward_head(tokens).shape == (B, 5)
    assert model.forward_head(tokens, pre_logits=True).shape == (B, D)
    assert model(x).shape == (B, 5)
    assert tiny(num_classes=0)(x).shape == (B, D)  # identity head
    with pytest.raises(ValueError, match="built for 32x32"):
        model(torch.randn(1, T, 3, 16, 16))


def test_mean_pool_averages_every_patch_token():
    model = tiny(num_classes=0, pool="mean").eval()
    tokens = torch.randn(B, T, 1 + N, D)
    torch.testing.assert_close(model.forward_head(tokens), tokens[:, :, 1:].mean((1, 2)))
    model.pool = "cls"
    torch.testing.assert_close(model.forward_head(tokens), tokens[:, :, 0].mean(1))
    with pytest.raises(ValueError, match="unknown pool 'max'"):
        tiny(pool="max")


@pytest.mark.parametrize("frames", [1, 3, 2 * T])
def test_other_clip_lengths(frames):
    model = tiny(num_classes=3).eval()
    assert model(clip_batch(t=frames)).shape == (B, 3)
    assert model.temporal_embedding(frames).shape == (1, frames, 1, D)


def test_drop_path_rises_linearly_to_the_last_block():
    model = tiny(depth=3, drop_path_rate=0.2)
    rates = [b.drop_path1.drop_prob for b in model.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2])


def test_lmi_every_and_switches():
    assert [b.lmi is not None for b in tiny(depth=4, lmi_every=2).blocks] == [0, 1, 0, 1]
    baseline = tiny(smif=False, lmi=False)
    assert baseline.smif is None and baseline.temporal_pos_embed is None
    assert all(b.lmi is None for b in baseline.blocks)


def test_no_weight_decay_names_are_parameters():
    for model in (tiny(), tiny(smif=False, lmi=False)):
        names = dict(model.named_parameters())
        nwd = model.no_weight_decay()
        assert {"pos_embed", "cls_token"} <= nwd and nwd <= names.keys()


def test_every_parameter_gets_a_gradient():
    """Non-zero gradients in the very first step, also behind the identity-initialised parts."""
    model = tiny(num_classes=3, layer_scale_init=1e-5, drop_path_rate=0.0).train()
    x = clip_batch()
    nn.functional.cross_entropy(model(x), torch.tensor([0, 2])).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert no_grad == []


def test_grad_checkpointing_matches():
    model = tiny(num_classes=3).eval()
    x = clip_batch()
    ref = model(x)
    model.set_grad_checkpointing()
    out = model(x.requires_grad_())
    out.sum().backward()
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize(
    "switches", [{}, {"smif": False}, {"lmi": False}, {"smif": False, "lmi": False}]
)
def test_ablations_train_one_step(switches):
    torch.manual_seed(0)
    model = tiny(num_classes=3, drop_path_rate=0.1, drop_rate=0.1, **switches).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(clip_batch()), torch.tensor([1, 2]))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


# ------------------------------------------------------------------------------- time order


def test_baseline_is_blind_to_time_reversal():
    model = tiny(num_classes=3, smif=False, lmi=False).eval()
    x = clip_batch()
    torch.testing.assert_close(model(x), model(x.flip(1)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "switches",
    [
        {"smif": True, "lmi": False, "temporal_embed": False},
        {"smif": False, "lmi": True, "temporal_embed": False},
        {"smif": False, "lmi": False, "temporal_embed": True},
    ],
    ids=["smif", "lmi", "temporal_embed"],
)
def test_each_temporal_part_sees_time_order(switches):
    model = tiny(num_classes=0, **switches).eval()
    randomise_motion(model)
    x = clip_batch()
    feature, reversed_feature = model(x), model(x.flip(1))  # (B, D) each
    assert (
        (feature - reversed_feature).norm(dim=1) > 1e-3 * feature.norm(dim=1)
    ).all()  # noise ~1e-7


def moving_dots(n: int, frames: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """n clips (n, frames, 3, size, size) of a blob moving left to right along a random line."""
    lo, hi = 2.0, size - 3.0
    x0 = lo + torch.rand(n, generator=gen) * (hi - lo) / 3
    x1 = hi - torch.rand(n, generator=gen) * (hi - lo) / 3
    y0, y1 = (lo + torch.rand(2, n, generator=gen) * (hi - lo)).unbind(0)
    s = torch.linspace(0, 1, frames).view(1, frames, 1, 1)
    cx = x0.view(n, 1, 1, 1) * (1 - s) + x1.view(n, 1, 1, 1) * s
    cy = y0.view(n, 1, 1, 1) * (1 - s) + y1.view(n, 1, 1, 1) * s
    grid = torch.arange(size, dtype=torch.float32)
    blob = torch.exp(
        -((grid.view(1, 1, 1, size) - cx) ** 2 + (grid.view(1, 1, size, 1) - cy) ** 2) / 2
    )
    return (blob * 4 - 0.5).unsqueeze(2).expand(n, frames, 3, size, size)


@pytest.mark.slow  # (~10 s of training)
def test_learns_to_tell_a_clip_from_its_time_reversal():
    """Left-to-right vs right-to-left: same frames, only their order differs."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    frames, size = 6, 16
    model = LSViT(
        img_size=size,
        patch_size=4,
        num_frames=frames,
        num_classes=2,
        embed_dim=32,
        depth=2,
        num_heads=2,
    )

    def batch(n):
        clips = moving_dots(n, frames, size, gen)
        return torch.cat([clips, clips.flip(1)]), torch.arange(2).repeat_interleave(n)

    steps = 100
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps)
    for _ in range(steps):
        x, y = batch(16)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    x, y = batch(64)
    with torch.no_grad():
        accuracy = (model.eval()(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.9


# ---------------------------------------------------------------------------- pretrained weights


def perturb_all(module: nn.Module, seed: int = 0) -> None:
    """Noise on every parameter, so that zero biases and unit norms are checked too."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def moving_frames(t: int, size: int) -> torch.Tensor:
    """(t, 3, size, size) frames that change over time, so SMIF and LMI see motion."""
    base = torch.randn(3, size, size, generator=torch.Generator().manual_seed(1))
    return torch.stack([base.roll(2 * i, dims=-1) for i in range(t)])


def test_clip_visual_tower_loads_exactly(tmp_path):
    """Zero-init motion: mean over frames of the CLIP image features, for a clip that moves."""
    open_clip = pytest.importorskip("open_clip")
    vision = open_clip.CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=P, image_size=S)
    text = open_clip.CLIPTextCfg(context_length=8, vocab_size=64, width=32, heads=2, layers=1)
    clip = open_clip.CLIP(embed_dim=24, vision_cfg=vision, text_cfg=text, quick_gelu=True).eval()
    perturb_all(clip)
    path = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), path)

    model = tiny(embed_dim=64, num_heads=2, num_classes=24).eval()  # built for timm: adapts
    with pytest.raises(UserError, match=r"clip\.pt \(model\.pretrained\).*text\.quick_gelu=true"):
        load_pretrained(model, path)  # a plain state dict does not say which activation
    report = load_pretrained(model, path, act="quick_gelu")
    assert report.flavour == "clip" and report.resized == [] and not report.unexpected
    assert model.act == "quick_gelu" and isinstance(model.norm_pre, nn.LayerNorm)
    assert not any(k.startswith(("blocks.0.attn", "blocks.0.mlp", "patch")) for k in report.missing)
    assert all("smif" in k or "lmi" in k or "temporal" in k for k in report.missing)

    frames = moving_frames(T, S)
    with torch.no_grad():
        expected = clip.encode_image(frames).mean(0, keepdim=True)  # (1, 24)
        got = model(frames.unsqueeze(0))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pre_norm", [False, True])  # True: timm's CLIP ViTs, no patch bias
def test_timm_vit_loads_exactly_with_resized_positions(tmp_path, pre_norm):
    timm = pytest.importorskip("timm")
    vit = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=48,
        patch_size=P,
        embed_dim=64,
        depth=2,
        num_heads=2,
        num_classes=7,
        dynamic_img_size=True,
        **({"pre_norm": True, "norm_layer": partial(nn.LayerNorm, eps=1e-5)} if pre_norm else {}),
    ).eval()
    assert ("patch_embed.proj.bias" in vit.state_dict()) != pre_norm
    perturb_all(vit)
    path = tmp_path / "vit.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in vit.state_dict().items()}}, path)

    model = build_lsvit(
        "tiny", img_size=S, patch_size=P, num_frames=T, embed_dim=64, depth=2, num_heads=2
    )
    report = load_pretrained(model, str(path), act="gelu" if pre_norm else None)
    assert "patch_embed.proj.bias" in report.loaded  # pre-norm: CLIP's zero, not a random one
    model.eval()
    frames = moving_frames(T, S)
    with torch.no_grad():
        expected = vit.forward_features(frames)  # (T, 1 + N, 64); timm resizes 6x6 -> 4x4 too
        got = model.forward_features(frames.unsqueeze(0))[0]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_missing_checkpoint_names_path_and_setting(tmp_path):
    path = tmp_path / "nowhere" / "vit_b16.pt"
    with pytest.raises(UserError, match=r"nowhere/vit_b16\.pt.*model\.pretrained"):
        load_pretrained(tiny(), path)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_unusable_checkpoints_are_user_errors(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        load_pretrained(tiny(), junk)
    other = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, other)
    with pytest.raises(UserError, match="not a CLIP or timm ViT"):
        load_pretrained(tiny(), other)
    scripted = tmp_path / "scripted.pt"  # TorchScript archives are read (OpenAI's CLIP files)
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), scripted)
    with pytest.raises(UserError, match="not a CLIP or timm ViT"):
        load_pretrained(tiny(), scripted)
    wide = tmp_path / "wide.pt"
    torch.save(tiny(embed_dim=64, num_heads=2).state_dict(), wide)
    with pytest.raises(UserError, match=r"model\.size"):
        load_pretrained(tiny(), wide)


@pytest.mark.slow
def test_openai_clip_vit_b16_shapes_load_into_base(tmp_path):
    """Real ViT-B/16 key names and shapes (random weights, offline; a 600 MB file, ~2 GB RAM)."""
    open_clip = pytest.importorskip("open_clip")
    clip = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None).eval()
    path = tmp_path / "clip_b16.pt"
    torch.save(clip.state_dict(), path)
    model = build_lsvit(
        "base", img_size=224, patch_size=16, num_frames=1, num_classes=512, act="quick_gelu"
    )
    load_pretrained(model, str(path), act="quick_gelu")
    model.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x.unsqueeze(1)), clip.encode_image(x), rtol=1e-3, atol=1e-4
        )
