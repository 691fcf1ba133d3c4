"""``python -m hpnet.export``: a trained model as one deployable file (torch.export or ONNX).

    python -m hpnet.export --checkpoint runs/x/best.pt --out model.pt2    # torch.export
    python -m hpnet.export --checkpoint runs/x/best.pt --out model.onnx   # pip install hpnet[onnx]

The file holds the model in eval mode with its class embeddings baked in: input ``video``
``(B, T, 3, S, S)``, normalised as in training (``data.augment.mean/std``), and, when the model
uses pose, ``joints`` ``(B, T, P, 17, 3)`` (x, y in [0, 1] of the crop, confidence; missing =
zeros); output ``logits`` ``(B, C)``. B is dynamic, T, S and P are those of the training config.
What a user needs to prepare the input (labels, T, S, P, mean, std) is stored in the file
(``hpnet.json``: an extra file of the ``.pt2`` archive, a metadata entry of the ONNX model) and
read back by :func:`load_exported`, which also refuses a wrongly shaped input with a message
that names the expected shape. ``labels`` (``--labels``) classifies over other labels through
the text head, as ``hpnet.predict`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpnet.atomic import make_file_folder, temp_name, write_atomic, write_errors_reported
from hpnet.cli import CommandParser, UserError, quiet_logger, run_cli
from hpnet.config import Config, config_to_dict
from hpnet.config_cli import OneConfig, add_help_config
from hpnet.distributed import refuse_torchrun
from hpnet.exported import (  # (load_exported: also hpnet.export's, as the README has it)
    FORMATS,
    MAX_BATCH,
    META_NAME,
    ExportedModel,
    ExportedModule,
    exported_format,
    input_shapes,
    load_exported,
    shape_text,
)

__all__ = [
    "FORMATS", "META_NAME", "ExportedModel", "ExportedModule", "LogitsModel", "example_inputs",
    "export_metadata", "export_model", "exported_format", "input_shapes", "load_exported", "main",
]  # fmt: skip


class LogitsModel(nn.Module):
    """``model(video, joints)["logits"]`` as a module with tensor inputs and one tensor output
    (what exporters take). ``joints`` is an input only when ``uses_pose``."""

    def __init__(self, model: nn.Module, uses_pose: bool) -> None:
        super().__init__()
        self.model = model.eval()
        self.uses_pose = uses_pose

    def forward(self, video: torch.Tensor, joints: torch.Tensor | None = None) -> torch.Tensor:
        """video ``(B, T, 3, S, S)``, joints ``(B, T, P, 17, 3)`` -> logits ``(B, C)``."""
        return self.model(video, joints if self.uses_pose else None)["logits"]


def export_metadata(model: nn.Module, cfg: Config) -> dict[str, Any]:
    """What a caller of the exported file needs to know: labels and input layout."""
    uses_pose = getattr(model, "pose_encoder", None) is not None
    return {
        "format_version": 1,
        "labels": list(model.class_names),
        "frames": cfg.data.frames,
        "size": cfg.data.size,
        "persons": cfg.pose.persons if uses_pose else 0,
        "uses_pose": uses_pose,
        "mean": list(cfg.data.augment.mean),
        "std": list(cfg.data.augment.std),
        "inputs": ["video", "joints"] if uses_pose else ["video"],
        "config": config_to_dict(cfg),
    }


def example_inputs(meta: dict[str, Any], batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Random inputs of the exported shapes: ``(video,)`` or ``(video, joints)``."""
    g = torch.Generator().manual_seed(0)
    t, s = meta["frames"], meta["size"]
    video = torch.randn(batch, t, 3, s, s, generator=g)
    if not meta["uses_pose"]:
        return (video,)
    joints = torch.rand(batch, t, meta["persons"], 17, 3, generator=g)
    return video, joints


def check_out(out: Path) -> str:
    """The format ``out`` names (see :func:`exported_format`), its folder made; a name of no
    format, or a file or folder in the way, is a one-line :class:`UserError`."""
    kind = exported_format(out)
    if kind is None:
        raise UserError(f"--out {out}: give a .pt2 (torch.export) or .onnx (ONNX) file name")
    make_file_folder(out, what="export", folder_option="--out")
    return kind


def export_model(model: nn.Module, cfg: Config, out: str | Path) -> dict[str, Any]:
    """Export ``model`` (an HP-Net on the CPU) to ``out`` (``.pt2`` or ``.onnx``), atomically;
    returns the metadata written with it."""
    out = Path(out)
    kind = check_out(out)
    meta = export_metadata(model, cfg)
    wrapped = LogitsModel(model.cpu(), meta["uses_pose"]).eval()
    inputs = example_inputs(meta)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    shapes = {name: {0: batch} for name in meta["inputs"]}
    with torch.no_grad(), _quiet_export():
        if kind == "torch.export":
            program = torch.export.export(wrapped, inputs, dynamic_shapes=shapes, strict=False)
            extra = {META_NAME: json.dumps(meta)}
            write_atomic(
                out, lambda f: torch.export.save(program, f, extra_files=extra), what="export"
            )
        else:
            _export_onnx(wrapped, inputs, shapes, meta, out)
    return meta


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """torch's and onnxscript's notes on what they handle themselves, kept off the user's
    screen: every input's axis 0 is the one "batch" (the file names it so), nn.LSTM's
    ``_flat_weights`` set during tracing (lrcn: exported right, tested), ``_check_is_size``
    deprecations inside torch, LayerNorm not constant-folded."""
    with warnings.catch_warnings(), quiet_logger("onnxscript"):
        warnings.filterwarnings("ignore", message=r"# The axis name: batch will not be used")
        warnings.filterwarnings("ignore", message=r"The tensor attributes .*_flat_weights")
        warnings.filterwarnings("ignore", message=r".*_check_is_size", category=FutureWarning)
        yield


def _export_onnx(
    wrapped: LogitsModel, inputs: tuple, shapes: dict, meta: dict[str, Any], out: Path
) -> None:
    try:
        import onnx
    except ImportError:
        raise UserError(
            "exporting to ONNX needs the onnx extra: pip install 'hpnet[onnx]' "
            "(onnx, onnxscript, onnxruntime)"
        ) from None
    tmp = temp_name(out)
    try:
        with write_errors_reported(out, what="export"):
            torch.onnx.export(
                wrapped,
                inputs,
                str(tmp),
                dynamo=True,
                input_names=meta["inputs"],
                output_names=["logits"],
                dynamic_shapes=shapes,
                external_data=False,
                verbose=False,  # (its step lines went to standard output, between ours)
            )
            proto = onnx.load(str(tmp))
            entry = proto.metadata_props.add()
            entry.key, entry.value = META_NAME, json.dumps(meta)
            onnx.save(proto, str(tmp))
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ loading


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m hpnet.export", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint of hpnet.train")
    parser.add_argument("--out", required=True, help="model.pt2 (torch.export) or model.onnx")
    parser.add_argument("--labels", help='classify over other labels: "a,b,c" (text head)')
    parser.add_argument(
        "--config", action=OneConfig, help="a config file instead of the checkpoint's own"
    )
    add_help_config(parser)
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from hpnet.checkpoint import load_checkpoint
    from hpnet.config import apply_overrides, config_from_dict, load_config
    from hpnet.models.from_checkpoint import model_from_checkpoint
    from hpnet.text.prompts import read_labels

    args = _parser().parse_intermixed_args(argv)
    refuse_torchrun("python -m hpnet.export")
    check_out(Path(args.out))  # before the checkpoint loads
    ckpt = load_checkpoint(args.checkpoint)
    if args.config:
        cfg = load_config(args.config, args.overrides)
    else:
        cfg = apply_overrides(config_from_dict(ckpt["config"]), args.overrides)
    labels = read_labels(args.labels, None)  # (the checks of predict --labels)
    model = model_from_checkpoint(ckpt, cfg, labels, source=args.checkpoint)
    meta = export_model(model, cfg, args.out)
    inputs = " and ".join(f"{n} {shape_text(s)}" for n, s in input_shapes(meta).items())
    print(f"wrote {args.out}: {inputs} -> logits (B, {len(meta['labels'])})")
    return 0


def cli(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
