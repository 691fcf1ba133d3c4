"""Clip decoding speed on the real HMDB51 clips: hpnet's decoder against PyAV decode-everything.

    python bench/decode.py [--data DIR] [--repeats 5] [--threads 1] [--frames 16]

Each clip is opened, its frame count read, 16 test-mode (segment-centre) indices sampled and those
frames decoded to uint8 RGB. Compared:
  * hpnet ``open_video`` + ``frames`` with ``auto`` (what training, the pose cache and predict
    use: PyAV for AVI files, torchcodec for the others), with torchcodec and with PyAV (seek,
    decode forward, convert only the wanted pictures);
  * PyAV decoding every frame up to the last wanted one, converting each to RGB, then picking
    (what mmaction2's ``PyAVInit`` + ``PyAVDecode`` do);
  * a DataLoader over a tiny dataset that calls ``decode_frames`` (+ resize to the 256 x 341
    training canvas), with 0, 1 and 2 worker processes.
Timings are the best pass of ``--repeats`` (methods interleaved, so a busy machine hurts all).
The one-process methods are also timed in CPU time of this process (``time.process_time``; FFmpeg
and torch run one thread each), which other jobs on a shared machine disturb far less than wall
time; the ">= 3x PyAV decode-all" target is judged on both.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import torch

try:
    import torchcodec
except ImportError:  # e.g. a GPU image without it: the PyAV rows and the loader still run
    torchcodec = None

from hpnet.data.decode import open_video
from hpnet.data.sampling import sample_frame_indices

REPO = Path(__file__).resolve().parents[1]
CANVAS = (256, 341)  # data.size 224 -> load_size 256, aspect 4/3


def hpnet_clip(path: Path, frames: int, backend: str) -> torch.Tensor:
    """hpnet: frame count from the scan, then only the sampled frames. -> uint8 (T, 3, H, W)"""
    with open_video(path, backend=backend) as reader:
        indices = sample_frame_indices(reader.info.num_frames, frames, train=False)[0]
        return reader.frames(indices)


def pyav_decode_all_clip(path: Path, frames: int) -> torch.Tensor:
    """mmaction2 PyAVInit + PyAVDecode: header frame count, every frame to RGB, then pick."""
    with av.open(str(path)) as container:
        num_frames = container.streams.video[0].frames
        indices = sample_frame_indices(num_frames, frames, train=False)[0]
        last, images = int(indices.max()), []
        for i, frame in enumerate(container.decode(video=0)):
            if i > last + 1:
                break
            images.append(frame.to_rgb().to_ndarray())
        picked = np.stack([images[i % len(images)] for i in indices])  # (T, H, W, 3)
    return torch.from_numpy(picked).permute(0, 3, 1, 2)


class ClipDataset(torch.utils.data.Dataset):
    """The smallest dataset that decodes clips the way training does. -> uint8 (T, 3, H, W)"""

    def __init__(self, paths: list[Path], frames: int) -> None:
        self.paths, self.frames = paths, frames

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.paths[index]
        with open_video(path) as reader:
            indices = sample_frame_indices(reader.info.num_frames, self.frames, train=False)[0]
            return reader.frames(indices, size=CANVAS)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def best_pass(run: Callable[[], object], repeats: int) -> float:
    """Shortest wall time of ``repeats`` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def machine_info() -> str:
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"CPU: {cpu}, {os.cpu_count()} logical cores ({usable} usable); "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchcodec {torchcodec.__version__ if torchcodec else 'not installed'}, "
        f"av {av.__version__} "
        f"(bundled FFmpeg {av.ffmpeg_version_info}); torch threads {torch.get_num_threads()}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("HPNET_TEST_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=default_data / "hmdb51_mini")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per method (best)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (FFmpeg decodes single-threaded)"
    )
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (T)")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader worker counts to time")
    parser.add_argument("--loader-passes", type=int, default=4, help="clip list copies per epoch")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clips = sorted(args.data.glob("*/*.avi"))
    if not clips:
        sys.exit(f"no clips under {args.data}: pass --data DIR (a folder of <class>/<video>.avi)")

    methods: dict[str, Callable[[Path], object]] = {
        "hpnet decode_frames, auto": lambda p: hpnet_clip(p, args.frames, "auto"),
        "hpnet decode_frames, torchcodec": lambda p: hpnet_clip(p, args.frames, "torchcodec"),
        "hpnet decode_frames, PyAV": lambda p: hpnet_clip(p, args.frames, "pyav"),
        "PyAV decode all + pick (mmaction2)": lambda p: pyav_decode_all_clip(p, args.frames),
    }
    if torchcodec is None:
        del methods["hpnet decode_frames, torchcodec"]
    for clip in methods.values():  # warm-up: imports, file cache
        clip(clips[0])
    times: dict[str, list[float]] = {name: [] for name in methods}
    cpu_times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):  # interleaved, so background load hits every method alike
        for name, clip in methods.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            for path in clips:
                clip(path)
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)
    rates = {name: len(clips) / min(seconds) for name, seconds in times.items()}
    cpu_rates = {name: len(clips) / min(seconds) for name, seconds in cpu_times.items()}

    loader_clips = clips * args.loader_passes
    for workers in (int(w) for w in args.workers.split(",")):
        loader = torch.utils.data.DataLoader(
            ClipDataset(loader_clips, args.frames),
            batch_size=4,
            num_workers=workers,
            persistent_workers=workers > 0,
            worker_init_fn=_one_thread if workers else None,
        )
        seconds = best_pass(lambda loader=loader: [batch.shape for batch in loader], args.repeats)
        name = f"DataLoader, {workers} workers (+ resize to {CANVAS[0]}x{CANVAS[1]})"
        rates[name] = len(loader_clips) / seconds

    print(machine_info())
    print(
        f"{len(clips)} HMDB51 clips from {args.data}, {args.frames} centred frames per clip, ",
        end="",
    )
    print(f"best of {args.repeats} passes\n")
    name = "PyAV decode all + pick (mmaction2)"
    baseline, cpu_baseline = rates[name], cpu_rates[name]
    print("| method | clips/s | ms/clip | vs PyAV decode-all | CPU clips/s | vs decode-all, CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rate in rates.items():
        cpu = cpu_rates.get(name)
        cpu_cells = f"{cpu:.1f} | {cpu / cpu_baseline:.2f}x" if cpu else " | "
        print(f"| {name} | {rate:.1f} | {1000 / rate:.1f} | {rate / baseline:.2f}x | {cpu_cells} |")


if __name__ == "__main__":
    main()
