"""Random erasing of training frames (``data.augment.erase_prob``), as VideoMAE fine-tunes: timm's
``RandomErasing`` (mode ``pixel``) given a clip's frames as a batch, so each frame draws on its
own whether it is erased and where.

An erased frame gets one rectangle of 2 % to 1/3 of its area, of aspect ratio log-uniform in
[0.3, 1/0.3], inside the frame (10 tries, as timm: a frame none fits is left), filled with
N(0, 1) noise per pixel (the normalised scale). Every draw comes from the step's CPU
generator (the noise from a device generator it seeds), so a resumed epoch erases as the
uninterrupted one did; the boxes go to the device in one copy that does not make the host wait.
Joints are left as they are (nothing moves).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hpnet.host_copy import to_device

__all__ = ["erase_frames"]

AREA = (0.02, 1 / 3)  # share of the frame a rectangle covers
LOG_RATIO = (math.log(0.3), math.log(1 / 0.3))  # log of its height / width
TRIES = 10


def erase_frames(video: Tensor, prob: float, generator: torch.Generator | None = None) -> Tensor:
    """``video (B, T, 3, S_h, S_w)`` normalised -> each frame erased with probability ``prob``:
    a new tensor, or ``video`` itself when no frame is (``prob`` 0). Noise is drawn for the
    erased frames only."""
    if prob <= 0:
        return video
    b, t, c, s_h, s_w = video.shape
    box = _boxes(b * t, s_h, s_w, prob, generator)  # (B T, 4): top, bottom, left, right
    noise_seed = int(torch.randint(2**62, (1,), generator=generator))
    hit = (box[:, 1] > box[:, 0]).nonzero()[:, 0]  # the erased frames (on the CPU: no sync)
    if len(hit) == 0:
        return video
    box = to_device(box[hit], video.device).view(-1, 1, 4, 1, 1)
    rows = torch.arange(s_h, device=video.device).view(s_h, 1)
    cols = torch.arange(s_w, device=video.device).view(1, s_w)
    inside = (rows >= box[:, :, 0]) & (rows < box[:, :, 1])
    inside = inside & (cols >= box[:, :, 2]) & (cols < box[:, :, 3])  # (n, 1, S_h, S_w)
    noise_gen = torch.Generator(device=video.device).manual_seed(noise_seed)
    shape = (len(hit), c, s_h, s_w)
    noise = torch.randn(shape, generator=noise_gen, device=video.device, dtype=video.dtype)
    flat, index = video.reshape(b * t, c, s_h, s_w), to_device(hit, video.device)
    patched = torch.where(inside, noise, flat.index_select(0, index))
    return flat.index_copy(0, index, patched).view_as(video)


def _boxes(
    frames: int, s_h: int, s_w: int, prob: float, generator: torch.Generator | None
) -> Tensor:
    """Each frame's rectangle ``(frames, 4)`` int64 (top, bottom, left, right), empty for a
    frame not erased: the first of :data:`TRIES` draws that fits (timm's ``_erase``)."""
    erased = torch.rand(frames, generator=generator) < prob
    area = torch.empty(frames, TRIES).uniform_(*AREA, generator=generator) * (s_h * s_w)
    aspect = torch.empty(frames, TRIES).uniform_(*LOG_RATIO, generator=generator).exp()
    h = (area * aspect).sqrt().round().long()
    w = (area / aspect).sqrt().round().long()
    fits = (h < s_h) & (w < s_w)
    first = fits.long().argmax(1, keepdim=True)  # (the first True; 0 when none fits)
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    top = (torch.rand(frames, generator=generator) * (s_h - h + 1)).floor().long()
    left = (torch.rand(frames, generator=generator) * (s_w - w + 1)).floor().long()
    keep = erased & fits.any(1)
    h, w = torch.where(keep, h, 0), torch.where(keep, w, 0)
    return torch.stack([top, top + h, left, left + w], 1)
