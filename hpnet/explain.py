"""Grad-CAM for the LS-ViT backbone: where in each frame the evidence for a class lies.

Grad-CAM (Selvaraju et al., 2017) adapted to a ViT the usual way: the activations are the
patch tokens ``A (T, N, D)`` entering the backbone's last block (the class token reads them
there; the patch tokens leaving it reach the logits only through the pose pooling), the
channel weights are the gradients of the class logit averaged over the patches of a frame,
and the map of frame t is ``relu(sum_d w_td * A_tnd)`` laid out on the ``(gh, gw)`` patch
grid, scaled to [0, 1] over the whole clip (so brighter frames mattered more).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hpnet.data.canvas import Canvas
from hpnet.data.transforms import ClipTransform


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


def centre_crop_cam(
    model: nn.Module,
    transform: ClipTransform,
    frames: torch.Tensor,
    joints: np.ndarray | None,
    *,
    canvas: Canvas,
    target: int,
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Grad-CAM of one clip as the model sees it in test mode (the canvas, the centre crop).

    Args:
        frames: uint8 ``(T, 3, h, w)`` decoded frames of one clip.
        joints: ``(T, P, 17, 3)`` normalised to the frame, or None.
        canvas: the loader's canvas before the crop.
    Returns:
        ``heat (T, gh, gw)`` in [0, 1] and the crop's box ``(x0, y0, x1, y1)`` in [0, 1] of the
        frame (where to draw the map; outside [0, 1] where the canvas pads the frame).
    """
    from hpnet.data.transforms import short_side_crop_layout

    device = next(model.parameters()).device
    on, joint_tensor = canvas.apply(frames, None if joints is None else torch.from_numpy(joints))
    video = on[None, None].to(device)  # (1, 1, T, 3, H, W)
    joint_batch = None if joint_tensor is None else joint_tensor[None, None].to(device)
    video, joint_batch = transform.test(video, joint_batch, crops=1)
    heat = backbone_cam(
        model, video[:, 0], None if joint_batch is None else joint_batch[:, 0], target
    )
    (rh, rw), [(top, left)] = short_side_crop_layout(*canvas.hw, transform.size, 1)
    bx0, by0, bx1, by1 = canvas.place(tuple(frames.shape[-2:])).box().tolist()
    sx, sy = (bx1 - bx0) / rw, (by1 - by0) / rh  # frame units per resized-canvas pixel
    size = transform.size
    box = (bx0 + left * sx, by0 + top * sy, bx0 + (left + size) * sx, by0 + (top + size) * sy)
    return heat.cpu().numpy(), box
