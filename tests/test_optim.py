"""Optimizer groups: which parameters count as pretrained, layer-wise LR decay, weight decay."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from hpnet.cli import UserError
from hpnet.config import TrainConfig, load_config
from hpnet.models.hpnet import build_model
from hpnet.optim import build_optimizer, build_scheduler

CLASSES = ["sit_down", "stand_up", "wave"]
LR, BACKBONE_LR = 1e-3, 1e-4
TINY = ["model.size=tiny", "model.patch_size=8", "data.size=32", "data.frames=4"]
TINY += ["text.model=ViT-S-32-alt", "text.pretrained="]


def _model(tmp_path, *extra: str):
    """A tiny HP-Net whose backbone starts from a saved tiny LS-ViT file (timm flavour)."""
    base = [*TINY, f"text.cache_dir={tmp_path / 'text'}"]
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


def test_pretrained_rates_without_pretrained_parts_are_warned_of(tmp_path, caplog):
    """train.backbone_lr / layer_decay on a model that loaded nothing change nothing: said (a
    run trained exactly as without them, silently); with loaded parts nothing is said."""
    model = _model(tmp_path)
    with caplog.at_level("WARNING", logger="hpnet.optim"):
        build_optimizer(model, lr=LR, backbone_lr=BACKBONE_LR, layer_decay=0.5)
        assert caplog.messages == []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tiny = load_config(None, [*TINY, f"text.cache_dir={tmp_path}/t"])
            scratch = build_model(tiny, CLASSES)  # model.pretrained=''
        build_optimizer(scratch, lr=LR, layer_decay=0.5)
    assert caplog.messages == [
        "train.backbone_lr and train.layer_decay set the pretrained parts' learning rates; this "
        "model has none (model.pretrained loaded nothing), so they change nothing"
    ]
    caplog.clear()
    for p in model.backbone.parameters():  # model.freeze_backbone: loaded, but not trained
        p.requires_grad_(False)
    with caplog.at_level("WARNING", logger="hpnet.optim"):
        build_optimizer(model, lr=LR, backbone_lr=BACKBONE_LR)
    assert caplog.messages == [
        "train.backbone_lr and train.layer_decay set the pretrained parts' learning rates; this "
        "model's are frozen (model.freeze_backbone), so they change nothing"
    ]


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
    build_scheduler(opt, TrainConfig(epochs=1, warmup_epochs=0, min_lr=0.0), 10)
    assert [g["lr"] for g in opt.param_groups] == [g["initial_lr"] for g in opt.param_groups]


def test_every_layer_anneals_to_min_lr_times_its_scale(tmp_path):
    """With layer decay, each pretrained group's cosine ends at min_lr x its layer scale (BEiT /
    VideoMAE), new parts at min_lr: the lowest layers, whose peaks sit below min_lr, decay too
    instead of holding their peak for the whole run."""
    model = _model(tmp_path)
    train = TrainConfig(
        lr=LR, backbone_lr=BACKBONE_LR, layer_decay=0.5, epochs=1, warmup_epochs=0, min_lr=1e-5
    )
    opt = build_optimizer(model, train)
    scheduler = build_scheduler(opt, train, 10)
    peaks = [g["lr"] for g in opt.param_groups]
    assert min(peaks) < train.min_lr  # the embeddings: 1e-4 * 0.5 ** (depth + 1)
    for _ in range(10):
        opt.step()
        scheduler.step()
    for group, peak in zip(opt.param_groups, peaks, strict=True):
        base = BACKBONE_LR if group["name"].startswith("pretrained") else LR
        assert group["lr"] == pytest.approx(train.min_lr * peak / base)
        assert group["lr"] < peak


def test_no_weight_decay_on_norms_biases_and_embeddings(tmp_path):
    model = _model(tmp_path)
    opt = build_optimizer(model, lr=LR, backbone_lr=BACKBONE_LR, weight_decay=0.05, layer_decay=0.7)
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    for name in ("backbone.pos_embed", "backbone.cls_token", "backbone.blocks.0.norm1.weight",
                 "backbone.blocks.1.attn.qkv.bias"):  # fmt: skip
        assert decay_of[id(named[name])] == 0.0, name
    assert decay_of[id(named["backbone.blocks.1.attn.qkv.weight"])] == 0.05
    every = build_optimizer(model, lr=LR, weight_decay=0.05, decay_all=True)  # SimSiam's way
    assert {g["weight_decay"] for g in every.param_groups} == {0.05}


def test_layer_decay_is_validated():
    with pytest.raises(UserError, match=r"train\.layer_decay"):
        load_config(None, ["train.layer_decay=1.5"])


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)],
)
def test_each_optimizer_gets_the_same_groups_and_peaks(tmp_path, kind, cls):
    model = _model(tmp_path)
    train = TrainConfig(lr=LR, backbone_lr=BACKBONE_LR, layer_decay=0.7, optimizer=kind)
    opt = build_optimizer(model, train, momentum=0.8, betas=[0.9, 0.95])  # keywords replace fields
    reference = build_optimizer(model, train, optimizer="adamw")
    assert type(opt) is cls
    keys = ("name", "lr", "weight_decay")
    assert [{k: g[k] for k in keys} for g in opt.param_groups] == [
        {k: g[k] for k in keys} for g in reference.param_groups
    ]
    assert [[id(p) for p in g["params"]] for g in opt.param_groups] == [
        [id(p) for p in g["params"]] for g in reference.param_groups
    ]
    assert {g["lr"] for g in opt.param_groups} >= {LR, BACKBONE_LR}
    assert any(g["weight_decay"] == 0.0 for g in opt.param_groups)
    if kind == "sgd":
        assert all(g["momentum"] == 0.8 for g in opt.param_groups)
    else:  # train.betas reach both Adams (VideoMAE pretrains with 0.95)
        assert all(g["betas"] == (0.9, 0.95) for g in opt.param_groups)


def _lr_curve(steps: int, batches_per_epoch: int, **train) -> list[float]:
    """Learning rate of a one-group optimizer (peak 1.0) before each of ``steps`` steps."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, TrainConfig(lr=1.0, **train), batches_per_epoch)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_schedules_at_chosen_steps():
    # 4 optimizer steps per epoch (8 batches, accumulation 2), 1 epoch of warm-up
    common = {"epochs": 5, "warmup_epochs": 1, "min_lr": 0.01, "accum_steps": 2}
    warmup = [0.2, 0.4, 0.6, 0.8]  # (step + 1) / (4 + 1) for every schedule
    cos = _lr_curve(20, 8, schedule="cosine", **common)
    assert cos[:5] == pytest.approx([*warmup, 1.0])
    assert cos[12] == pytest.approx(0.01 + 0.99 * 0.5)  # half-way through the decay
    assert cos[19] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 15 / 16)))

    exp = _lr_curve(20, 8, schedule="exponential", lr_gamma=0.5, **common)
    assert exp[:5] == pytest.approx([*warmup, 1.0])
    assert exp[6] == pytest.approx(0.5**0.5)  # smooth: half an epoch after the peak
    assert exp[8] == pytest.approx(0.5) and exp[12] == pytest.approx(0.25)
    assert exp[19] == pytest.approx(max(0.01, 0.5 ** (15 / 4)))

    step = _lr_curve(20, 8, schedule="step", lr_gamma=0.1, step_epochs=2, **common)
    assert step[:5] == pytest.approx([*warmup, 1.0])
    assert step[11] == pytest.approx(1.0) and step[12] == pytest.approx(0.1)  # 2 epochs on
    assert step[19] == pytest.approx(0.1)
    floor = _lr_curve(20, 8, schedule="step", lr_gamma=0.05, step_epochs=1, **common)
    assert floor[16] == pytest.approx(0.01)  # 0.05**3 is below min_lr: the floor holds

    default = _lr_curve(9, 4, schedule="exponential", epochs=3, warmup_epochs=0, min_lr=0)
    assert default[4] == pytest.approx(0.95) and default[8] == pytest.approx(0.95**2)


def test_a_resumed_scheduler_continues_the_curve():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    train = TrainConfig(lr=1.0, epochs=4, warmup_epochs=0.5, schedule="step", step_epochs=1)
    sched = build_scheduler(opt, train, 4)
    for _ in range(6):
        opt.step()
        sched.step()
    again = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    resumed = build_scheduler(again, train, 4)
    again.load_state_dict(opt.state_dict())
    resumed.load_state_dict(sched.state_dict())
    for _ in range(5):
        opt.step(), sched.step(), again.step(), resumed.step()
        assert again.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)  # 2 drops after 10 steps of 4


@pytest.mark.parametrize("fix_pred_lr", [True, False])
def test_simsiam_predictor_lr_stays_at_its_peak_after_the_warm_up(fix_pred_lr):
    from hpnet.models.simsiam import SimSiam

    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8))
    model = SimSiam(encoder, 8, proj_dim=8, pred_dim=4, proj_layers=2, fix_pred_lr=fix_pred_lr)
    train = TrainConfig(lr=1.0, epochs=4, warmup_epochs=1, min_lr=0.01, schedule="cosine")
    opt = build_optimizer(model, train)
    sched = build_scheduler(opt, train, 4)
    predictor = {id(p) for p in model.predictor.parameters()}
    fixed = [g for g in opt.param_groups if g["constant_lr"]]
    assert {id(p) for g in fixed for p in g["params"]} == (predictor if fix_pred_lr else set())
    assert all(g["name"].endswith("/constant_lr") for g in fixed)
    curves: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(16):
        for g in opt.param_groups:
            curves[g["constant_lr"]].append(g["lr"])
        opt.step()
        sched.step()
    rest = curves[False][:: len(opt.param_groups) - len(fixed)]  # one decayed group's curve
    assert rest[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0]) and rest[-1] < 0.05
    if fix_pred_lr:
        pred = curves[True][:: len(fixed)]
        assert pred[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # the same warm-up
        assert pred[5:] == pytest.approx([1.0] * 11)  # then no decay


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.optimizer=rmsprop", "train.optimizer"),
        ("train.schedule=linear", "train.schedule"),
        ("train.momentum=1.0", "train.momentum"),
        ("train.lr_gamma=1.5", "train.lr_gamma"),
        ("train.step_epochs=0", "train.step_epochs"),
        ("train.betas=[0.9]", "train.betas"),
        ("train.betas=[0.9,1.0]", "train.betas"),
    ],
)
def test_new_train_keys_are_validated(override, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_partial_accumulation_is_a_step():
    lrs = _lr_curve(6, 10, schedule="cosine", epochs=2, warmup_epochs=0, min_lr=0.0, accum_steps=4)
    assert lrs[3] == pytest.approx(0.5)  # 3 optimizer steps an epoch: half-way at step 3 of 6


def test_exponential_stops_at_min_lr():
    exp = _lr_curve(
        12, 4, schedule="exponential", lr_gamma=0.1, epochs=3, warmup_epochs=0, min_lr=0.01
    )
    assert exp[-1] == pytest.approx(0.01)


def test_base_batch_scales_the_peak_rates_to_the_global_batch(capsys, caplog):
    """train.base_batch: lr and backbone_lr scale by batch x accum x processes / base_batch
    (the main process says so); min_lr stays; 0 leaves them as given."""
    from hpnet.distributed import DistInfo
    from hpnet.runtime import build_optimization

    model = torch.nn.Linear(4, 2)
    cfg = load_config(None, ["train.batch_size=24", "train.accum_steps=2", "train.lr=3e-4",
                             "train.base_batch=256", "train.min_lr=1e-5"])  # fmt: skip
    optimizer, _, _ = build_optimization(cfg, model, 10, torch.device("cpu"), DistInfo(0, 8))
    peaks = [group["initial_lr"] for group in optimizer.param_groups]
    assert peaks == pytest.approx([3e-4 * 24 * 2 * 8 / 256] * len(peaks))
    assert (
        "train.base_batch=256: global batch 24 x 2 accum x 8 processes" in capsys.readouterr().out
    )
    build_optimization(cfg, model, 10, torch.device("cpu"), DistInfo(1, 8))
    assert capsys.readouterr().out == ""  # the other processes say nothing
    small = load_config(None, ["train.batch_size=2", "train.lr=3e-4", "train.base_batch=256",
                               "train.min_lr=1e-5"])  # fmt: skip
    with caplog.at_level("WARNING", logger="hpnet.runtime"):
        build_optimization(small, model, 10, torch.device("cpu"), DistInfo(0, 1))
    assert (
        "min_lr=1e-05 is above the peak train.lr=2.34375e-06 (scaled by train.base_batch=256)"
        in (caplog.text)
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="hpnet.runtime"):  # no scaling to speak of
        build_optimization(load_config(None, ["train.min_lr=0.1"]), model, 10, torch.device("cpu"))
    assert "train.min_lr=0.1 is above the peak train.lr=0.0005: the schedule is flat" in caplog.text
    plain = load_config(None, ["train.lr=3e-4", "train.batch_size=24"])
    optimizer, _, _ = build_optimization(plain, model, 10, torch.device("cpu"), DistInfo(0, 8))
    assert {group["initial_lr"] for group in optimizer.param_groups} == {3e-4}


def test_more_accumulation_than_an_epoch_has_batches_is_warned_of(caplog):
    """train.accum_steps=20 on 8 batches an epoch stepped once on 8 batches, silently (the
    effective batch a third of the one asked for)."""
    from hpnet.runtime import build_optimization

    model = torch.nn.Linear(4, 2)
    cfg = load_config(None, ["train.batch_size=4", "train.accum_steps=20"])
    with caplog.at_level("WARNING", logger="hpnet.runtime"):
        build_optimization(cfg, model, 20, torch.device("cpu"))
        assert caplog.messages == []
        build_optimization(cfg, model, 8, torch.device("cpu"))
    assert caplog.messages == [
        "train.accum_steps=20 is more than the 8 batches of an epoch: each epoch steps once, "
        "on 8 x train.batch_size=4 clips; lower train.accum_steps"
    ]
