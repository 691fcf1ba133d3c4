"""Every shipped config loads, and builds its model and datasets (with tiny overrides)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from hpnet.config import load_config
from hpnet.data.datasets import build_datasets
from hpnet.models.hpnet import build_model

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
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


def test_there_are_configs():
    names = {p.name for p in CONFIGS}
    assert {"demo.yaml", "hmdb51_fusion.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds(path, tmp_path, request):
    cfg = load_config(path)  # as shipped
    overrides = [*TINY, f"text.cache_dir={tmp_path / 'text'}"]
    if cfg.data.dataset == "hmdb51":
        root = request.getfixturevalue("hmdb51_mini")
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
    cfg = load_config(path, overrides)
    train_ds, test_ds, classes = build_datasets(cfg)
    assert len(train_ds) > 0 and len(test_ds) > 0 and len(classes) > 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, classes)
    assert sum(p.numel() for p in model.parameters()) > 0
