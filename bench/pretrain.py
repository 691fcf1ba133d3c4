"""Pretraining (VideoMAE, SimSiam): what a step costs, and what it buys on synthetic data.

    python bench/pretrain.py cost                      # tiny and small LS-ViT on the CPU
    python bench/pretrain.py cost --size base --img 224 --frames 16 --batch 8 --device cuda
    python bench/pretrain.py transfer --seeds 0        # pretrain, fine-tune 10 % vs scratch

``cost``: seconds per clip of one optimizer step (forward, backward, AdamW) of VideoMAE
pretraining vs fine-tuning the same LS-ViT (RGB, linear head) on the same batch; the ratio is
the target (<= 0.4). ``--decoder-width/--decoder-depth`` as ``pretrain.*`` (0 = defaults).
It also counts each step's FLOPs (``flop_ratio``) and the rate each step reaches (TFLOP/s): a
time ratio far above the FLOP ratio means the pretraining step waits on something other than
arithmetic (on a GPU, small kernels at a small batch: try ``--batch 32``, ``--compile`` or
``--compile --compile-mode reduce-overhead``, which replays the step as CUDA graphs); the
ATen operator calls of each forward + backward (``*_fwd_bwd_aten_ops``) say what that
launch-bound floor is made of (AdamW is fused on CUDA, as in ``hpnet.train``).

``transfer`` (RGB only, ``model.pose=false``): ``python -m hpnet.pretrain`` on the synthetic
training videos (labels unread), then ``python -m hpnet.train`` on 10 % of them with labels
(``data.synthetic.train_videos`` = a tenth: the first clips of the same split) from the
pretrained encoder, and the same fine-tuning from random weights; test top-1 of each on the
whole test split (fine-tuning recipe: :data:`FINETUNE`). Budgets: ``--pretrain-epochs``,
``--finetune-epochs``. ``--method videomae`` pretrains and fine-tunes LS-ViT; ``--method
simsiam`` pretrains a ResNet frame encoder and fine-tunes ``model.arch=ssl_transformer`` on it
(its scratch twin: the same arch from random weights). ``--finetune-extra`` overrides only the
fine-tuning runs (e.g. ``train.backbone_lr=1e-5``). ``--train-videos 4800`` pretrains on 4800
rendered clips and fine-tunes on their first 480 (the synthetic split's first clips do not
depend on its size). Each arm's row is printed and appended to ``OUT/METHOD/transfer.jsonl`` as
it ends; the last line is the mean of each arm over the seeds and the gain per seed.

    python bench/pretrain.py transfer --method simsiam --seeds 0 1 --pretrain-epochs 30

``probe``: a linear probe of a frozen encoder (``--init RUN/last.pt``, or none: random weights)
on the synthetic clips: the backbone's clip feature of every training clip (as sampled in epoch
0) and test clip (its first view), no augmentation (LS-ViT: its mean-over-time CLS token and
mean patch token, side by side; ssl_transformer: its frame encoder's features of the T frames in
order, T x C, without the random temporal Transformer),
standardised, then a linear classifier (AdamW, lr 1e-2, weight decay 1e-3, 500 full-batch
steps: fixed, not tuned on the test split) fitted on the first ``--labelled`` training clips
(default 48 and 480) and scored on the whole test split.

    python bench/pretrain.py probe --init runs/videomae_demo/last.pt --labelled 48 480
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from hpnet.config import load_config
from hpnet.models.hpnet import build_model
from hpnet.optim import build_optimizer
from hpnet.pretrain.setup import build_pretrain_model


def _step_seconds(step, steps: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``step()`` over ``steps`` calls after ``warmup``."""
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _step_flops(step) -> float:
    """FLOPs of one ``step()`` (forward and backward; PyTorch's FLOP counter, eager)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def _step_ops(step) -> int:
    """ATen operator calls (nested calls and views included) of one eager ``step()``: what a
    GPU pays per call in dispatch and launch time when the kernels are small. Given forward +
    backward only: the optimizer runs fused on CUDA (a few kernels, as in ``hpnet.train``) but
    one parameter at a time on the CPU, where it would count ~6 k calls of its own."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def cost(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    overrides = [
        f"model.size={args.size}", f"model.patch_size={args.patch}", f"data.frames={args.frames}",
        f"data.size={args.img}", "model.pose=false", "model.text=false", "text.pretrained=",
        "model.drop_path=0.0", f"pretrain.decoder_width={args.decoder_width}",
        f"pretrain.decoder_depth={args.decoder_depth or 4}", f"pretrain.mask_ratio={args.ratio}",
    ]  # fmt: skip
    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    video = torch.randn(args.batch, args.frames, 3, args.img, args.img, device=device)
    labels = torch.randint(0, 10, (args.batch,), device=device)
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    finetune = build_model(cfg, [f"c{i}" for i in range(10)]).to(device)
    mae = build_pretrain_model(cfg).to(device)
    gen = torch.Generator().manual_seed(0)

    def make_step(model: torch.nn.Module, loss_of) -> tuple:
        """(timed step, eager step, eager forward + backward): forward + backward + AdamW of
        ``model`` (compiled or not; AdamW fused on CUDA, as ``hpnet.train`` runs it)."""
        opt = build_optimizer(
            model, lr=1e-4, backbone_lr=0, weight_decay=0.05, fused=device.type == "cuda"
        )
        net = torch.compile(model, mode=args.compile_mode) if args.compile else model
        graphs = args.compile and args.compile_mode.startswith("reduce-overhead")

        def step(on: torch.nn.Module = net, update: bool = True) -> None:
            if graphs and on is net:  # CUDA graphs: a new step may overwrite the last's outputs
                torch.compiler.cudagraph_mark_step_begin()
            with torch.autocast(**amp):
                loss = loss_of(on)
            loss.backward()
            if update:
                opt.step()
            opt.zero_grad(set_to_none=True)

        return step, lambda: step(model), lambda: step(model, update=False)

    def finetune_loss(net: torch.nn.Module) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(net(video, None)["logits"].float(), labels)

    f_step, f_eager, f_fwd_bwd = make_step(finetune, finetune_loss)
    p_step, p_eager, p_fwd_bwd = make_step(mae, lambda net: net(video, generator=gen)["loss"])
    f = _step_seconds(f_step, args.steps, args.warmup, device)
    p = _step_seconds(p_step, args.steps, args.warmup, device)
    f_flop, p_flop = _step_flops(f_eager), _step_flops(p_eager)
    f_ops, p_ops = _step_ops(f_fwd_bwd), _step_ops(p_fwd_bwd)
    decoder = f"{mae.decoder_embed.out_features}x{len(mae.decoder_blocks)}"
    return {
        "size": args.size, "frames": args.frames, "img": args.img, "patch": args.patch,
        "batch": args.batch, "mask_ratio": args.ratio, "decoder": decoder,
        "device": str(device), "threads": torch.get_num_threads(),
        "finetune_s_per_clip": f / args.batch, "pretrain_s_per_clip": p / args.batch,
        "ratio": p / f, "compiled": args.compile and args.compile_mode,
        "finetune_gflop_per_clip": f_flop / args.batch / 1e9,
        "pretrain_gflop_per_clip": p_flop / args.batch / 1e9, "flop_ratio": p_flop / f_flop,
        "finetune_tflop_s": f_flop / f / 1e12, "pretrain_tflop_s": p_flop / p / 1e12,
        "finetune_fwd_bwd_aten_ops": f_ops, "pretrain_fwd_bwd_aten_ops": p_ops,
    }  # fmt: skip


def _main(module: str, argv: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if module == "pretrain":
            from hpnet.pretrain.run import main
        else:
            from hpnet.train import main
        assert main(argv) == 0


# The fine-tuning of every arm (pretrained and scratch alike) on the labelled tenth: a linear
# head (the text tower is random offline), 100 epochs of 6 steps, pretrained blocks at lower
# rates (layer decay; a run from random weights has none, so all of it trains at train.lr).
FINETUNE = [
    "model.text=false", "train.batch_size=8", "train.lr=1e-3", "train.layer_decay=0.75",
    "train.warmup_epochs=5",
]  # fmt: skip
# What each method pretrains with and fine-tunes (the scratch twin is the same fine-tuning).
METHODS: dict[str, tuple[str, list[str]]] = {
    "videomae": ("configs/videomae_demo.yaml", []),
    "simsiam": (
        "configs/simsiam_demo.yaml",
        ["model.arch=ssl_transformer", "model.depth=18", "model.feedback=false"],
    ),
}


def transfer(args: argparse.Namespace) -> list[dict]:
    pretrain_config, arch = METHODS[args.method]
    pretrain_config = args.pretrain_config or pretrain_config
    out = Path(args.out) / args.method
    demo = load_config(args.finetune_config)
    unlabelled = args.train_videos or demo.data.synthetic.train_videos
    labelled = max(2, round(unlabelled * args.label_fraction))
    common = [f"data.root={args.data_root}", f"train.threads={args.threads}", *args.extra]
    finetune = [
        "--config", args.finetune_config, *common, *arch, "model.pose=false", "pose.source=none",
        f"data.synthetic.train_videos={labelled}", f"train.epochs={args.finetune_epochs}",
        "train.eval_every=0", "train.resume=auto", *FINETUNE, *args.finetune_extra,
    ]  # fmt: skip
    rows = []
    for seed in args.seeds:
        run = out / f"seed{seed}"
        start = time.perf_counter()
        _main("pretrain", [
            "--config", pretrain_config, *common, f"train.seed={seed}",
            f"data.synthetic.train_videos={unlabelled}",
            f"train.epochs={args.pretrain_epochs}", f"train.out_dir={run / 'pretrain'}",
            "train.resume=auto",
        ])  # fmt: skip
        pretrain_s = time.perf_counter() - start
        for name, init in ((args.method, str(run / "pretrain" / "last.pt")), ("scratch", "")):
            folder = run / name
            start = time.perf_counter()
            _main("train", [*finetune, f"train.seed={seed}", f"model.pretrained={init}",
                            f"train.out_dir={folder}"])  # fmt: skip
            report = json.loads((folder / "eval.json").read_text())
            rows.append({
                "seed": seed, "init": name, "labelled_clips": labelled,
                "test_top1": report["top1"], "test_videos": report["num_videos"],
                "finetune_s": time.perf_counter() - start, "pretrain_s": pretrain_s,
            })  # fmt: skip
            print(json.dumps(rows[-1]))
            with open(out / "transfer.jsonl", "a") as f:  # every arm, as it ends
                f.write(json.dumps({**rows[-1], "method": args.method, "args": vars(args)}) + "\n")
    print(json.dumps(_summary(rows, args.method)))
    return rows


def _summary(rows: list[dict], method: str) -> dict:
    """Mean test top-1 of each arm over the seeds, and the gain of pretraining per seed."""
    by_seed = {(r["seed"], r["init"]): r["test_top1"] for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    gains = [by_seed[s, method] - by_seed[s, "scratch"] for s in seeds]
    return {
        "seeds": seeds, "gains": gains, "mean_gain": statistics.mean(gains),
        method: statistics.mean(by_seed[s, method] for s in seeds),
        "scratch": statistics.mean(by_seed[s, "scratch"] for s in seeds),
    }  # fmt: skip


@torch.no_grad()
def _clip_features(model: torch.nn.Module, dataset, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen backbone's feature (N, F) of every clip of ``dataset`` and the labels (N,)."""
    from hpnet.data.transforms import normalize

    encoder = getattr(model.backbone, "encoder", None)  # ssl_transformer's frame encoder
    feats, labels = [], []
    for i in range(len(dataset)):
        sample = dataset[i]
        video = sample["video"]
        video = normalize(video[0] if video.dim() == 5 else video, mean, std)[None]  # view 0
        if encoder is not None:  # its features (T, C) of the frames in order
            feats.append(encoder(video[0]).flatten())
        elif isinstance(out := model.backbone.forward_features(video), torch.Tensor):
            feats.append(torch.cat([out[0, :, 0].mean(0), out[0, :, 1:].mean((0, 1))]))  # LS-ViT
        else:  # (fmap, pooled)
            feats.append(out[1][0])
        labels.append(int(sample["label"]))
    return torch.stack(feats), torch.tensor(labels)


def probe(args: argparse.Namespace) -> list[dict]:
    from hpnet.data.datasets import build_datasets

    cfg = load_config(args.config, [
        f"data.root={args.data_root}", "model.pose=false", "model.text=false",
        "pose.source=none", f"model.pretrained={args.init}", *args.extra,
    ])  # fmt: skip
    torch.manual_seed(0)
    data = build_datasets(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, data.classes).eval()
    mean, std = cfg.data.augment.mean, cfg.data.augment.std
    x_train, y_train = _clip_features(model, data.train, mean, std)
    x_test, y_test = _clip_features(model, data.test, mean, std)
    rows = []
    for n in args.labelled:
        centre, scale = x_train[:n].mean(0), x_train[:n].std(0) + 1e-6
        torch.manual_seed(0)
        head = torch.nn.Linear(x_train.shape[1], len(data.classes))
        opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-3)
        inputs = (x_train[:n] - centre) / scale
        for _ in range(500):
            loss = torch.nn.functional.cross_entropy(head(inputs), y_train[:n])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            top1 = (head((x_test - centre) / scale).argmax(1) == y_test).float().mean().item()
        rows.append({"init": args.init or "random", "labelled_clips": n, "test_top1": top1,
                     "test_videos": len(y_test), "feature_dim": x_train.shape[1]})  # fmt: skip
        print(json.dumps(rows[-1]))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cost", help="seconds per clip: pretraining vs fine-tuning step")
    c.add_argument("--size", default="tiny")
    c.add_argument("--patch", type=int, default=8)
    c.add_argument("--frames", type=int, default=8)
    c.add_argument("--img", type=int, default=64)
    c.add_argument("--batch", type=int, default=8)
    c.add_argument("--ratio", type=float, default=0.9)
    c.add_argument("--decoder-width", type=int, default=0)
    c.add_argument("--decoder-depth", type=int, default=0)
    c.add_argument("--device", default="cpu")
    c.add_argument("--steps", type=int, default=5)
    c.add_argument("--warmup", type=int, default=2)
    c.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    c.add_argument("--compile", action="store_true", help="torch.compile both models")
    c.add_argument(
        "--compile-mode", default="default",
        help="torch.compile mode: reduce-overhead replays each step as CUDA graphs (launch cost)",
    )  # fmt: skip
    t = sub.add_parser("transfer", help="pretrain, fine-tune on 10 %% labels vs from scratch")
    t.add_argument("--method", choices=sorted(METHODS), default="videomae")
    t.add_argument("--pretrain-config", default="", help="default: the method's demo config")
    t.add_argument("--finetune-config", default="configs/demo.yaml")
    t.add_argument("--label-fraction", type=float, default=0.1)
    t.add_argument(
        "--train-videos", type=int, default=0,
        help="synthetic clips to pretrain on (0: the fine-tuning config's); the first "
        "label-fraction of them are the labelled ones",
    )  # fmt: skip
    t.add_argument("--pretrain-epochs", type=int, default=10)
    t.add_argument("--finetune-epochs", type=int, default=100)
    t.add_argument("--seeds", type=int, nargs="+", default=[0])
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--data-root", default="data/synthetic")
    t.add_argument("--out", default="runs/bench_pretrain")
    t.add_argument("--finetune-extra", nargs="*", default=[], help="overrides: fine-tuning only")
    t.add_argument("extra", nargs="*", help="key=value overrides for every run")
    r = sub.add_parser("probe", help="linear probe of a frozen (pretrained) encoder")
    r.add_argument("--init", default="", help="model.pretrained (default: random weights)")
    r.add_argument("--config", default="configs/demo.yaml")
    r.add_argument("--labelled", type=int, nargs="+", default=[48, 480])
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--data-root", default="data/synthetic")
    r.add_argument("extra", nargs="*", help="key=value overrides (e.g. model.arch=...)")
    args = p.parse_args()
    if args.what == "probe":
        torch.set_num_threads(args.threads)
        probe(args)
    elif args.what == "cost":
        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(cost(args)))
    else:
        transfer(args)


if __name__ == "__main__":
    main()
