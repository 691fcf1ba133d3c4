"""The whole HP-Net: shapes, gradients, masking, ablations, frozen text, open vocabulary."""

from __future__ import annotations

import warnings

import pytest
import torch

from hpnet.config import load_config
from hpnet.models.hpnet import HPNet, build_model

CLASSES = ["sit_down", "stand_up", "wave", "kick"]


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("text"))


def _cfg(text_cache: str, *extra: str):
    return load_config(
        None,
        [
            "model.size=tiny",
            "model.patch_size=8",
            "data.size=32",
            "data.frames=4",
            "text.model=ViT-S-32-alt",  # the smallest open_clip text tower: fast tests
            "text.pretrained=",
            f"text.cache_dir={text_cache}",
            *extra,
        ],
    )


def _build(text_cache: str, *extra: str) -> HPNet:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model(_cfg(text_cache, *extra), CLASSES)


def _inputs(b: int = 2, t: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(b, t, 3, 32, 32, generator=g)
    joints = torch.rand(b, t, 2, 17, 3, generator=g)
    joints[..., 2] = 1.0
    return video, joints


def test_shapes_and_every_parameter_learns(text_cache):
    model = _build(text_cache)
    video, joints = _inputs()
    out = model(video, joints)
    assert out["logits"].shape == (2, 4) and out["aux_logits"].shape == (2, 4)
    (out["logits"].logsumexp(1).sum() + out["aux_logits"].logsumexp(1).sum()).backward()
    dead = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert dead == []


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_the_head_reads_the_pooled_feature_model_pool_names(text_cache, pool):
    model = _build(text_cache, f"model.pool={pool}", "model.pose=false").eval()
    video, joints = _inputs()
    seen = []
    model.head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        model(video, joints)
        tokens = model.backbone.forward_features(video)  # (B, T, 1 + N, D)
    want = tokens[:, :, 1:].mean((1, 2)) if pool == "mean" else tokens[:, :, 0].mean(1)
    torch.testing.assert_close(seen[0], want)
    other = tokens[:, :, 0].mean(1) if pool == "mean" else tokens[:, :, 1:].mean((1, 2))
    assert not torch.allclose(seen[0], other, atol=1e-3)


def test_text_tower_is_frozen_and_outside_the_model(text_cache):
    model = _build(text_cache)
    names = [n for n, _ in model.named_parameters()]
    assert not any("text" in n or "token_embedding" in n for n in names)
    assert model.class_embeddings.shape[0] == len(CLASSES)
    assert not model.class_embeddings.requires_grad
    video, joints = _inputs()
    model(video, joints)["logits"].sum().backward()
    assert model.class_embeddings.grad is None


@pytest.mark.parametrize("trained_lmi", [False, True])
def test_missing_joints_do_not_change_the_output(text_cache, trained_lmi):
    """Garbage where confidence is 0 changes nothing, nor does a padded person: also once LMI
    has left its identity init (its gate pools, and its temporal mix reaches, only present
    tokens)."""
    model = _build(text_cache).eval()
    if trained_lmi:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if ".lmi." in name:
                    p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    video, joints = _inputs()
    joints[:, :, 1] = 0.0  # no second person
    joints[:, 1:3, 0, 9:11, :] = 0.0  # wrists missing in two frames
    moved = joints.clone()
    moved[:, :, 1, :, :2] = 0.5  # garbage where confidence is 0
    moved[:, 1:3, 0, 9:11, :2] = 0.9
    with torch.no_grad():
        a = model(video, joints)["logits"]
        b = model(video, moved)["logits"]
        one = model(video, joints[:, :, :1])["logits"]  # the empty second person left out
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, one)


def test_joints_below_pose_kpt_conf_count_as_missing(text_cache):
    """YOLO's guesses at occluded joints (confidence ~0.1) are dropped like missing joints at the
    default pose.kpt_conf=0.25, and kept at pose.kpt_conf=0."""
    video, joints = _inputs()
    unsure, missing = joints.clone(), joints.clone()
    unsure[:, :, 0, 9:11, 2] = 0.1  # wrists: guessed
    missing[:, :, 0, 9:11] = 0.0
    with torch.no_grad():
        model = _build(text_cache).eval()
        torch.testing.assert_close(model(video, unsure)["logits"], model(video, missing)["logits"])
        keep = _build(text_cache, "pose.kpt_conf=0").eval()
        assert not torch.allclose(keep(video, unsure)["logits"], keep(video, missing)["logits"])


@pytest.mark.parametrize(
    "switches",
    [
        ["model.pose=false"],
        ["model.feedback=false"],
        ["model.text=false"],
        ["model.smif=false", "model.lmi=false", "model.pose=false", "model.text=false"],
        ["model.pose_encoder=transformer"],
    ],
)
def test_ablations_build_and_train(text_cache, switches):
    model = _build(text_cache, *switches)
    video, joints = _inputs()
    labels = torch.tensor([0, 3])
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    losses = []
    for _ in range(10):
        out = model(video, joints)
        loss = torch.nn.functional.cross_entropy(out["logits"], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < losses[0]  # it learns (deterministic: seeded model and data)
    if "model.pose=false" in switches:
        assert model.pose_encoder is None and "aux_logits" not in out
    if "model.feedback=false" in switches:
        assert model.joint_tokens is None and model.pose_encoder is not None


@pytest.mark.parametrize(
    "switches",
    [
        [],
        ["model.aux_weight=0"],
        ["model.text=false", "model.aux_weight=0"],
        ["model.feedback=false"],
        ["model.pose=false"],
        ["model.pose_encoder=transformer", "model.text=false"],
    ],
)
def test_training_loss_reaches_every_parameter(text_cache, switches):
    """DDP's rule: a trainable parameter outside the loss stops training at its second step
    ("Expected to have finished reduction in the prior iteration")."""
    from hpnet.engine import LossConfig, classification_loss

    model = _build(text_cache, *switches)
    cfg = _cfg(text_cache, *switches)
    video, joints = _inputs()
    aux_weight = cfg.model.aux_weight if cfg.model.pose else 0.0
    loss = classification_loss(
        model(video, joints), torch.tensor([0, 3]), LossConfig(aux_weight=aux_weight)
    )
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


def test_cosine_logits_are_fp32_under_autocast(text_cache):
    model = _build(text_cache).eval()
    video, joints = _inputs()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(video, joints)
    assert out["logits"].dtype == out["aux_logits"].dtype == torch.float32


def test_classifies_with_another_label_list(text_cache):
    from hpnet.text.encoder import build_text_encoder

    cfg = _cfg(text_cache)
    model = _build(text_cache).eval()
    video, joints = _inputs()
    new = ["jump", "sit_down", "clap hands"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emb = build_text_encoder(cfg).encode_class_names(new, cfg.text.templates)
    model.set_class_embeddings(emb, new)
    with torch.no_grad():
        out = model(video, joints)
    assert out["logits"].shape == (2, 3)
    assert model.class_names == new


def test_linear_head_refuses_new_labels(text_cache):
    model = _build(text_cache, "model.text=false")
    with pytest.raises(ValueError, match="linear head"):
        model.set_class_embeddings(torch.randn(3, 8), ["a", "b", "c"])


def test_classes_that_become_the_same_words_are_refused(text_cache):
    from hpnet.cli import UserError

    with pytest.raises(UserError, match=r"the classes of synthetic: 'run' and 'Run' are the same"):
        build_model(_cfg(text_cache), ["run", "wave", "Run"])
    assert build_model(_cfg(text_cache, "model.text=false"), ["run", "Run"]).class_names == [
        "run",
        "Run",
    ]  # a linear head tells them apart by index


def _grads_and_block_calls(model: HPNet) -> tuple[dict[str, torch.Tensor], int]:
    """One training step's gradients (drop-path drawn from seed 0) and how often blocks ran."""
    calls = []

    def counted(forward):
        def run(*args, **kwargs):
            calls.append(1)
            return forward(*args, **kwargs)

        return run

    for block in model.backbone.blocks:  # not a hook: the recomputation runs hooks-off
        block.forward = counted(block.forward)
    model.zero_grad()
    torch.manual_seed(0)
    video, joints = _inputs()
    model(video, joints)["logits"].logsumexp(1).sum().backward()
    for block in model.backbone.blocks:
        del block.forward
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads, len(calls)


def test_grad_checkpointing_recomputes_blocks_with_the_same_gradients(text_cache):
    """train.grad_checkpointing: every block (the fed-back ones too) runs again in the backward
    pass, with the same drop-path draws, so the gradients are those of a plain step."""
    from hpnet.distributed import DistInfo
    from hpnet.runtime import training_net

    model = _build(text_cache, "model.drop_path=0.5").train()
    plain, plain_calls = _grads_and_block_calls(model)
    cfg = _cfg(text_cache, "model.drop_path=0.5", "train.grad_checkpointing=true")
    assert training_net(model, cfg, DistInfo(), torch.device("cpu")) is model
    assert model.backbone.grad_checkpointing
    ckpt, ckpt_calls = _grads_and_block_calls(model)
    assert plain_calls == len(model.backbone.blocks) and ckpt_calls == 2 * plain_calls
    assert plain.keys() == ckpt.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(ckpt[name], grad, msg=name)


def test_grad_checkpointing_is_refused_for_backbones_without_token_blocks(text_cache):
    from hpnet.cli import UserError
    from hpnet.models.hpnet import check_model_config

    cfg = _cfg(text_cache, "model.arch=c3d", "model.feedback=false", "data.frames=8")
    check_model_config(cfg)
    cfg = _cfg(
        text_cache, "model.arch=c3d", "model.feedback=false", "data.frames=8",
        "train.grad_checkpointing=true",
    )  # fmt: skip
    with pytest.raises(UserError, match=r"train\.grad_checkpointing=true .* model\.arch=c3d"):
        check_model_config(cfg)


def test_feedback_from_outside_the_blocks_is_refused_with_the_value_given(text_cache):
    from hpnet.cli import UserError
    from hpnet.models.hpnet import check_model_config

    for ok in ("-4", "3"):  # tiny: 4 blocks
        check_model_config(_cfg(text_cache, f"model.feedback_from={ok}"))
    for bad in ("-20", "4"):
        message = rf"model\.feedback_from={bad} names no block .*-4\.\.3"
        with pytest.raises(UserError, match=message):
            check_model_config(_cfg(text_cache, f"model.feedback_from={bad}"))
    check_model_config(_cfg(text_cache, "model.feedback_from=9", "model.feedback=false"))
