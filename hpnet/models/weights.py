"""What loading a foreign weight file into a backbone did: the report every loader returns.

:func:`hpnet.models.lsvit_weights.load_pretrained` (CLIP / timm ViT files into LS-ViT) and
:func:`hpnet.models.tv_video_weights.load_tv_weights` (torchvision video and 2D ResNet files,
C3D files) and :func:`hpnet.models.i3d_weights.load_i3d_weights` (2D ResNets inflated into I3D)
all return a :class:`PretrainedReport`; ``hpnet.train`` prints it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from hpnet.cli import UserError

_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.")  # a ResNet block's tensors: layer3.22.conv1.weight
# blocks per stage -> depth (torchvision ResNets; 34 and 50 differ in their blocks' shapes)
RESNET_DEPTHS = {
    (2, 2, 2, 2): "18",
    (3, 4, 6, 3): "34 or 50",
    (3, 4, 23, 3): "101",
    (3, 8, 36, 3): "152",
}


@dataclass
class PretrainedReport:
    """What a weight loader did; ``str(report)`` is a one-paragraph summary."""

    path: str
    flavour: str  # "clip" (open_clip / OpenAI visual tower), "timm" (ViT), "torchvision", "c3d"
    loaded: list[str] = field(default_factory=list)  # model tensors set from the file
    missing: list[str] = field(default_factory=list)  # model tensors left at their init
    unexpected: list[str] = field(default_factory=list)  # converted file tensors not used
    resized: list[str] = field(default_factory=list)  # tensors interpolated to the model
    inflated: list[str] = field(default_factory=list)  # 2D kernels inflated to 3D (I3D)
    activation: str = ""  # the MLP activation the weights run with (gelu, quick_gelu), if chosen

    def __str__(self) -> str:
        def some(names: list[str]) -> str:
            return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")

        activation = f" (activation {self.activation})" if self.activation else ""
        inflated = (
            f"inflated {len(self.inflated)} [{some(self.inflated)}]; " if self.inflated else ""
        )
        return (
            f"loaded {len(self.loaded)} tensors from {self.flavour} checkpoint {self.path}"
            f"{activation}; {inflated}"
            f"resized [{some(self.resized)}]; {len(self.missing)} new [{some(self.missing)}]; "
            f"{len(self.unexpected)} unused [{some(self.unexpected)}]"
        )


def refuse_few(loaded: list[str], own: Iterable[str], path: str, model: str, fix: str) -> None:
    """A file that fills under half of the model's tensors is another model's sharing a few
    names and shapes (swin3d_t's final norm is mvit_v2_s's): loading it would count a mostly
    random model as pretrained. Raise a UserError naming the file, ``model`` and ``fix``."""
    total = len(list(own))
    if 2 * len(loaded) >= total:
        return
    shared = ", ".join(loaded[:4]) + (", ..." if len(loaded) > 4 else "")
    raise UserError(
        f"weights {path} (model.pretrained) fill only {len(loaded)} of the {total} tensors of "
        f"{model} ({shared}): it is another model's file, or part of one; {fix}"
    )


def stage_blocks(names: Iterable[str]) -> tuple[int, ...]:
    """ResNet state-dict names -> blocks per stage (``layer1`` ...), from the highest block
    index each stage has; ``()`` for names of no ResNet."""
    last: dict[int, int] = {}
    for name in names:
        if found := _BLOCK.match(name):
            stage, block = int(found[1]), int(found[2])
            last[stage] = max(last.get(stage, -1), block)
    return tuple(last[stage] + 1 for stage in sorted(last))


def refuse_other_depth(own: Iterable[str], file: Iterable[str], path: str, fix: str) -> None:
    """A ResNet file of another depth shares its first blocks' names and shapes with the model
    (a ResNet-101's layer3.0-5 are a ResNet-50's): loading it would silently give the model
    part of a stage and a next stage trained to follow the rest. Raise a UserError naming the
    file's depth and ``fix`` when the blocks per stage differ."""
    mine, theirs = stage_blocks(own), stage_blocks(file)
    if not mine or not theirs or mine == theirs:
        return
    depth = RESNET_DEPTHS.get(theirs)
    what = f"a ResNet-{depth}" if depth else "a ResNet of another depth"
    raise UserError(
        f"weights {path} (model.pretrained) are {what}: blocks per stage {theirs} there, "
        f"{mine} here; {fix}"
    )
