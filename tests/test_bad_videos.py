"""Bad videos never stop an epoch: each kind is counted and skipped, a one-frame clip is read.

The matrix is made from real HMDB51 clips (DivX AVIs in ../shared/data/hmdb51_mini): an empty
file, a clip cut inside its first frame, a text file, a clip whose FourCC says ZZZZ (no FFmpeg
decoder), an unreadable clip (chmod 000), a 7680x4320 video (over ``data.max_pixels``), and a
one-frame stream copy of a clip (a valid still clip: padded to T, not skipped).

Root reads chmod-000 files (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so when the tests run as
root, the end-to-end part (two training epochs through DataLoaders, ``data.on_error=raise``, a
``hpnet.train`` run) runs in one subprocess started with those capabilities dropped by
``setpriv``; as any other user it runs in this process. The results come back as JSON.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from hpnet.cli import UserError
from hpnet.config import DataConfig, load_config
from hpnet.data.decode import VideoDecodeError, open_video

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ["torchcodec", "pyav"]
DEFAULT_MAX_PIXELS = DataConfig().max_pixels
GOOD = ["train/golf/good.avi", "train/punch/good.avi", "train/shoot_bow/good.avi"]
ONE_FRAME = "train/golf/one_frame.avi"
# Every bad kind in the training split and the reason its error must give.
BAD = {
    "train/golf/zero_bytes.avi": r"the file is empty \(0 bytes\)",
    "train/golf/truncated.avi": r"frame 0 could not be decoded .*truncated or corrupt",
    "train/punch/not_a_video.avi": r"not a readable video",
    "train/punch/unknown_codec.avi": r"no decoder for codec ZZZZ",
    "train/shoot_bow/unreadable.avi": r"permission denied",
    "train/shoot_bow/huge.avi": rf"7680x4320 .* over the limit of {DEFAULT_MAX_PIXELS} pixels "
    r"\(raise data\.max_pixels",
}
TEST_SPLIT = ["test/golf/good.avi", "test/punch/good.avi"]
HUGE = (4320, 7680)  # (H, W) of the huge video
SETPRIV = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
    "--",
]


# ---------------------------------------------------------------------------------- the matrix


def _first_video_chunk(data: bytes) -> tuple[int, int]:
    """``(offset, size)`` of the first chunk in an AVI's ``movi`` list (a video frame)."""
    start = data.find(b"movi") + 4
    assert data[start + 2 : start + 4] in (b"db", b"dc"), "first movi chunk is not video"
    return start, int.from_bytes(data[start + 4 : start + 8], "little")


def _with_fourcc(data: bytes, fourcc: bytes) -> bytes:
    """An AVI with its video FourCC (``strh`` fccHandler, ``strf`` biCompression) replaced."""
    out = bytearray(data)
    strh = data.find(b"strh")
    while data[strh + 8 : strh + 12] != b"vids":
        strh = data.find(b"strh", strh + 4)
    strf = data.find(b"strf", strh)
    out[strh + 12 : strh + 16] = fourcc
    out[strf + 24 : strf + 28] = fourcc
    return bytes(out)


def _stream_copy_first_frame(source: Path, target: Path) -> None:
    """The first packet of ``source`` alone (what ``ffmpeg -c copy -frames:v 1`` writes)."""
    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        stream = src.streams.video[0]
        copy = dst.add_stream_from_template(stream)
        packet = next(p for p in src.demux(stream) if p.size)
        packet.stream = copy
        dst.mux(packet)


def _write_huge(target: Path, frames: int = 1) -> None:
    """A flat grey MPEG-4 AVI of HUGE size (about 0.8 s to encode)."""
    height, width = HUGE
    with av.open(str(target), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        yuv = np.full((height * 3 // 2, width), 128, np.uint8)
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory, hmdb51_mini: Path) -> Path:
    """A folder dataset (``train/`` and ``test/`` layouts) of good clips and every bad kind."""
    root = tmp_path_factory.mktemp("bad_videos")
    clips = {c: next((hmdb51_mini / c).glob("*.avi")) for c in ("golf", "punch", "shoot_bow")}
    for rel in [*GOOD, *BAD, ONE_FRAME, *TEST_SPLIT]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    for rel in GOOD:
        shutil.copy(clips[rel.split("/")[1]], root / rel)
    shutil.copy(next((hmdb51_mini / "swing_baseball").glob("*.avi")), root / TEST_SPLIT[0])
    shutil.copy(next((hmdb51_mini / "climb_stairs").glob("*.avi")), root / TEST_SPLIT[1])
    golf = clips["golf"].read_bytes()
    start, size = _first_video_chunk(golf)
    (root / "train/golf/zero_bytes.avi").write_bytes(b"")
    (root / "train/golf/truncated.avi").write_bytes(golf[: start + 8 + size // 2])
    (root / "train/punch/not_a_video.avi").write_text("punch: notes, not a video\n" * 40)
    (root / "train/punch/unknown_codec.avi").write_bytes(_with_fourcc(golf, b"ZZZZ"))
    shutil.copy(clips["shoot_bow"], root / "train/shoot_bow/unreadable.avi")
    (root / "train/shoot_bow/unreadable.avi").chmod(0)
    _write_huge(root / "train/shoot_bow/huge.avi")
    _stream_copy_first_frame(clips["golf"], root / ONE_FRAME)
    return root


def _can_read(path: Path) -> bool:
    try:
        path.read_bytes()
    except PermissionError:
        return False
    return True


def _unprivileged_command(locked: Path) -> list[str]:
    """Prefix that runs a command as a reader chmod 000 stops ([] = this process is one)."""
    if not _can_read(locked):
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root reads chmod-000 files and setpriv (util-linux) is not installed")
    probe = subprocess.run([*SETPRIV, "cat", str(locked)], capture_output=True, check=False)
    if probe.returncode == 0:
        pytest.skip("root reads chmod-000 files and setpriv could not drop CAP_DAC_OVERRIDE")
    return SETPRIV


@pytest.fixture(scope="module")
def report(matrix: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """:func:`end_to_end` over the matrix, run by a reader that cannot read chmod-000 files."""
    run_dir = tmp_path_factory.mktemp("bad_videos_run")
    prefix = _unprivileged_command(matrix / "train/shoot_bow/unreadable.avi")
    if not prefix:
        return end_to_end(matrix, run_dir)
    out = run_dir / "report.json"
    command = [*prefix, sys.executable, __file__, str(matrix), str(run_dir), str(out)]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"end-to-end subprocess failed:\n{done.stderr[-4000:]}"
    return json.loads(out.read_text())


# ------------------------------------------------------------------------ the end-to-end run


def _folder_overrides(root: Path, *extra: str) -> list[str]:
    return [
        "data.dataset=folder",
        f"data.root={root}",
        "data.frames=4",
        "data.size=32",
        "data.load_size=32",
        "data.aspect=1.0",
        "pose.source=none",
        "model.pose=false",
        *extra,
    ]


def _one_epoch(root: Path, workers: int) -> dict[str, Any]:
    """One training pass over the folder dataset through a DataLoader with ``workers``."""
    from hpnet.data.datasets import build_datasets
    from hpnet.data.loader import build_loader

    cfg = load_config(None, _folder_overrides(root, f"data.workers={workers}"))
    train_ds, _, _ = build_datasets(cfg)
    loader = build_loader(train_ds, batch_size=5, train=True, workers=workers, seed=0)
    skipped, delivered, padded = 0, [], False
    for batch in loader:
        skipped += batch["skipped"]
        for index, video in zip(batch["index"].tolist(), batch["video"], strict=True):
            rel = train_ds.records[index].rel
            delivered.append(rel)
            assert video.shape == (4, 3, 32, 32) and video.dtype == torch.uint8, rel
            if rel == ONE_FRAME:
                padded = bool((video == video[0]).all())
    failed = {record.rel: count for record, count in train_ds.failed()}
    return {"skipped": skipped, "delivered": sorted(delivered), "failed": failed, "padded": padded}


def _raise_messages(root: Path, backend: str) -> dict[str, str | None]:
    """``data.on_error=raise``: each training record's error message (None = it was read)."""
    from hpnet.data.datasets import build_datasets

    cfg = load_config(
        None, _folder_overrides(root, "data.on_error=raise", f"data.decoder={backend}")
    )
    train_ds, _, _ = build_datasets(cfg)
    messages: dict[str, str | None] = {}
    for i, record in enumerate(train_ds.records):
        try:
            train_ds[i]
            messages[record.rel] = None
        except VideoDecodeError as err:
            messages[record.rel] = str(err)
    return messages


def _train_run(root: Path, run_dir: Path) -> list[str]:
    """A one-epoch ``hpnet.train`` run over the folder dataset: its printed lines."""
    from hpnet.train import main

    args = [
        "--config",
        str(REPO / "configs" / "demo.yaml"),
        *_folder_overrides(root, "data.workers=0"),
        "model.text=false",
        "train.batch_size=5",
        "train.epochs=1",
        "train.warmup_epochs=0",
        "eval.batch_size=2",
        "eval.views=1",
        "eval.crops=1",
        f"train.out_dir={run_dir / 'train'}",
    ]
    printed = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
        warnings.simplefilter("ignore")
        assert main(args) == 0
    return printed.getvalue().splitlines()


def end_to_end(root: Path, run_dir: Path) -> dict[str, Any]:
    """Everything the end-to-end tests check, as plain values (JSON from a subprocess)."""
    return {
        "unreadable_is_unreadable": not _can_read(root / "train/shoot_bow/unreadable.avi"),
        "epochs": {str(workers): _one_epoch(root, workers) for workers in (0, 2)},
        "raise": {backend: _raise_messages(root, backend) for backend in BACKENDS},
        "train_lines": _train_run(root, run_dir),
    }


# ------------------------------------------------------------------------- end-to-end tests


@pytest.mark.realdata
@pytest.mark.parametrize("workers", ["0", "2"])
def test_epoch_skips_exactly_the_bad_videos(report: dict, workers: str) -> None:
    assert report["unreadable_is_unreadable"]  # the reader really could not read it
    epoch = report["epochs"][workers]
    assert epoch["skipped"] == len(BAD) == 6
    assert epoch["failed"] == dict.fromkeys(BAD, 1)
    assert epoch["delivered"] == sorted([*GOOD, ONE_FRAME])
    assert epoch["padded"]  # the one-frame clip: its frame repeated T times


@pytest.mark.realdata
@pytest.mark.parametrize("backend", BACKENDS)
def test_on_error_raise_raises_for_every_bad_kind(report: dict, matrix: Path, backend: str):
    messages = report["raise"][backend]
    assert set(messages) == {*GOOD, ONE_FRAME, *BAD}
    for rel in [*GOOD, ONE_FRAME]:
        assert messages[rel] is None, rel
    for rel, reason in BAD.items():
        assert messages[rel] is not None, f"{rel} was read"
        assert messages[rel].startswith(f"cannot decode {matrix / rel}: "), messages[rel]
        assert re.search(reason, messages[rel]), messages[rel]


@pytest.mark.realdata
def test_training_run_reports_the_skipped_videos(report: dict) -> None:
    summaries = [line for line in report["train_lines"] if line.startswith("epoch 1/1")]
    assert len(summaries) == 1, report["train_lines"]
    assert summaries[0].endswith("skipped 6 bad videos"), summaries[0]


# ----------------------------------------------------------------------- single-kind checks


@pytest.mark.realdata
@pytest.mark.parametrize("backend", BACKENDS)
def test_one_frame_stream_copy_is_read_on_both_backends(matrix: Path, backend: str) -> None:
    """torchcodec cannot find this clip's only frame (the decoder gives it only when flushed)."""
    path = matrix / ONE_FRAME
    with av.open(str(path)) as container:
        (reference,) = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with open_video(path, backend=backend) as reader:
        assert reader.info.num_frames == 1
        frames = reader.frames([0, 0, 0])  # (3, 3, H, W)
    assert frames.shape == (3, 3, 240, 320)
    assert torch.equal(frames[0].permute(1, 2, 0), torch.from_numpy(reference))
    assert torch.equal(frames[0], frames[2])


@pytest.mark.realdata
def test_unknown_codec_really_has_no_decoder(matrix: Path) -> None:
    """Both libraries themselves fail on the ZZZZ clip (the matrix tests what it claims)."""
    from torchcodec.decoders import VideoDecoder

    path = str(matrix / "train/punch/unknown_codec.avi")
    with pytest.raises(ValueError):
        VideoDecoder(path)
    with av.open(path) as container:
        assert container.streams.video and container.streams.video[0].codec_context is None


@pytest.mark.realdata
@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pixels_is_checked_before_decoding(matrix: Path, backend: str, monkeypatch) -> None:
    from hpnet.data.datasets import VideoClipDataset
    from hpnet.data.records import VideoRecord

    path = matrix / "train/shoot_bow/huge.avi"

    def no_decoding(*args: object) -> None:
        raise AssertionError("frames decoded before the size check")

    monkeypatch.setattr("hpnet.data.decode.VideoReader.frames", no_decoding)
    clips = VideoClipDataset(
        [VideoRecord(path, 0, "huge.avi")],
        frames=4,
        train=True,
        canvas_hw=(32, 32),
        on_error="raise",
        backend=backend,
        max_pixels=DEFAULT_MAX_PIXELS,
    )
    with pytest.raises(VideoDecodeError, match=BAD["train/shoot_bow/huge.avi"]) as caught:
        clips[0]
    assert caught.value.path == str(path) and "downscale the video" in str(caught.value)
    with open_video(path, backend=backend, max_pixels=HUGE[0] * HUGE[1]) as reader:
        assert (reader.info.height, reader.info.width) == HUGE  # at the limit: allowed
    monkeypatch.undo()
    with open_video(path, backend=backend, max_pixels=0) as reader:  # 0 = no limit
        assert reader.frames([0, 0], size=(36, 64)).shape == (2, 3, 36, 64)


def test_max_pixels_setting() -> None:
    assert DEFAULT_MAX_PIXELS == 4096 * 4096
    assert load_config(None, ["data.max_pixels=0"]).data.max_pixels == 0
    with pytest.raises(UserError, match=r"data\.max_pixels"):
        load_config(None, ["data.max_pixels=-1"])


if __name__ == "__main__":  # the end-to-end part, in a subprocess: ROOT RUN_DIR OUT_JSON
    torch.set_num_threads(min(2, torch.get_num_threads()))
    result = end_to_end(Path(sys.argv[1]), Path(sys.argv[2]))
    Path(sys.argv[3]).write_text(json.dumps(result))


def test_a_test_split_where_every_video_fails_is_a_one_line_error() -> None:
    """Not a torch.cat traceback at the end of training: the count, and how to find them."""
    from hpnet.distributed import DistInfo
    from hpnet.eval_report import run_test

    class Failing(torch.utils.data.Dataset):
        classes = ("a", "b")

        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int) -> None:
            return None  # data.on_error=skip: the video failed to decode

    cfg = load_config(None, ["data.workers=0"])
    with pytest.raises(UserError, match=r"all 3 failed to decode.*--check-decode all"):
        run_test(torch.nn.Linear(1, 1), Failing(), cfg, None, torch.device("cpu"), None,
                 DistInfo(), crops=1)  # fmt: skip
