"""How a video's frames are put on the loader's fixed canvas: crop, pad or stretch, joints too.

Every clip of a batch must have one size, the canvas ``(H, W)`` (``data.load_size`` x
``load_size * data.aspect``). A frame of another shape gets there in one of three ways
(``data.resize``):

- ``pad`` (default, ``data.resize``): scaled, aspect kept, until it fits inside the canvas,
  then centred on black (letterbox / pillarbox): nothing of the picture is lost;
- ``crop``: scaled, aspect kept, until it covers the canvas, then the canvas-shaped
  centre is kept (torchvision's ``Resize(short side)`` + ``CenterCrop``: with a square canvas
  this is exactly CLIP's preprocessing);
- ``stretch``: scaled to the canvas, aspect not kept (hpnet before 0.2: a 16:9 clip is squeezed
  to 4:3).

Sizes and offsets follow torchvision (``int`` of the scaled long side, ``round`` of half the
spare room), so ``crop`` onto an S x S canvas gives the same pixels, at the same place, as
``Resize(S)`` + ``CenterCrop(S)``. The frames are resized once, from the decoded size straight
to the scaled size, with antialiasing (``data.interpolation``: bilinear, or bicubic as CLIP).

Joints are ``(..., K, 3)`` = x, y in [0, 1] of the frame, confidence. :meth:`Placement.box` is
the canvas in frame coordinates (outside [0, 1] where it pads), so
``crop_joints(joints, box)`` maps them onto the canvas; a joint cropped away becomes missing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from hpnet.config import Config, DataConfig
from hpnet.data.decode_reader import resize_frames
from hpnet.pose.skeleton import crop_joints, mask_invalid_joints

logger = logging.getLogger(__name__)

RESIZE_MODES: tuple[str, ...] = ("crop", "pad", "stretch")
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic")


@dataclass(frozen=True)
class Placement:
    """Where a ``frame_hw`` frame lands on a ``canvas_hw`` canvas.

    The frame is resized to ``scaled_hw`` and its top-left corner put at ``(top, left)`` of the
    canvas: negative offsets crop (the scaled frame is larger), positive ones pad.
    """

    frame_hw: tuple[int, int]
    canvas_hw: tuple[int, int]
    scaled_hw: tuple[int, int]
    top: int
    left: int

    def box(self) -> torch.Tensor:
        """The canvas as ``(x0, y0, x1, y1)`` in [0, 1] units of the frame, float64 ``(4,)``
        (below 0 / above 1 where the canvas is padded)."""
        (ch, cw), (sh, sw) = self.canvas_hw, self.scaled_hw
        x0, y0 = -self.left / sw, -self.top / sh
        return torch.tensor([x0, y0, x0 + cw / sw, y0 + ch / sh], dtype=torch.float64)


def _scaled_long(target_short: int, long: int, short: int) -> int:
    """torchvision's long side when the short side becomes ``target_short``: ``int``, not
    ``round`` (``Resize(224)`` of 426x240 is 397x224)."""
    return int(target_short * long / short)


def place(frame_hw: tuple[int, int], canvas_hw: tuple[int, int], mode: str) -> Placement:
    """The :class:`Placement` of a ``frame_hw`` = (h, w) frame on ``canvas_hw`` = (H, W)."""
    (h, w), (ch, cw) = (int(v) for v in frame_hw), (int(v) for v in canvas_hw)
    if min(h, w, ch, cw) < 1:
        raise ValueError(f"frame {frame_hw} and canvas {canvas_hw} must be at least 1x1")
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if mode == "stretch":
        return Placement((h, w), (ch, cw), (ch, cw), 0, 0)
    width_binds = (cw * h >= ch * w) == (mode == "crop")  # compare W / w with H / h exactly
    if width_binds:
        sh, sw = _scaled_long(cw, h, w), cw
        sh = max(sh, ch) if mode == "crop" else max(1, min(sh, ch))
    else:
        sh, sw = ch, _scaled_long(ch, w, h)
        sw = max(sw, cw) if mode == "crop" else max(1, min(sw, cw))
    top = round((ch - sh) / 2.0)  # torchvision's center_crop; negative: cropped
    left = round((cw - sw) / 2.0)
    return Placement((h, w), (ch, cw), (sh, sw), top, left)


def fit_scaled(frames: torch.Tensor, placement: Placement) -> torch.Tensor:
    """Frames already at ``placement.scaled_hw`` ``(N, C, sh, sw)`` -> the canvas
    ``(N, C, H, W)``: the centre cut out (crop) or the frame centred on zeros (pad)."""
    if tuple(frames.shape[-2:]) != placement.scaled_hw:
        raise ValueError(
            f"frames are {tuple(frames.shape[-2:])}, the placement expects {placement.scaled_hw}"
        )
    (ch, cw), (sh, sw) = placement.canvas_hw, placement.scaled_hw
    top, left = placement.top, placement.left
    if (sh, sw) == (ch, cw):
        return frames
    # Source window (what of the scaled frame is on the canvas) and where it goes.
    y0, x0 = max(0, -top), max(0, -left)
    y1, x1 = min(sh, ch - top), min(sw, cw - left)
    window = frames[..., y0:y1, x0:x1]
    if top <= 0 and left <= 0 and (y1 - y0, x1 - x0) == (ch, cw):
        return window.contiguous()
    out = frames.new_zeros(*frames.shape[:-2], ch, cw)
    out[..., y0 + top : y1 + top, x0 + left : x1 + left] = window
    return out


def fit_frames(
    frames: torch.Tensor,
    canvas_hw: tuple[int, int],
    mode: str = "crop",
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """uint8 ``(N, 3, h, w)`` -> uint8 ``(N, 3, H, W)`` on the canvas (one resize, then the
    crop or pad of :func:`place`)."""
    placement = place(tuple(frames.shape[-2:]), canvas_hw, mode)
    return fit_scaled(resize_frames(frames, placement.scaled_hw, interpolation), placement)


def fit_joints(joints: torch.Tensor, placement: Placement) -> torch.Tensor:
    """``(..., K, 3)`` joints in [0, 1] of the frame -> the same in [0, 1] of the canvas (cut off
    or missing: ``(0, 0, 0)``)."""
    if joints.numel() == 0:
        return joints
    if placement.scaled_hw == placement.canvas_hw:  # stretch, or the canvas's own shape
        return mask_invalid_joints(joints)  # the frame is the canvas: only the cleaning
    flat = joints.reshape(1, -1, *joints.shape[-2:])
    return crop_joints(flat, placement.box()[None]).view(joints.shape)


def loader_canvas(size: int, load_size: int = 0, aspect: float = 4 / 3) -> tuple[int, int]:
    """``(H, W)`` of the loader canvas: H = ``load_size`` or ``size * 8 / 7``, W = H x aspect."""
    height = load_size or round(size * 8 / 7)
    return height, round(height * aspect)


@dataclass(frozen=True)
class Canvas:
    """The loader canvas ``hw`` = (H, W) and how frames get onto it (``data.resize``,
    ``data.interpolation``)."""

    hw: tuple[int, int]
    resize: str = "pad"
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hw", (int(self.hw[0]), int(self.hw[1])))
        if self.resize not in RESIZE_MODES or self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"resize must be one of {RESIZE_MODES} and interpolation one of "
                f"{INTERPOLATIONS}, got {self.resize!r} and {self.interpolation!r}"
            )

    @classmethod
    def of(cls, data: DataConfig) -> Canvas:
        """The canvas a ``data`` config section describes."""
        hw = loader_canvas(data.size, data.load_size, data.aspect)
        return cls(hw, data.resize, data.interpolation)

    def place(self, frame_hw: tuple[int, int]) -> Placement:
        """Where a ``frame_hw`` frame lands (see :func:`place`)."""
        return place(frame_hw, self.hw, self.resize)

    def fit(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, 3, h, w)`` -> uint8 ``(N, 3, H, W)`` (:func:`fit_frames`)."""
        return fit_frames(frames, self.hw, self.resize, self.interpolation)

    def apply(
        self, frames: torch.Tensor, joints: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 frames ``(N, 3, h, w)`` and their joints ``(..., K, 3)`` in [0, 1] of the frame
        (or None) -> the frames on the canvas ``(N, 3, H, W)`` and the joints moved there."""
        if joints is not None:
            joints = fit_joints(joints, self.place(tuple(frames.shape[-2:])))
        return self.fit(frames), joints


def warn_small_canvas(cfg: Config) -> None:
    """Warn when the loader canvas is smaller than the crops the model sees (``data.size`` above
    ``data.load_size``): every crop is then upsampled, blurring what the model gets."""
    d = cfg.data
    canvas = loader_canvas(d.size, d.load_size, d.aspect)
    if min(canvas) < d.size:
        needed = math.ceil(d.size / min(1.0, d.aspect))  # the canvas height that fits the crop
        logger.warning(
            "data.size=%d is larger than the loader canvas %dx%d (data.load_size=%d, "
            "data.aspect=%g): every crop is upsampled; set data.load_size >= %d (0 = size * 8/7)",
            d.size, *canvas, d.load_size, d.aspect, needed,
        )  # fmt: skip
