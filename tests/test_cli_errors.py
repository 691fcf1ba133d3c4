"""Bad configs, bad paths and bad flags on every command: one line on stderr, exit code 2."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from hpnet.cli import UserError, run_cli

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
    (tmp / "adir").mkdir()
    return {
        "{text}": str(text),
        "{dir}": str(tmp / "adir"),
        "{root_is_file}": f"data.root={text}",
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
    ("hpnet.predict", ["{text}", "--checkpoint", f"{NOPE}/best.pt"], f"{NOPE}/best.pt"),
    ("hpnet.predict", ["{text}", "--checkpoint", "{garbage}"], "garbage.pt"),
    ("hpnet.predict", ["clip.mp4", "--checkpoint", f"{NOPE}/best.pt"], "video not found: clip"),
    ("hpnet.predict", ["clip.mp4", "--top-k", "many", "--checkpoint", "x.pt"], "--top-k"),
    ("hpnet.predict", ["clip.mp4", "--checkpoint", "x.pt", "--overlay", "o.gif"], "o.gif: name"),
    ("hpnet.predict", ["{text}", "--checkpoint", "x.pt", "--labels", "a,b,a"], "'a' is given"),
    ("hpnet.zeroshot", ["clip.mp4"], "--labels"),
    ("hpnet.compare", [], "the following arguments are required: runs"),
    ("hpnet.compare", ["{dir}"], "no eval.json or summary.json in "),
    ("hpnet.zeroshot", ["--dataset", "hmdb51", f"data.root={NOPE}"], NOPE),
    ("hpnet.pose.cache", ["--videos", NOPE, "--out", "{out}"], NOPE),
    ("hpnet.pose.cache", ["--bogus"], "--bogus"),
    ("hpnet.data", ["--check-decode", "some"], "--check-decode"),
    ("hpnet.data.synthetic", ["--train", "x"], "--train"),
    ("hpnet.train", ["train.out_dir="], "an empty name would write here"),
    ("hpnet.train", ["--config", "a.yaml", "--config", "b.yaml"], "--config is given twice (a"),
    ("hpnet.pretrain.run", ["--config", "a.yaml", "--config", "b.yaml"], "--config is given twice"),
    ("hpnet.predict", ["v.mp4", "--config", "a.yaml", "--config", "b.yaml"], "given twice"),
    ("hpnet.export", ["--config", "a.yaml", "--config", "b.yaml"], "--config is given twice"),
    ("hpnet.pretrain.run", ["--preview", "0"], "--preview 0: give the number of clips"),
    ("hpnet.data.synthetic", ["{out}", "--length", "0"], "--length 0: it must be a number > 0"),
    ("hpnet.data.synthetic", ["{out}", "--test", "-1"], "(data.synthetic.test_videos)"),
    ("hpnet.data.synthetic", ["{text}", "--train", "1", "--length", "2"], "cannot write to "),
    ("hpnet.data", ["--config", f"{NOPE}/x.yaml"], f"{NOPE}/x.yaml"),
    ("hpnet.data", ["data.dataset=folder", f"data.root={NOPE}"], NOPE),
    # the wrong kind of path is said as such, not as "not found"
    ("hpnet.train", ["--config", "{dir}"], "config file is a folder, not a file: "),
    ("hpnet.data", ["data.dataset=folder", "{root_is_file}"], "folder is a file, not a folder: "),
    ("hpnet.pose.cache", ["--videos", "{text}", "--out", "{out}"], "is a file, not a folder: "),
    ("hpnet.evaluate", ["--checkpoint", "{dir}"], "adir is a folder: pass "),
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
    torch.save({"model": {"w": torch.zeros(2)}, "config": {}, "epoch": 1}, path)  # plain: loads
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


class _UndecodableInWorker(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int):
        from hpnet.data.decode_errors import VideoDecodeError

        raise VideoDecodeError("/x/clip.avi", "not a readable video")


def test_a_video_that_stops_an_on_error_raise_run_is_one_line(capsys):
    """data.on_error=raise: the first undecodable video ends the run with exit code 1 and one
    line naming it and the alternatives (was a traceback), from a loader worker too."""

    def main(argv):
        next(iter(torch.utils.data.DataLoader(_UndecodableInWorker(), num_workers=1)))

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and len(err.splitlines()) == 1
    assert err.startswith("hpnet: error: cannot decode /x/clip.avi: not a readable video (")
    assert "data.on_error=skip" in err


def _cli_error(module: str, argv: list[str], capsys) -> str:
    """The one line ``module``'s command prints for ``argv`` (exit code 2, no traceback)."""
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("hpnet: error: "), err
    assert "\x1b" not in err
    return err


@pytest.mark.parametrize(
    "argv",
    [
        ["hpnet.evaluate"],
        ["hpnet.export", "--out", "model.pt2"],
        ["hpnet.predict", __file__],  # (a file that is there: a video that is not is said first)
        ["hpnet.zeroshot", __file__, "--labels", "a,b"],
    ],
    ids=lambda a: a[0],
)
def test_a_state_dict_is_no_training_checkpoint(argv, tmp_path, capsys):
    """Another program's checkpoint (``{'model': state_dict}``): no KeyError 'config'."""
    import torch

    path = tmp_path / "model_only.pt"
    torch.save({"model": torch.nn.Linear(2, 2).state_dict()}, path)
    err = _cli_error(argv[0], [*argv[1:], "--checkpoint", str(path)], capsys)
    assert f"{path} is not a checkpoint written by hpnet.train (no 'config' entry): use" in err


def test_what_torch_save_wrote_but_hpnet_did_not(tmp_path):
    """A tensor, a list, a bare state dict, a module: one clear line each; a pretraining
    checkpoint still loads (and gets its own message where a classifier is needed)."""
    import torch

    from hpnet.checkpoint import load_checkpoint
    from hpnet.cli import UserError
    from hpnet.export import main as export_main

    path = tmp_path / "x.pt"
    for obj, message in [
        (torch.zeros(3), "(it holds a Tensor, not a dict)"),
        ([1, 2], "(it holds a list, not a dict)"),
        (torch.nn.Linear(2, 2).state_dict(), "(no 'config' entry)"),
        ({"config": {}, "epoch": 1}, "(no 'model' entry)"),
        (torch.nn.Linear(2, 2), "which hpnet never unpickles"),
    ]:
        torch.save(obj, path)
        with pytest.raises(UserError) as info:
            load_checkpoint(path)
        assert message in str(info.value) and "\n" not in str(info.value)
    pretrain = {"format": 1, "config": {}, "model": {}, "classes": [], "pretrain": {"method": "x"}}
    torch.save(pretrain, path)
    assert load_checkpoint(path)["pretrain"] == {"method": "x"}
    with pytest.raises(UserError, match="is a pretraining checkpoint"):
        export_main(["--checkpoint", str(path), "--out", str(tmp_path / "m.pt2")])


def test_unreadable_checkpoint_files_and_folders(tmp_path, capsys):
    """Empty, text, truncated files: a reason, not ``EOFError: `` or ``KeyError: 101``; a run
    folder names the files to pass instead."""
    import torch

    empty, text, truncated = tmp_path / "empty.pt", tmp_path / "text.pt", tmp_path / "cut.pt"
    empty.write_bytes(b"")
    text.write_text("every thing\nhello\n")
    torch.save({"model": {"w": torch.zeros(100)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    for path in (empty, text, truncated):
        err = _cli_error("hpnet.evaluate", ["--checkpoint", str(path)], capsys)
        assert f"cannot load checkpoint {path}: empty, truncated or not a PyTorch checkpoint" in err
        assert "Error" not in err
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    err = _cli_error("hpnet.evaluate", ["--checkpoint", str(run)], capsys)
    assert err == f"hpnet: error: {run} is a folder: pass {run}/best.pt or {run}/last.pt"


@pytest.mark.parametrize("name", ["model.pt2", "model.PT2", "model.onnx"])
def test_an_exported_model_is_no_checkpoint(name, tmp_path, capsys):
    import torch

    from hpnet.checkpoint import EXPORTED_SUFFIXES
    from hpnet.cli import UserError
    from hpnet.export import FORMATS
    from hpnet.text.weights import read_weights_file

    assert set(EXPORTED_SUFFIXES) == set(FORMATS)  # the copy in hpnet.checkpoint is current
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04 an archive")
    err = _cli_error("hpnet.export", ["--checkpoint", str(path), "--out", "x.pt2"], capsys)
    needs = "this command needs the last.pt/best.pt it was exported from"
    assert err == f"hpnet: error: {path} is an exported model: {needs}"
    torch.save({"w": torch.zeros(1)}, path)  # even a readable one: model.pretrained refuses it
    with pytest.raises(UserError, match=r"\(model.pretrained\): it is an exported model"):
        read_weights_file(path, "model.pretrained")


def test_a_broken_exported_model(tmp_path):
    """Not a .pt2 archive, a checkpoint renamed .pt2, a broken .onnx: one line naming it."""
    import torch

    from hpnet.cli import UserError
    from hpnet.export import load_exported

    text, empty, renamed = tmp_path / "text.pt2", tmp_path / "empty.pt2", tmp_path / "last.pt2"
    text.write_text("hello\n")
    empty.write_bytes(b"")
    torch.save({"model": {"w": torch.zeros(2)}, "config": {}}, renamed)
    for path, reason in [
        (text, "not a torch.export archive"),
        (empty, "not a torch.export archive"),
        (renamed, "a torch.save checkpoint"),
    ]:
        with pytest.raises(UserError) as info:
            load_exported(path)
        message = str(info.value)
        assert message.startswith(f"cannot load exported model {path}: ") and reason in message
        assert message.endswith("(was it written by python -m hpnet.export?)")
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "model.onnx"
    onnx.write_text("hello\n")
    with pytest.raises(UserError, match=r"model.onnx: not a valid ONNX model \(Protobuf parsing"):
        load_exported(onnx)


def test_unreadable_clip_weights_give_a_short_reason(tmp_path):
    """Not torch.load's raw message: empty, ``101``, or six lines with ANSI codes."""
    import torch

    from hpnet.cli import UserError
    from hpnet.text.weights import read_weights_file

    empty, text, module = tmp_path / "empty.pt", tmp_path / "text.pt", tmp_path / "module.pt"
    empty.write_bytes(b"")
    text.write_text("every thing\nhello\n")
    torch.save(torch.nn.Linear(2, 2), module)
    for path, reason in [
        (empty, "empty, truncated or not a PyTorch checkpoint file"),
        (text, "empty, truncated or not a PyTorch checkpoint file"),
        (module, "it holds Python objects other than tensors and plain values, which hpnet never"),
    ]:
        with pytest.raises(UserError) as info:
            read_weights_file(path, "model.pretrained")
        message = str(info.value)
        assert message.startswith(f"cannot read CLIP weights file {path} (model.pretrained): ")
        assert reason in message and "\n" not in message and "\x1b" not in message


def test_counted_nouns():
    from hpnet.cli import counted

    assert [counted(n, "video") for n in (0, 1, 2)] == ["0 videos", "1 video", "2 videos"]


def test_a_user_error_is_printed_on_one_plain_line(capsys):
    """Lines joined, ANSI escape codes (torch's bold) dropped."""
    from hpnet.cli import UserError

    def main(argv):
        raise UserError("cannot read x.pt:\n  \x1b[1mdo this only if you trust it\x1b[0m\n\nok")

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "hpnet: error: cannot read x.pt: do this only if you trust it ok"


def test_python_warnings_of_a_command_are_one_log_line_each(caplog, capsys):
    """hpnet's own warning as its message, a library's with its category and place; not
    Python's two lines with the path and the source line."""
    import warnings

    from hpnet import cli
    from hpnet.data.balance import class_weights

    def main(argv):
        class_weights([0, 0, 2], 3)  # an HpnetWarning
        warnings.warn("a library's\nnotice", FutureWarning, stacklevel=1)

    with caplog.at_level("WARNING"), pytest.raises(SystemExit):
        run_cli(main, [])
    lines = [r.getMessage() for r in caplog.records if r.name == "py.warnings"]
    assert lines == [
        "1 of 3 classes have no training samples (class indices 1); their loss weight is 0",
        f"a library's notice (FutureWarning, {__file__}:{main.__code__.co_firstlineno + 2})",
    ]
    assert "Warning:" not in capsys.readouterr().err
    assert warnings.showwarning is not cli._log_warning  # put back when the command ended


def test_sigterm_stops_a_command_with_one_line_and_leaves_no_temp_file(tmp_path):
    """``kill`` (SIGTERM) unwinds like Ctrl-C: the file being written keeps its old content, its
    temp file is removed, one line says why, exit code 143; a forked worker still just ends
    (it exited silently with the temp file left behind before)."""
    import subprocess
    import sys
    import textwrap

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    code = textwrap.dedent(f"""
        import multiprocessing, os, signal, time
        from hpnet.atomic import write_atomic
        from hpnet.cli import run_cli

        def write(f):
            f.write(b"new, half written")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)

        def main(argv):
            worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
            worker.start()
            time.sleep(0.5)  # (a signal in the instant after the fork is lost: Python's own race)
            worker.terminate()
            worker.join(10)
            print("worker exit code", worker.exitcode, flush=True)
            write_atomic({str(target)!r}, write)

        run_cli(main, [])
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 143, done.stderr
    assert done.stdout.strip() == "worker exit code -15"
    assert done.stderr.strip() == "hpnet: terminated (SIGTERM)"
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_sigterm_to_a_process_group_with_loader_workers_is_one_line():
    """A SIGTERM to the whole process group (Slurm, systemd, ``kill -- -PGID``) ends the data
    loader workers too: torch's SIGCHLD handler raised "DataLoader worker (pid N) is killed by
    signal: Terminated" in the unwinding, a traceback after "terminated" (seen on hpnet.train and
    hpnet.pose.cache)."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import time
        import torch
        from hpnet.cli import run_cli

        class Slow(torch.utils.data.Dataset):
            def __len__(self):
                return 1000

            def __getitem__(self, i):
                time.sleep(0.05)
                return i

        def main(argv):
            loader = torch.utils.data.DataLoader(Slow(), num_workers=2, batch_size=1)
            for i, _ in enumerate(loader):
                if i == 4:
                    print("ready", flush=True)
                x = torch.randn(300, 300, requires_grad=True)
                (x @ x).sum().backward()

        run_cli(main, [])
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout.readline() == "ready\n"
    os.killpg(proc.pid, signal.SIGTERM)  # (from another process: torch's workers end quietly
    _, err = proc.communicate(timeout=60)  # on their parent's SIGTERM)
    assert proc.returncode == 143, err
    assert err.strip() == "hpnet: terminated (SIGTERM)"


def test_a_warning_during_a_progress_bar_gets_a_line_of_its_own():
    """A warning while a bar was drawn was glued to its end (``lr=2.50e-04]WARNING: ...``)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import logging, sys
        from tqdm import tqdm
        from hpnet.cli import run_cli

        def main(argv):
            bar = tqdm(total=3, file=sys.stderr, desc="work")
            bar.update(1)
            logging.getLogger("hpnet.x").warning("skipping a video")
            bar.update(2)
            bar.close()
            logging.getLogger("hpnet.x").warning("after the bar")
            later = tqdm(total=3, file=sys.stderr, desc="usually-short", delay=30, leave=False)
            later.update(1)  # (in its delay: not drawn, nor drawn by the warning)
            logging.getLogger("hpnet.x").warning("beside a delayed bar")
            later.close()
            logging.getLogger("hpnet.x").warning("the end")

        run_cli(main, [])
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stderr.replace("\r", "\n").splitlines()
    assert "WARNING: skipping a video" in lines and "WARNING: after the bar" in lines
    assert lines[-2:] == ["WARNING: beside a delayed bar", "WARNING: the end"]
    assert "usually-short" not in done.stderr
    assert not any(line.endswith("]WARNING: skipping a video") for line in lines)


@pytest.mark.parametrize(
    "env, line",
    [({"RANK": "1", "WORLD_SIZE": "2"}, "[rank 1] WARNING: a bad video"),
     ({"RANK": "0", "WORLD_SIZE": "2"}, "WARNING: a bad video"), ({}, "WARNING: a bad video")],
)  # fmt: skip
def test_warnings_of_torchrun_processes_but_the_first_name_their_rank(env, line):
    """Under torchrun every process printed the same-looking lines (warnings, the error it
    stops on): rank 1's say so."""
    import os
    import subprocess
    import sys

    code = "import logging; from hpnet.cli import UserError, run_cli\n"
    code += "def main(argv):\n    logging.getLogger('hpnet.x').warning('a bad video')\n"
    code += "    raise UserError('no such file')\nrun_cli(main)"
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**clean, **env}, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        line,
        line.replace("WARNING: a bad video", "hpnet: error: no such file"),
    ]


def test_a_gpu_that_is_not_there_is_refused_naming_the_setting(monkeypatch):
    """``cuda`` / ``cuda:N`` beyond the visible GPUs: one line that names the setting asking."""
    from hpnet.cli import UserError
    from hpnet.devices import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda:1")
    assert pick_device("auto") == torch.device("cuda")
    with pytest.raises(UserError, match=r"^train\.device=cuda:2 but only 2 CUDA GPUs are visible"):
        pick_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == pick_device("cpu") == torch.device("cpu")
    said = r"^pose\.device=cuda but no CUDA GPU is visible \(use pose\.device=auto or cpu\)$"
    with pytest.raises(UserError, match=said):
        pick_device("cuda", option="pose.device")
    with pytest.raises(UserError, match=r"^--device=gpu is not a device: auto, cpu, cuda or"):
        pick_device("gpu", option="--device")


def test_a_reader_that_stops_early_ends_a_command_quietly():
    """``python -m hpnet.train --help-config | head -1``: exit 141 (SIGPIPE) and nothing on
    stderr, not a BrokenPipeError traceback."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "hpnet.train", "--help-config"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # gone before the command prints (it imports torch first)
    _, err = proc.communicate(timeout=120)
    assert err.decode() == "" and proc.returncode == 128 + signal.SIGPIPE


def test_python_m_hpnet_timeline_names_the_command_that_runs_it():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "hpnet.timeline", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "run python -m hpnet.predict VIDEO" in done.stderr


def test_a_checkpoint_from_a_newer_torch_says_to_upgrade_torch(tmp_path):
    """Not torch's paragraph, nor "use the last.pt that hpnet.train wrote" (it may be one)."""
    import zipfile

    from hpnet.checkpoint import load_checkpoint

    plain, newer = tmp_path / "plain.pt", tmp_path / "last.pt"
    torch.save({"config": {}, "model": {}}, plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(newer, "w") as dst:
        for item in src.infolist():  # the same archive, its format version raised
            data = b"99\n" if item.filename.endswith("/version") else src.read(item.filename)
            dst.writestr(item, data)
    with pytest.raises(UserError) as err:
        load_checkpoint(newer)
    assert str(err.value) == (
        f"cannot load checkpoint {newer}: written by a newer PyTorch than this one: upgrade "
        "torch to read it"
    )


def test_standard_output_whose_flush_breaks_is_gone(monkeypatch):
    import sys

    from hpnet.cli import _stdout_gone

    class Gone:
        def flush(self) -> None:
            raise BrokenPipeError

    monkeypatch.setattr(sys, "stdout", Gone())
    assert _stdout_gone()


def test_a_broken_pipe_that_is_not_standard_outputs_is_an_error(capsys):
    """Only a reader of stdout gone is a quiet exit; another pipe's (a worker's) is raised."""

    def main(argv):
        raise BrokenPipeError("a worker's pipe")

    with pytest.raises(BrokenPipeError, match="a worker's pipe"):
        run_cli(main, [])
