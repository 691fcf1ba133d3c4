"""LS-ViT: a Vision Transformer for clips with short- and long-term motion modules.

Frames (B, T, 3, H, W) are embedded per frame (patches + a per-frame CLS token + spatial and
temporal position embeddings), with SMIF adding a motion patch embedding of frame differences
(:mod:`hpnet.models.motion`). Blocks attend within each frame over its L tokens and, with LMI,
gate and mix the tokens across frames. The head averages the CLS token over time (``pool="cls"``)
or every patch token of the clip (``pool="mean"``, VideoMAE's fine-tuning head).

    model = build_lsvit("tiny", img_size=64, patch_size=8, num_frames=8, num_classes=10)
    tokens = model.forward_features(clip)  # (B, T, 1 + N, D)
    logits = model.forward_head(tokens)  # (B, num_classes)

With smif=False and lmi=False it is a plain per-frame ViT with temporal averaging (the baseline).
Every motion part starts as the identity, so a model loaded with
:func:`hpnet.models.lsvit_weights.load_pretrained` from a CLIP or timm image ViT computes exactly
the image model's features on each frame at first.

Layout as in timm's vision_transformer.py: the model, named sizes; its layers (block, attention,
patch embedding) are in :mod:`hpnet.models.vit_layers`. The weight filters
(``load_pretrained`` and the checkpoint reading behind it) are in
:mod:`hpnet.models.lsvit_weights`, which depends on this module (never the other way round).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from hpnet.models.motion import LongTermMotion, ShortTermMotion
from hpnet.models.vit_layers import ACTIVATIONS, Block, PatchEmbed

Activation = Literal["gelu", "quick_gelu"]
Pool = Literal["cls", "mean"]

# ------------------------------------------------------------------------------------------- model


def resize_temporal_embed(pe: torch.Tensor, num_frames: int) -> torch.Tensor:
    """A temporal position embedding ``(1, T', 1, D)`` linearly interpolated to
    ``(1, num_frames, 1, D)`` (unchanged when T' = num_frames)."""
    if pe.shape[1] == num_frames:
        return pe
    pe = pe[:, :, 0].transpose(1, 2)  # (1, D, T')
    pe = F.interpolate(pe, size=num_frames, mode="linear", align_corners=False)
    return pe.transpose(1, 2).unsqueeze(2)


def _check_options(
    img_hw: tuple[int, int], patch_size: int, act: str, lmi_every: int, pool: str
) -> None:
    """ValueError for an LSViT option outside its range."""
    if img_hw[0] % patch_size or img_hw[1] % patch_size:
        raise ValueError(f"image size {img_hw} is not a multiple of patch size {patch_size}")
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; choose one of {sorted(ACTIVATIONS)}")
    if lmi_every < 1:
        raise ValueError(f"lmi_every must be >= 1, got {lmi_every}")
    if pool not in ("cls", "mean"):
        raise ValueError(f"unknown pool {pool!r}; choose 'cls' or 'mean'")


class LSViT(nn.Module):
    """Clip ViT with SMIF before the patch embedding and LMI after blocks.

    Input: normalised frames (B, T, in_chans, H, W) with (H, W) = img_size; T may differ from
    num_frames (the temporal position embedding is interpolated).
    """

    num_prefix_tokens = 1

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        num_frames: int = 8,
        in_chans: int = 3,
        num_classes: int = 0,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        layer_scale_init: float | None = None,
        pre_norm: bool = False,
        act: Activation = "gelu",
        norm_eps: float = 1e-6,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        smif: bool = True,
        smif_offsets: Sequence[int] = (1, 2),
        lmi: bool = True,
        lmi_every: int = 1,
        temporal_embed: bool | None = None,
        pool: Pool = "cls",
    ) -> None:
        """Build the backbone.

        pre_norm: a LayerNorm after the embeddings (CLIP's ln_pre). act: MLP activation
        ("quick_gelu" for OpenAI CLIP weights). drop_rate: dropout before the head.
        drop_path_rate: stochastic depth of the last block (linear from 0 over the blocks).
        lmi_every: LMI after every k-th block. temporal_embed: learnable temporal position
        embedding (None = on when smif or lmi is on, so both off give a time-blind baseline).
        pool: the clip feature the head reads, "cls" (the CLS token averaged over time) or
        "mean" (every patch token of every frame averaged, as VideoMAE fine-tunes).
        """
        super().__init__()
        img_hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        _check_options(img_hw, patch_size, act, lmi_every, pool)
        self.pool = pool
        self.img_size = img_hw
        self.patch_size = patch_size
        self.grid_size = (img_hw[0] // patch_size, img_hw[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.num_frames = num_frames
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.act = act
        self.grad_checkpointing = False
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.smif = ShortTermMotion(smif_offsets, embed_dim, patch_size, in_chans) if smif else None
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.num_patches, embed_dim))
        use_temporal = (smif or lmi) if temporal_embed is None else temporal_embed
        self.temporal_pos_embed = (
            nn.Parameter(torch.zeros(1, num_frames, 1, embed_dim)) if use_temporal else None
        )
        self.norm_pre = norm_layer(embed_dim) if pre_norm else nn.Identity()
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                mlp_ratio,
                qkv_bias,
                layer_scale_init,
                rates[i],
                ACTIVATIONS[act],
                norm_layer,
                lmi=lmi and (i + 1) % lmi_every == 0,
            )
            for i in range(depth)
        )
        self.norm = norm_layer(embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """timm's ViT init; then every motion part as the identity (see hpnet.models.motion)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.temporal_pos_embed is not None:
            nn.init.zeros_(self.temporal_pos_embed)
        for module in self.modules():
            if isinstance(module, ShortTermMotion | LongTermMotion):
                module.init_weights()

    def set_architecture(self, *, pre_norm: bool, act: Activation, norm_eps: float) -> None:
        """Switch the choices a checkpoint dictates: pre-norm, activation, LayerNorm eps."""
        if pre_norm != isinstance(self.norm_pre, nn.LayerNorm):
            like = self.pos_embed
            self.norm_pre = (
                nn.LayerNorm(self.embed_dim).to(like.device, like.dtype)
                if pre_norm
                else nn.Identity()
            )
        for module in self.modules():
            if isinstance(module, nn.LayerNorm) and module.elementwise_affine:
                module.eps = norm_eps
        for block in self.blocks:
            block.mlp.act = ACTIVATIONS[act]()
        self.act = act

    def get_extra_state(self) -> torch.Tensor:
        """The checkpoint-dictated choices as float64 ``(pre_norm, activation, eps)``, saved in
        ``state_dict()`` (``_extra_state``) so that a model rebuilt from a training checkpoint
        without the pretrained file runs the same; a tensor, like every other entry there.
        """
        eps = next(m.eps for m in self.modules() if isinstance(m, nn.LayerNorm))
        pre_norm = isinstance(self.norm_pre, nn.LayerNorm)
        code = list(ACTIVATIONS).index(self.act)
        return torch.tensor([float(pre_norm), float(code), eps], dtype=torch.float64)

    def set_extra_state(self, state: torch.Tensor) -> None:
        pre_norm, code, eps = state.tolist()
        self.set_architecture(
            pre_norm=bool(pre_norm), act=list(ACTIVATIONS)[int(code)], norm_eps=eps
        )  # type: ignore[arg-type]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Checkpoints written before the choices were saved: infer them as training made them
        (a pre-norm meant a CLIP file, loaded then with QuickGELU and eps 1e-5)."""
        key = prefix + "_extra_state"
        if key not in state_dict:
            clip = prefix + "norm_pre.weight" in state_dict
            code = list(ACTIVATIONS).index("quick_gelu" if clip else self.act)
            eps = 1e-5 if clip else 1e-6
            state_dict[key] = torch.tensor([float(clip), float(code), eps], dtype=torch.float64)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that should not be weight-decayed (embeddings and tokens)."""
        names = {"pos_embed", "cls_token", "temporal_pos_embed"}
        return {n for n, _ in self.named_parameters() if n in names}

    @property
    def num_layers(self) -> int:
        """Blocks (the depth that layer-wise LR decay counts)."""
        return len(self.blocks)

    def layer_id(self, name: str) -> int:
        """Depth of parameter ``name`` for layer-wise LR decay: 0 = embeddings, i + 1 = block i,
        ``len(blocks) + 1`` = the final norm and head."""
        if name in ("cls_token", "pos_embed", "temporal_pos_embed") or name.startswith(
            ("patch_embed.", "smif.", "norm_pre.")
        ):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return len(self.blocks) + 1

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of keeping its activations
        (``train.grad_checkpointing``): less memory, one more forward per block."""
        self.grad_checkpointing = enable

    def run_block(self, block: nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """``block(x, **kwargs)``, checkpointed when on and gradients are being recorded."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, x, use_reentrant=False, **kwargs)
        return block(x, **kwargs)

    def temporal_embedding(self, num_frames: int) -> torch.Tensor:
        """(1, T, 1, D) temporal position embedding, linearly interpolated to ``num_frames``."""
        return resize_temporal_embed(self.temporal_pos_embed, num_frames)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """frames (B, T, C, H, W) -> tokens (B, T, 1 + N, D): patches (+ SMIF), CLS, positions."""
        b, t, _, h, w = x.shape
        if (h, w) != self.img_size:
            raise ValueError(
                f"input frames are {h}x{w} but the model was built for "
                f"{self.img_size[0]}x{self.img_size[1]} (img_size)"
            )
        patches = self.patch_embed(x.flatten(0, 1)).reshape(b, t, self.num_patches, -1)
        if self.smif is not None:
            patches = patches + self.smif(x)  # (B, T, N, D)
        cls = self.cls_token.unsqueeze(1).expand(b, t, 1, -1)  # (B, T, 1, D)
        tokens = torch.cat([cls, patches], dim=2) + self.pos_embed.unsqueeze(1)
        if self.temporal_pos_embed is not None:
            tokens = tokens + self.temporal_embedding(t)
        return self.norm_pre(tokens)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """frames (B, T, C, H, W) -> normalised tokens (B, T, 1 + N, D)."""
        x = self.embed(x)
        for block in self.blocks:
            x = self.run_block(block, x)
        return self.norm(x)

    def pool_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """normalised tokens (B, T, 1 + N, D) -> clip feature (B, D): the CLS token averaged
        over time, or (``pool="mean"``) the mean of all T * N patch tokens."""
        if self.pool == "mean":
            return tokens[:, :, self.num_prefix_tokens :].mean(dim=(1, 2))
        return tokens[:, :, 0].mean(dim=1)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """tokens (B, T, L, D) -> logits (B, num_classes), or the pooled feature (B, D)."""
        x = self.head_drop(self.pool_tokens(tokens))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """frames (B, T, C, H, W) -> logits (B, num_classes) (features (B, D) if no head)."""
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------ named sizes

LSVIT_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(embed_dim=128, depth=4, num_heads=4),  # CPU demo
    "small": dict(embed_dim=384, depth=12, num_heads=6),  # ViT-S/16 shapes
    "base": dict(embed_dim=768, depth=12, num_heads=12),  # ViT-B/16 shapes (CLIP, timm)
}


def build_lsvit(size: str = "tiny", **kwargs) -> LSViT:
    """A named size, ``kwargs`` overriding any :class:`LSViT` argument (random init; load
    weights with :func:`hpnet.models.lsvit_weights.load_pretrained`)."""
    if size not in LSVIT_SIZES:
        raise ValueError(f"unknown LS-ViT size {size!r}; choose one of {sorted(LSVIT_SIZES)}")
    return LSViT(**{**LSVIT_SIZES[size], **kwargs})
