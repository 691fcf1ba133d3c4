"""Joint training vs one model per dataset, at the same budget (the same total steps).

    python bench/joint.py                       # configs/joint_demo.yaml, reduced, CPU
    python bench/joint.py --epochs 8 model.text=false

The two synthetic datasets of configs/joint_demo.yaml ("everyday": 7 actions, "sports": 6,
walk and wave in both; different clips) are trained three ways, each for ``--epochs`` epochs:
jointly (one model, batches interleaved in proportion to the datasets' sizes), and separately
(one model per dataset on its own data). Every clip is seen ``--epochs`` times either way, so
the joint run takes exactly as many optimizer steps as the two separate runs together. Prints
a markdown table of each dataset's test top-1 (single view) and the wall time of each run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hpnet.config import dataset_configs, load_config
from hpnet.train import main as train_main

NAMES = ("everyday", "sports")


def _run(name: str, overrides: list[str], args: argparse.Namespace) -> tuple[dict, float, int]:
    out = Path(args.out) / name
    start = time.perf_counter()
    train_main(["--config", args.config, *overrides, f"train.out_dir={out}", "train.resume=auto"])
    wall = time.perf_counter() - start
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = sum(int(r["steps"]) for r in rows if r["type"] == "train")
    return json.loads((out / "eval.json").read_text()), wall, steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/joint_demo.yaml")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--out", default="runs/bench_joint")
    p.add_argument("--data-root", default="data/synthetic")
    p.add_argument("extra", nargs="*", help="more key=value overrides for every run")
    args = p.parse_intermixed_args()  # overrides before or after the options
    common = [
        f"data.root={args.data_root}",
        f"train.epochs={args.epochs}",
        "train.eval_every=0",
        "train.warmup_epochs=0.5",
        *args.extra,
    ]
    joint, joint_s, joint_steps = _run("joint", common, args)
    results = {n: joint["datasets"][n]["top1"] for n in NAMES}
    entries = dict(dataset_configs(load_config(args.config, common)))
    separate, separate_s, separate_steps = {}, 0.0, 0
    for name in NAMES:
        one = entries[name].data
        alone = [
            "data.joint=[]",
            f"data.seed={one.seed}",
            f"data.synthetic.actions={','.join(one.synthetic.actions)}",
            f"data.synthetic.train_videos={one.synthetic.train_videos}",
            f"data.synthetic.test_videos={one.synthetic.test_videos}",
        ]
        report, wall, steps = _run(name, [*common, *alone], args)
        separate[name] = report["top1"]
        separate_s += wall
        separate_steps += steps
    print("\n| training | steps | wall (s) | " + " | ".join(f"{n} top-1" for n in NAMES) + " |")
    print("|---|---:|---:|" + "---:|" * len(NAMES))
    for label, accs, steps, wall in (
        ("joint (one model)", results, joint_steps, joint_s),
        ("separate (one model each)", separate, separate_steps, separate_s),
    ):
        cells = " | ".join(f"{100 * accs[n]:.1f} %" for n in NAMES)
        print(f"| {label} | {steps} | {wall:.0f} | {cells} |")


if __name__ == "__main__":
    main()
