"""Pretrained weights expect the mean/std they were trained with: warn when a run's differ.

``model.pretrained`` loads weights trained on their own input normalisation (torchvision's
Kinetics models, the ImageNet 2D ResNets of the frame CNNs and of the inflated I3D,
c3d-pytorch's 0-255 pixels), not CLIP's (hpnet's default ``data.augment.mean/std``): a run with
other values feeds them inputs they never saw, so :func:`warn_other_normalisation` says so and
names the values to set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hpnet.config import Config
from hpnet.models.cnn2d import IMAGENET_MEAN, IMAGENET_STD
from hpnet.models.tv_video import WEIGHTS_MEAN_STD

logger = logging.getLogger(__name__)

MeanStd = tuple[tuple[float, ...], tuple[float, ...]]

# (mean, std) the weights model.pretrained loads into each arch were trained with: torchvision's
# Kinetics ones, the ImageNet 2D ResNets of the frame CNNs, c3d-pytorch's Sports-1M C3D (0-255
# pixels, mean-free). i3d/nonlocal: ImageNet's when a 2D file is inflated (an hpnet run: its own);
# ssl_transformer: ImageNet's from a torchvision file, a SimSiam run's own.
PRETRAINED_MEAN_STD: dict[str, MeanStd] = {
    **WEIGHTS_MEAN_STD,
    **dict.fromkeys(("late_fusion", "lrcn"), (IMAGENET_MEAN, IMAGENET_STD)),
    "c3d": ((0.0, 0.0, 0.0), (1 / 255,) * 3),
}


def warn_other_normalisation(cfg: Config, expected: MeanStd | None = None) -> None:
    """Warn when ``cfg.data.augment.mean/std`` are not the ones ``model.pretrained``'s weights
    were trained with: ``expected``, else the arch's in :data:`PRETRAINED_MEAN_STD` (an arch
    without an entry is not checked)."""
    if expected is None and cfg.model.arch not in PRETRAINED_MEAN_STD:
        return
    mean, std = expected or PRETRAINED_MEAN_STD[cfg.model.arch]
    a = cfg.data.augment
    if not (_close(a.mean, mean) and _close(a.std, std)):
        logger.warning(
            "model.pretrained: %s's pretrained weights were trained on mean %s, std %s; this "
            "run normalises with data.augment.mean=%s std=%s: set data.augment.mean=[%s] "
            "data.augment.std=[%s]", cfg.model.arch, _rounded(mean), _rounded(std),
            list(a.mean), list(a.std), ",".join(map(str, _rounded(mean))),
            ",".join(map(str, _rounded(std))),
        )  # fmt: skip


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(v, 8) for v in values]


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-4 for x, y in zip(a, b, strict=True))
