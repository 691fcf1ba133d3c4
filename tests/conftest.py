"""Shared fixtures: offline third-party libraries, the real test data folder, tiny configs."""

from __future__ import annotations

import os
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
