"""model.pretrained = another hpnet.train run's checkpoint: its backbone, for any arch (fine-tune
HMDB51 from a UCF101 run); another arch or shape is refused, naming the run's keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpnet.cli import UserError
from hpnet.config import config_to_dict, load_config
from hpnet.models.hpnet import build_model

CLASSES = ["climb", "golf", "punch"]  # another dataset's classes than the run's


def _cfg(tiny_args: list[str], *overrides: str):
    return load_config(tiny_args[1], [*tiny_args[2:], "model.text=false", *overrides])


def _backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}


def test_an_lsvit_run_gives_its_backbone_at_other_frames(tiny_args, tiny_checkpoint):
    run = torch.load(tiny_checkpoint, weights_only=True)
    cfg = _cfg(tiny_args, "data.frames=8", f"model.pretrained={tiny_checkpoint}")
    model = build_model(cfg, CLASSES)
    trained, now = _backbone(run["model"]), model.backbone.state_dict()
    assert run["config"]["data"]["frames"] == 4 and now["temporal_pos_embed"].shape[1] == 8
    same = [k for k in trained if k != "temporal_pos_embed" and torch.is_tensor(trained[k])]
    assert len(same) > 50 and all(torch.equal(trained[k], now[k]) for k in same)
    report = model.pretrained_report
    assert "from hpnet lsvit run (epoch 1: backbone; heads dropped)" in report
    assert "resized [temporal_pos_embed]" in report and "head." in report  # the run's head: unused
    assert model.pretrained_names == {f"backbone.{k}" for k in trained if k != "_extra_state"}
    with pytest.raises(UserError, match=r"is a model\.arch=lsvit run; .* set model\.arch=lsvit"):
        build_model(_cfg(tiny_args, "model.arch=r3d_18", "model.feedback=false",
                         f"model.pretrained={tiny_checkpoint}"), CLASSES)  # fmt: skip
    small = _cfg(tiny_args, "model.size=small", f"model.pretrained={tiny_checkpoint}")
    with pytest.raises(UserError, match=r"another shape: the run had model\.size=tiny \(this one"):
        build_model(small, CLASSES)


def test_a_torchvision_arch_run_gives_its_backbone(tiny_args, tmp_path: Path):
    keys = ["model.arch=r3d_18", "model.feedback=false", "model.pose=false"]
    cfg = _cfg(tiny_args, *keys)
    first = build_model(cfg, ["a", "b"])
    path = tmp_path / "last.pt"
    torch.save({"model": first.state_dict(), "config": config_to_dict(cfg), "epoch": 3}, path)
    second = build_model(_cfg(tiny_args, *keys, f"model.pretrained={path}"), CLASSES)
    trained, now = first.backbone.state_dict(), second.backbone.state_dict()
    assert all(torch.equal(trained[k], now[k]) for k in trained)
    assert (
        f"loaded {len(trained)} tensors from hpnet r3d_18 run (epoch 3" in second.pretrained_report
    )


def _save_run(model, cfg, path: Path) -> Path:
    torch.save({"model": model.state_dict(), "config": config_to_dict(cfg), "epoch": 1}, path)
    return path


def test_a_resnet_run_of_another_depth_is_refused_not_loaded_cut_short(tiny_args, tmp_path):
    """ResNet-18 and -34 share their first blocks' names and shapes: the run's model.depth
    must be this one's."""
    keys = ["model.arch=late_fusion", "model.feedback=false", "model.pose=false"]
    deep = _cfg(tiny_args, *keys, "model.depth=34")
    run = _save_run(build_model(deep, ["a"]), deep, tmp_path / "last.pt")
    with pytest.raises(UserError, match=r"the run had model\.depth=34 \(this one model\.depth"):
        build_model(_cfg(tiny_args, *keys, "model.depth=18", f"model.pretrained={run}"), CLASSES)


def test_an_i3d_run_starts_a_non_local_net(tiny_args, tmp_path):
    """Wang et al.'s recipe: the non-local blocks are new, the rest is the I3D run's."""
    keys = ["model.feedback=false", "model.pose=false"]
    i3d_cfg = _cfg(tiny_args, *keys, "model.arch=i3d")
    i3d = build_model(i3d_cfg, ["a"])
    run = _save_run(i3d, i3d_cfg, tmp_path / "last.pt")
    cfg = _cfg(tiny_args, *keys, "model.arch=nonlocal", f"model.pretrained={run}")
    non_local = build_model(cfg, CLASSES)
    trained, now = i3d.backbone.state_dict(), non_local.backbone.state_dict()
    assert all(torch.equal(trained[k], now[k]) for k in trained)
    report = non_local.pretrained_report
    assert "hpnet i3d run" in report and "new [layer2.1.non_local" in report  # its blocks: new


def test_another_programs_model_and_config_file_is_no_run(tmp_path):
    """``{'model': state_dict, 'config': ...}`` without hpnet's backbone tensors goes to the
    arch's own loader (it was taken for a run and loaded nothing)."""
    from hpnet.models.run_weights import read_run_checkpoint

    path = tmp_path / "other.pt"
    torch.save({"model": {"conv1.weight": torch.zeros(1)}, "config": {"lr": 1}}, path)
    assert read_run_checkpoint(path) is None
    torch.save({"model": {"conv1.weight": torch.zeros(1)}, "config": {"model": {}}}, path)
    assert read_run_checkpoint(path) is None  # a model section, but no backbone tensors

    r3d = ["model.arch=r3d_18", "model.feedback=false", "model.text=false"]
    config = config_to_dict(load_config(None, r3d))
    torch.save({"model": {"backbone.nope": torch.zeros(1)}, "config": config}, path)  # a run,
    # but not one tensor of it has a place here
    with pytest.raises(UserError, match=r"none of its backbone tensors fits this one"):
        build_model(load_config(None, [*r3d, f"model.pretrained={path}"]), CLASSES)


def test_a_run_folder_or_a_missing_file_is_named_with_a_runs_checkpoint(tiny_args, tmp_path):
    """A run folder is told to give its last.pt; a weights file that is not there is refused by
    the arch's loader, and the message says model.pretrained also takes a run's last.pt."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"")
    with pytest.raises(UserError, match=rf"is a run folder: .*model\.pretrained={run}/last\.pt"):
        build_model(_cfg(tiny_args, f"model.pretrained={run}"), CLASSES)
    for arch in (["model.arch=lsvit"], ["model.arch=r3d_18", "model.feedback=false"]):
        cfg = _cfg(tiny_args, *arch, f"model.pretrained={tmp_path / 'nope.pt'}")
        with pytest.raises(UserError, match=r"not found: .*also takes a run's checkpoint"):
            build_model(cfg, CLASSES)
    (tmp_path / "empty").mkdir()  # a folder without a last.pt, or a file there: the arch's say
    (tmp_path / "junk.pt").write_bytes(b"junk")
    for given in (tmp_path / "empty", tmp_path / "junk.pt"):
        with pytest.raises(UserError) as refused:
            build_model(_cfg(tiny_args, f"model.pretrained={given}"), CLASSES)
        assert "run folder" not in str(refused.value) and "also takes" not in str(refused.value)
