"""Training-step throughput: clips/s, peak memory and achieved FLOP/s of one optimizer step.

    python bench/train_step.py                       # tiny HP-Net and LS-ViT-only on the CPU
    python bench/train_step.py --size base --frames 16 --img 224 --batch 8 --device cuda
    python bench/train_step.py --size small --grad-checkpointing   # train.grad_checkpointing

Counts the model's FLOPs per step with torch.utils.flop_counter (forward + backward), times
``--steps`` steps after ``--warmup``, and on CUDA reports the fraction of ``--peak-tflops``
(default: measured with a large bf16 matmul on the same GPU). Peak memory: on CUDA the most
allocated during the timed steps; on the CPU the max RSS of a forked process that runs that
variant alone (with torch and hpnet loaded). ``--grad-checkpointing`` recomputes LS-ViT's
blocks in the backward pass; the FLOPs then count the recomputation too.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from hpnet.config import load_config
from hpnet.models.hpnet import build_model
from hpnet.optim import build_optimizer


def measured_peak_tflops(device: torch.device, n: int = 8192) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    reps = 20
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def bench(variant: str, args: argparse.Namespace, device: torch.device) -> dict:
    overrides = [
        f"model.size={args.size}",
        f"model.patch_size={args.patch}",
        f"data.frames={args.frames}",
        f"data.size={args.img}",
        "text.pretrained=",
        "model.drop_path=0.1",
    ]
    if variant == "lsvit":
        overrides += ["model.pose=false", "model.text=false"]
    cfg = load_config(None, overrides)
    classes = [f"class {i}" for i in range(args.classes)]
    model = build_model(cfg, classes).to(device)
    model.backbone.set_grad_checkpointing(args.grad_checkpointing)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if args.compile else model
    opt = build_optimizer(
        model, lr=1e-4, backbone_lr=0, weight_decay=0.05, fused=device.type == "cuda"
    )
    amp = device.type == "cuda"
    b, t, s = args.batch, args.frames, args.img
    video = torch.randn(b, t, 3, s, s, device=device)
    joints = torch.rand(b, t, 2, 17, 3, device=device)
    labels = torch.randint(0, args.classes, (b,), device=device)

    def step() -> None:
        loss_of(net).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def loss_of(module: torch.nn.Module) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = module(video, joints if variant == "hpnet" else None)
            return torch.nn.functional.cross_entropy(out["logits"].float(), labels)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = (time.perf_counter() - start) / args.steps
    mem = (
        torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    # Counted after the peak is read: under the counter's dispatch mode checkpointed blocks
    # keep all their activations and more (LS-ViT-S, 16 x 8 x 112^2 on the CPU: +3.2 GiB of
    # RSS, where a checkpointed step takes +1.2 and a plain one +2.6).
    with FlopCounterMode(display=False) as counter:
        loss_of(model).backward()
    opt.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    return {
        "variant": variant,
        "params_M": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        "step_s": elapsed,
        "clips_per_s": b / elapsed,
        "gflop_per_step": flops / 1e9,
        "tflops": flops / elapsed / 1e12,
        "peak_mem_gib": mem,
    }


def _in_child(variant: str, args: argparse.Namespace) -> dict:
    """:func:`bench` on the CPU in a forked process: its max RSS is this variant's peak, not
    the largest of every variant run so far in one process (RSS only ever grows)."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(bench, (variant, args, torch.device("cpu")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="tiny")
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--img", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=0.0)
    p.add_argument("--variants", default="hpnet,lsvit")
    p.add_argument("--grad-checkpointing", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak = args.peak_tflops or (measured_peak_tflops(device) if device.type == "cuda" else 0.0)
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, device {device}"
        + (f" ({torch.cuda.get_device_name(device)}, bf16 peak {peak:.0f} TFLOP/s)" if peak else "")
    )
    print(
        f"# size={args.size} patch={args.patch} T={args.frames} img={args.img} batch={args.batch}"
        f" grad_checkpointing={args.grad_checkpointing}"
    )
    print(
        "| variant | params (M) | step (s) | clips/s | GFLOP/step | TFLOP/s | % of peak "
        "| peak mem (GiB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for variant in args.variants.split(","):
        r = bench(variant, args, device) if device.type == "cuda" else _in_child(variant, args)
        frac = f"{100 * r['tflops'] / peak:.1f}" if peak else "-"
        print(
            f"| {variant} | {r['params_M']:.2f} | {r['step_s']:.3f} | {r['clips_per_s']:.1f} | "
            f"{r['gflop_per_step']:.1f} | {r['tflops']:.3f} | {frac} | {r['peak_mem_gib']:.2f} |"
        )


if __name__ == "__main__":
    main()
