"""Optimizer groups: which parameters count as pretrained, layer-wise LR decay, weight decay."""

from __future__ import annotations

import warnings

import pytest
import torch

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.models.hpnet import build_model
from hpnet.optim import build_optimizer, cosine_schedule

CLASSES = ["sit_down", "stand_up", "wave"]
LR, BACKBONE_LR = 1e-3, 1e-4


def _model(tmp_path, *extra: str):
    """A tiny HP-Net whose backbone starts from a saved tiny LS-ViT file (timm flavour)."""
    base = [
        "model.size=tiny",
        "model.patch_size=8",
        "data.size=32",
        "data.frames=4",
        "text.model=ViT-S-32-alt",
        "text.pretrained=",
        f"text.cache_dir={tmp_path / 'text'}",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        donor = build_model(
            load_config(None, [*base, "model.smif=false", "model.lmi=false"]), CLASSES
        )
        path = tmp_path / "vit.pth"
        vit = {k: v for k, v in donor.backbone.state_dict().items() if not k.startswith("head.")}
        torch.save(vit, path)
        return build_model(load_config(None, [*base, f"model.pretrained={path}", *extra]), CLASSES)


def _peak_lrs(optimizer) -> dict[int, float]:
    """Parameter id -> peak learning rate of its group."""
    return {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}


def test_only_what_the_file_filled_is_pretrained(tmp_path):
    model = _model(tmp_path)
    lrs = _peak_lrs(build_optimizer(model, lr=LR, backbone_lr=BACKBONE_LR, weight_decay=0.05))
    named = dict(model.named_parameters())
    assert lrs[id(named["backbone.blocks.0.attn.qkv.weight"])] == BACKBONE_LR
    assert lrs[id(named["backbone.patch_embed.proj.weight"])] == BACKBONE_LR
    new = [n for n in named if "smif" in n or ".lmi." in n or "temporal_pos_embed" in n]
    assert new, "the tiny model has SMIF and LMI parameters"
    assert all(lrs[id(named[n])] == LR for n in new), "motion parts are new: they peak at lr"
    assert all(lrs[id(p)] == LR for n, p in named.items() if not n.startswith("backbone."))


def test_layer_decay_scales_each_block(tmp_path):
    model = _model(tmp_path)
    decay = 0.5
    opt = build_optimizer(
        model, lr=LR, backbone_lr=BACKBONE_LR, weight_decay=0.05, layer_decay=decay
    )
    lrs = _peak_lrs(opt)
    named = dict(model.named_parameters())
    depth = model.num_layers
    for i in range(depth):
        got = lrs[id(named[f"backbone.blocks.{i}.mlp.fc1.weight"])]
        assert got == pytest.approx(BACKBONE_LR * decay ** (depth - i))
    embed = lrs[id(named["backbone.patch_embed.proj.weight"])]
    assert embed == pytest.approx(BACKBONE_LR * decay ** (depth + 1))
    assert lrs[id(named["backbone.norm.weight"])] == pytest.approx(BACKBONE_LR)  # top: no decay
    assert all(lrs[id(named[n])] == LR for n in named if "smif" in n)
    # every trainable parameter is in exactly one group, and the schedule keeps each group's peak
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    cosine_schedule(opt, total_steps=10, warmup_steps=0, min_lr=0.0)
    assert [g["lr"] for g in opt.param_groups] == [g["initial_lr"] for g in opt.param_groups]


def test_no_weight_decay_on_norms_biases_and_embeddings(tmp_path):
    model = _model(tmp_path)
    opt = build_optimizer(model, lr=LR, backbone_lr=BACKBONE_LR, weight_decay=0.05, layer_decay=0.7)
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    for name in ("backbone.pos_embed", "backbone.cls_token", "backbone.blocks.0.norm1.weight",
                 "backbone.blocks.1.attn.qkv.bias"):  # fmt: skip
        assert decay_of[id(named[name])] == 0.0, name
    assert decay_of[id(named["backbone.blocks.1.attn.qkv.weight"])] == 0.05


def test_layer_decay_is_validated():
    with pytest.raises(UserError, match=r"train\.layer_decay"):
        load_config(None, ["train.layer_decay=1.5"])
