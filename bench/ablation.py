"""Does each part of HP-Net earn its place? Same budget, same seeds, one switch at a time.

    python bench/ablation.py                         # demo setting + distractor figure, CPU
    python bench/ablation.py --seeds 0,1 --variants full,rgb_only

Trains the demo configuration (configs/demo.yaml) on the synthetic variant with a second,
smaller distractor figure doing another action — so pooling around the right person matters —
once per variant and seed, and prints a markdown table of test top-1 (single view) per variant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from hpnet.train import main as train_main

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "pose_transformer": ["model.pose_encoder=transformer"],  # the GCN's alternative
    "no_feedback": ["model.feedback=false"],
    "no_text": ["model.text=false"],
    "no_smif": ["model.smif=false"],
    "no_lmi": ["model.lmi=false"],
    "rgb_only": ["model.pose=false"],  # LS-ViT + text head, no pose
    "lsvit_only": ["model.pose=false", "model.text=false"],  # the RGB-only LS-ViT baseline
}


def run(variant: str, seed: int, args: argparse.Namespace) -> dict:
    out = Path(args.out) / f"{variant}-seed{seed}"
    overrides = [
        "data.synthetic.distractor=true",
        f"data.root={args.data_root}",
        f"train.seed={seed}",
        f"train.out_dir={out}",
        "train.resume=auto",
        "train.eval_every=0",
        *args.extra,
        *VARIANTS[variant],
    ]
    start = time.perf_counter()
    train_main(["--config", args.config, *overrides])
    report = json.loads((out / "eval.json").read_text())
    report["wall_s"] = time.perf_counter() - start
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--data-root", default="data/synthetic")
    p.add_argument("extra", nargs="*", help="more key=value overrides for every run")
    args = p.parse_intermixed_args()  # overrides before or after the options
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for variant in args.variants.split(","):
        accs = [run(variant, s, args)["top1"] for s in seeds]
        rows.append((variant, accs))
        print(f"## {variant}: " + ", ".join(f"{100 * a:.1f}" for a in accs), flush=True)
    print("\n| variant | switches | test top-1 (%) per seed | mean |")
    print("|---|---|---|---|")
    for variant, accs in rows:
        switches = " ".join(VARIANTS[variant]) or "(all on)"
        per = ", ".join(f"{100 * a:.1f}" for a in accs)
        print(f"| {variant} | {switches} | {per} | {100 * statistics.mean(accs):.1f} |")


if __name__ == "__main__":
    main()
