"""``model.arch=ssl_transformer``: a 2D frame encoder per frame, a Transformer over time.

The frame encoder is a :class:`~hpnet.models.resnet_trunk.ResNetTrunk` (pretrained with SimSiam,
:mod:`hpnet.models.simsiam`, or random), frozen or fine-tuned; its per-frame features become
tokens of a small Transformer encoder over time, whose class token is the clip feature::

    video (B,T,3,S,S) -> trunk per frame -> map (B*T,C,h,w) -> 1x1 projection -> fmap (B,T,h,w,D)
    frame tokens = mean_hw fmap (B,T,D) + time embedding;  [CLS] + tokens -> Transformer (pre-norm)
    pooled = LayerNorm(CLS out) (B,D)

``D`` = ``width`` (256 by default: a ResNet-18's C = 512 halved; 512 suits a ResNet-50's 2048),
``depth`` Transformer layers (2 by default; 2-4 is plenty for 8-32 frames), ``width / 64`` heads,
MLP ``4 * width``. The projection is shared by the map and the tokens (a 1x1 convolution
commutes with the spatial mean), so the FPM pools ``fmap`` in the same D as the heads read
``pooled``; ``fmap`` is per frame (T' = T) and has no temporal context.

``freeze=True`` keeps the frame encoder as loaded: no gradients, and its BatchNorms stay in
eval mode (running statistics untouched) even while the model trains. ``set_frozen`` freezes
or releases it between epochs (LP-FT: the head first learns on the loaded features).

Backbone contract (:mod:`hpnet.models.backbones`): ``embed_dim``, ``forward_features``,
``no_weight_decay()``, ``num_layers``, ``layer_id(name)``. Layers for layer-wise LR decay count
the pretrained encoder only (as LS-ViT's count its blocks): 0 = the ResNet stem, 1-4 = its
stages, ``num_layers + 1`` = 5 = all that follows it (projection, tokens, Transformer, norm), so
the top stage peaks at ``backbone_lr x layer_decay`` and the stem at ``x layer_decay ** 5``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from hpnet.models.resnet_trunk import STAGES, STEM, ResNetTrunk, build_resnet_trunk
from hpnet.models.weights import PretrainedReport


class SSLTransformer(nn.Module):
    """Frame encoder + temporal Transformer as an hpnet backbone (module docstring).

    encoder: a :class:`ResNetTrunk` (or any module with ``forward_maps`` ``(N, 3, S, S) ->
    ((N, C, h, w), (N, C))`` and ``out_dim`` = C); ``max_frames``: the longest clip the time
    embedding covers.
    """

    def __init__(
        self,
        encoder: ResNetTrunk,
        *,
        width: int = 256,
        depth: int = 2,
        heads: int = 0,
        max_frames: int = 64,
        dropout: float = 0.0,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        heads = heads or max(1, width // 64)
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.encoder = encoder
        self.proj = nn.Conv2d(encoder.out_dim, width, kernel_size=1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.time_embed = nn.Parameter(torch.zeros(1, max_frames, width))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.time_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            dim_feedforward=4 * width,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.temporal = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.embed_dim = width
        self.depth = depth
        self.frozen = freeze
        if freeze:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> SSLTransformer:
        """As ``nn.Module.train``, but a frozen encoder stays in eval mode (BN statistics)."""
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def set_frozen(self, frozen: bool) -> None:
        """Freeze the frame encoder (no gradients, BatchNorm statistics fixed) or fine-tune it
        again, e.g. between epochs (``model.freeze_backbone_epochs``). Its parameters keep
        ``requires_grad`` (the optimizer holds them throughout; a frozen step gives them no
        gradient, which the optimizer skips), so unfreezing needs a model built with
        ``freeze=False``."""
        if not frozen and not all(p.requires_grad for p in self.encoder.parameters()):
            raise ValueError("the encoder was built with freeze=True: it has no gradients to give")
        self.frozen = frozen
        self.encoder.train(self.training and not frozen)

    def forward_features(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video ``(B, T, 3, S, S)`` -> fmap ``(B, T, h, w, D)`` (h, w = S/32 rounded up),
        pooled ``(B, D)``: the class token after the Transformer and the final norm."""
        b, t = video.shape[:2]
        if t > self.time_embed.shape[1]:
            raise ValueError(
                f"{t} frames, but the time embedding covers {self.time_embed.shape[1]}"
            )
        # frozen: no graph through the encoder while training (an explanation's pixel
        # gradient in eval mode still goes through it)
        grad = torch.is_grad_enabled() and not (self.frozen and self.training)
        with torch.set_grad_enabled(grad):
            maps, _ = self.encoder.forward_maps(video.flatten(0, 1))  # (B*T, C, h, w)
        fmap = self.proj(maps)  # (B*T, D, h, w)
        fmap = fmap.unflatten(0, (b, t)).permute(0, 1, 3, 4, 2)  # (B, T, h, w, D)
        tokens = fmap.mean(dim=(2, 3)) + self.time_embed[:, :t]  # (B, T, D)
        x = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)  # (B, 1+T, D)
        x = self.temporal(x)
        return fmap, self.norm(x[:, 0])

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video ``(B, T, 3, S, S)`` -> pooled clip feature ``(B, D)``."""
        return self.forward_features(video)[1]

    def no_weight_decay(self) -> set[str]:
        """The class token and the time embedding."""
        return {"cls_token", "time_embed"}

    @property
    def num_layers(self) -> int:
        """The pretrained encoder's ResNet stages (4): the layers layer decay counts down."""
        return len(STAGES)

    def layer_id(self, name: str) -> int:
        """Layer of parameter ``name`` for layer-wise LR decay (module docstring)."""
        if name.startswith("encoder."):
            name = name.removeprefix("encoder.")
            if name.startswith(STEM):
                return 0
            return next((i + 1 for i, s in enumerate(STAGES) if name.startswith(s + ".")), 0)
        return self.num_layers + 1


def build_ssl_transformer(
    resnet_depth: int = 18,
    *,
    width: int = 256,
    depth: int = 2,
    max_frames: int = 64,
    dropout: float = 0.0,
    freeze: bool = False,
) -> SSLTransformer:
    """A torchvision ``resnet{resnet_depth}`` trunk (random init) and the temporal Transformer;
    load a SimSiam encoder afterwards with :func:`load_frame_encoder`."""
    trunk = build_resnet_trunk(resnet_depth)
    return SSLTransformer(
        trunk, width=width, depth=depth, max_frames=max_frames, dropout=dropout, freeze=freeze
    )


def load_simsiam_encoder(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's tensors of a SimSiam state dict (keys ``encoder.*``), prefix stripped:
    the keys of a :class:`ResNetTrunk`. Also takes a checkpoint that wraps the state
    (``{"model": state}``) and DDP's ``module.`` prefix. A ``ValueError`` when there is none."""
    if isinstance(state.get("model"), Mapping):
        state = state["model"]
    out = {}
    for key, value in state.items():
        name = key.removeprefix("module.")
        if name.startswith("encoder."):
            out[name.removeprefix("encoder.")] = value
    if not out:
        some = ", ".join(list(state)[:4])
        raise ValueError(f"no SimSiam encoder tensors (keys 'encoder.*') in this state: {some}")
    return out


def load_frame_encoder(
    backbone: SSLTransformer, state: Mapping[str, torch.Tensor], path: str = ""
) -> PretrainedReport:
    """Load a SimSiam pretraining state (:func:`load_simsiam_encoder`) into the frame encoder;
    names in the report are the backbone's (``encoder.*``). A tensor whose shape differs (a
    ResNet of another depth) is a ``ValueError`` naming it."""
    tensors = load_simsiam_encoder(state)
    own = backbone.encoder.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in tensors.items()
        if k in own and v.shape != own[k].shape
    ]
    if wrong:
        raise ValueError(f"SimSiam encoder does not fit this frame encoder: {'; '.join(wrong[:3])}")
    result = backbone.encoder.load_state_dict(tensors, strict=False)
    return PretrainedReport(
        path,
        "simsiam",
        loaded=[f"encoder.{k}" for k in tensors if k in own],
        missing=[f"encoder.{k}" for k in result.missing_keys],
        unexpected=list(result.unexpected_keys),
    )
