"""Every setting of hpnet: the dataclass sections, their defaults and a comment per key.

Loading, overrides and validation are in :mod:`hpnet.config`, which re-exports these classes
(``from hpnet.config import Config``); the limits on values are in :mod:`hpnet.config_limits`.
``python -m hpnet.train --help-config`` lists every key with its default and its comment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

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
    hue: float = 0.0  # hue shifts in [-hue, hue] turns of the colour wheel per clip (0 = off)
    erase_prob: float = 0.0  # random erasing: chance of a noise box in every frame (VideoMAE: 0.25)
    randaug_n: int = 0  # RandAugment: operations per clip, 0-30 (0 = off; VideoMAE: 4)
    randaug_m: float = 7.0  # RandAugment magnitude in [0, 10] (VideoMAE: 7)
    randaug_mstd: float = 0.5  # RandAugment: std of the magnitude's noise per operation
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
    workers: int = 4  # DataLoader worker processes (at most one per CPU: fewer are used)
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


# model.* keys that only some archs read: key -> those archs (the other archs ignore the key:
# it is warned of when set in training, and no difference when a checkpoint is loaded).
FRAME_RESNETS = ("late_fusion", "lrcn", "ssl_transformer")
ARCH_KEYS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(["size", "patch_size", "smif", "smif_offsets", "lmi", "lmi_every"], ("lsvit",)),
    "feedback_from": ("lsvit",),
    "depth": FRAME_RESNETS,
    **dict.fromkeys(["temporal_depth", "temporal_width"], ("ssl_transformer",)),
}


# Names other training frameworks give these settings: an unknown key ending in one (bare or
# in any section) is told the hpnet key (difflib's nearest name can be far off:
# train.learning_rate is nearest to train.clip_grad).
KEY_ALIASES: dict[str, str] = {
    **dict.fromkeys(["learning_rate", "base_lr"], "train.lr"),
    **dict.fromkeys(["num_frames", "clip_len", "clip_length"], "data.frames"),
    **dict.fromkeys(["image_size", "img_size", "input_size", "crop_size"], "data.size"),
    **dict.fromkeys(["num_workers", "workers_per_gpu"], "data.workers"),
    **dict.fromkeys(["max_epochs", "num_epochs", "total_epochs"], "train.epochs"),
    **dict.fromkeys(["wd", "weight_decay_rate"], "train.weight_decay"),
    **dict.fromkeys(["warmup", "warmup_epoch"], "train.warmup_epochs"),
    **dict.fromkeys(["backbone", "model_name", "network"], "model.arch"),
    **dict.fromkeys(["gpu", "gpus"], "train.device"),
    **dict.fromkeys(["fp16", "mixed_precision"], "train.amp"),
    "model": "pose.weights",  # pose.model=...: Ultralytics' name (alias only in pose.*)
    # VideoMAE's / timm's fine-tuning arguments
    "reprob": "data.augment.erase_prob",
    "aa": "data.augment.randaug_n",  # rand-m7-n4-mstd0.5: randaug_n=4 randaug_m=7 mstd=0.5
    "num_sample": "train.repeat_aug",
    "smoothing": "train.label_smoothing",
    "init_scale": "model.head_init_scale",
    "update_freq": "train.accum_steps",
    "test_num_segment": "eval.views",
    "test_num_crop": "eval.crops",
    "opt": "train.optimizer",
    "opt_betas": "train.betas",
}


def arch_reads(arch: str, key: str) -> bool:
    """Whether ``model.arch=arch`` reads ``model.<key>`` (every arch reads the keys that are
    not in :data:`ARCH_KEYS`)."""
    return key not in ARCH_KEYS or arch in ARCH_KEYS[key]


# The pretrain.* keys one method reads and the other does not (pretrain.method's comment).
VIDEOMAE_KEYS = ("mask_ratio", "decoder_width", "decoder_depth", "norm_pix_loss")
SIMSIAM_KEYS = ("simsiam_views", "frame_gap", "hue", "crop_scale_min", "motion_threshold")
SIMSIAM_KEYS += ("proj_dim", "pred_dim", "fix_pred_lr")
METHOD_KEYS = {**dict.fromkeys(VIDEOMAE_KEYS, "videomae"), **dict.fromkeys(SIMSIAM_KEYS, "simsiam")}


def method_reads(method: str, key: str) -> bool:
    """Whether ``pretrain.method=method`` reads ``pretrain.<key>``."""
    return METHOD_KEYS.get(key, method) == method


@dataclass
class ModelConfig:
    # Backbone family: lsvit = LS-ViT (the keys below up to lmi_every shape it), or one of
    # torchvision's video models, wrapped: r3d_18, mc3_18, r2plus1d_18, s3d, swin3d_t (any clip
    # above a few frames and pixels), mvit_v2_s (exactly 16 frames of 224x224); or the seed
    # study's baselines: late_fusion (a 2D ResNet of model.depth on every frame, features
    # averaged), lrcn (the same + an LSTM over time), c3d (C3D; 8+ frames of 16x16+, seed 16 of
    # 112x112). Pose pooling and the text head work on every arch; model.feedback (token blocks)
    # only on lsvit, set it false for the others. torchvision's Kinetics weights expect their
    # normalisation: r3d_18, mc3_18, r2plus1d_18, s3d data.augment.mean=[0.43216,0.394666,
    # 0.37645] std=[0.22803,0.22145,0.216989]; mvit_v2_s 0.45 / 0.225; swin3d_t ImageNet's;
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
    # ssl_transformer: frame encoder frozen (as freeze_backbone) for the first N epochs, then
    # fine-tuned with the rest (LP-FT: the head learns on the loaded features first); 0 = off
    freeze_backbone_epochs: int = 0
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
    # the linear head's (model.text=false) initial weights: N(0, 0.02) times this, biases 0,
    # small logits at the start (VideoMAE fine-tunes with 0.001); 1 = torch's default init
    head_init_scale: float = 1.0
    # backbone init: open_clip tag of text.model, CLIP/timm ViT file, or ''
    # ('' = random init); a tag that cannot be downloaded is an error, never a random backbone.
    # torchvision archs: a state dict file of that model, or its torchvision weights name
    # (KINETICS400_V1, DEFAULT; downloaded by torchvision, offline an error naming the file);
    # late_fusion, lrcn: a 2D ResNet file (torchvision or timm) or IMAGENET1K_V1/V2; c3d: a file;
    # i3d/nonlocal: a 2D ResNet-50 state dict file (inflated), one of that arch, or its hpnet run
    # ssl_transformer: the last.pt of a pretrain.method=simsiam run of the same model.depth,
    # or (its frame encoder) what late_fusion takes
    pretrained: str = ""
    aux_weight: float = 0.5  # weight of the auxiliary pose-stream loss


@dataclass
class PoseConfig:
    source: Literal["cache", "groundtruth", "none"] = "cache"  # where joints come from
    cache_dir: str = "data/pose_cache"  # folder of cached joints (<cache_dir>/<video>.npz)
    weights: str = "yolo11n-pose.pt"  # Ultralytics pose checkpoint name or path
    imgsz: int = 640  # YOLO inference image size
    conf: float = 0.25  # YOLO detection confidence threshold
    # a joint less sure than this counts as missing (YOLO still guesses
    # where occluded joints are, at confidence ~0.01-0.2; Ultralytics draws joints from 0.25)
    kpt_conf: float = 0.25
    iou: float = 0.7  # YOLO NMS IoU threshold
    persons: int = 2  # persons kept per frame (P)
    stride: int = 1  # cache joints for every stride-th frame
    # predict / API on a video without a cache file: dense = YOLO on every stride-th frame up to
    # the last sampled one, people tracked through them as the cache tracks (its very joints);
    # sampled = YOLO on the sampled frames only (far fewer frames on a CPU, but people ~10 frames
    # apart can take other slots than the cache, and so training, gives them)
    track: Literal["dense", "sampled"] = "dense"
    batch: int = 32  # frames per batch across videos (YOLO runs fixed-size passes of it)
    # decoding processes feeding the pose model (one decodes ~2000 frames/s of HMDB51's 320x240
    # but ~90 of 1080p video, measured on a CPU: raise it for HD videos on a GPU)
    workers: int = 2
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # auto: fp16 CUDA, bf16 AMX CPU


@dataclass
class TextConfig:
    model: str = "ViT-B-16"  # open_clip model name whose text tower embeds class names
    pretrained: str = "openai"  # open_clip pretrained tag or a local weights file ('' = random)
    # QuickGELU for CLIP weights (OpenAI's);
    # auto: from the tag, a -quickgelu model name or the file (ambiguous plain files are refused)
    quick_gelu: Literal["auto", "true", "false"] = "auto"
    templates: list[str] = field(default_factory=lambda: ["a video of a person {}."])  # prompts
    cache_dir: str = "~/.cache/hpnet/text"  # where class-name embeddings are cached


@dataclass
class TrainConfig:
    epochs: int = 30  # passes over the training split
    batch_size: int = 8  # clips per step per process
    lr: float = 5e-4  # peak learning rate of newly initialised parts
    backbone_lr: float = 0.0  # peak learning rate of pretrained parts (0 = same as lr)
    # The global batch train.lr and train.backbone_lr are given for (0 = as given): a run scales
    # both by its batch_size x accum_steps x processes / base_batch (the linear scaling rule of
    # MAE, VideoMAE and SimSiam: lr = base lr x batch / 256); min_lr stays as given.
    base_batch: int = 0
    layer_decay: float = 1.0  # pretrained block i peaks at backbone_lr * decay**(depth-i) (1 = off)
    # adamw (decoupled weight decay), adam (torch's Adam: weight decay is L2 added to the
    # gradient), sgd (with train.momentum; L2 too). Same parameter groups and peak lrs for all.
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    momentum: float = 0.9  # SGD momentum (train.optimizer=sgd only)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam(W) (VideoMAE: 0.95)
    weight_decay: float = 0.05  # not on norms, biases, embeddings (as L2 for adam/sgd: ~1e-4)
    decay_all: bool = False  # weight decay on norms, biases, embeddings too (SimSiam's recipe)
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
    # Mixup / CutMix of each training clip with another of its batch (VideoMAE fine-tunes with
    # mixup 0.8, cutmix 1.0): the Beta(a, a) of the mixing weight, 0 = off; RGB only
    # (model.pose=false: joints cannot be mixed). Training accuracy counts the larger share.
    mixup: float = 0.0
    cutmix: float = 0.0  # the Beta(a, a) of cutmix's box share (0 = off), same box every frame
    mix_prob: float = 1.0  # share of batches mixed
    mix_switch: float = 0.5  # with both on: share of the mixed batches that use cutmix
    # repeated augmentation: each loaded clip's frames augmented this many times in its batch
    # (VideoMAE fine-tunes with 2): batch_size x repeat_aug clips a step, decoded once
    repeat_aug: int = 1
    clip_grad: float = 1.0  # max gradient norm (0 = no clipping)
    accum_steps: int = 1  # gradient accumulation steps per optimizer step
    amp: Literal["bf16", "fp16", "off"] = "bf16"  # autocast dtype on CUDA (CPU runs in fp32)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    resume: str = ""  # '' = fresh run, 'auto' = <out_dir>/last.pt if present, or a path
    out_dir: str = "runs/default"  # run folder: config, metrics, checkpoints, evaluation
    checkpoint_minutes: float = 10.0  # mid-epoch last.pt every N minutes (0 = off)
    checkpoint_steps: int = 0  # mid-epoch last.pt every N optimizer steps (0 = off)
    seed: int = 0  # seed of model init, sampling and augmentation
    eval_every: int = 1  # test (1 view x 1 crop) every k epochs (0 = only the final test)
    tensorboard: bool = False  # also write TensorBoard logs to <out_dir>/tb
    compile: bool = False  # torch.compile the model
    # recompute LS-ViT's blocks in the backward pass instead of keeping their activations:
    # far less memory for long clips and big models, about a third more time per step
    # (model.arch=lsvit, train and VideoMAE pretraining)
    grad_checkpointing: bool = False
    # under torchrun on CUDA: BatchNorm statistics over the global batch (SyncBatchNorm); the
    # SimSiam configs turn it on. Ignored in one process and on the CPU (Gloo).
    sync_bn: bool = False
    # stop each epoch (and the run's tests) after this many batches (0 = all; for smoke runs)
    max_steps: int = 0
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
    # simsiam: augment = 2 augmentations of a frame; foreground = the same, but the second keeps
    # only what moves and takes the rest from another clip (FAME); frames = 2 frames of a clip at
    # most pretrain.frame_gap clip frames apart (lightly augmented)
    simsiam_views: Literal["augment", "frames", "foreground"] = "augment"
    frame_gap: int = 4  # simsiam_views=frames: largest gap between the two frames
    hue: float = 0.1  # simsiam augment/foreground: hue shifts in [-hue, hue] turns (paper: 0.1)
    # simsiam augment/foreground: smallest crop area (paper: 0.2;
    # 1.0 = whole frames: the encoder is not taught to ignore where things are)
    crop_scale_min: float = 0.2
    # foreground: a pixel moves if it is this far (0-1) from the
    # clip's median frame in any channel
    motion_threshold: float = 0.08
    proj_dim: int = 2048  # simsiam: projector output width (paper: 2048)
    pred_dim: int = 512  # simsiam: predictor bottleneck width (paper: 512)
    # simsiam: the predictor's lr stays at its peak after the warm-up
    # (paper's recipe: it keeps adapting to the latest features); false = it decays like the rest
    fix_pred_lr: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    text: TextConfig = field(default_factory=TextConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
