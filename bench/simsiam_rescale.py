"""A SimSiam run's checkpoint with every BatchNorm-fed conv of its encoder rescaled to the norm
of a fresh init (an experiment of bench/RESULTS.md "Pretraining", fifth attempt).

Under BatchNorm a conv's output scale cancels, so scaling its weight by c (and that BN's running
mean by c, running variance by c^2) keeps the network's function, up to BN's eps, while an Adam
step, ~lr in size whatever the weight's scale, becomes a larger share of it again:

    python bench/simsiam_rescale.py runs/simsiam_demo/last.pt runs/simsiam_rescaled.pt
    python -m hpnet.train ... model.arch=ssl_transformer model.pretrained=runs/simsiam_rescaled.pt
"""

from __future__ import annotations

import argparse
import re

import torch

from hpnet.models.resnet_trunk import build_resnet_trunk


def rescale(state: dict[str, torch.Tensor], depth: int) -> dict[str, float]:
    """In place on a SimSiam state dict (keys ``encoder.*``): each conv feeding a BatchNorm to
    the norm of a fresh ``resnet{depth}`` init; returns the factor c per conv."""
    torch.manual_seed(0)  # the fresh init's norms (they vary ~1 % between seeds)
    fresh = build_resnet_trunk(depth).state_dict()
    factors = {}
    for key in [k for k in state if k.startswith("encoder.")]:
        name = key.removeprefix("encoder.")
        m = re.fullmatch(r"(.*?)(conv(\d)|downsample\.0)\.weight", name)
        if m is None:
            continue
        bn = "encoder." + m.group(1) + (f"bn{m.group(3)}" if m.group(3) else "downsample.1")
        c = fresh[name].norm() / state[key].norm()
        state[key] = state[key] * c
        state[f"{bn}.running_mean"] = state[f"{bn}.running_mean"] * c
        state[f"{bn}.running_var"] = state[f"{bn}.running_var"] * c * c
        factors[name] = float(c)
    return factors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("source", help="last.pt of a pretrain.method=simsiam run")
    p.add_argument("target", help="where to write the rescaled checkpoint")
    args = p.parse_args()
    ckpt = torch.load(args.source, map_location="cpu", weights_only=False)
    depth = int(ckpt.get("config", {}).get("model", {}).get("depth", 18))
    state = dict(ckpt["model"])
    for name, c in rescale(state, depth).items():
        print(f"{name}: x{c:.3f}")
    ckpt["model"] = state
    torch.save(ckpt, args.target)


if __name__ == "__main__":
    main()
