"""The whole training loop against its model step alone: how much of a step the host costs.

    python bench/train_loop.py                                   # tiny HP-Net, CPU, demo data
    python bench/train_loop.py --device cuda --size base --frames 16 --img 224 --batch 8 \
        --workers 6

``loop``: :func:`hpnet.engine.train_one_epoch` as training runs it: the synthetic dataset's
loader (``--workers`` decoding processes), the augmentation on the device, the model, the
loss, the optimizer and the schedule, with its reseeding, checks and host reads. ``step``: the
same model's forward + the loop's loss (auxiliary head, label smoothing) + backward + gradient
clipping + optimizer step, timed on one prepared batch over and over (what
``bench/train_step.py`` times). ``overhead`` = 1 - step time / loop time: the share of a
loop step the GPU would wait on the host (loading, augmentation launches, syncs). ``--model
trivial`` swaps in a one-layer model to time the data path alone (clips/s it can feed).
Each timed pass follows an untimed warm-up pass of ``--warmup`` steps.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from torch import nn

from hpnet.config import load_config
from hpnet.distributed import DistInfo
from hpnet.engine import classification_loss, train_one_epoch
from hpnet.models.hpnet import build_model
from hpnet.runtime import (
    amp_dtype_for,
    build_loss_config,
    build_optimization,
    build_run_datasets,
    build_run_train_loader,
    build_transform,
    start_epoch,
)
from hpnet.scoring import batch_to_device

REPO = Path(__file__).resolve().parents[1]


class Trivial(nn.Module):
    """Clips ``(B, T, 3, S, S)`` -> logits ``(B, C)`` from the mean colour: no compute to hide."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(3, classes)

    def forward(self, video: torch.Tensor, joints: torch.Tensor | None = None, **_) -> dict:
        return {"logits": self.fc(video.float().mean(dim=(1, 3, 4)))}


def setup(args: argparse.Namespace):
    overrides = [
        f"model.size={args.size}", f"model.patch_size={args.patch}", f"data.frames={args.frames}",
        f"data.size={args.img}", f"data.load_size={args.img * 8 // 7}",
        f"train.batch_size={args.batch}", f"data.workers={args.workers}", "text.pretrained=",
        f"train.device={args.device}", f"data.root={args.data}", "train.epochs=1000",
        f"data.synthetic.train_videos={max(args.batch * (args.steps + args.warmup) * 2, 64)}",
    ]  # fmt: skip
    cfg = load_config(REPO / "configs" / "demo.yaml", overrides)
    device = torch.device(args.device)
    datasets = build_run_datasets(cfg, test_views=1)
    classes = datasets[0].classes
    model = Trivial(len(classes)) if args.model == "trivial" else build_model(cfg, classes)
    return cfg, device, datasets, model.to(device)


def time_loop(args, cfg, device, datasets, model) -> float:
    """Seconds per optimizer step of ``train_one_epoch`` after a warm-up pass."""
    loader = build_run_train_loader(datasets, DistInfo())
    transform = build_transform(cfg)
    optimizer, scheduler, scaler = build_optimization(cfg, model, len(loader), device)
    options = dict(
        transform=transform, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
        loss_cfg=build_loss_config(cfg, datasets[0], device), device=device,
        amp_dtype=amp_dtype_for(cfg.train.amp, device), clip_grad=cfg.train.clip_grad,
        generator=torch.Generator(device=device), seed=0, use_pose=cfg.model.pose,
        progress=False,
    )  # fmt: skip
    for epoch, steps in ((0, args.warmup), (1, args.steps)):
        start_epoch(loader, epoch)
        stats = train_one_epoch(model, loader, epoch=epoch, max_steps=steps, **options)
    return stats["time_s"] / stats["steps"]


def time_step(args, cfg, device, datasets, model) -> float:
    """Seconds per forward + backward + optimizer step on one prepared batch."""
    loader = build_run_train_loader(datasets, DistInfo())
    start_epoch(loader, 0)
    video, joints, labels = batch_to_device(next(iter(loader)), device)
    video, joints = build_transform(cfg).train(video, joints, None)
    optimizer, _, _ = build_optimization(cfg, model, 1, device)
    amp = amp_dtype_for(cfg.train.amp, device)
    loss_cfg = build_loss_config(cfg, datasets[0], device)

    def step() -> None:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=bool(amp)):
            out = model(video, joints if cfg.model.pose else None)
        classification_loss(out, labels, loss_cfg).backward()  # the loop's loss (aux head too)
        if cfg.train.clip_grad > 0:  # the loop's clipping, without its one host read
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / args.steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["hpnet", "trivial"], default="hpnet")
    p.add_argument("--size", default="tiny")
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--img", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data", default="/tmp/hpnet-bench/synthetic", help="synthetic data folder")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = setup(args)
    loop = time_loop(args, *parts)
    step = time_step(args, *parts) if args.model != "trivial" else float("nan")
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {args.device}; {args.model} size={args.size} "
          f"T={args.frames} img={args.img} batch={args.batch} workers={args.workers}")  # fmt: skip
    print("| model | loop (s/step) | loop clips/s | step (s) | step clips/s | overhead |")
    print("|---|---:|---:|---:|---:|---:|")
    overhead = f"{100 * (1 - step / loop):.0f} %" if step == step else "-"
    print(f"| {args.model} | {loop:.3f} | {args.batch / loop:.1f} | {step:.3f} | "
          f"{args.batch / step:.1f} | {overhead} |")  # fmt: skip


if __name__ == "__main__":
    main()
