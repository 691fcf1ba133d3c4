"""VideoMAE for LS-ViT: tube masking, an encoder on the visible tokens only, a light decoder,
and the loss on the normalised pixels of the masked patches (Tong et al., NeurIPS 2022).

    model = VideoMAE(build_lsvit("tiny", img_size=32, patch_size=8, num_frames=4), mask_ratio=0.9)
    out = model(video)  # video (B, T, 3, S, S) normalised -> {"loss", "pred", "mask", "target"}

How it maps onto LS-ViT, whose tokens are per frame ``(B, T, 1 + N, D)``:

* **Tubes.** A tube is one patch position in every frame: one mask ``(B, N)`` per clip hides the
  same ``round(mask_ratio * N)`` positions in all T frames (VideoMAE's tubelets span 2 frames and
  one token; here each frame keeps its own token, so a tube is T tokens). Hiding the same place
  in every frame is what stops the model copying a hidden patch from a neighbouring frame.
* **Encoder.** Only the CLS token and the visible positions are embedded as LS-ViT embeds
  them (patches + SMIF + positions, :func:`embed_visible`), ``(B, T, 1 + N_v, D)``, and
  LS-ViT's own blocks run on them. SMIF's motion embedding of a patch is a conv over the
  frame differences *inside that patch*, so a visible token sees no hidden pixel. LMI pools
  each frame's tokens into a gate and mixes each token position over time: with tube masking
  every frame keeps the same positions, so the gate is pooled over the same places in every
  frame and the temporal mix still joins a patch with itself in the neighbouring frames.
* **Decoder.** A linear map to ``decoder_width``, a learned mask token at every hidden
  position, learned position embeddings, ``decoder_depth`` LS-ViT blocks attending within each
  frame (like the encoder; no LMI), a norm, and a linear map to the ``p * p * 3`` pixels of
  each patch. The decoder is thrown away for fine-tuning.
* **Loss.** MSE between the prediction and each hidden patch's pixels, normalised per patch and
  channel by its own mean and standard deviation (``norm_pix_loss``; with it the input's
  normalisation does not matter), averaged over the hidden patches of every frame only.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from hpnet.host_copy import to_device
from hpnet.models.lsvit import LSViT
from hpnet.models.motion import frame_differences
from hpnet.models.vit_layers import Block


def tube_mask(
    batch: int, num_patches: int, ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, N) bool, True = hidden: ``round(ratio * N)`` random positions per clip (at least one
    hidden and one visible), drawn on the CPU from ``generator``; one mask for all T frames."""
    hidden = min(max(round(ratio * num_patches), 1), num_patches - 1)
    order = torch.rand(batch, num_patches, generator=generator).argsort(dim=1)
    mask = torch.zeros(batch, num_patches, dtype=torch.bool)
    return mask.scatter_(1, order[:, :hidden], True)


def visible_positions(mask: torch.Tensor) -> torch.Tensor:
    """mask (B, N) with the same count of False per row -> (B, N_v) visible positions, sorted."""
    counts = (~mask).sum(dim=1)
    if bool((counts != counts[0]).any()):
        raise ValueError(f"every clip's mask must hide as many patches; visible: {counts.tolist()}")
    keep = int(counts[0])
    return mask.int().argsort(dim=1, stable=True)[:, :keep]


def patchify(video: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T, N, p*p*C), patches in the patch embedding's row-major order."""
    b, t, c, h, w = video.shape
    x = video.reshape(b, t, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 1, 3, 5, 4, 6, 2).reshape(b, t, -1, patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, hw: tuple[int, int]) -> torch.Tensor:
    """(B, T, N, p*p*C) -> (B, T, C, H, W): the inverse of :func:`patchify`."""
    b, t = patches.shape[:2]
    gh, gw = hw[0] // patch, hw[1] // patch
    x = patches.reshape(b, t, gh, gw, patch, patch, -1)
    return x.permute(0, 1, 6, 2, 4, 3, 5).reshape(b, t, -1, *hw)


def patch_stats(patches: torch.Tensor, chans: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per patch and channel mean and std (+1e-6) of (..., p*p*C): each (..., 1, C)."""
    x = patches.unflatten(-1, (-1, chans))
    return x.mean(-2, keepdim=True), x.var(-2, unbiased=True, keepdim=True).sqrt() + 1e-6


def pixel_targets(video: torch.Tensor, patch: int, norm: bool) -> torch.Tensor:
    """Reconstruction targets (B, T, N, p*p*C) of video (B, T, C, H, W): the patches' pixels,
    with ``norm`` normalised per patch and channel (VideoMAE's ``normlize_target``)."""
    patches = patchify(video.float(), patch)
    if not norm:
        return patches
    mean, std = patch_stats(patches, video.shape[2])
    return ((patches.unflatten(-1, (-1, video.shape[2])) - mean) / std).flatten(-2)


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over the hidden patches only: pred, target (B, T, N, P); mask (B, N) True = hidden.

    Visible patches are selected away, not weighted by zero, so nothing they hold (not even a
    non-finite prediction) reaches the loss or its gradient; nothing waits on the device (no
    data-dependent shape, so the host keeps queueing kernels)."""
    hidden = mask[:, None, :, None].to(pred.device)  # (B, 1, N, 1)
    squared = torch.where(hidden, pred.float() - target, 0.0).pow(2)  # (B, T, N, P)
    return squared.sum() / (hidden.sum() * pred.shape[1] * pred.shape[-1])


def embed_visible(encoder: LSViT, video: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``encoder.embed(video)`` at the CLS token and the visible ``positions`` (B, N_v) only:
    (B, T, 1 + N_v, D), the same numbers without embedding the hidden patches (the patch and
    SMIF convolutions, kernel = stride = patch, become matrix products on the kept patches)."""
    b, t, _, h, w = video.shape
    if (h, w) != encoder.img_size:
        raise ValueError(f"input frames are {h}x{w}, the model was built for {encoder.img_size}")
    p = encoder.patch_size

    def project(conv: nn.Conv2d, frames: torch.Tensor) -> torch.Tensor:
        c = frames.shape[2]
        cols = frames.reshape(b, t, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        cols = cols.reshape(b, t, -1, c * p * p)  # (B, T, N, C*p*p) in the kernel's order
        cols = cols.gather(2, positions[:, None, :, None].expand(b, t, -1, cols.shape[-1]))
        return F.linear(cols, conv.weight.flatten(1), conv.bias)  # (B, T, N_v, D)

    patches = project(encoder.patch_embed.proj, video)
    if encoder.smif is not None:
        motion = frame_differences(video, encoder.smif.offsets)  # (B, T, 2KC, H, W)
        patches = patches + project(encoder.smif.proj, motion)
    pos = encoder.pos_embed[0]  # (1 + N, D)
    cls = (encoder.cls_token[0] + pos[:1]).expand(b, t, 1, -1)  # (B, T, 1, D)
    tokens = torch.cat([cls, patches + pos[1:][positions].unsqueeze(1)], dim=2)
    if encoder.temporal_pos_embed is not None:
        tokens = tokens + encoder.temporal_embedding(t)
    return encoder.norm_pre(tokens)


class VideoMAE(nn.Module):
    """An LS-ViT ``encoder`` (kept whole: its state dict is what fine-tuning loads) + decoder.

    ``class_names`` is empty: a pretraining run has no labels (its checkpoint says so).
    """

    class_names: list[str] = []  # noqa: RUF012 (read-only; what resume checks labels against)

    def __init__(
        self,
        encoder: LSViT,
        *,
        mask_ratio: float = 0.9,
        decoder_width: int = 0,
        decoder_depth: int = 4,
        norm_pix_loss: bool = True,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.in_chans = in_chans
        width = decoder_width or encoder.embed_dim // 2
        # 64 channels a head (VideoMAE: 384 wide, 6 heads), fewer heads where they do not divide
        heads = max(h for h in range(1, max(1, width // 64) + 1) if width % h == 0)
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_embed = nn.Linear(encoder.embed_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, width))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 1, 1 + encoder.num_patches, width))
        self.decoder_blocks = nn.ModuleList(
            Block(width, heads, norm_layer=norm_layer) for _ in range(decoder_depth)
        )
        self.decoder_norm = norm_layer(width)
        self.decoder_pred = nn.Linear(width, encoder.patch_size**2 * in_chans)
        self._init_decoder()

    @torch.no_grad()
    def _init_decoder(self) -> None:
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos_embed, std=0.02)
        for name, module in self.named_modules():
            if name.startswith("decoder") and isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def pretrained_names(self) -> set[str]:
        """Parameters a weight file filled (``model.pretrained`` as the encoder's start)."""
        return {f"encoder.{n}" for n in getattr(self.encoder, "pretrained_names", ())}

    def no_weight_decay(self) -> set[str]:
        own = {"mask_token", "decoder_pos_embed"}
        return own | {f"encoder.{n}" for n in self.encoder.no_weight_decay()}

    def encode(
        self, video: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """video (B, T, C, H, W), mask (B, N) -> encoded CLS + visible tokens (B, T, 1 + N_v, D).
        ``positions``: ``visible_positions(mask)`` when already known (saves a device sync)."""
        enc = self.encoder
        positions = visible_positions(mask) if positions is None else positions
        x = embed_visible(enc, video, positions)  # (B, T, 1 + N_v, D)
        for block in enc.blocks:
            x = enc.run_block(block, x)
        return enc.norm(x)

    def decode(
        self, latent: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """latent (B, T, 1 + N_v, D) -> predicted pixels (B, T, N, p*p*C) at every position."""
        x = self.decoder_embed(latent)  # (B, T, 1 + N_v, W)
        b, t, _, w = x.shape
        positions = visible_positions(mask) if positions is None else positions
        keep = torch.cat([positions.new_zeros(b, 1), positions + 1], 1)  # CLS first
        full = self.mask_token.to(x.dtype).expand(b, t, 1 + mask.shape[1], w)  # x is bf16 under AMP
        full = full.scatter(2, keep[:, None, :, None].expand(b, t, -1, w), x)  # (B,T,1+N,W)
        full = full + self.decoder_pos_embed
        for block in self.decoder_blocks:
            full = block(full)
        return self.decoder_pred(self.decoder_norm(full[:, :, 1:]))

    @torch.compiler.disable  # data-dependent sizes and a CPU generator: one clean graph break
    def _mask_and_positions(
        self, video: torch.Tensor, mask: torch.Tensor | None, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask (B, N) (drawn from ``generator`` when None) and its visible positions
        (B, N_v), both on ``video``'s device; taken on the CPU when drawn here and copied
        without a host wait (:func:`~hpnet.host_copy.to_device`)."""
        if mask is None:
            mask = tube_mask(video.shape[0], self.encoder.num_patches, self.mask_ratio, generator)
        positions = visible_positions(mask)
        return to_device(mask, video.device), to_device(positions, video.device)

    def forward(
        self,
        video: torch.Tensor,
        joints: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """video (B, T, C, H, W) normalised (``joints`` unused) -> ``loss`` (), ``pred`` and
        ``target`` (B, T, N, p*p*C), ``mask`` (B, N) (drawn from ``generator`` when None)."""
        mask, positions = self._mask_and_positions(video, mask, generator)
        pred = self.decode(self.encode(video, mask, positions), mask, positions)
        target = pixel_targets(video, self.encoder.patch_size, self.norm_pix_loss)
        loss = masked_patch_loss(pred, target, mask)
        return {"loss": loss, "pred": pred, "mask": mask, "target": target}

    @torch.no_grad()
    def reconstruct(self, video: torch.Tensor, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The clip (B, T, C, H, W) as the model fills it in: hidden patches from ``out["pred"]``
        (back in ``video``'s scale), visible ones from ``video``."""
        p, c = self.encoder.patch_size, self.in_chans
        patches = patchify(video.float(), p)  # (B, T, N, p*p*C)
        pred = out["pred"].float()
        if self.norm_pix_loss:
            mean, std = patch_stats(patches, c)
            pred = (pred.unflatten(-1, (-1, c)) * std + mean).flatten(-2)
        hidden = out["mask"][:, None, :, None]  # (B, 1, N, 1)
        return unpatchify(torch.where(hidden, pred, patches), p, video.shape[-2:])
