"""FAME-style foreground views: the moving part of a frame pasted on another clip's scene."""

from __future__ import annotations

import pytest
import torch

from hpnet.data.foreground import moving_mask, paste_foreground


def _clips(b: int = 3, t: int = 5, size: int = 32) -> torch.Tensor:
    """float (B, T, 3, S, S): clip b a flat scene of grey level 0.2 + 0.3 b, with a white 6 x 6
    square moving 4 pixels right per frame along row 10."""
    video = torch.zeros(b, t, 3, size, size)
    for i in range(b):
        video[i] = 0.2 + 0.3 * i
        for f in range(t):
            video[i, f, :, 10:16, 4 * f : 4 * f + 6] = 1.0
    return video


def test_composite_keeps_what_moves_and_takes_the_rest_from_the_previous_clip() -> None:
    video = _clips()
    index = torch.tensor([2, 0, 4])
    composite, mask = paste_foreground(video, index, threshold=0.1, dilate=1)
    assert composite.shape == (3, 3, 32, 32) and mask.shape == (3, 1, 32, 32)
    for i, f in enumerate(index.tolist()):
        square = (slice(None), slice(10, 16), slice(4 * f, 4 * f + 6))
        assert (composite[i][square] == 1.0).all()  # the moving square, kept
        assert (mask[i, 0, 10:16, 4 * f : 4 * f + 6] == 1).all()
        other = 0.2 + 0.3 * ((i - 1) % 3)  # the previous clip's scene everywhere else
        assert torch.allclose(composite[i, :, 20:, :], torch.tensor(other))
        assert mask[i].sum() == 36  # nothing static counted as moving


def test_dilation_grows_the_mask_and_a_threshold_above_the_change_finds_nothing() -> None:
    video = _clips()
    frame, background = video[:, 2], video.median(dim=1).values
    thin = moving_mask(frame, background, 0.1, 1)
    grown = moving_mask(frame, background, 0.1, 5)
    assert (grown >= thin).all() and grown.sum() > thin.sum()
    assert moving_mask(frame, background, 0.99, 1).sum() == 0
    _, default = paste_foreground(video, torch.full((3,), 2), threshold=0.1)  # dilate 3 at 32 px
    assert torch.equal(default, moving_mask(frame, background, 0.1, 3))


def test_too_few_frames_or_clips_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"data\.frames or train\.batch_size"):
        paste_foreground(_clips(t=2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=">= 2 clips"):
        paste_foreground(_clips(b=1), torch.zeros(1, dtype=torch.long))
