"""Random erasing of training clips (``data.augment.erase_prob``), as VideoMAE fine-tunes: the
``RandomErasing`` of SlowFast (timm's, with ``cube=True``) in ``pixel`` mode, which VideoMAE
gives a clip's frames: a clip is erased with probability ``erase_prob``, in one rectangle at
the same place in every frame (a tube), filled with fresh N(0, 1) noise per pixel and frame
(the normalised scale).

The rectangle covers 2 % to 1/3 of the frame, of aspect ratio log-uniform in [0.3, 1/0.3], and
lies inside it (100 tries, as ``_erase_cube``: a clip none fits is left). Every draw comes from
the step's CPU generator (the noise from a device generator it seeds), so a resumed epoch
erases as the uninterrupted one did; the boxes stay on the CPU (no copy, no wait). Joints are
left as they are (nothing moves).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["erase_clips"]

AREA = (0.02, 1 / 3)  # share of the frame a rectangle covers
LOG_RATIO = (math.log(0.3), math.log(1 / 0.3))  # log of its height / width
TRIES = 100


def erase_clips(video: Tensor, prob: float, generator: torch.Generator | None = None) -> Tensor:
    """``video (B, T, 3, S_h, S_w)`` normalised -> each clip erased with probability ``prob``:
    a new tensor, or ``video`` itself when no clip is (``prob`` 0). Noise is drawn for the
    rectangles only."""
    if prob <= 0:
        return video
    b, t, c, s_h, s_w = video.shape
    box = _boxes(b, s_h, s_w, prob, generator)  # (B, 4): top, bottom, left, right; on the CPU
    noise_seed = int(torch.randint(2**62, (1,), generator=generator))
    hit = (box[:, 1] > box[:, 0]).nonzero()[:, 0].tolist()  # the erased clips (no sync)
    if not hit:
        return video
    noise_gen = torch.Generator(device=video.device).manual_seed(noise_seed)
    out = video.clone()
    for i in hit:
        top, bottom, left, right = box[i].tolist()
        shape = (t, c, bottom - top, right - left)
        noise = torch.randn(shape, generator=noise_gen, device=video.device, dtype=video.dtype)
        out[i, :, :, top:bottom, left:right] = noise
    return out


def _boxes(
    clips: int, s_h: int, s_w: int, prob: float, generator: torch.Generator | None
) -> Tensor:
    """Each clip's rectangle ``(clips, 4)`` int64 (top, bottom, left, right), empty for a clip
    not erased: the first of :data:`TRIES` draws that fits (``_erase_cube``)."""
    erased = torch.rand(clips, generator=generator) < prob
    area = torch.empty(clips, TRIES).uniform_(*AREA, generator=generator) * (s_h * s_w)
    aspect = torch.empty(clips, TRIES).uniform_(*LOG_RATIO, generator=generator).exp()
    h = (area * aspect).sqrt().round().long()
    w = (area / aspect).sqrt().round().long()
    fits = (h < s_h) & (w < s_w)
    first = fits.long().argmax(1, keepdim=True)  # (the first True; 0 when none fits)
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    top = (torch.rand(clips, generator=generator) * (s_h - h + 1)).floor().long()
    left = (torch.rand(clips, generator=generator) * (s_w - w + 1)).floor().long()
    keep = erased & fits.any(1)
    h, w = torch.where(keep, h, 0), torch.where(keep, w, 0)
    return torch.stack([top, top + h, left, left + w], 1)
