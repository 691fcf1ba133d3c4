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
    text = tmp / "notes.txt"
    text.write_text("# not a checkpoint\n")
    videos = tmp / "videos"  # a folder dataset whose files exist (nothing is decoded)
    for name in ("wave/a.mp4", "wave/b.mp4", "wave/c.mp4", "clap/d.mp4", "clap/e.mp4"):
        (videos / name).parent.mkdir(parents=True, exist_ok=True)
        (videos / name).write_bytes(b"")
    return {
        "{text}": str(text),
        "{videos}": f"data.root={videos}",
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
    ("hpnet.train", ["data.size=60", "model.patch_size=16"], "multiple of model.patch_size"),
    (
        "hpnet.train",
        ["data.dataset=folder", "{videos}", "pose.source=cache", f"pose.cache_dir={NOPE}"]
        + ["train.out_dir={out}"],
        "5 of 5 videos have no pose cache file",
    ),
    (
        "hpnet.train",  # offline: a CLIP tag for the backbone is an error before the run folder
        ["data.dataset=folder", "{videos}", "pose.source=none", "model.pretrained=openai"]
        + ["model.size=tiny", "model.patch_size=8", "data.size=32", "train.out_dir={out}"],
        "model.pretrained='openai': open_clip weights ViT-B-16/openai are not available",
    ),
    ("hpnet.evaluate", ["--checkpoint", "{text}"], "not a PyTorch checkpoint file"),
    ("hpnet.evaluate", ["--checkpoint", f"{NOPE}/best.pt"], f"{NOPE}/best.pt"),
    ("hpnet.evaluate", ["--checkpoint", "{garbage}"], "garbage.pt"),
    ("hpnet.evaluate", [], "--checkpoint"),
    ("hpnet.predict", ["clip.mp4", "--checkpoint", f"{NOPE}/best.pt"], f"{NOPE}/best.pt"),
    ("hpnet.predict", ["clip.mp4", "--checkpoint", "{garbage}"], "garbage.pt"),
    ("hpnet.predict", ["clip.mp4", "--top-k", "many", "--checkpoint", "x.pt"], "--top-k"),
    ("hpnet.predict", ["clip.mp4", "--checkpoint", "x.pt", "--overlay", "o.gif"], "o.gif: name"),
    ("hpnet.predict", ["clip.mp4", "--checkpoint", "x.pt", "--labels", "a,b,a"], "'a' is given"),
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
    torch.save({"model": {}, "format": 2}, path)  # a newer layout: never misread
    with pytest.raises(UserError, match=r"newer hpnet \(checkpoint format 2; .* reads format 1"):
        load_checkpoint(path)


class _RaisesInWorker:
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        from hpnet.cli import UserError

        raise UserError("no pose cache file /x/y.avi.npz: run `python -m hpnet.pose.cache`")


def test_an_error_raised_in_a_loader_worker_is_still_one_line(capsys):
    """torch re-raises it as "Caught UserError in DataLoader worker process 0." + traceback."""
    import torch

    def main(argv):
        next(iter(torch.utils.data.DataLoader(_RaisesInWorker(), num_workers=1)))

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "hpnet: error: no pose cache file /x/y.avi.npz: run `python -m hpnet.pose.cache`"
    )
