"""Grad-CAM for the LS-ViT backbone: where in each frame the evidence for a class lies.

Grad-CAM (Selvaraju et al., 2017) adapted to a ViT the usual way: the activations are the
patch tokens ``A (T, N, D)`` entering the backbone's last block (the class token reads them
there; the patch tokens leaving it reach the logits only through the pose pooling), the
channel weights are the gradients of the class logit averaged over the patches of a frame,
and the map of frame t is ``relu(sum_d w_td * A_tnd)`` laid out on the ``(gh, gw)`` patch
grid, scaled to [0, 1] over the whole clip (so brighter frames mattered more).
"""

from __future__ import annotations

import torch
from torch import nn


def backbone_cam(
    model: nn.Module,
    video: torch.Tensor,
    joints: torch.Tensor | None,
    target: int,
) -> torch.Tensor:
    """Grad-CAM maps ``float (T, gh, gw)`` in [0, 1] of class ``target`` for one clip.

    Args:
        model: an :class:`~hpnet.models.hpnet.HPNet` (``model.backbone.blocks``, ``grid_size``).
        video: normalised ``(1, T, 3, S, S)`` (one view, one crop).
        joints: ``(1, T, P, K, 3)`` or ``None``.
        target: class index whose logit is explained.
    """
    backbone = model.backbone
    gh, gw = backbone.grid_size
    patches = gh * gw
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, inputs: tuple) -> None:
        inputs[0].retain_grad()
        captured.append(inputs[0])

    handle = backbone.blocks[-1].register_forward_pre_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(video.detach().requires_grad_(False), joints)["logits"]
            model.zero_grad(set_to_none=True)
            logits[0, target].backward()
    finally:
        handle.remove()
        model.train(was_training)
    tokens = captured[-1]  # (1, T, L, D): class token, patches, then any joint tokens
    acts = tokens[0, :, 1 : 1 + patches].detach().float()  # (T, N, D)
    grads = tokens.grad[0, :, 1 : 1 + patches].float()  # (T, N, D)
    weights = grads.mean(dim=1, keepdim=True)  # (T, 1, D)
    cam = (acts * weights).sum(-1).clamp(min=0)  # (T, N)
    model.zero_grad(set_to_none=True)
    peak = cam.max()
    cam = cam / peak if peak > 0 else cam
    return cam.view(-1, gh, gw)
