"""Every ``model.arch`` side by side: cost at the seed study's input sizes, and accuracy on the
synthetic actions alone, with pose pooling, and with pose + text, at one equal budget.

    python bench/baselines.py cost                      # params, GFLOPs, CPU train clips/s
    python bench/baselines.py cost --archs c3d,i3d --steps 2
    python bench/baselines.py accuracy                  # synthetic top-1: alone / +pose / +text
    python bench/baselines.py accuracy --archs r3d_18 --epochs 4 train.seed=1

``cost`` builds each arch with a linear head over 51 classes (HMDB51), no pose, at its seed
input (:data:`SEED_INPUT`: the 2D models on 5 frames of 224, the 3D CNNs on 16 x 112), counts
the forward FLOPs of one clip with ``torch.utils.flop_counter`` and times training steps of
``--batch`` random clips on the CPU (AdamW, fp32).

``accuracy`` trains configs/demo.yaml with each arch at the demo's shapes plus the arch's
override (:data:`DEMO_OVERRIDES`, the ones README documents) for ``--epochs`` epochs, once per
variant, and prints test top-1 (single view) beside the seed study's reported HMDB51 / UCF101
accuracies (their numbers, on the real datasets with Kinetics/Sports-1M weights: not
comparable to synthetic figures, shown for orientation only).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from hpnet.config import load_config
from hpnet.models.backbones import BACKBONES
from hpnet.models.hpnet import build_model

# (frames, side, extra overrides) at the seed study's protocol (and each model's own paper)
SEED_INPUT: dict[str, tuple[int, int, list[str]]] = {
    "lsvit": (16, 224, ["model.size=base"]),
    "late_fusion": (5, 224, ["model.depth=152"]),
    "lrcn": (5, 224, ["model.depth=152"]),
    "c3d": (16, 112, []),
    "i3d": (16, 112, []),
    "nonlocal": (16, 112, []),
    "r3d_18": (16, 112, []),
    "mc3_18": (16, 112, []),
    "r2plus1d_18": (16, 112, []),
    "s3d": (16, 224, []),
    "mvit_v2_s": (16, 224, []),
    "swin3d_t": (16, 224, []),
    "ssl_transformer": (16, 224, ["model.depth=50"]),  # configs/hmdb51_ssl_transformer.yaml
}
# What configs/demo.yaml (8 frames of 64x64, LS-ViT tiny) needs per arch on the CPU.
DEMO_OVERRIDES: dict[str, list[str]] = {
    "lsvit": [],
    "late_fusion": ["model.depth=18"],
    "lrcn": ["model.depth=18"],
    "c3d": ["data.size=32", "data.load_size=32"],
    "i3d": ["data.size=32", "data.load_size=32"],
    "nonlocal": ["data.size=32", "data.load_size=32"],
    "mvit_v2_s": ["data.frames=16", "data.size=224", "data.load_size=224"],
}
VARIANTS = {
    "alone": ["model.pose=false", "model.text=false"],
    "+pose": ["model.pose=true", "model.text=false"],
    "+pose+text": ["model.pose=true", "model.text=true"],
}
# The seed study's reported test top-1 (%), HMDB51 / UCF101 (theirs, not measured here).
SEED_REPORTED = {
    "late_fusion": (41.6, 74.2),
    "c3d": (16.0, 60.6),
    "lrcn": (43.9, 74.5),
    "i3d": (36.5, 66.7),
    "nonlocal": (53.4, 83.0),
}


def _arch_overrides(arch: str) -> list[str]:
    return [f"model.arch={arch}"] + ([] if arch == "lsvit" else ["model.feedback=false"])


def cost(arch: str, args: argparse.Namespace) -> dict:
    """Parameters, forward GFLOPs per clip and CPU training clips/s of ``arch`` alone."""
    frames, side, extra = SEED_INPUT[arch]
    cfg = load_config(
        None,
        [*_arch_overrides(arch), *VARIANTS["alone"], f"data.frames={frames}",
         f"data.size={side}", "text.pretrained=", *extra],
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg, [f"class {i}" for i in range(51)])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.randn(1, frames, 3, side, side))
    video = torch.randn(args.batch, frames, 3, side, side)
    labels = torch.randint(0, 51, (args.batch,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(video)["logits"], labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    return {
        "arch": arch,
        "input": f"{frames}x{side}" + (f" ({' '.join(extra)})" if extra else ""),
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "gmacs": counter.get_total_flops() / 2e9,  # the counter counts a multiply-add as 2
        "clips_per_s": args.batch / seconds,
    }


def accuracy(arch: str, variant: str, args: argparse.Namespace) -> dict:
    """Test top-1 of ``arch`` with ``variant``'s switches on the synthetic demo data."""
    from hpnet.train import main as train_main

    out = Path(args.out) / f"{arch}-{variant.strip('+').replace('+', '_')}"
    overrides = [
        *_arch_overrides(arch), *DEMO_OVERRIDES.get(arch, []), *VARIANTS[variant],
        f"data.root={args.data_root}", f"train.out_dir={out}", "train.resume=auto",
        f"train.epochs={args.epochs}", "train.eval_every=0", *args.extra,
    ]  # fmt: skip
    start = time.perf_counter()
    assert train_main(["--config", args.config, *overrides]) == 0
    report = json.loads((out / "eval.json").read_text())
    return {"top1": report["top1"], "wall_s": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["cost", "accuracy"])
    p.add_argument("--archs", default=",".join(BACKBONES), help="comma-separated model.arch")
    p.add_argument("--batch", type=int, default=2, help="cost: clips per training step")
    p.add_argument("--steps", type=int, default=2, help="cost: timed steps after one warm-up")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--epochs", type=int, default=4, help="accuracy: the equal budget")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", default="runs/baselines")
    p.add_argument("--data-root", default="data/synthetic")
    p.add_argument("extra", nargs="*", help="accuracy: more key=value overrides for every run")
    args = p.parse_intermixed_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    archs = args.archs.split(",")
    unknown = [a for a in archs if a not in SEED_INPUT]
    if unknown:
        p.error(f"--archs: no SEED_INPUT entry for {','.join(unknown)} (add one in {__file__})")
    print(f"# {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    if args.what == "cost":
        print("| arch | input (T x S) | params (M) | forward GMACs / clip | train clips/s |")
        print("|---|---|---|---|---|")
        for arch in archs:
            r = cost(arch, args)
            print(f"| {arch} | {r['input']} | {r['params_M']:.1f} | {r['gmacs']:.1f} | "
                  f"{r['clips_per_s']:.2f} |", flush=True)  # fmt: skip
        return
    variants = args.variants.split(",")
    rows = []
    for arch in archs:
        accs = {v: accuracy(arch, v, args) for v in variants}
        rows.append((arch, accs))
        print(f"## {arch}: " + ", ".join(f"{v} {100 * a['top1']:.1f}" for v, a in accs.items()))
    print(f"\n| arch | {' | '.join(variants)} | seed study HMDB51 / UCF101 (theirs) |")
    print("|---|" + "---|" * len(variants) + "---|")
    for arch, accs in rows:
        theirs = SEED_REPORTED.get(arch)
        cells = " | ".join(f"{100 * accs[v]['top1']:.1f}" for v in variants)
        print(f"| {arch} | {cells} | {f'{theirs[0]} / {theirs[1]}' if theirs else '-'} |")


if __name__ == "__main__":
    main()
