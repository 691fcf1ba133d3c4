"""``python -m hpnet.pretrain ... --preview N``: what a VideoMAE run sees and fills in, as a PNG.

For each of N training clips (the first N, centre crop, no augmentation) three rows, one column
per frame: the masked input (hidden patches grey), the reconstruction (hidden patches as
predicted, put back in the clip's colours; visible ones as given) and the original. The masks
are drawn from a fixed seed, so two previews of one checkpoint are the same picture. The
command's settings must be the run's (a forgotten override is named), but for
``pretrain.mask_ratio``: a preview may hide another share of the patches. With
``pretrain.norm_pix_loss`` the predicted patches are put back in each hidden patch's true mean
and spread (as VideoMAE draws them): their colours come from the clip, their content from
the model.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hpnet.atomic import write_atomic
from hpnet.checkpoint import load_checkpoint
from hpnet.cli import UserError, counted
from hpnet.config import Config
from hpnet.models.lsvit_weights import PRETRAIN_ENTRY
from hpnet.pretrain.setup import build_pretrain_model, pretrain_datasets
from hpnet.pretrain.videomae import VideoMAE, unpatchify
from hpnet.resume import refuse_changes, resume_changes
from hpnet.runtime import build_transform

logger = logging.getLogger(__name__)

GAP = 2  # pixels between frames and rows
# A preview must build the run's model and feed it clips as the run did: keys of these sections
# must match the run's (the others leave the model and its inputs as they were: train.lr or
# train.epochs change nothing here, train.seed which frames are drawn).
PREVIEW_SECTIONS = ("data", "model", "pretrain")
OPEN_KEYS = ("pretrain.mask_ratio",)  # a preview may hide another share than the run did
MASK_GREY = 0.5  # colour of hidden patches in the masked row


def write_preview(cfg: Config, device: torch.device, clips: int) -> Path:
    """Write ``<train.out_dir>/preview.png`` for ``clips`` clips from the run's ``last.pt``."""
    out = Path(cfg.train.out_dir)
    path = out / "last.pt"
    if not path.is_file():
        raise UserError(
            f"--preview needs a pretraining checkpoint: {path} does not exist (run "
            "python -m hpnet.pretrain with this config first, or set train.out_dir)"
        )
    ckpt = load_checkpoint(path)
    method = (ckpt.get(PRETRAIN_ENTRY) or {}).get("method")
    if method != "videomae":
        what = f"a {method} pretraining run's" if method else "a training run's, not a pretraining"
        raise UserError(
            f"--preview shows what a VideoMAE pretraining run reconstructs: {path} is {what} "
            "checkpoint; give the config of a python -m hpnet.pretrain pretrain.method=videomae "
            "run (its train.out_dir holds the last.pt to preview)"
        )
    changed = [
        (key, then, now)
        for key, then, now in resume_changes(ckpt.get("config", {}), cfg)
        if key.split(".")[0] in PREVIEW_SECTIONS and key not in OPEN_KEYS
    ]
    advice = f"give the run's settings, e.g. --config {out / 'config.yaml'}"
    refuse_changes(changed, f"cannot preview {path}", advice)
    model = build_pretrain_model(_without_pretrained(cfg))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    train = pretrain_datasets(cfg)[0].train
    samples = [s for s in (train[i] for i in range(min(clips, len(train)))) if s is not None]
    if not samples:
        raise UserError(f"--preview {clips}: no clip of the training videos could be decoded")
    if len(samples) < clips:  # fewer videos, or some failed to decode
        logger.warning(
            "--preview %d: %s of the %s drawn", clips, counted(len(samples), "clip"),
            counted(len(train), "training video"),
        )  # fmt: skip
    video = torch.stack([s["video"] for s in samples]).unsqueeze(1).to(device)  # (B, 1, T, ...)
    transform = build_transform(cfg)
    video = transform.test(video)[0][:, 0]  # (B, T, 3, S, S) normalised, centre crop
    with torch.no_grad():
        result = model(video, generator=torch.Generator().manual_seed(0))
    shown, recon = preview_rows(model, video, result)
    mean = torch.tensor(cfg.data.augment.mean, device=device).view(1, 1, 3, 1, 1)
    std = torch.tensor(cfg.data.augment.std, device=device).view(1, 1, 3, 1, 1)
    original, recon = ((x * std + mean).clamp(0, 1) for x in (video, recon))
    masked = original * shown + MASK_GREY * (1 - shown)
    strip = [(x * 255).round().byte().cpu() for x in (masked, recon, original)]
    image = Image.fromarray(_grid(strip))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    target = out / "preview.png"
    write_atomic(target, lambda f: f.write(buffer.getvalue()), what="preview", folder_option=None)
    return target


def preview_rows(
    model: VideoMAE, video: torch.Tensor, result: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``shown`` (B, T, 1, S, S): 1 on visible patches, 0 on hidden ones; the reconstruction
    (B, T, 3, S, S) in ``video``'s scale."""
    p = model.encoder.patch_size
    b, t, _, s, _ = video.shape
    visible = (~result["mask"]).float()[:, None, :, None]  # (B, 1, N, 1)
    shown = unpatchify(visible.expand(b, t, -1, p * p), p, (s, s))  # (B, T, 1, S, S)
    return shown, model.reconstruct(video, result)


def _grid(rows: list[torch.Tensor]) -> np.ndarray:
    """uint8 clips, 3 rows of (B, T, 3, S, S) -> (H, W, 3): per clip its 3 rows, frames across."""
    b, t, _, s, _ = rows[0].shape
    height = b * len(rows) * (s + GAP) - GAP
    width = t * (s + GAP) - GAP
    canvas = np.full((height, width, 3), 255, np.uint8)
    for i in range(b):
        for j, row in enumerate(rows):
            y = (i * len(rows) + j) * (s + GAP)
            for k in range(t):
                x = k * (s + GAP)
                canvas[y : y + s, x : x + s] = row[i, k].permute(1, 2, 0).numpy()
    return canvas


def _without_pretrained(cfg: Config) -> Config:
    """The config with ``model.pretrained`` cleared: the checkpoint holds every weight."""
    import dataclasses

    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=""))
