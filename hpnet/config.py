"""Every setting of hpnet in one dataclass tree, with YAML files and ``key.sub=value`` overrides.

Order of precedence: defaults here < ``--config file.yaml`` < ``key=value`` arguments.
Every value is type-checked against its default's type; unknown keys, wrong types and
impossible values raise :class:`hpnet.cli.UserError` naming the key and what is allowed, which
the commands turn into a one-line message and exit code 2.

    cfg = load_config("configs/demo.yaml", ["train.epochs=3", "data.frames=8"])
    cfg.data.frames  # 8
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hpnet.cli import UserError
from hpnet.config_limits import LIMITS
from hpnet.config_types import (
    coerce,
    fields_of,
    parse_text,
    resolved_types,
    set_joint_entry,
    type_name,
    unknown_key,
)

# --------------------------------------------------------------------------------------- sections


@dataclass
class SyntheticConfig:
    train_videos: int = 480  # clips in the synthetic train split
    test_videos: int = 160  # clips in the synthetic test split
    resolution: int = 64  # rendered frame side in pixels (square frames)
    length: int = 32  # rendered frames per video (the sampler picks data.frames of them)
    distractor: bool = False  # add a second, smaller figure doing a different action
    fps: float = 15.0  # frame rate when written to disk as real video files
    actions: list[str] = field(default_factory=list)  # rendered actions ([] = all; label order)


@dataclass
class AugmentConfig:
    flip: bool = True  # random horizontal flip in training (joints swap left/right)
    scale_min: float = 0.4  # random resized crop: smallest fraction of the frame area kept
    ratio_max: float = 1.333  # random resized crop: aspect ratios in [1/ratio_max, ratio_max]
    jitter: float = 0.3  # brightness / contrast / saturation jitter strength (0 = off)
    blur_prob: float = 0.1  # probability of a Gaussian blur per clip
    mean: list[float] = field(default_factory=lambda: [0.48145466, 0.4578275, 0.40821073])  # RGB
    std: list[float] = field(default_factory=lambda: [0.26862954, 0.26130258, 0.27577711])  # RGB


@dataclass
class DataConfig:
    # reader; unlabeled = every video under data.root, recursively, no classes (pretraining)
    dataset: Literal["hmdb51", "ucf101", "folder", "list", "synthetic", "unlabeled"] = "synthetic"
    root: str = "data/synthetic"  # dataset folder (videos under <root>/<class>/...)
    split: int = 1  # official split number (1-3) for hmdb51 / ucf101
    split_dir: str = ""  # folder of split files ('' = the dataset's usual place under root)
    train_list: str = ""  # list dataset: text file of `path label` lines for training
    test_list: str = ""  # list dataset: text file of `path label` lines for testing
    classes_file: str = ""  # optional file of class names, one per line (label = line number)
    frames: int = 16  # frames per clip (T)
    size: int = 224  # side of the square crop fed to the model
    load_size: int = 0  # height the loader resizes frames to before the crop (0 = size * 8 / 7)
    aspect: float = 1.3333  # width / height of the canvas every video is put on by the loader
    # How a frame gets onto that canvas: pad = aspect kept, long side scaled, black borders
    # (default: it trained best and keeps every joint, bench/RESULTS.md); crop = aspect kept,
    # short side scaled, centre cut to the canvas shape; stretch = aspect not kept.
    resize: Literal["crop", "pad", "stretch"] = "pad"
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"  # antialiased resize to the canvas
    workers: int = 4  # DataLoader worker processes
    on_error: Literal["skip", "raise"] = "skip"  # what a video that fails to decode does
    allow_missing: bool = False  # tolerate videos listed in split files but absent on disk
    test_fraction: float = 0.3  # folder dataset without train/ and test/: share held out per class
    # Validation split: this share of each class's training videos (0 = none) is held out of
    # training and scored at every evaluation apart from the test split (metrics val_top1,
    # eval.json `val`; best.pt then follows val top-1). Chosen by a hash of data.seed and the
    # video; a class keeps at least one training video (a class of one gives none to val).
    val_fraction: float = 0.0
    seed: int = 0  # seed of the synthetic dataset and of dataset-side randomness
    decoder: Literal["auto", "torchcodec", "pyav"] = "auto"  # auto: AVI with PyAV, else torchcodec
    max_pixels: int = 4096 * 4096  # refuse videos whose width x height is larger (0 = no limit)
    balance: Literal["none", "sampler", "loss"] = "none"  # class-balanced sampler or loss weights
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Joint training: [] = one dataset (the keys above); else one entry per dataset, each a
    # mapping of `name` plus data.* keys that replace the ones above for that dataset (and
    # `pose_cache_dir`, its pose.cache_dir). See dataset_configs().
    joint: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ModelConfig:
    # Backbone family: lsvit = LS-ViT (the keys below up to lmi_every shape it), or one of
    # torchvision's video models, wrapped: r3d_18, mc3_18, r2plus1d_18, s3d, swin3d_t (any clip
    # above a few frames and pixels), mvit_v2_s (exactly 16 frames of 224x224); or the seed
    # study's baselines: late_fusion (a 2D ResNet of model.depth on every frame, features
    # averaged), lrcn (the same + an LSTM over time), c3d (C3D; 8+ frames of 16x16+, seed 16 of
    # 112x112). Pose pooling and the text head work on every arch; model.feedback (token blocks)
    # only on lsvit, set it false for the others. torchvision's Kinetics weights expect its
    # normalisation: data.augment.mean=[0.43216,0.394666,0.37645] std=[0.22803,0.22145,0.216989];
    # its ImageNet ones (late_fusion, lrcn) mean=[0.485,0.456,0.406] std=[0.229,0.224,0.225];
    # c3d-pytorch's Sports-1M C3D 0-255 pixels: mean=[0,0,0] std=[0.00392157,...] (x3).
    # i3d = ResNet-50 inflated to 3D (Wang et al.'s I3D baseline), nonlocal = i3d + 5 non-local
    # blocks in res3/res4: any clip; model.pretrained may be a 2D ResNet-50 file, inflated.
    # model.drop_path also sets the stochastic depth of mvit_v2_s and swin3d_t (no CNN has any).
    # ssl_transformer = a 2D ResNet of model.depth per frame (SimSiam-pretrained via
    # model.pretrained=<pretrain run>/last.pt, or random) + a small Transformer over time.
    arch: Literal[
        "lsvit", "r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t",
        "late_fusion", "lrcn", "c3d", "i3d", "nonlocal", "ssl_transformer",
    ] = "lsvit"  # fmt: skip
    depth: int = 50  # ResNet depth of late_fusion / lrcn / ssl_transformer: 18, 34, 50, 101, 152
    freeze_backbone: bool = False  # ssl_transformer: frame encoder kept as loaded (no grads, BN)
    temporal_depth: int = 2  # ssl_transformer: Transformer layers over the frame features
    temporal_width: int = 256  # ssl_transformer: that Transformer's width (width / 64 heads)
    size: Literal["tiny", "small", "base"] = "base"  # backbone width/depth (base = ViT-B/16)
    patch_size: int = 16  # ViT patch side in pixels
    smif: bool = True  # short-term motion from frame differences before patch embedding
    smif_offsets: list[int] = field(default_factory=lambda: [1, 2])  # frame offsets SMIF diffs
    lmi: bool = True  # long-term motion interaction (motion-excited channel gate) in blocks
    lmi_every: int = 1  # apply LMI after every k-th block
    # lsvit's clip feature for the head: cls = the CLS token averaged over time; mean = all
    # patch tokens averaged (VideoMAE's fine-tuning; reads what masked pretraining put there)
    pool: Literal["cls", "mean"] = "cls"
    pose: bool = True  # Feedback Pooling Module: pool backbone features at the joints
    feedback: bool = True  # pooled joint tokens re-enter the backbone's later blocks (lsvit only)
    feedback_from: int = -2  # first block the joint tokens re-enter (negative = from the end)
    pose_encoder: Literal["gcn", "transformer"] = "gcn"  # joint/bone/motion encoder of FPM
    text: bool = True  # classify by cosine to CLIP class-name embeddings (else a linear head)
    drop_path: float = 0.1  # stochastic depth rate of the last block
    dropout: float = 0.0  # dropout before the head
    pretrained: str = ""  # backbone init: open_clip tag of text.model, CLIP/timm ViT file, or ''
    # ('' = random init); a tag that cannot be downloaded is an error, never a random backbone.
    # torchvision archs: a state dict file of that model, or its torchvision weights name
    # (KINETICS400_V1, DEFAULT; downloaded by torchvision, offline an error naming the file);
    # late_fusion, lrcn: a 2D ResNet file (torchvision or timm) or IMAGENET1K_V1/V2; c3d: a file;
    # i3d/nonlocal: a 2D ResNet-50 state dict file (inflated), one of that arch, or its hpnet run
    # ssl_transformer: the last.pt of a pretrain.method=simsiam run of the same model.depth,
    # or (its frame encoder) what late_fusion takes
    aux_weight: float = 0.5  # weight of the auxiliary pose-stream loss


@dataclass
class PoseConfig:
    source: Literal["cache", "groundtruth", "none"] = "cache"  # where joints come from
    cache_dir: str = "data/pose_cache"  # folder of cached joints (<cache_dir>/<video>.npz)
    weights: str = "yolo11n-pose.pt"  # Ultralytics pose checkpoint name or path
    imgsz: int = 640  # YOLO inference image size
    conf: float = 0.25  # YOLO detection confidence threshold
    iou: float = 0.7  # YOLO NMS IoU threshold
    persons: int = 2  # persons kept per frame (P)
    stride: int = 1  # cache joints for every stride-th frame
    batch: int = 32  # frames per batch across videos (YOLO runs fixed-size passes of it)
    workers: int = 2  # decoding processes feeding the pose model
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # auto: fp16 CUDA, bf16 AMX CPU


@dataclass
class TextConfig:
    model: str = "ViT-B-16"  # open_clip model name whose text tower embeds class names
    pretrained: str = "openai"  # open_clip pretrained tag or a local weights file ('' = random)
    quick_gelu: Literal["auto", "true", "false"] = "auto"  # QuickGELU for CLIP weights (OpenAI's);
    # auto: from the tag, a -quickgelu model name or the file (ambiguous plain files are refused)
    templates: list[str] = field(default_factory=lambda: ["a video of a person {}."])  # prompts
    cache_dir: str = "~/.cache/hpnet/text"  # where class-name embeddings are cached


@dataclass
class TrainConfig:
    epochs: int = 30  # passes over the training split
    batch_size: int = 8  # clips per step per process
    lr: float = 5e-4  # peak learning rate of newly initialised parts
    backbone_lr: float = 0.0  # peak learning rate of pretrained parts (0 = same as lr)
    layer_decay: float = 1.0  # pretrained block i peaks at backbone_lr * decay**(depth-i) (1 = off)
    # adamw (decoupled weight decay), adam (torch's Adam: weight decay is L2 added to the
    # gradient), sgd (with train.momentum; L2 too). Same parameter groups and peak lrs for all.
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    momentum: float = 0.9  # SGD momentum (train.optimizer=sgd only)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam(W) (VideoMAE: 0.95)
    weight_decay: float = 0.05  # never on norms, biases, embeddings (as L2 for adam/sgd: ~1e-4)
    # After the linear warm-up (each group from ~0 to its peak), per optimizer step: cosine to
    # train.min_lr at the end of the run; exponential: x lr_gamma per epoch, applied smoothly
    # (k epochs after warm-up: peak x gamma^k); step: x lr_gamma every step_epochs epochs. The
    # decay counts from the end of warm-up; no schedule goes below train.min_lr.
    schedule: Literal["cosine", "exponential", "step"] = "cosine"
    lr_gamma: float = 0.0  # decay factor of exponential / step (0 = 0.95 / 0.1 respectively)
    step_epochs: int = 10  # schedule=step: epochs between two multiplications by lr_gamma
    min_lr: float = 1e-6  # learning rate floor: where cosine ends, below which no decay goes
    warmup_epochs: float = 2.0  # linear warm-up length in epochs
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    clip_grad: float = 1.0  # max gradient norm (0 = no clipping)
    accum_steps: int = 1  # gradient accumulation steps per optimizer step
    amp: Literal["bf16", "fp16", "off"] = "bf16"  # autocast dtype on CUDA (CPU runs in fp32)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    resume: str = ""  # '' = fresh run, 'auto' = <out_dir>/last.pt if present, or a path
    out_dir: str = "runs/default"  # run folder: config, metrics, checkpoints, evaluation
    checkpoint_minutes: float = 10.0  # mid-epoch last.pt every N minutes (0 = off)
    checkpoint_steps: int = 0  # mid-epoch last.pt every N optimizer steps (0 = off)
    seed: int = 0  # seed of model init, sampling and augmentation
    eval_every: int = 1  # evaluate on the test split every k epochs (0 = only at the end)
    tensorboard: bool = False  # also write TensorBoard logs to <out_dir>/tb
    compile: bool = False  # torch.compile the model
    # under torchrun on CUDA: BatchNorm statistics over the global batch (SyncBatchNorm); the
    # SimSiam configs turn it on. Ignored in one process and on the CPU (Gloo).
    sync_bn: bool = False
    max_steps: int = 0  # stop each epoch after this many steps (0 = full epoch; for smoke runs)
    threads: int = 0  # CPU threads for torch (0 = torch's default)


@dataclass
class EvalConfig:
    views: int = 2  # temporal clips per test video (averaged softmax)
    crops: int = 3  # spatial crops per clip: 1 = centre, 3 = left/centre/right
    batch_size: int = 8  # clips per evaluation step


@dataclass
class PretrainConfig:
    # Self-supervised method of `python -m hpnet.pretrain` (one Literal entry per method):
    # videomae = tube masking + pixel reconstruction with LS-ViT (model.arch=lsvit);
    # simsiam = two views of a clip, a 2D ResNet of model.depth (model.arch=ssl_transformer)
    method: Literal["videomae", "simsiam"] = "videomae"
    mask_ratio: float = 0.9  # share of patch positions hidden in every frame of a clip (tubes)
    decoder_width: int = 0  # decoder token width (0 = half the encoder's: 384 for base, 64 tiny)
    decoder_depth: int = 4  # decoder blocks (VideoMAE: 4 for ViT-B)
    norm_pix_loss: bool = True  # targets are each patch's pixels normalised by its mean and std
    simsiam_views: Literal["augment", "frames"] = "augment"  # simsiam: 2 augmentations of a frame,
    # or 2 frames of a clip at most pretrain.frame_gap clip frames apart (lightly augmented)
    frame_gap: int = 4  # simsiam_views=frames: largest gap between the two frames
    proj_dim: int = 2048  # simsiam: projector output width (paper: 2048)
    pred_dim: int = 512  # simsiam: predictor bottleneck width (paper: 512)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    text: TextConfig = field(default_factory=TextConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


def _set(cfg: Config, key: str, value: Any, *, from_text: bool) -> None:
    """Set dotted ``key`` on ``cfg`` to ``value`` (parsed from text when ``from_text``)."""
    parts = key.split(".")
    node: Any = cfg
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        if part not in fields_of(node):
            raise unknown_key(here, node)
        tp = resolved_types(node)[part]
        if dataclasses.is_dataclass(tp):
            if i == len(parts) - 1:
                raise UserError(f"config key '{here}' is a section; set one of its keys instead")
            node = getattr(node, part)
            continue
        if here == "data.joint" and i != len(parts) - 1:  # data.joint.<name>.<key>=value
            set_joint_entry(node.joint, parts[i + 1 :], value, from_text=from_text)
            return
        if i != len(parts) - 1:
            raise UserError(f"config key '{here}' is a value, not a section ('{key}')")
        if from_text and tp is not str and typing.get_origin(tp) is not list:
            value = parse_text(key, tp, value)
        setattr(node, part, coerce(key, tp, value))


def _merge(cfg: Config, data: dict[str, Any], prefix: str = "") -> None:
    for name, value in data.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            node: Any = cfg
            for part in key.split("."):
                if not dataclasses.is_dataclass(node) or part not in fields_of(node):
                    raise unknown_key(key, node)
                node = getattr(node, part)
            if dataclasses.is_dataclass(node):
                _merge(cfg, value, key + ".")
                continue
        _set(cfg, key, value, from_text=False)


def validate(cfg: Config) -> Config:
    """Check every value against its limits; raise UserError naming the first bad key."""
    for key, (ok, allowed) in LIMITS.items():
        value = get_value(cfg, key)
        if not ok(value):
            raise UserError(f"config key '{key}' got {value!r}; it must be {allowed}")
    m = cfg.model
    if m.feedback and not m.pose:
        m.feedback = False  # feedback needs pooled joints; model.pose=false switches it off
    if cfg.data.dataset == "list" and not cfg.data.train_list and not cfg.data.test_list:
        raise UserError("data.dataset=list needs data.train_list and/or data.test_list")
    if cfg.data.classes_file and cfg.data.dataset != "list":
        raise UserError(
            f"data.classes_file is read only with data.dataset=list; data.dataset="
            f"{cfg.data.dataset} names its own classes (drop data.classes_file)"
        )
    if cfg.data.joint:
        dataset_configs(cfg)  # every entry, checked like a config of its own
    return cfg


def check_pose_source(cfg: Config) -> None:
    """Refuse joints that the dataset cannot give. Checked where clips are built with joints
    (not by :func:`validate`: ``python -m hpnet.data`` inspects any dataset whatever the pose
    settings of the config file it reuses)."""
    if cfg.pose.source == "groundtruth" and cfg.data.dataset != "synthetic":
        raise UserError(
            "pose.source=groundtruth only exists for data.dataset=synthetic; "
            "use pose.source=cache (run python -m hpnet.pose.cache first) or pose.source=none"
        )


# ---------------------------------------------------------------------------- joint training

JOINT_SHARED = ("joint", "frames", "size")  # data.* keys one model needs the same everywhere
_JOINT_NAME = re.compile(r"[A-Za-z0-9_-]+")


def dataset_configs(cfg: Config) -> list[tuple[str, Config]]:
    """``(name, config)`` per dataset a run trains on: one entry ``("", cfg)`` without
    ``data.joint``; with it, per entry a copy of ``cfg`` whose ``data`` has the entry's keys
    (``pose.cache_dir`` its ``pose_cache_dir``) and no ``joint``, validated.

    Raises UserError naming the entry for fewer than 2 entries, a missing, repeated or unusable
    name, an unknown or shared key (:data:`JOINT_SHARED`), or a bad value.
    """
    entries = cfg.data.joint
    if not entries:
        return [("", cfg)]
    if len(entries) < 2:
        raise UserError(
            "data.joint lists 1 dataset; joint training needs 2 or more "
            "(for one dataset drop data.joint and set data.dataset, data.root, ...)"
        )
    out: list[tuple[str, Config]] = []
    for i, entry in enumerate(entries):
        name = entry.get("name")
        where = f"data.joint entry {i + 1}"
        if not isinstance(name, str) or not _JOINT_NAME.fullmatch(name):
            raise UserError(
                f"{where} has name {name!r}; each entry needs a `name` of letters, digits, "
                "'_' or '-' (it names the dataset in eval.json and file names)"
            )
        if name in (n for n, _ in out):
            raise UserError(f"data.joint names '{name}' twice; give each entry its own name")
        out.append((name, _entry_config(cfg, name, entry)))
    return out


def _entry_config(cfg: Config, name: str, entry: dict[str, Any]) -> Config:
    keys = {k: v for k, v in entry.items() if k not in ("name", "pose_cache_dir")}
    shared = [k for k in keys if k in JOINT_SHARED]
    if shared:
        raise UserError(
            f"data.joint entry '{name}' sets data.{shared[0]}; one model trains on every "
            f"dataset, so set data.{shared[0]} once, outside data.joint"
        )
    one = copy.deepcopy(cfg)
    one.data.joint = []
    try:
        _merge(one, {"data": keys})
        if "pose_cache_dir" in entry:
            _set(one, "pose.cache_dir", entry["pose_cache_dir"], from_text=False)
        return validate(one)
    except UserError as err:
        raise UserError(f"data.joint entry '{name}': {err}") from None


def changed_keys(saved: dict[str, Any], cfg: Config, keys: Sequence[str]) -> list[tuple]:
    """``(key, saved value, cfg's value)`` for each dotted ``key`` whose value in ``saved`` (a
    :func:`config_to_dict` tree, e.g. a checkpoint's) is set and differs from ``cfg``'s."""
    changed = []
    for key in keys:
        section, name = key.split(".")
        then, now = saved.get(section, {}).get(name), get_value(cfg, key)
        if then is not None and then != now:
            changed.append((key, then, now))
    return changed


def get_value(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


# ---------------------------------------------------------------------------------- public API


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file at ``path``, then ``key=value`` overrides; validated."""
    cfg = Config()
    if path:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            msg = str(err).replace("\n", " ")
            raise UserError(f"config file {path} is not valid YAML: {msg}") from None
        if not isinstance(data, dict):
            raise UserError(f"config file {path} must hold a mapping of sections, not {data!r}")
        _merge(cfg, data)
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """Apply ``key.sub=value`` strings to ``cfg`` in place, type-checked; validate and return it."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} must look like key.sub=value (e.g. data.frames=8)")
        key, value = item.split("=", 1)
        _set(cfg, key.strip(), value.strip(), from_text=True)
    return validate(cfg)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain nested dicts (what checkpoints and config.yaml store)."""
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from :func:`config_to_dict` output (e.g. a checkpoint's copy)."""
    cfg = Config()
    _merge(cfg, data)
    return validate(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with ``--config``), atomically."""
    from hpnet.atomic import write_atomic

    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    write_atomic(path, lambda f: f.write(text.encode()), what="config", folder_option=None)


def describe() -> str:
    """Every key with its default, one per line (``--help-config``)."""
    lines: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for name, tp in resolved_types(node).items():
            value = getattr(node, name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{name}.")
            else:
                lines.append(f"{prefix}{name}={value!r}  ({type_name(tp)})")

    walk(Config(), "")
    return "\n".join(lines)


def add_config_arguments(parser: Any) -> None:
    """Add ``--config FILE`` and trailing ``key=value`` overrides to an argparse parser."""
    parser.add_argument("--config", help="YAML config file (defaults: hpnet/config.py)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override a config key, e.g. data.frames=8",
    )
