"""An exported model read back (``.pt2`` of torch.export, ``.onnx`` run with ONNX Runtime):
:func:`load_exported` gives an :class:`ExportedModel` (its labels and input layout from the
file's ``hpnet.json``; a wrongly shaped input refused, naming the expected shape) and
:class:`ExportedModule` drives it as a model. Written by :mod:`hpnet.export`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpnet.cli import UserError, missing
from hpnet.pose.skeleton import check_joint_values

META_NAME = "hpnet.json"  # the metadata's name in both formats
MAX_BATCH = 4096  # the largest batch a .pt2's dynamic batch dimension allows
FORMATS = {".pt2": "torch.export", ".onnx": "onnx"}


def exported_format(path: str | Path) -> str | None:
    """``torch.export`` or ``onnx`` for a file named as an exported model (any case:
    ``model.PT2`` too), None for anything else (a checkpoint)."""
    return FORMATS.get(Path(path).suffix.lower())


def input_shapes(meta: dict[str, Any]) -> dict[str, tuple]:
    """Input name -> shape of an exported model, ``"B"`` for the dynamic batch dimension."""
    shapes: dict[str, tuple] = {"video": ("B", meta["frames"], 3, meta["size"], meta["size"])}
    if meta["uses_pose"]:
        shapes["joints"] = ("B", meta["frames"], meta["persons"], 17, 3)
    return shapes


@dataclass
class ExportedModel:
    """An exported file, ready to run: ``logits = exported(video, joints)``."""

    path: Path
    meta: dict[str, Any]
    run: Any  # (inputs as tensors) -> logits tensor

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    def __call__(self, video: torch.Tensor, joints: torch.Tensor | None = None) -> torch.Tensor:
        """video ``(B, T, 3, S, S)`` float, joints ``(B, T, P, 17, 3)`` (pose models) -> logits
        ``(B, C)`` (numpy arrays are taken too). Raises ValueError naming the expected shape for
        a wrong input, and for joints the model would misread (NaN, pixel coordinates:
        :func:`~hpnet.pose.skeleton.check_joint_values`)."""
        given = {"video": video, "joints": joints}
        inputs = []
        for name, shape in input_shapes(self.meta).items():
            tensor = given[name]
            if tensor is None:
                raise ValueError(f"{self.path} takes {name} of shape {shape_text(shape)}")
            tensor = torch.as_tensor(tensor)  # (a numpy array)
            ok = tensor.dim() == len(shape) and tensor.shape[0] >= 1
            ok = ok and all(a == b for a, b in zip(tensor.shape[1:], shape[1:], strict=True))
            if not ok:
                raise ValueError(
                    f"{self.path} takes {name} of shape {shape_text(shape)}, "
                    f"got {tuple(tensor.shape)}"
                )
            if not tensor.is_floating_point():  # (uint8 frames: not normalised)
                raise ValueError(
                    f"{self.path} takes {name} as floats, got {tensor.dtype}"
                    + ": normalise the frames with the training mean and std" * (name == "video")
                )
            inputs.append(tensor.float().contiguous())
        if joints is not None and not self.meta["uses_pose"]:
            raise ValueError(f"{self.path} was exported without pose: give the video only")
        self._check_batch(inputs)
        if len(inputs) > 1:
            check_joint_values(inputs[1])
        with torch.no_grad():
            return self.run(*inputs)

    def _check_batch(self, inputs: list[torch.Tensor]) -> None:
        """One batch size for all inputs, and at most :data:`MAX_BATCH` clips in a ``.pt2``
        (its batch dimension's range)."""
        sizes = [len(t) for t in inputs]
        if len(set(sizes)) > 1:
            raise ValueError(f"{self.path}: video and joints hold {sizes[0]} and {sizes[1]} clips")
        if exported_format(self.path) == "torch.export" and sizes[0] > MAX_BATCH:
            raise ValueError(
                f"{self.path} takes at most {MAX_BATCH} clips a call (its exported batch "
                f"dimension), got {sizes[0]}: give them in parts"
            )


class ExportedModule(nn.Module):
    """An exported file as a model :class:`~hpnet.predictor.Predictor` can drive (on the CPU):
    ``forward(video, joints) -> {"logits": (B, C)}``, ``class_names`` its labels."""

    def __init__(self, exported: ExportedModel) -> None:
        super().__init__()
        self.exported = exported
        self.class_names = exported.labels

    def forward(
        self, video: torch.Tensor, joints: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        uses_pose = self.exported.meta["uses_pose"]
        return {"logits": self.exported(video, joints if uses_pose else None)}


def shape_text(shape: tuple) -> str:
    """``(B, 16, 3, 224, 224)``: a shape with its dynamic batch dimension as B."""
    return "(" + ", ".join(str(d) for d in shape) + ")"


def load_exported(path: str | Path) -> ExportedModel:
    """Open a ``.pt2`` or ``.onnx`` file written by :func:`export_model` (ONNX runs with ONNX
    Runtime on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"exported model {missing(path)}: {path}")
    kind = exported_format(path)
    if kind == "torch.export":
        extra = {META_NAME: ""}
        program = _load_pt2(path, extra)
        if not extra[META_NAME]:
            raise UserError(f"{path} holds no {META_NAME}: was it written by hpnet.export?")
        return ExportedModel(path, json.loads(extra[META_NAME]), program.module())
    if kind == "onnx":
        return _load_onnx(path)
    raise UserError(f"{path}: an exported model is a .pt2 or .onnx file")


def _unloadable(path: Path, reason: str) -> UserError:
    return UserError(
        f"cannot load exported model {path}: {reason} (was it written by python -m hpnet.export?)"
    )


def _load_pt2(path: Path, extra_files: dict[str, str]) -> Any:
    """``torch.export.load``; a file that is no torch.export archive is a :class:`UserError`
    (told before loading: torch logs a traceback when it falls back to its older format)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        raise _unloadable(path, "empty, truncated or not a torch.export archive")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if not any(n.endswith("/archive_format") for n in names) and any(
        n.endswith("/data.pkl") for n in names
    ):
        reason = "a torch.save checkpoint (a renamed last.pt?), not a torch.export archive"
        raise _unloadable(path, reason)
    try:
        return torch.export.load(str(path), extra_files=extra_files)
    except Exception as err:  # torch raises many types for archives it cannot read
        from hpnet.cli import error_reason

        raise _unloadable(path, error_reason(err)) from err


def _load_onnx(path: Path) -> ExportedModel:
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(f"running {path} needs ONNX Runtime: pip install 'hpnet[onnx]'") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # InvalidProtobuf, InvalidArgument, ...: "... failed:<reason>"
        detail = str(err).rpartition("failed:")[2].strip().rstrip(".") or type(err).__name__
        raise _unloadable(path, f"not a valid ONNX model ({detail})") from err
    props = session.get_modelmeta().custom_metadata_map
    if META_NAME not in props:
        raise UserError(f"{path} holds no {META_NAME}: was it written by hpnet.export?")
    meta = json.loads(props[META_NAME])
    names = [i.name for i in session.get_inputs()]

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        feed = {n: t.cpu().numpy() for n, t in zip(names, inputs, strict=True)}
        return torch.from_numpy(session.run(["logits"], feed)[0])

    return ExportedModel(path, meta, run)


# ------------------------------------------------------------------------------------ command
