"""VideoMAE pretraining of LS-ViT: tube masks, visible-only encoder, masked-only loss, the
``python -m hpnet.pretrain`` run (resume, unlabelled folders, preview) and fine-tuning from it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from crash import assert_same_weights, crash_after_saves
from PIL import Image

from hpnet.cli import UserError
from hpnet.config import load_config
from hpnet.models.hpnet import build_model
from hpnet.models.lsvit import build_lsvit
from hpnet.pretrain import run as pretrain_run
from hpnet.pretrain.videomae import (
    VideoMAE,
    embed_visible,
    masked_patch_loss,
    patchify,
    pixel_targets,
    tube_mask,
    visible_positions,
)

REPO = Path(__file__).resolve().parents[1]
# 16 clips of 4 frames at 32x32, patch 8 (N = 16 positions a frame), batch 4: 4 steps an epoch
PRETRAIN = ["--config", str(REPO / "configs" / "videomae_demo.yaml"), "pretrain.decoder_width=32"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models step several times faster on one thread than on two busy ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pretrain_args(tiny_args) -> list[str]:
    shared = [a for a in tiny_args[2:] if a.split("=")[0].startswith(("data.", "text.", "train."))]
    return [*PRETRAIN, *shared, "model.size=tiny", "model.patch_size=8"]


def _run(args: list[str], out: Path, *extra: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pretrain_run.main([*args, f"train.out_dir={out}", *extra])


def _tiny_mae(ratio: float = 0.75) -> VideoMAE:
    torch.manual_seed(0)
    encoder = build_lsvit("tiny", img_size=32, patch_size=8, num_frames=4)
    return VideoMAE(encoder, mask_ratio=ratio, decoder_width=32, decoder_depth=1).eval()


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_tube_mask_hides_exactly_the_share_of_every_clip(ratio):
    mask = tube_mask(64, 16, ratio, torch.Generator().manual_seed(1))
    assert mask.shape == (64, 16) and mask.dtype == torch.bool
    assert (mask.sum(1) == round(ratio * 16)).all()
    assert len({tuple(row.tolist()) for row in mask}) > 32  # random per clip
    positions = visible_positions(mask)
    assert positions.shape == (64, 16 - round(ratio * 16))
    assert not mask.gather(1, positions).any()


def test_the_same_positions_are_hidden_in_every_frame():
    """Hidden tubes: changing a hidden position's pixels in any frame changes nothing the
    encoder computes (SMIF's frame differences included); a visible one does."""
    model = _tiny_mae()
    with torch.no_grad():
        for name, p in model.encoder.named_parameters():  # wake SMIF and LMI from the identity
            if "smif" in name or "lmi" in name:
                p.normal_(0, 0.05)
    video = torch.randn(2, 4, 3, 32, 32)
    mask = tube_mask(2, 16, 0.75, torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model.encode(video, mask)

        def encode_changed(position: int, frame: int) -> torch.Tensor:
            changed = video.clone()
            row, col = divmod(position, 4)
            changed[0, frame, :, 8 * row : 8 * row + 8, 8 * col : 8 * col + 8] += 3.0
            return model.encode(changed, mask)

        hidden = int(mask[0].nonzero()[0])
        for frame in range(4):
            torch.testing.assert_close(encode_changed(hidden, frame), before, rtol=0, atol=1e-6)
        visible = int((~mask[0]).nonzero()[0])
        assert not torch.allclose(encode_changed(visible, 2), before, atol=1e-3)


def test_visible_embedding_is_the_encoders_embedding_at_the_visible_positions():
    model = _tiny_mae()
    with torch.no_grad():
        model.encoder.smif.proj.weight.normal_(0, 0.05)  # (SMIF starts at zero)
        video = torch.randn(2, 4, 3, 32, 32)
        positions = visible_positions(tube_mask(2, 16, 0.75, torch.Generator().manual_seed(0)))
        full = model.encoder.embed(video)  # (B, T, 1 + N, D)
        keep = torch.cat([torch.zeros(2, 1, dtype=torch.long), positions + 1], 1)
        want = full.gather(2, keep[:, None, :, None].expand(2, 4, -1, full.shape[-1]))
        torch.testing.assert_close(embed_visible(model.encoder, video, positions), want)


def test_the_encoder_sees_only_the_visible_tokens():
    model = _tiny_mae(0.75)
    seen: list[tuple[int, ...]] = []
    for block in model.encoder.blocks:
        block.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    out = model(torch.randn(3, 4, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    d = model.encoder.embed_dim
    assert seen == [(3, 4, 1 + 4, d)] * len(model.encoder.blocks)  # CLS + 16 - 12 positions
    assert out["pred"].shape == (3, 4, 16, 8 * 8 * 3) and out["mask"].sum() == 3 * 12


def test_a_mask_must_hide_as_many_patches_in_every_clip():
    model = _tiny_mae(0.75)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, :12], mask[1, :8] = True, True  # 4 visible in clip 0, 8 in clip 1
    with pytest.raises(ValueError, match=r"hide as many patches; visible: \[4, 8\]"):
        model(torch.randn(2, 4, 3, 32, 32), mask=mask)


def test_a_decoder_width_its_head_count_does_not_divide_gets_fewer_heads():
    encoder = build_lsvit("tiny", img_size=32, patch_size=8, num_frames=4)
    for width, heads in ((200, 2), (384, 6), (64, 1), (32, 1)):
        model = VideoMAE(encoder, decoder_width=width, decoder_depth=1)
        assert model.decoder_blocks[0].attn.num_heads == heads
    model(torch.randn(1, 4, 3, 32, 32))


def test_the_loss_is_on_hidden_patches_only():
    mask = tube_mask(2, 16, 0.75, torch.Generator().manual_seed(0))
    pred, target = torch.randn(2, 4, 16, 192), torch.randn(2, 4, 16, 192)
    loss = masked_patch_loss(pred, target, mask)
    visible = (~mask)[:, None, :, None].expand_as(pred)
    for tensor in (pred, target):  # anything at the visible patches, even inf, is ignored
        changed = tensor.masked_fill(visible, float("inf"))
        args = (changed, target) if tensor is pred else (pred, changed)
        assert masked_patch_loss(*args, mask) == loss
    pred_inf = pred.masked_fill(visible, float("inf")).requires_grad_()
    masked_patch_loss(pred_inf, target, mask).backward()  # nor into the gradient
    assert torch.isfinite(pred_inf.grad).all() and (pred_inf.grad[visible] == 0).all()
    hidden_changed = pred.masked_fill(~visible, 0.0)
    assert masked_patch_loss(hidden_changed, target, mask) != loss
    per_patch = (pred - target).pow(2).mean(-1)
    expected = per_patch.permute(0, 2, 1)[mask].mean()  # (B, N, T) at hidden positions
    torch.testing.assert_close(loss, expected)


def test_norm_pix_targets_are_normalised_per_patch_and_channel():
    video = torch.rand(1, 2, 3, 16, 16) * 5 + 2
    target = pixel_targets(video, 8, norm=True).unflatten(-1, (64, 3))
    torch.testing.assert_close(target.mean(-2), torch.zeros(1, 2, 4, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(target.std(-2), torch.ones(1, 2, 4, 3), atol=1e-4, rtol=0)
    assert torch.equal(pixel_targets(video, 8, norm=False), patchify(video, 8))


def test_every_parameter_learns():
    model = _tiny_mae().train()
    model(torch.randn(2, 4, 3, 32, 32), generator=torch.Generator().manual_seed(0))[
        "loss"
    ].backward()
    still = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert still == []


def test_grad_checkpointing_recomputes_the_encoder_with_the_same_gradients():
    """train.grad_checkpointing in pretraining: training_net finds VideoMAE's LS-ViT encoder."""
    from hpnet.distributed import DistInfo
    from hpnet.runtime import training_net

    model = _tiny_mae().train()
    runs = []
    grads = []
    for setting in ("false", "true"):
        cfg = load_config(None, [f"train.grad_checkpointing={setting}"])
        training_net(model, cfg, DistInfo(), torch.device("cpu"))
        model.zero_grad()
        calls = [0]
        forward = model.encoder.blocks[0].forward

        def counted(x, forward=forward, calls=calls):
            calls[0] += 1
            return forward(x)

        model.encoder.blocks[0].forward = counted
        torch.manual_seed(0)  # the same drop-path draws
        video = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        model(video, generator=torch.Generator().manual_seed(0))["loss"].backward()
        del model.encoder.blocks[0].forward
        runs.append(calls[0])
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert runs == [1, 2]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


def test_a_step_runs_under_bf16_autocast():
    """The decoder's mask token (fp32) meets bf16 tokens under AMP (the GPU run caught it)."""
    mae = _tiny_mae().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mae(torch.randn(2, 4, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    assert out["pred"].dtype == torch.bfloat16 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert mae.mask_token.grad is not None and mae.mask_token.grad.abs().sum() > 0


def test_a_run_resumed_mid_epoch_ends_with_the_same_weights(pretrain_args, tmp_path, monkeypatch):
    every = ["train.checkpoint_steps=1", "train.epochs=2", "data.synthetic.train_videos=8"]
    every += ["train.batch_size=2"]  # 4 steps an epoch
    whole = tmp_path / "whole"
    assert _run(pretrain_args, whole, *every) == 0

    crashed = tmp_path / "crashed"
    crash_after_saves(monkeypatch, pretrain_run, 6)  # epoch 1: 3 mid + 1 end; 2: after batch 2
    with pytest.raises(KeyboardInterrupt):
        _run(pretrain_args, crashed, *every)
    ckpt = torch.load(crashed / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["progress"]["epoch"]["batches"] == 2
    monkeypatch.undo()
    assert _run(pretrain_args, crashed, *every, "train.resume=auto") == 0

    a, b = assert_same_weights(whole / "last.pt", crashed / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 8
    assert b["pretrain"] == {"method": "videomae"} and b["classes"] == []
    rows = [json.loads(x) for x in (crashed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["loss"] > 0 for r in rows)
    assert (crashed / "config.yaml").is_file()


def test_fine_tuning_loads_the_encoder_and_reports_it(
    pretrain_args, tiny_args, tmp_path, capsys, monkeypatch, caplog
):
    run = tmp_path / "mae"
    assert _run(pretrain_args, run, "train.epochs=1", "train.max_steps=2") == 0
    ckpt = torch.load(run / "last.pt", weights_only=True)
    cfg = load_config(
        tiny_args[1], [*tiny_args[2:], "model.pose=false", f"model.pretrained={run / 'last.pt'}"]
    )
    model = build_model(cfg, ["a", "b", "c"])
    report = model.pretrained_report
    assert "hpnet videomae pretraining" in report and "decoder dropped" in report
    own = model.backbone.state_dict()
    loaded = [k.removeprefix("encoder.") for k in ckpt["model"] if k.startswith("encoder.")]
    assert len(loaded) > 20
    for key in loaded:
        if key != "_extra_state":
            assert torch.equal(own[key], ckpt["model"][f"encoder.{key}"]), key
    assert f"{len(loaded) - 1} tensors" in report  # (the architecture record is not counted)

    from hpnet.train import main as train_main

    out = tmp_path / "finetune"
    args = [*tiny_args, "model.pose=false", f"model.pretrained={run / 'last.pt'}"]
    assert train_main([*args, f"train.out_dir={out}", "train.epochs=1", "train.max_steps=1"]) == 0
    assert "model.pretrained: loaded" in capsys.readouterr().out
    resumed = [*args, f"train.out_dir={out}", "train.epochs=2", "train.max_steps=1"]
    assert train_main([*resumed, "train.resume=auto"]) == 0
    said = capsys.readouterr().out  # the weights come from last.pt: no load report
    assert "resumed from" in said and "model.pretrained" not in said
    with monkeypatch.context() as patch:  # refused while opening the folder: no report first
        patch.setitem(sys.modules, "torch.utils.tensorboard", None)  # (as if not installed)
        with pytest.raises(UserError, match=r"tensorboard"):
            train_main([*args, f"train.out_dir={tmp_path / 'tb'}", "train.tensorboard=true"])
    assert "model.pretrained" not in capsys.readouterr().out
    again = tmp_path / "again"  # a finished pretraining run has nothing to continue elsewhere
    with pytest.raises(UserError, match=r"has trained 1 epoch .*fine-tune from it with model"):
        _run(
            pretrain_args,
            again,
            f"train.resume={run / 'last.pt'}",
            "train.epochs=1",
            "train.max_steps=2",
        )
    assert not again.exists()

    bigger = load_config(tiny_args[1], [*cfg_overrides(cfg), "model.size=small"])
    with pytest.raises(UserError, match=r"pretrained with model.size=tiny"):
        build_model(bigger, ["a", "b"])
    for offsets in ("[1]", "[2,1]"):  # [2,1]: the same shapes, trained for other frames
        other = load_config(tiny_args[1], [*cfg_overrides(cfg), f"model.smif_offsets={offsets}"])
        with pytest.raises(UserError, match=r"with model.smif_offsets=\[1,2\] \(this one"):
            build_model(other, ["a", "b"])
    no_smif = ["model.smif=false", "model.smif_offsets=[1]"]  # (reads no SMIF weights: loads)
    build_model(load_config(tiny_args[1], [*cfg_overrides(cfg), *no_smif]), ["a"])
    grey = ["data.augment.mean=[0.5,0.5,0.5]", "data.augment.std=[0.25,0.25,0.25]"]
    with caplog.at_level("WARNING", logger="hpnet.models.normalisation"):
        build_model(load_config(tiny_args[1], [*cfg_overrides(cfg), *grey]), ["a"])
    assert "were trained on mean [0.4814" in caplog.text  # (CLIP's, as the pretraining had)
    foreign = {"model": {"encoder.x": torch.zeros(2)}, "pretrain": {"method": "videomae"}}
    torch.save(foreign, tmp_path / "foreign.pt")
    nothing = [*cfg_overrides(cfg), f"model.pretrained={tmp_path / 'foreign.pt'}"]
    with pytest.raises(UserError, match=r"none of its encoder tensors fits this one"):
        build_model(load_config(tiny_args[1], nothing), ["a"])
    sparse = load_config(tiny_args[1], [*cfg_overrides(cfg), "model.lmi_every=2"])
    report = build_model(sparse, ["a"]).pretrained_report  # the encoder's unused tensors first
    assert re.search(r"\d+ unused \[blocks\.\d+\.lmi\.", report), report

    # twice the frames: the temporal embedding is resized as the model interpolates it at run
    # time (linear, align_corners=False), not repeated frame by frame
    key = "encoder.temporal_pos_embed"
    frames = ckpt["model"][key].shape[1]
    ckpt["model"][key] = (
        torch.arange(frames).float().view(1, frames, 1, 1).expand_as(ckpt["model"][key]).clone()
    )
    torch.save(ckpt, tmp_path / "ramp.pt")
    longer = cfg_overrides(cfg) + [
        f"data.frames={2 * frames}",
        f"model.pretrained={tmp_path / 'ramp.pt'}",
    ]
    time = build_model(load_config(tiny_args[1], longer), ["a"]).backbone.temporal_pos_embed
    expected = [min(max(j / 2 - 0.25, 0.0), frames - 1) for j in range(2 * frames)]
    assert time[0, :, 0, 0].tolist() == pytest.approx(expected)  # nearest: 0, 0, 1, 1, ...


def cfg_overrides(cfg) -> list[str]:
    """The overrides that rebuild ``cfg``'s data and model shape (tiny frames and patches)."""
    return [
        f"data.size={cfg.data.size}",
        f"data.frames={cfg.data.frames}",
        f"model.patch_size={cfg.model.patch_size}",
        "model.pose=false",
        "text.pretrained=",
        "text.model=ViT-S-32-alt",
        f"text.cache_dir={cfg.text.cache_dir}",
        f"model.pretrained={cfg.model.pretrained}",
    ]


def test_unlabeled_folder_without_classes_and_preview(
    pretrain_args, tmp_path, tiny_checkpoint, capsys, caplog, monkeypatch
):
    """Videos at any depth, no class folders or lists: pretraining runs on all of them (their
    placeholder labels are never read); --preview draws 3 rows a clip, one frame a column."""
    from videos import write_video

    root = tmp_path / "videos"
    for rel in ("a.mp4", "deep/er/b.mp4", "c/c.avi", "c/d.mkv"):
        write_video(root / rel, num_frames=10, size=(32, 40))
    out = tmp_path / "run"
    args = [*pretrain_args, "data.dataset=unlabeled", f"data.root={root}", "train.batch_size=2"]
    assert _run(args, out, "train.epochs=1") == 0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["classes"] == []

    with caplog.at_level("WARNING", logger="hpnet.pretrain.preview"):
        assert _run(args, out, "--preview", "2") == 0
    assert not [m for m in caplog.messages if "--preview" in m]  # as many clips as asked
    with Image.open(out / "preview.png") as image:
        assert image.size == (4 * 34 - 2, 2 * 3 * 34 - 2)  # 4 frames x (2 clips x 3 rows)
    # the run's settings, not the command line's: a forgotten override is named (it would draw
    # normalised patches as pixels); another share of hidden patches is a preview's choice
    with pytest.raises(UserError, match=r"cannot preview .*it used pretrain.norm_pix_loss=False"):
        _run(args, out, "--preview", "1", "pretrain.norm_pix_loss=true")
    with pytest.raises(UserError, match=r"e\.g\. --config .*run/config\.yaml\)"):
        _run(args, out, "--preview", "1", "data.frames=2")
    # another share of hidden patches, or training settings, draw the run's model as it is
    assert _run(args, out, "--preview", "1", "pretrain.mask_ratio=0.5", "train.lr=0.5") == 0

    from hpnet.train import main as train_main

    with pytest.raises(UserError, match=r"data.dataset=unlabeled has no labels"):
        train_main([*args, f"train.out_dir={tmp_path / 'cls'}"])
    with monkeypatch.context() as patch:  # refused before the videos are read
        patch.setattr(pretrain_run, "pretrain_datasets", lambda cfg: pytest.fail("data read"))
        with pytest.raises(UserError, match=r"decoder_depth=2, this run has 1 \(set pretrain\."):
            _run(args, out, "train.resume=auto", "pretrain.decoder_depth=1")
        with pytest.raises(UserError, match=r"cannot resume .*it used data\.frames=4, this run"):
            _run(args, out, "train.resume=auto", "data.frames=2")
    fewer = tmp_path / "fewer"  # another folder of videos: the run's epochs were of 4
    write_video(fewer / "a.mp4", num_frames=10, size=(32, 40))
    with pytest.raises(UserError, match=r"it trained on 4 videos an epoch, the data now gives 1 "):
        _run(args, out, "train.resume=auto", "train.epochs=2", f"data.root={fewer}")
    capsys.readouterr()
    simsiam_only = ["pretrain.proj_dim=128", "pretrain.simsiam_views=frames"]  # (unread here)
    assert _run(args, out, "train.resume=auto", "train.epochs=1", *simsiam_only) == 0  # done
    assert "finished: train.epochs=1 (raise it to train on)" in capsys.readouterr().out
    with caplog.at_level("WARNING", logger="hpnet.pretrain.preview"):
        assert _run(args, out, "--preview", "9") == 0
    assert "--preview 9: 4 clips of the 4 training videos drawn" in caplog.messages
    with pytest.raises(UserError, match=r"not a pretraining checkpoint .*; drop train\.resume"):
        _run(args, tmp_path / "r", f"train.resume={tiny_checkpoint}")
    trained = tmp_path / "trained"  # a training run's folder: not resumed, not written over
    trained.mkdir()
    (trained / "last.pt").write_bytes(tiny_checkpoint.read_bytes())
    with pytest.raises(UserError, match=r"not a pretraining checkpoint .*; pretrain into another"):
        _run(args, trained, "train.resume=auto")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match=r"cannot load checkpoint .*junk\.pt: "):
        _run(args, tmp_path / "r", f"train.resume={tmp_path / 'junk.pt'}")
    tiny = [a for a in args if a != "data.dataset=unlabeled" and not a.startswith("data.root=")]
    with pytest.raises(UserError, match=r"is a pretraining checkpoint"):
        train_main([*tiny, f"train.out_dir={out}", "train.resume=auto", "model.pose=false"])
    with pytest.raises(UserError, match=r"last\.pt exists, a pretraining run's: continue it wi"):
        train_main([*tiny, f"train.out_dir={out}", "model.pose=false", "train.resume="])

    junk = tmp_path / "junk"  # no video decodes: an error, not a run that learned nothing
    for rel in ("a.mp4", "b/b.mp4"):
        (junk / rel).parent.mkdir(parents=True, exist_ok=True)
        (junk / rel).write_bytes(b"not a video")
    bad = [*args, f"data.root={junk}"]
    with pytest.raises(UserError, match=r"epoch 1: all 2 videos it read failed to decode"):
        _run(bad, tmp_path / "bad", "train.epochs=1")
    assert not (tmp_path / "bad" / "last.pt").exists()


def test_pretraining_settings_that_cannot_work_are_refused(pretrain_args, tmp_path):
    with pytest.raises(UserError, match=r"model.arch=r3d_18 has no token path"):
        _run(pretrain_args, tmp_path / "a", "model.arch=r3d_18", "model.feedback=false")
    with pytest.raises(UserError, match=r"pretrain.mask_ratio"):
        _run(pretrain_args, tmp_path / "b", "pretrain.mask_ratio=1.0")
    with pytest.raises(UserError, match=r"blur_prob=0.1: a blur spreads the hidden"):
        _run(pretrain_args, tmp_path / "b", "data.augment.blur_prob=0.1")
    one = ["data.size=16", "data.load_size=16", "model.patch_size=16"]  # (a 0/0 loss, "nan")
    with pytest.raises(UserError, match=r"makes 1 position\(s\) a frame: give data.size >= 32"):
        _run(pretrain_args, tmp_path / "b", *one)
    with pytest.raises(UserError, match=r"--preview needs a pretraining checkpoint"):
        _run(pretrain_args, tmp_path / "c", "--preview", "1")
    (tmp_path / "c").mkdir()  # another kind of run's last.pt: said, not a state-dict traceback
    for entry, said in (({}, "a training run's, not a pretraining"), ({"pretrain": {"method":
                        "simsiam"}}, "a simsiam pretraining run's")):  # fmt: skip
        torch.save({"model": {}, "config": {}, "epoch": 1, **entry}, tmp_path / "c" / "last.pt")
        with pytest.raises(UserError, match=rf"--preview shows what .* is {said} checkpoint"):
            _run(pretrain_args, tmp_path / "c", "--preview", "1")


def test_every_pretrain_key_but_the_method_belongs_to_one_method():
    """A resume compares the keys its method reads (a new key must be sorted into one)."""
    from hpnet.config import Config, config_to_dict
    from hpnet.config_schema import METHOD_KEYS

    assert set(config_to_dict(Config())["pretrain"]) - set(METHOD_KEYS) == {"method"}


def test_pretraining_warns_of_model_keys_its_arch_ignores(caplog):
    """model.depth on a VideoMAE (LS-ViT) run is ignored, as in training: said, not silent."""
    from hpnet.config import load_config
    from hpnet.pretrain.setup import check_pretrain_config

    with caplog.at_level("WARNING", logger="hpnet.models.backbones"):
        check_pretrain_config(load_config(None, ["model.depth=18", "data.augment.blur_prob=0"]))
    assert [r.getMessage() for r in caplog.records] == [
        "model.arch=lsvit ignores model.depth=18 (read by late_fusion, lrcn, ssl_transformer): "
        "only other archs read them"
    ]


def test_pretraining_warns_of_train_keys_only_training_reads(caplog):
    """A fine-tuning config's label smoothing, evaluation schedule or head changes no
    pretraining run: said, not silent."""
    from hpnet.config import load_config
    from hpnet.pretrain.setup import check_pretrain_config

    base = ["data.augment.blur_prob=0"]
    with caplog.at_level("WARNING", logger="hpnet.pretrain.setup"):
        check_pretrain_config(load_config(None, base))
        assert caplog.messages == []
        check_pretrain_config(load_config(None, [*base, "train.label_smoothing=0.2"]))
        check_pretrain_config(load_config(None, [*base, "train.eval_every=5"]))
        check_pretrain_config(load_config(None, [*base, "model.head_init_scale=0.001"]))
        check_pretrain_config(load_config(None, [*base, "model.pool=mean", "model.dropout=0.5"]))
        tiny = [*base, "model.size=tiny"]
        check_pretrain_config(load_config(None, [*tiny, "pretrain.decoder_width=128"]))  # as wide
        check_pretrain_config(load_config(None, [*tiny, "pretrain.decoder_width=384"]))
        check_pretrain_config(load_config(None, [*base, "data.val_fraction=0.3"]))
    assert [m.split(":")[0] for m in caplog.messages] == [
        "train.label_smoothing=0.2",
        "train.eval_every=5",
        "model.head_init_scale=0.001",
        "model.dropout=0.5; model.pool=mean",
        "pretrain.decoder_width=384 is wider than the model.size=tiny encoder (128)",
        "data.val_fraction=0.3",
    ]
    assert "read by python -m hpnet.train only" in caplog.messages[0]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(pretrain_args, tmp_path):
    from test_kill_resume import _env, _kill_after

    def command(out: Path) -> list[str]:
        run = ["train.epochs=2", "train.checkpoint_steps=1", "train.resume=auto"]
        return [
            sys.executable,
            "-m",
            "hpnet.pretrain",
            *pretrain_args,
            *run,
            f"train.out_dir={out}",
        ]

    whole = tmp_path / "whole"
    done = subprocess.run(command(whole), env=_env(), cwd=REPO, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        command(killed), env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _kill_after(proc, killed / "last.pt", writes=3, extra_s=0.05)
    assert proc.returncode == -9
    resumed = subprocess.run(
        command(killed), env=_env(), cwd=REPO, capture_output=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    assert "resumed from" in resumed.stdout.decode()
    a = torch.load(whole / "last.pt", weights_only=True)
    b = torch.load(killed / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 8
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=0, atol=1e-6, msg=name)
