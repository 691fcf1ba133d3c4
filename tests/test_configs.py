"""Every shipped config loads, and builds its model and datasets (with tiny overrides)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from hpnet.config import load_config
from hpnet.data.datasets import build_datasets
from hpnet.models.hpnet import build_model

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))
BASELINES = [p for p in CONFIGS if p.parent.name == "baselines"]
ARCH_TINY = {
    "late_fusion": ["model.depth=18"],
    "lrcn": ["model.depth=18"],
    "c3d": ["data.frames=8"],
    "ssl_transformer": ["model.depth=18"],
}
TINY = [
    "model.size=tiny",
    "model.patch_size=8",
    "model.pretrained=",
    "data.size=32",
    "data.load_size=32",
    "data.frames=4",
    "text.model=ViT-S-32-alt",
    "text.pretrained=",
]


def _tiny_ucf101(shared: Path, root: Path) -> Path:
    """A UCF101 tree with the official lists and the first train and test video of each list
    (a real clip under their names); the other videos are missing (data.allow_missing)."""
    lists = root / "ucfTrainTestlist"
    shutil.copytree(shared / "ucf101_splits", lists)
    clip = shared / "videos" / "other" / "ucf101_apply_eye_makeup.avi"
    for name in ("trainlist01.txt", "testlist01.txt"):
        rel = (lists / name).read_text().split()[0]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(clip)
    return root


def test_there_are_configs():
    names = {p.name for p in CONFIGS}
    assert {"demo.yaml", "hmdb51_fusion.yaml", "ucf101_fusion.yaml", "hmdb51_lsvit.yaml"} <= names


@pytest.mark.parametrize("name", ["hmdb51_fusion.yaml", "ucf101_fusion.yaml", "hmdb51_lsvit.yaml"])
def test_real_recipes_start_from_clip(name):
    """The shipped HMDB51/UCF101 recipes fine-tune CLIP ViT-B/16 with a lower pretrained LR."""
    cfg = load_config(CONFIG_DIR / name)
    assert cfg.model.pretrained == "openai" and cfg.text.model == "ViT-B-16"
    assert (cfg.model.size, cfg.model.patch_size, cfg.data.size) == ("base", 16, 224)
    assert 0 < cfg.train.backbone_lr <= cfg.train.lr / 5 and cfg.train.layer_decay < 1
    assert cfg.train.warmup_epochs < cfg.train.epochs


def test_the_seed_studys_baselines_follow_its_protocol():
    """configs/baselines: every seed model on HMDB51 and UCF101; 2D models on 5 uniform frames,
    3D models on one 16-frame clip; the arch alone; a 20 % validation split."""
    names = {p.stem for p in BASELINES}
    for arch in ("late_fusion", "lrcn", "c3d", "i3d", "nonlocal"):
        assert {f"{arch}_hmdb51", f"{arch}_ucf101"} <= names
    for path in BASELINES:
        cfg = load_config(path)
        assert cfg.model.arch == path.stem.rsplit("_", 1)[0]
        frames = 5 if cfg.model.arch in ("late_fusion", "lrcn") else 16
        assert (cfg.data.frames, cfg.eval.views, cfg.eval.crops) == (frames, 1, 1)
        assert cfg.data.size == (224 if frames == 5 else 112)
        assert not (cfg.model.pose or cfg.model.text or cfg.model.feedback)
        assert cfg.data.val_fraction == 0.2 and cfg.data.dataset == path.stem.rsplit("_", 1)[1]


def test_pretrained_weights_get_their_normalisation():
    """A config that loads weights of known normalisation normalises as they were trained."""
    from hpnet.models.normalisation import PRETRAINED_MEAN_STD

    checked = []
    for path in CONFIGS:
        cfg = load_config(path)
        if cfg.model.pretrained and cfg.model.arch in PRETRAINED_MEAN_STD:
            mean, std = PRETRAINED_MEAN_STD[cfg.model.arch]
            assert cfg.data.augment.mean == pytest.approx(mean, abs=1e-4), path.name
            assert cfg.data.augment.std == pytest.approx(std, abs=1e-4), path.name
            checked.append(path.stem)
    assert {"c3d_hmdb51", "late_fusion_ucf101", "lrcn_hmdb51"} <= set(checked)


def _tiny(path: Path, tmp_path: Path, request) -> list[str]:
    """Overrides that shrink the config at ``path`` to a few tiny clips of real or rendered data."""
    cfg = load_config(path)  # as shipped
    overrides = [*TINY, *ARCH_TINY.get(cfg.model.arch, []), f"text.cache_dir={tmp_path / 'text'}"]
    overrides.append("data.val_fraction=0")  # one training video per class below
    if cfg.data.dataset == "hmdb51":
        root = request.getfixturevalue("hmdb51_mini")
        overrides += [f"data.root={root}", "data.allow_missing=true", "pose.source=none"]
    elif cfg.data.dataset == "ucf101":
        root = _tiny_ucf101(request.getfixturevalue("shared_data"), tmp_path / "ucf101")
        overrides += [f"data.root={root}", "data.allow_missing=true", "pose.source=none"]
    elif cfg.data.dataset == "synthetic":
        overrides += [
            f"data.root={tmp_path / 'synthetic'}",
            "data.synthetic.train_videos=4",
            "data.synthetic.test_videos=2",
            "data.synthetic.resolution=32",
            "data.synthetic.length=4",
        ]
    else:
        pytest.skip(f"no tiny data for data.dataset={cfg.data.dataset}")
    return overrides


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds(path, tmp_path, request):
    cfg = load_config(path, _tiny(path, tmp_path, request))
    train_ds, test_ds, classes = build_datasets(cfg)
    assert len(train_ds) > 0 and len(test_ds) > 0 and len(classes) > 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, classes)
    assert sum(p.numel() for p in model.parameters()) > 0


PRETRAIN_CONFIGS = [p for p in CONFIGS if "pretrain" in (yaml.safe_load(p.read_text()) or {})]


def test_there_are_pretraining_configs():
    names = {p.name for p in PRETRAIN_CONFIGS}
    assert {
        "videomae_demo.yaml",
        "hmdb51_videomae.yaml",
        "simsiam_demo.yaml",
        "hmdb51_simsiam.yaml",
    } <= names


@pytest.mark.parametrize("path", PRETRAIN_CONFIGS, ids=[p.stem for p in PRETRAIN_CONFIGS])
def test_pretraining_config_builds_and_steps(path, tmp_path, request):
    """A config with a ``pretrain`` section builds the method's model on its training videos
    and takes a step; the fine-tuning configs that name its run read its last.pt."""
    from hpnet.pretrain.setup import build_pretrain_model, pretrain_datasets
    from hpnet.pretrain.simsiam import build_views
    from hpnet.runtime import build_transform

    cfg = load_config(path, _tiny(path, tmp_path, request))
    train = pretrain_datasets(cfg)[0].train
    model = build_pretrain_model(cfg)
    if cfg.pretrain.method == "simsiam":  # two views of each of 2 clips (BatchNorm: 2+)
        clips = torch.stack([train[0]["video"], train[1]["video"]])
        out = model(*build_views(cfg)(clips, torch.Generator().manual_seed(0)))
        assert out["z1"].shape == (2, cfg.pretrain.proj_dim)
    else:
        video, _ = build_transform(cfg).train(train[0]["video"][None])
        out = model(video)
    out["loss"].backward()
    run = load_config(path).train.out_dir
    for other in CONFIGS:
        shipped = load_config(other)
        if shipped.model.pretrained.startswith(run + "/"):
            assert shipped.model.pretrained == f"{run}/last.pt"
            source = load_config(path).model  # the encoder it reads must fit it
            fields = ("arch", "size", "patch_size", "depth")
            assert [getattr(shipped.model, f) for f in fields] == [
                getattr(source, f) for f in fields
            ]


def test_a_recipe_whose_pretraining_run_is_missing_says_to_run_it(tmp_path):
    """Loading it: say to run that run first. Rebuilding a checkpoint (evaluate, predict) reads
    no file, so a pretraining run deleted since is no matter."""
    from hpnet.cli import UserError
    from hpnet.models.backbones import build_backbone

    gone = f"model.pretrained={tmp_path / 'runs' / 'x' / 'last.pt'}"
    for name in ("hmdb51_videomae_finetune.yaml", "hmdb51_ssl_transformer.yaml"):
        cfg = load_config(CONFIG_DIR / name, [gone, *TINY[:2], "model.depth=18"])
        with pytest.raises(UserError, match=r"it names a run's last.pt; run that run first"):
            build_backbone(cfg)
        assert build_backbone(cfg, load_weights=False).report is None
