"""Looking inside a model: Grad-CAM, the activation map and guided backpropagation of one clip.

Three ways to show where in a clip the model looks (``python -m hpnet.predict --explain``):

- ``gradcam`` (Selvaraju et al., 2017): with activations ``A (T', h, w, D)`` of the explained
  layer and ``G`` the gradient of the class logit with respect to them, the weights are ``G``
  averaged over ``(h, w)`` per time step and channel, and the map of slot t is
  ``relu(sum_d w_td * A_thwd)``. Class-specific.
- ``activation``: the mean over channels of ``|A|`` per position. Class-agnostic: how strongly
  the layer responds where, whatever the label.
- ``guided`` (guided backpropagation, Springenberg et al., 2015): the gradient of the class logit
  with respect to the input pixels, with every activation module passing back only positive
  gradients (:func:`guided_backprop`); the map is the max over the RGB channels of the positive
  part, ``(T, S, S)`` at the input's resolution.

Every map is scaled to [0, 1] over the whole clip (so brighter frames mattered more): Grad-CAM
and guided by their maximum (they are >= 0 already), the activation map from its minimum to its
maximum (it is never 0, so otherwise it would be one flat colour).

The explained layer: for every arch but LS-ViT, HPNet's feature map ``fmap (B, T', h, w, D)``,
read by a forward hook on ``HPNet.feature_map`` (the backbone contract, so new archs need
nothing here; for Grad-CAM without joints their pooled feature must be computed from fmap or
from the tensor fmap is a view of); ``T'`` may be shorter than the clip (strided backbones).
When fmap is a view of a tensor the pooled feature reads (``x.permute`` of torchvision's CNNs),
the gradient is taken at that tensor, so every path from the activations to the logit counts.
LS-ViT keeps the patch tokens entering its last block (its class token reads them there; its
final normed patch tokens reach the logits only through pose pooling, so without joints their
gradient is zero, and the final LayerNorm gives every token about the same size). A class-token
backbone without joints (``mvit_v2_s``) has no Grad-CAM: a :class:`~hpnet.cli.UserError` says so.

On the frames (:func:`expand_time`): frame t of T shows the slot of the T' maps centred
nearest to it, slot i at time ``first + stride * i`` (``HPNet.time_cells``, the steps the FPM
reads joints at), or without those each slot an equal share of the frames. A CNN's map is
laid on the crop's pixels where its cells are centred (:func:`on_pixels`, ``HPNet.cells``: cell
i at pixel ``first + stride * i``, as the FPM reads joints), not stretched over the crop.

Nothing of the model changes: the hooks are removed, inplace flags and train/eval mode restored,
and gradients are taken with :func:`torch.autograd.grad`, so no parameter's ``.grad`` is touched.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from hpnet.cli import UserError
from hpnet.data.canvas import Canvas
from hpnet.data.transforms import ClipTransform
from hpnet.models.lsvit import LSViT
from hpnet.models.vit_layers import QuickGELU

logger = logging.getLogger(__name__)

METHODS = ("gradcam", "activation", "guided")
# Modules whose backward guided backpropagation filters (functional calls are left as they are).
GUIDED_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, QuickGELU)

Layout = Callable[[torch.Tensor], torch.Tensor]


def check_method(method: str) -> str:
    """``method`` if it is one of :data:`METHODS`, else a :class:`~hpnet.cli.UserError`."""
    if method not in METHODS:
        raise UserError(f"--explain {method}: choose one of {', '.join(METHODS)}")
    return method


@contextlib.contextmanager
def _explained_layer(model: nn.Module) -> Iterator[list[tuple[torch.Tensor, Layout]]]:
    """While open, each forward of ``model`` appends ``(tensor, layout)``: a tensor of the graph
    (gradients can be taken with respect to it) and how to lay it out as ``(B, T', h, w, D)``."""
    seen: list[tuple[torch.Tensor, Layout]] = []
    backbone = model.backbone
    if isinstance(backbone, LSViT):
        grid = backbone.grid_size
        patches = grid[0] * grid[1]

        def tokens(x: torch.Tensor) -> torch.Tensor:  # (B, T, 1+N(+PK), D): CLS, patches, joints
            return x[:, :, 1 : 1 + patches].unflatten(2, grid)

        handle = backbone.blocks[-1].register_forward_pre_hook(
            lambda _m, inputs: seen.append((inputs[0], tokens))
        )
    else:
        handle = model.feature_map.register_forward_hook(
            lambda _m, _inputs, out: seen.append((out, lambda x: x))
        )
    try:
        yield seen
    finally:
        handle.remove()


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode (no dropout, fixed BatchNorm) for a ``with`` block, then as before."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _unit(maps: torch.Tensor, *, low: bool = False) -> torch.Tensor:
    """``maps`` scaled to [0, 1] over all of them: by the maximum, or (``low``) min to max."""
    maps = maps.detach().float()
    if low:
        maps = maps - maps.min()
    peak = maps.max()
    return maps / peak if peak > 0 else torch.zeros_like(maps)


def layer_map(
    model: nn.Module,
    video: torch.Tensor,
    joints: torch.Tensor | None,
    target: int,
    method: str = "gradcam",
) -> torch.Tensor:
    """Grad-CAM (``gradcam``) or activation map (``activation``) ``float (T', h, w)`` in [0, 1]
    of one clip on the explained layer.

    Args:
        model: an :class:`~hpnet.models.hpnet.HPNet` of any arch.
        video: normalised ``(1, T, 3, S, S)`` (one view, one crop).
        joints: ``(1, T, P, K, 3)`` or ``None``.
        target: class index whose logit Grad-CAM explains (the activation map ignores it).
    """
    if method not in ("gradcam", "activation"):
        raise ValueError(f"layer_map draws gradcam or activation, not {method!r}")
    grad_on = method == "gradcam"
    with _evaluating(model), _explained_layer(model) as seen, torch.set_grad_enabled(grad_on):
        logits = model(video.detach(), joints)["logits"]
        held, layout = seen[-1]
        acts = layout(held)[0].detach().float()  # (T', h, w, D)
        if acts.shape[1:3] == (1, 1):
            _warn_one_cell(model, video.shape[-1], method)
        if not grad_on:
            return _unit(acts.abs().mean(-1), low=True)
        grad = _gradient_at(logits[0, target], held)
    if grad is not None:
        grad = layout(grad)[0].float()  # (T', h, w, D)
    if grad is None or not grad.any():
        arch = getattr(model.backbone, "arch", type(model.backbone).__name__)
        raise UserError(
            f"--explain gradcam: the logit does not depend on the feature map of {arch} here "
            "(a class-token model given no joints); use --explain activation or guided"
        )
    weights = grad.mean(dim=(1, 2), keepdim=True)  # (T', 1, 1, D)
    return _unit((acts * weights).sum(-1).clamp(min=0))


_WARNED_ONE_CELL: set[tuple[str, int]] = set()


def _warn_one_cell(model: nn.Module, size: int, method: str) -> None:
    """A 1 x 1 feature map gives one value for the whole crop: say so once per arch and size."""
    arch = str(getattr(model.backbone, "arch", type(model.backbone).__name__))
    if (arch, size) not in _WARNED_ONE_CELL:
        _WARNED_ONE_CELL.add((arch, size))
        logger.warning(
            "--explain %s: the feature map of %s is 1 x 1 at data.size=%d, so its map is one "
            "value for the whole crop (all heat or none); use --explain guided, or a model "
            "trained at a larger data.size", method, arch, size,
        )  # fmt: skip


def _gradient_at(output: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor | None:
    """d output / d ``tensor``, shaped like ``tensor``; None where output does not depend on it.

    A view (a backbone's ``fmap = x.permute(...)`` while its pooled feature reads ``x``) is
    differentiated at its base, which every path through the view's values also reaches, and
    the base's gradient is then laid out as the view (same sizes, strides and offset)."""
    base = tensor._base  # the tensor a view shares its values with; None for a non-view
    (grad,) = torch.autograd.grad(output, tensor if base is None else base, allow_unused=True)
    if grad is None or base is None:
        return grad
    dense = torch.empty_strided(base.size(), base.stride(), dtype=grad.dtype, device=grad.device)
    dense.copy_(grad)  # the base's memory layout, so the view's strides address it
    offset = tensor.storage_offset() - base.storage_offset()
    return dense.as_strided(tensor.size(), tensor.stride(), offset)


def _positive_gradient(
    _module: nn.Module, grad_input: tuple[torch.Tensor | None, ...], grad_output: tuple
) -> tuple[torch.Tensor | None, ...]:
    """Backward of an activation under guided backpropagation: where the gradient arriving from
    above is positive, the activation's own gradient if that is positive too; else 0. For a ReLU
    this is exactly Springenberg's rule (positive gradient and positive input)."""
    grad, above = grad_input[0], grad_output[0]
    if grad is None or above is None:
        return grad_input
    return (torch.where(above > 0, grad.clamp(min=0), torch.zeros_like(grad)), *grad_input[1:])


@contextlib.contextmanager
def guided_backprop(model: nn.Module) -> Iterator[int]:
    """Guided backpropagation through ``model`` for a ``with`` block; yields how many activation
    modules (:data:`GUIDED_ACTIVATIONS`: ReLU, GELU, QuickGELU, ...) it filters.

    Each gets a full backward hook with :func:`_positive_gradient`. GELU-like activations (the
    transformers) get the same rule: gradient passes where it arrives positive and leaves
    positive. Attention softmax, norms, pooling and functional activations pass gradients
    unchanged. Inplace activations (torchvision's ``ReLU(inplace=True)``) cannot carry full
    backward hooks: they run out of place meanwhile. Hooks and flags are restored on exit.
    """
    handles, inplace = [], []
    for module in model.modules():
        if isinstance(module, GUIDED_ACTIVATIONS):
            if getattr(module, "inplace", False):
                module.inplace = False
                inplace.append(module)
            handles.append(module.register_full_backward_hook(_positive_gradient))
    try:
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()
        for module in inplace:
            module.inplace = True


def input_gradient(
    model: nn.Module,
    video: torch.Tensor,
    joints: torch.Tensor | None,
    target: int,
    *,
    guided: bool = True,
) -> torch.Tensor:
    """Gradient ``(T, 3, S, S)`` of class ``target``'s logit with respect to the normalised
    pixels of ``video (1, T, 3, S, S)``, guided (:func:`guided_backprop`) or plain."""
    pixels = video.detach().clone().requires_grad_(True)
    guide = guided_backprop(model) if guided else contextlib.nullcontext()
    with _evaluating(model), guide, torch.enable_grad():
        logits = model(pixels, joints)["logits"]
        (grad,) = torch.autograd.grad(logits[0, target], pixels)
    return grad[0].detach()


def explain_clip(
    model: nn.Module,
    video: torch.Tensor,
    joints: torch.Tensor | None,
    target: int,
    method: str,
) -> torch.Tensor:
    """The map of ``method`` (:data:`METHODS`) for class ``target`` of one clip ``(1, T, 3, S,
    S)``: ``(T', h, w)`` on the explained layer (gradcam, activation) or ``(T, S, S)`` on the
    pixels (guided), in [0, 1]. Works inside ``torch.inference_mode()`` too (a caller's
    inference tensors are copied out of it: gradients need ordinary ones)."""
    check_method(method)
    with torch.inference_mode(False):
        video = video.clone()
        joints = joints.clone() if joints is not None else None
        if method == "guided":
            grad = input_gradient(model, video, joints, target)  # (T, 3, S, S)
            return _unit(grad.clamp(min=0).amax(dim=1))
        return layer_map(model, video, joints, target, method)


def expand_time(
    maps: torch.Tensor, frames: int, cells: tuple[float, float] | None = None
) -> torch.Tensor:
    """``(T', h, w)`` maps -> ``(frames, h, w)``: frame t (spanning [t, t + 1)) shows the slot
    centred nearest to it, slot i at time ``first + stride * i`` (``cells``; the earlier slot on
    a tie). ``cells`` None: frame t shows slot ``floor(t * T' / frames)``, an equal share each."""
    if cells is None:
        slots = torch.arange(frames) * maps.shape[0] // frames
    else:
        stride, first = cells
        centres = first + stride * torch.arange(maps.shape[0], dtype=torch.float64)
        times = torch.arange(frames, dtype=torch.float64) + 0.5
        slots = (times[:, None] - centres[None]).abs().argmin(1)
    return maps[slots.to(maps.device)]


def on_pixels(maps: torch.Tensor, cells: tuple[float, float], size: int) -> torch.Tensor:
    """``(T', h, w)`` maps of a CNN's feature map -> ``(T', size, size)`` on the pixels of the
    ``size x size`` crop it saw: each pixel reads the map (bilinearly) where its centre lies
    among the cells, cell i centred at pixel ``first + stride * i`` (``cells``)."""
    import torch.nn.functional as F

    from hpnet.fusion.fpm import sample_coords

    centres = (torch.arange(size, dtype=torch.float32, device=maps.device) + 0.5) / size
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], -1)  # (S, S, 3) as joints are
    grid = sample_coords(points, tuple(maps.shape[-2:]), cells, (size, size))  # (S, S, 2)
    grid = grid[None].expand(maps.shape[0], -1, -1, -1).to(maps.dtype)
    sampled = F.grid_sample(
        maps[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled[:, 0]


def centre_crop_cam(
    model: nn.Module,
    transform: ClipTransform,
    frames: torch.Tensor,
    joints: np.ndarray | None,
    *,
    canvas: Canvas,
    target: int,
    method: str = "gradcam",
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The map of ``method`` for one clip as the model sees it in test mode (the canvas, the
    centre crop), one per frame, and where on the frame it lies.

    Args:
        frames: uint8 ``(T, 3, h, w)`` decoded frames of one clip.
        joints: ``(T, P, 17, 3)`` normalised to the frame, or None.
        canvas: the loader's canvas before the crop.
    Returns:
        ``heat (T, mh, mw)`` in [0, 1] (:func:`explain_clip`, spread over the T frames by
        :func:`expand_time`; a CNN's on the crop's pixels, :func:`on_pixels`) and the crop's
        box ``(x0, y0, x1, y1)`` in [0, 1] of the frame (where to draw the map; outside [0, 1]
        where the canvas pads the frame).
    """
    from hpnet.data.eval_crops import short_side_crop_layout

    device = next(model.parameters()).device
    on, joint_tensor = canvas.apply(frames, None if joints is None else torch.from_numpy(joints))
    video = on[None, None].to(device)  # (1, 1, T, 3, H, W)
    joint_batch = None if joint_tensor is None else joint_tensor[None, None].to(device)
    video, joint_batch = transform.test(video, joint_batch, crops=1)
    heat = explain_clip(
        model, video[:, 0], None if joint_batch is None else joint_batch[:, 0], target, method
    )
    layer = check_method(method) != "guided"  # a map of the explained layer, not pixels
    cells = getattr(model, "cells", None)
    if cells is not None and layer:  # a CNN's map
        heat = on_pixels(heat, cells, transform.size)
    time_cells = getattr(model, "time_cells", None) if layer else None
    heat = expand_time(heat, frames.shape[0], time_cells)
    (rh, rw), [(top, left)] = short_side_crop_layout(*canvas.hw, transform.size, 1)
    bx0, by0, bx1, by1 = canvas.place(tuple(frames.shape[-2:])).box().tolist()
    sx, sy = (bx1 - bx0) / rw, (by1 - by0) / rh  # frame units per resized-canvas pixel
    size = transform.size
    box = (bx0 + left * sx, by0 + top * sy, bx0 + (left + size) * sx, by0 + (top + size) * sy)
    return heat.cpu().numpy(), box
