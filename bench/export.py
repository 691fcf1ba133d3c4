"""CPU latency of an HP-Net: eager PyTorch vs its torch.export (.pt2) and ONNX Runtime files.

    python bench/export.py [--sizes tiny,base] [--batch 1] [--repeats 10] [--threads 2]

Builds each size at the recipe's input (tiny: the demo, T=8, 64x64, patch 8; base:
configs/hmdb51_fusion.yaml, T=16, 224x224, patch 16) with random weights and 51 classes, exports
it both ways (:mod:`hpnet.export`), checks the logits agree, and prints the median seconds per
call of each runtime (after 2 warm-up calls).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from hpnet.config import load_config
from hpnet.export import example_inputs, export_metadata, export_model, load_exported
from hpnet.models.hpnet import build_model

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "tiny": ("configs/demo.yaml", []),
    "base": ("configs/hmdb51_fusion.yaml", ["model.pretrained=", "text.pretrained="]),
}


def median_seconds(fn, inputs: tuple, repeats: int) -> float:
    with torch.no_grad():
        for _ in range(2):
            fn(*inputs)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(*inputs)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(size: str, args: argparse.Namespace, folder: Path) -> list[str]:
    config, extra = SETTINGS[size]
    cfg = load_config(REPO / config, [*extra, "train.device=cpu"])
    classes = [f"class_{i}" for i in range(51)]
    text_dim = 512 if "B-16" in cfg.text.model else 256
    embeddings = F.normalize(torch.randn(51, text_dim), dim=-1)
    model = build_model(cfg, classes, class_embeddings=embeddings, load_weights=False).eval()
    meta = export_metadata(model, cfg)
    inputs = example_inputs(meta, batch=args.batch)
    eager = median_seconds(lambda *x: model(*x)["logits"], inputs, args.repeats)
    rows = [f"| {size} | eager | {1000 * eager:.1f} | - | - |"]
    with torch.no_grad():
        reference = model(*inputs)["logits"]
    for suffix, name in ((".pt2", "torch.export"), (".onnx", "ONNX Runtime")):
        path = folder / f"{size}{suffix}"
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_model(model, cfg, path)
        took = time.perf_counter() - start
        exported = load_exported(path)
        diff = (exported(*inputs) - reference).abs().max().item()
        seconds = median_seconds(exported, inputs, args.repeats)
        rows.append(f"| {size} | {name} | {1000 * seconds:.1f} | {took:.0f} | {diff:.1e} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="tiny,base")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            rows += bench(size, args, Path(tmp))
            print(rows[-3:], flush=True)
    print(f"\nbatch {args.batch}, {args.threads} threads, median of {args.repeats} calls\n")
    print("| model | runtime | ms per call | export (s) | max abs diff vs eager |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
