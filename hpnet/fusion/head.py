"""Classification heads: cosine similarity to (modulated) class-text embeddings, or linear.

``TextHead``: v = fuse(mean_T CLS, s); logits = scale * cos(v, E_b) with E_b from the TRMM;
auxiliary logits = scale * cos(proj(s), E) from the pose stream alone (built only when the
loss uses them, ``aux=True``: DDP needs every parameter in the loss). Any label set works at
test time: only the class embeddings change. The cosine logits are computed in fp32 under
autocast: at a scale near 100, bf16 rounding moves them by ~0.1.
``LinearHead``: the ``model.text=false`` ablation, a fixed label set; ``PerDatasetHead``: one
``LinearHead`` per dataset of a joint run (the text head instead swaps class embeddings).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hpnet.fusion.trmm import TRMM


def centre_class_embeddings(text: torch.Tensor) -> torch.Tensor:
    """``(C, Dt)`` -> ``(C, Dt)``: minus the mean over the label set, renormalised.

    Every prompt shares a large common component ("a video of a person ..."); CLIP class
    embeddings of related actions have cosines of 0.8-0.9, and random ones (offline) 0.9+.
    Removing the shared part spreads the classes apart, which speeds up training a lot, and
    depends only on the label set in use, so it works for any label set at test time.
    """
    if text.shape[0] < 2:
        return text
    return F.normalize(text - text.mean(0, keepdim=True), dim=-1)


def fp32_region(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off while it is on (the cosine logits stay fp32); nothing otherwise,
    so a graph traced without autocast (``torch.export``) holds no autocast region."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


class Fuse(nn.Module):
    """``cls (B, D)`` and optional pose feature ``s (B, Ds)`` -> ``v (B, out)``."""

    def __init__(self, dim: int, pose_dim: int | None, out: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.rgb = nn.Linear(dim, out)
        self.pose = nn.Linear(pose_dim, out) if pose_dim else None
        self.drop = nn.Dropout(dropout)

    def forward(self, cls: torch.Tensor, pose: torch.Tensor | None) -> torch.Tensor:
        v = self.rgb(self.drop(self.norm(cls)))
        if self.pose is not None and pose is not None:
            v = v + self.pose(self.drop(pose))
        return v


class TextHead(nn.Module):
    def __init__(
        self,
        dim: int,
        pose_dim: int | None,
        text_dim: int,
        dropout: float = 0.0,
        aux: bool = True,
    ) -> None:
        super().__init__()
        self.fuse = Fuse(dim, pose_dim, text_dim, dropout)
        self.trmm = TRMM(text_dim, pose_dim)
        self.aux = nn.Linear(pose_dim, text_dim) if pose_dim and aux else None
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(
        self, cls: torch.Tensor, pose: torch.Tensor | None, text: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """cls ``(B, D)``, pose ``(B, Ds)`` | None, text ``(C, Dt)`` -> logits ``(B, C)``, aux."""
        scale = self.logit_scale.clamp(max=math.log(100)).exp()
        text = centre_class_embeddings(text.float())
        v = F.normalize(self.fuse(cls, pose).float(), dim=-1)  # (B, Dt)
        e = F.normalize(self.trmm(text, pose, cls.shape[0]).float(), dim=-1)  # (B, C, Dt)
        with fp32_region(cls.device.type):
            out = {"logits": scale * torch.einsum("bd,bcd->bc", v, e)}
        if self.aux is not None and pose is not None:
            a = F.normalize(self.aux(pose).float(), dim=-1)
            with fp32_region(cls.device.type):
                out["aux_logits"] = scale * a @ F.normalize(text, dim=-1).t()
        return out


class LinearHead(nn.Module):
    def __init__(
        self,
        dim: int,
        pose_dim: int | None,
        num_classes: int,
        dropout: float = 0.0,
        aux: bool = True,
        init_scale: float = 1.0,
    ) -> None:
        """``init_scale`` != 1: the layers that give the logits start as VideoMAE's head
        (``init_scale``: small logits while the backbone adapts): weights from a truncated
        N(0, 0.02) times ``init_scale``, biases 0; 1 keeps torch's default init."""
        super().__init__()
        self.fuse = Fuse(dim, pose_dim, num_classes, dropout)
        self.aux = nn.Linear(pose_dim, num_classes) if pose_dim and aux else None
        if init_scale != 1.0:
            with torch.no_grad():
                for layer in (self.fuse.rgb, self.fuse.pose, self.aux):
                    if layer is not None:
                        nn.init.trunc_normal_(layer.weight, std=0.02)
                        layer.weight.mul_(init_scale)
                        nn.init.zeros_(layer.bias)

    def forward(
        self, cls: torch.Tensor, pose: torch.Tensor | None, text: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        out = {"logits": self.fuse(cls, pose)}
        if self.aux is not None and pose is not None:
            out["aux_logits"] = self.aux(pose)
        return out


class PerDatasetHead(nn.Module):
    """One :class:`LinearHead` per dataset of a joint run (``model.text=false``): a batch is
    scored by its own dataset's head, over that dataset's labels."""

    def __init__(self, heads: Sequence[LinearHead]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(heads)
        self.active = 0  # the head used when forward is given no label_set (evaluation)

    def forward(
        self,
        cls: torch.Tensor,
        pose: torch.Tensor | None,
        text: torch.Tensor | None = None,
        label_set: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """cls ``(B, D)``, pose ``(B, Ds)`` | None -> logits ``(B, C_i)`` of head i =
        ``label_set`` (default :attr:`active`)."""
        return self.heads[self.active if label_set is None else label_set](cls, pose)


def start_from_clip_alignment(head: nn.Module, proj: torch.Tensor) -> bool:
    """The text head's image projection ``fuse.rgb`` set to CLIP's (``visual.proj (D, Dt)``,
    no bias) and its pose projection near zero, so that an untrained HP-Net scores a clip
    close to CLIP's image tower (mean of its frames' embeddings against the class embeddings),
    not at chance: exactly up to the head's own LayerNorm (it recentres CLIP's ``ln_post``
    output) and, with ``model.feedback``, the joint tokens the class token attends to. True
    when done (a head with ``fuse`` of that shape)."""
    fuse = getattr(head, "fuse", None)
    if fuse is None:
        return False
    if tuple(proj.shape) != (fuse.rgb.in_features, fuse.rgb.out_features):
        return False
    with torch.no_grad():
        fuse.rgb.weight.copy_(proj.t())
        fuse.rgb.bias.zero_()
        if fuse.pose is not None:  # near zero, as the TRMM's modulation: every weight learns
            nn.init.normal_(fuse.pose.weight, std=1e-4)
            nn.init.zeros_(fuse.pose.bias)
    return True
