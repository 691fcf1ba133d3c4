"""VideoMAE's fine-tuning regularisers: mixup and CutMix (train.mixup, train.cutmix: what a mixed
batch holds, the weight ``lam`` of each clip's own label, the settings refused, a run; the
training step's loss from a mixed batch: test_engine.py) and a small linear head at the start
(model.head_init_scale)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.data.mixing import Mixing, mix_clips, partners, repeat_clips


def _clips(batch: int = 4) -> torch.Tensor:
    """Clip i is the constant i: (B, T, 3, S, S) = (batch, 2, 3, 16, 20)."""
    return torch.arange(batch, dtype=torch.float32).view(batch, 1, 1, 1, 1).expand(-1, 2, 3, 16, 20)


def test_mixup_blends_each_clip_with_its_mirror_by_lam():
    video = _clips()
    mixed, lam = mix_clips(video, Mixing(mixup=0.8), torch.Generator().manual_seed(0))
    assert 0 < lam < 1
    torch.testing.assert_close(mixed, lam * video + (1 - lam) * video.roll(1, 0))
    again, same = mix_clips(video, Mixing(mixup=0.8), torch.Generator().manual_seed(0))
    assert same == lam and torch.equal(again, mixed)  # the generator decides: resumable


def test_cutmix_pastes_one_box_in_every_frame_and_lam_is_the_share_left():
    video = _clips()
    for seed in range(5):
        mixed, lam = mix_clips(video, Mixing(cutmix=1.0), torch.Generator().manual_seed(seed))
        pasted = mixed != video  # clip i holds i, its partner i - 1 (mod 4)
        assert torch.equal(pasted[0], pasted[0, :1].expand_as(pasted[0]))  # one box, all frames
        assert torch.equal(mixed[pasted], video.roll(1, 0)[pasted])
        assert lam == pytest.approx(1 - pasted[0, 0, 0].float().mean().item())
        assert torch.equal(video, _clips())  # the batch itself is left as it was


def test_a_batch_is_left_alone_when_mixing_is_off_unlucky_or_alone():
    video, g = _clips(), torch.Generator().manual_seed(0)
    state = g.get_state()
    assert mix_clips(video, Mixing(), g) is None
    assert torch.equal(g.get_state(), state)  # off: no draw, runs without it draw as before
    assert mix_clips(video, Mixing(mixup=0.8, prob=0.0), g) is None
    assert mix_clips(video[:1], Mixing(mixup=0.8), g) is None
    copies = repeat_clips(2, video[:1])[0]  # one video twice: still one video, nothing to mix
    assert mix_clips(copies, Mixing(mixup=0.8), g, repeats=2) is None
    three = repeat_clips(2, torch.arange(3))[0]  # its partners: another video's, always
    assert (partners(three, 2) != three).all() and three.tolist() == [0, 0, 1, 1, 2, 2]
    kinds = set()
    for seed in range(20):  # both on: some batches cut, some blend
        mixed, _ = mix_clips(video, Mixing(mixup=0.8, cutmix=1.0), g.manual_seed(seed))
        kinds.add(bool(((mixed - video) % 1 == 0).all()))  # a cut keeps whole values
    assert kinds == {True, False}


def test_mixing_is_refused_with_the_pose_stream_and_read_from_the_config():
    from hpnet.runtime import build_loss_config
    from hpnet.train import _check_run_config

    with pytest.raises(UserError, match=r"train\.mixup=0\.8 .*joints cannot be mixed"):
        _check_run_config(load_config(None, ["train.mixup=0.8"]))
    alone = ["train.cutmix=1", "model.pose=false", "train.batch_size=1", "train.repeat_aug=2"]
    with pytest.raises(UserError, match=r"train\.batch_size=1 has none: set train\.batch_size"):
        _check_run_config(load_config(None, alone))  # (its partner would be its own copy)
    with pytest.raises(UserError, match=r"train\.mix_prob"):
        load_config(None, ["train.mix_prob=1.5"])
    cfg = load_config(None, ["train.mixup=0.8", "train.cutmix=1", "model.pose=false"])
    _check_run_config(cfg)

    data = SimpleNamespace(cfg=cfg, train=SimpleNamespace(labels=[0, 1]), classes=["a", "b"])
    assert build_loss_config(cfg, data, torch.device("cpu")).mixing == Mixing(0.8, 1.0, 1.0, 0.5)


def test_an_rgb_run_trains_with_mixup_and_cutmix(tiny_args, tmp_path, monkeypatch):
    from hpnet import engine
    from hpnet.train import main

    lams = []

    def recorded(video, mixing, generator, repeats):
        assert repeats == 2 and video.shape[0] == 2 * 4  # the copies are in the batch mixed
        mixed = mix_clips(video, mixing, generator, repeats)
        lams.append(None if mixed is None else mixed[1])
        return mixed

    monkeypatch.setattr(engine, "mix_clips", recorded)
    args = [*tiny_args, "model.pose=false", "train.mixup=0.8", "train.cutmix=1.0"]
    args += ["train.repeat_aug=2"]  # and each clip twice, augmented apart
    assert main([*args, f"train.out_dir={tmp_path}", "train.epochs=1", "train.max_steps=2"]) == 0
    assert len(lams) == 2 and all(lam is not None and 0 <= lam < 1 for lam in lams)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert [r["clips"] for r in rows if r["type"] == "train"] == [2 * 2 * 4]  # steps x 2 x batch
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["config"]["train"]
    assert (saved["mixup"], saved["cutmix"]) == (0.8, 1.0)


def test_a_linear_head_can_start_small_and_the_text_head_refuses_it():
    """model.head_init_scale (VideoMAE's init_scale): the linear head's logits layers start as
    VideoMAE's head, N(0, 0.02) times the scale, biases 0; a training-only setting (evaluate
    reads the weights)."""
    from hpnet.fusion.head import LinearHead
    from hpnet.models.from_checkpoint import model_keys_changed
    from hpnet.train import _check_run_config

    torch.manual_seed(0)
    plain = LinearHead(256, 128, 400)
    small = LinearHead(256, 128, 400, init_scale=0.001)
    scaled = {name: p.detach() for name, p in small.named_parameters()}
    for name, a in plain.named_parameters():
        if name.startswith("fuse.norm."):  # the norm as it was
            torch.testing.assert_close(scaled[name], a, msg=name)
        elif name.endswith("bias"):
            assert torch.equal(scaled[name], torch.zeros_like(a)), name
        else:  # torch's default is U(+-1/sqrt(fan_in)): std 0.036 / 0.051 here
            assert 0.95 < float(scaled[name].std()) / (0.02 * 0.001) < 1.05, name
    with pytest.raises(UserError, match=r"head_init_scale=0\.001 .* set model\.text=false"):
        _check_run_config(load_config(None, ["model.head_init_scale=0.001"]))
    _check_run_config(load_config(None, ["model.head_init_scale=0.001", "model.text=false"]))
    saved = {"model": {"head_init_scale": 1.0}}
    assert model_keys_changed(saved, load_config(None, ["model.head_init_scale=0.1"])) == []
