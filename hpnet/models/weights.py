"""What loading a foreign weight file into a backbone did: the report every loader returns.

:func:`hpnet.models.lsvit_weights.load_pretrained` (CLIP / timm ViT files into LS-ViT) and
:func:`hpnet.models.tv_video_weights.load_tv_weights` (torchvision video and 2D ResNet files,
C3D files) and :func:`hpnet.models.i3d_weights.load_i3d_weights` (2D ResNets inflated into I3D)
all return a :class:`PretrainedReport`; ``hpnet.train`` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
