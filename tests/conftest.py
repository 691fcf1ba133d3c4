"""Shared fixtures: offline third-party libraries, the real test data folder, tiny configs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# Nothing in the test suite may wait on the network.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path | None:
    env = os.environ.get("HPNET_TEST_DATA")
    candidates = [Path(env)] if env else [REPO.parent / "shared" / "data"]
    for path in candidates:
        if (path / "SOURCES.md").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real test data folder (../shared/data or $HPNET_TEST_DATA); skips when absent."""
    path = _shared_data()
    if path is None:
        pytest.skip("real test data not found: set HPNET_TEST_DATA to the shared/data folder")
    return path


@pytest.fixture(scope="session")
def hmdb51_mini(shared_data: Path) -> Path:
    return shared_data / "hmdb51_mini"


@pytest.fixture(scope="session")
def yolo_weights(shared_data: Path) -> Path:
    path = shared_data / "weights" / "yolo11n-pose.pt"
    if not path.is_file():
        pytest.skip(f"real YOLO pose weights not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_args(tmp_path_factory) -> list[str]:
    """A demo config shrunk to seconds: 16 train / 8 test clips of 4 frames at 32x32."""
    shared = tmp_path_factory.mktemp("shared")
    return [
        "--config",
        str(REPO / "configs" / "demo.yaml"),
        f"data.root={shared / 'synthetic'}",
        "data.frames=4",
        "data.size=32",
        "data.load_size=32",
        "data.synthetic.train_videos=16",
        "data.synthetic.test_videos=8",
        "data.synthetic.resolution=32",
        "data.synthetic.length=8",
        "text.model=ViT-S-32-alt",
        "text.pretrained=",
        f"text.cache_dir={shared / 'text'}",
        "train.batch_size=4",
        "train.epochs=2",
        "train.eval_every=1",
        "train.warmup_epochs=0.5",
        "eval.batch_size=4",
    ]


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_args, tmp_path_factory) -> Path:
    """A tiny HP-Net (text head, pose) trained for 2 steps on the synthetic actions; shared by
    the tests that only need some trained model (do not modify its run folder)."""
    import warnings

    from hpnet.train import main as train_main

    out = tmp_path_factory.mktemp("tiny_run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = [*tiny_args, f"train.out_dir={out}", "train.epochs=1", "train.max_steps=2"]
        assert train_main(args) == 0
    return out / "last.pt"


def count_device_reads(monkeypatch, *files: str) -> list[tuple[str, str]]:
    """From now on, ``(file name, method)`` of every tensor read to the host (``tolist``,
    ``item``, ``cpu``, ``float()``, ``bool()``: each waits for a GPU to drain) called directly
    from one of ``files`` (module ``__file__`` paths)."""
    reads: list[tuple[str, str]] = []
    for name in ("tolist", "item", "cpu", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller in files:
                reads.append((Path(caller).name, _name))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads
