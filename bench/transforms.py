"""Speed of the batched clip transforms, and the crop-kernel choice behind them.

    python bench/transforms.py [--threads 2] [--device cpu|cuda] [--reps 5]

Prints clips/s of ClipTransform.train (B=8, T=16, 256x341 -> 224, all augmentations on; also
with random erasing of a quarter of the clips, and with VideoMAE's RandAugment, n=4 m=7) and
.test (3 crops), and the time of one batched
random resized crop by ``grid_sample`` (used) and by ``torchvision.ops.roi_align`` (the
alternative; adaptive sampling, i.e. antialiased).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torchvision.ops import roi_align

from hpnet.data.transforms import ClipTransform, resized_crop, sample_crop_boxes

B, T, H, W, S = 8, 16, 256, 341, 224


def timed_seconds(fn: Callable[[], object], reps: int, device: torch.device) -> tuple[float, float]:
    """Fastest and mean of ``reps`` timed calls after one warm-up call (they differ where the
    random draws do: erasing, RandAugment)."""
    fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times), sum(times) / len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (B, T, 3, H, W), dtype=torch.uint8, generator=gen).to(device)
    joints = torch.rand(B, T, 2, 17, 3, generator=gen).to(device)
    tf = ClipTransform(
        S, mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28), jitter=0.3, blur_prob=0.1
    )
    erasing = ClipTransform(
        S, mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28), jitter=0.3, blur_prob=0.1,
        erase_prob=0.25,
    )  # fmt: skip
    randaug = ClipTransform(
        S, mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28), jitter=0.3, blur_prob=0.1,
        randaug_n=4, randaug_m=7.0,
    )  # fmt: skip
    boxes = sample_crop_boxes(B, H, W, scale_min=0.4, ratio_max=1.333, generator=gen)

    def crop_roi_align() -> torch.Tensor:
        frames = video.reshape(B, T * 3, H, W).float()
        rois = torch.cat([torch.arange(B)[:, None], boxes * torch.tensor([W, H, W, H])], 1)
        return roi_align(frames, rois.to(device), (S, S), 1.0, -1, aligned=True)

    print(f"device={device} threads={args.threads} B={B} T={T} {H}x{W} -> {S}")
    rows = {
        "train()": lambda: tf.train(video, joints, gen),
        "train(erase 0.25)": lambda: erasing.train(video, joints, gen),
        "train(randaug n4)": lambda: randaug.train(video, joints, gen),
        "test(crops=3)": lambda: tf.test(video[:, None], joints[:, None], crops=3),
        "crop: grid_sample": lambda: resized_crop(video, boxes, S),
        "crop: roi_align": crop_roi_align,
    }
    for name, fn in rows.items():
        best, mean = timed_seconds(fn, args.reps, device)
        print(
            f"{name:18s} {best * 1000:8.1f} ms/batch (mean {mean * 1000:6.1f})  "
            f"{B / best:8.1f} clips/s"
        )


if __name__ == "__main__":
    main()
