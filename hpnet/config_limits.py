"""The allowed range of every bounded setting: ``LIMITS[dotted key] = (check, what is allowed)``.

:func:`hpnet.config.validate` runs each check on the loaded value and raises a
:class:`~hpnet.cli.UserError` quoting the key, the value and the allowed text. Types are
checked apart, when a value is set (:mod:`hpnet.config_types`); here only ranges and choices
that a type cannot say.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["LIMITS"]

_Check = tuple[Callable[[Any], bool], str]
_POSITIVE: _Check = (lambda v: v > 0, "a number > 0")
_NON_NEG: _Check = (lambda v: v >= 0, "a number >= 0")
_FRACTION: _Check = (lambda v: 0 <= v <= 1, "a number in [0, 1]")
_HUE: _Check = (lambda v: 0 <= v <= 0.5, "a number in [0, 0.5] (turns of the colour wheel)")
_SEED: _Check = (lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)")  # (NumPy's seed range)
_DEVICE: _Check = (
    lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None,
    "auto, cpu, cuda or cuda:N",
)
LIMITS: dict[str, _Check] = {
    "data.split": (lambda v: v in (1, 2, 3), "1, 2 or 3"),
    "data.frames": _POSITIVE,
    "data.size": (lambda v: v >= 8, "an integer >= 8"),
    "data.load_size": _NON_NEG,
    "data.aspect": (lambda v: 0.25 <= v <= 4, "a number in [0.25, 4]"),
    "data.workers": _NON_NEG,
    "data.seed": _SEED,
    "data.test_fraction": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "data.val_fraction": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "data.max_pixels": _NON_NEG,
    "data.synthetic.train_videos": _POSITIVE,
    "data.synthetic.test_videos": _POSITIVE,
    "data.synthetic.resolution": (lambda v: v >= 16, "an integer >= 16"),
    "data.synthetic.length": _POSITIVE,
    "data.synthetic.fps": (lambda v: v >= 0.1, "a number >= 0.1 (frames per second)"),
    "data.augment.scale_min": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "data.augment.ratio_max": (lambda v: v >= 1, "a number >= 1"),
    "data.augment.jitter": _FRACTION,
    "data.augment.blur_prob": _FRACTION,
    "data.augment.erase_prob": _FRACTION,
    "data.augment.randaug_n": (lambda v: 0 <= v <= 30, "an integer in [0, 30]"),
    "data.augment.randaug_m": (lambda v: 0 <= v <= 10, "a number in [0, 10]"),
    "data.augment.randaug_mstd": _NON_NEG,
    "data.augment.hue": _HUE,
    "data.augment.mean": (lambda v: len(v) == 3, "a list of 3 numbers"),
    "data.augment.std": (lambda v: len(v) == 3 and min(v) > 0, "a list of 3 numbers > 0"),
    "model.patch_size": _POSITIVE,
    "model.depth": (lambda v: v in (18, 34, 50, 101, 152), "18, 34, 50, 101 or 152"),
    "model.smif_offsets": (lambda v: len(v) > 0 and min(v) >= 1, "a non-empty list of ints >= 1"),
    "model.lmi_every": _POSITIVE,
    "model.drop_path": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "model.dropout": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "model.aux_weight": _NON_NEG,
    "model.temporal_depth": _POSITIVE,
    "model.freeze_backbone_epochs": _NON_NEG,
    "model.temporal_width": (lambda v: v >= 64 and v % 64 == 0, "a multiple of 64, at least 64"),
    "pose.imgsz": (lambda v: v >= 32 and v % 32 == 0, "a multiple of 32, at least 32"),
    "pose.conf": _FRACTION,
    "pose.kpt_conf": _FRACTION,
    "pose.iou": _FRACTION,
    "pose.persons": _POSITIVE,
    "pose.stride": _POSITIVE,
    "pose.batch": _POSITIVE,
    "pose.workers": _NON_NEG,
    "pose.device": _DEVICE,
    "text.templates": (
        lambda v: len(v) > 0 and all("{}" in t for t in v),
        "a non-empty list of strings, each with a '{}' for the class name",
    ),
    "train.epochs": _POSITIVE,
    "train.batch_size": _POSITIVE,
    "train.lr": _POSITIVE,
    "train.seed": _SEED,
    "train.backbone_lr": _NON_NEG,
    "train.layer_decay": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "train.min_lr": _NON_NEG,
    "train.momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "train.betas": (lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "2 numbers in [0, 1)"),
    "train.lr_gamma": (lambda v: 0 <= v <= 1, "a number in [0, 1] (0 = the schedule's default)"),
    "train.step_epochs": _POSITIVE,
    "train.weight_decay": _NON_NEG,
    "train.warmup_epochs": _NON_NEG,
    "train.label_smoothing": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "model.head_init_scale": _POSITIVE,
    "train.repeat_aug": (lambda v: 1 <= v <= 16, "an integer in [1, 16]"),
    "train.mixup": _NON_NEG,
    "train.cutmix": _NON_NEG,
    "train.mix_prob": _FRACTION,
    "train.mix_switch": _FRACTION,
    "train.clip_grad": _NON_NEG,
    "train.accum_steps": _POSITIVE,
    "train.base_batch": _NON_NEG,
    "train.eval_every": _NON_NEG,
    "train.max_steps": _NON_NEG,
    "train.checkpoint_minutes": _NON_NEG,
    "train.checkpoint_steps": _NON_NEG,
    "train.out_dir": (lambda v: bool(v.strip()), "a folder (an empty name would write here)"),
    "train.threads": (lambda v: 0 <= v <= 4096, "an integer in [0, 4096] (0 = torch's default)"),
    "eval.views": _POSITIVE,
    "eval.crops": (lambda v: v in (1, 3), "1 or 3"),
    "eval.batch_size": _POSITIVE,
    "pretrain.mask_ratio": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "pretrain.decoder_width": _NON_NEG,
    "pretrain.decoder_depth": _POSITIVE,
    "pretrain.frame_gap": _POSITIVE,
    "pretrain.motion_threshold": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "pretrain.crop_scale_min": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "pretrain.hue": _HUE,
    "pretrain.proj_dim": _POSITIVE,
    "pretrain.pred_dim": _POSITIVE,
}
