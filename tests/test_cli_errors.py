"""Bad configs, bad paths and bad flags on every command: one line on stderr, exit code 2."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from hpnet.cli import run_cli

NOPE = "/nonexistent/hpnet"


def _files(tmp: Path) -> dict[str, str]:
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("data:\n  frames: [8\n")
    not_a_mapping = tmp / "list.yaml"
    not_a_mapping.write_text("- 1\n- 2\n")
    garbage = tmp / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    return {
        "{bad_yaml}": str(bad_yaml),
        "{list_yaml}": str(not_a_mapping),
        "{garbage}": str(garbage),
        "{out}": str(tmp / "out"),
    }


# (command module, argv, a piece of the message)
CASES = [
    ("hpnet.train", ["--config", f"{NOPE}/x.yaml"], f"{NOPE}/x.yaml"),
    ("hpnet.train", ["--config", "{bad_yaml}"], "bad.yaml"),
    ("hpnet.train", ["--config", "{list_yaml}"], "list.yaml"),
    ("hpnet.train", ["data.frames=abc"], "data.frames"),
    ("hpnet.train", ["model.sise=tiny"], "model.sise"),
    ("hpnet.train", ["train.lr"], "train.lr"),
    ("hpnet.train", ["--bogus"], "--bogus"),
    ("hpnet.train", ["train.resume=/nonexistent/last.pt", "train.out_dir={out}"], "last.pt"),
    (
        "hpnet.train",
        ["data.dataset=hmdb51", f"data.root={NOPE}", "train.out_dir={out}"],
        NOPE,
    ),
    ("hpnet.evaluate", ["--checkpoint", f"{NOPE}/best.pt"], f"{NOPE}/best.pt"),
    ("hpnet.evaluate", ["--checkpoint", "{garbage}"], "garbage.pt"),
    ("hpnet.evaluate", [], "--checkpoint"),
    ("hpnet.predict", ["clip.mp4", "--checkpoint", f"{NOPE}/best.pt"], f"{NOPE}/best.pt"),
    ("hpnet.predict", ["clip.mp4", "--checkpoint", "{garbage}"], "garbage.pt"),
    ("hpnet.predict", ["clip.mp4", "--top-k", "many", "--checkpoint", "x.pt"], "--top-k"),
    ("hpnet.zeroshot", ["clip.mp4"], "--labels"),
    ("hpnet.zeroshot", ["--dataset", "hmdb51", f"data.root={NOPE}"], NOPE),
    ("hpnet.pose.cache", ["--videos", NOPE, "--out", "{out}"], NOPE),
    ("hpnet.pose.cache", ["--bogus"], "--bogus"),
    ("hpnet.data", ["--check-decode", "some"], "--check-decode"),
    ("hpnet.data.synthetic", ["--train", "x"], "--train"),
    ("hpnet.data", ["--config", f"{NOPE}/x.yaml"], f"{NOPE}/x.yaml"),
    ("hpnet.data", ["data.dataset=folder", f"data.root={NOPE}"], NOPE),
]


@pytest.mark.parametrize(
    ("module", "argv", "needle"), CASES, ids=[f"{m}:{' '.join(a)}" for m, a, _ in CASES]
)
def test_one_line_and_exit_2(module, argv, needle, tmp_path, capsys):
    files = _files(tmp_path)
    argv = [files.get(a, a).replace("{out}", files["{out}"]) for a in argv]
    main = importlib.import_module(module if module != "hpnet.data" else "hpnet.data.__main__").main
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("hpnet: error: ") and needle in err, err
    assert "Traceback" not in err
    assert not Path(files["{out}"]).exists()  # a run that cannot start leaves no run folder


class _Payload:
    """Unpickling this would run ``touch <path>``: the classic malicious checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


def test_a_foreign_pickle_in_a_checkpoint_is_never_run(tmp_path):
    import torch

    from hpnet.checkpoint import load_checkpoint
    from hpnet.cli import UserError

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, path)
    with pytest.raises(UserError, match="never unpickles"):
        load_checkpoint(path)
    assert not marker.exists()
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 1}, path)  # plain values: loads
    assert load_checkpoint(path)["epoch"] == 1
