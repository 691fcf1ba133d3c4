"""HP-Net: a backbone, the Feedback Pooling Module and the text head, built by injection.

The LS-ViT backbone (``model.arch=lsvit``), block by block:

```
clip (B,T,3,S,S) -> backbone.embed -> blocks[:f] -> tokens (B,T,1+N,D)
joints (B,T,P,K,3) -> pool_at_joints -> JointTokens (B,T,P*K,D) --feedback--> blocks[f:]
                                        (joint tokens appended to every frame, masked keys)
final tokens -> pool_at_joints + fed-back joint tokens -> PoseEncoder -> s (B,Ds)
v = fuse(mean_T CLS, s);  E_b = TRMM(E | s);  logits = scale * cos(v, E_b);  aux from s
```
``model.pose=false`` drops the FPM (RGB only), ``model.feedback=false`` pools without feeding
back, ``model.text=false`` uses a linear head; with all three off this is a plain LS-ViT.

Any other backbone (:mod:`hpnet.models.backbones`; torchvision's video models) gives a feature
map and a pooled clip feature; the FPM pools the map at the joints resampled to its T' frames:

```
clip (B,T,3,S,S) -> backbone.forward_features -> fmap (B,T',h,w,Df), pooled (B,D)
joints (B,T,P,K,3) -> resample_joints (T') -> pool_at_joints(fmap) -> PoseEncoder -> s (B,Ds)
v = fuse(pooled, s);  E_b = TRMM(E | s);  logits = scale * cos(v, E_b);  aux from s
```

``HPNet.feature_map`` is an ``nn.Identity`` that fmap passes through in every arch: a place for
forward hooks to read the feature map (and take gradients with respect to it) without knowing
the backbone (:mod:`hpnet.explain` draws its Grad-CAM and activation maps from there).

Joint training (several datasets, ``label_sets``): the text head keeps each dataset's class
embeddings (buffers ``label_embeddings_<i>``), a linear head one output layer per dataset
(:class:`~hpnet.fusion.head.PerDatasetHead`); ``forward(..., label_set=i)`` scores a batch over
dataset i's labels, :meth:`HPNet.select_label_set` makes one the default (evaluation, predict).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from hpnet.config import Config
from hpnet.fusion.fpm import JointTokens, pool_at_joints, resample_joints
from hpnet.fusion.head import LinearHead, PerDatasetHead, TextHead, start_from_clip_alignment
from hpnet.fusion.pose_encoder import PoseEncoder
from hpnet.models.backbones import (
    CELL_CENTRES,
    TIME_CELLS,
    build_backbone,
    check_model_config,
)
from hpnet.models.lsvit import LSViT
from hpnet.text.prompts import check_distinct_phrases
from hpnet.text.weights import ClipSource


class HPNet(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        *,
        joint_tokens: JointTokens | None = None,
        pose_encoder: PoseEncoder | None = None,
        feedback_from: int | None = None,
        class_embeddings: torch.Tensor | None = None,
        class_names: Sequence[str] = (),
        window: int = 3,
        label_sets: Sequence[tuple[str, Sequence[str]]] = (),
        label_embeddings: Sequence[torch.Tensor] = (),
        kpt_conf: float = 0.0,
        cells: tuple[float, float] | None = None,
        time_cells: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.kpt_conf = kpt_conf  # joints below this confidence count as missing
        self.cells = cells  # (stride, first): where fmap's cells sit on the frame (CNNs)
        self.time_cells = time_cells  # (stride, first): where its steps sit in the clip
        self.backbone = backbone
        self.head = head
        self.joint_tokens = joint_tokens
        self.pose_encoder = pose_encoder
        self.feature_map = nn.Identity()  # fmap (B,T',h,w,D) passes through: a hook point
        if feedback_from is not None and not isinstance(backbone, LSViT):
            raise ValueError(f"feedback needs LS-ViT's token blocks, not {type(backbone).__name__}")
        depth = backbone.num_layers
        if feedback_from is not None and feedback_from < 0:
            feedback_from += depth
        if feedback_from is not None and not 0 <= feedback_from < depth:
            raise ValueError(f"model.feedback_from={feedback_from} outside 0..{depth - 1}")
        self.feedback_from = feedback_from
        self.window = window
        self.class_names = list(class_names)
        self.register_buffer("class_embeddings", class_embeddings, persistent=True)
        self.pretrained_prefixes: tuple[str, ...] = ()
        self.pretrained_names: set[str] = set()  # parameters filled from model.pretrained
        self.pretrained_report = ""  # what build_model loaded from model.pretrained
        # Joint training: (dataset name, class names) per dataset, the first = class_names.
        self.label_sets = [(name, list(names)) for name, names in label_sets]
        for i, emb in enumerate(label_embeddings):  # text head: (C_i, Dt) per dataset
            self.register_buffer(f"label_embeddings_{i}", emb, persistent=True)

    # --------------------------------------------------------------------------- open vocabulary
    def set_class_embeddings(self, embeddings: torch.Tensor, class_names: Sequence[str]) -> None:
        """Classify over another label set: ``embeddings (C', Dt)`` from the same text encoder."""
        if self.class_embeddings is None:
            raise ValueError(
                "this model has a linear head (model.text=false): its labels are fixed"
            )
        self.class_embeddings = embeddings.to(self.class_embeddings)
        self.class_names = list(class_names)

    @property
    def num_layers(self) -> int:
        """Backbone depth (for layer-wise learning-rate decay, :mod:`hpnet.optim`)."""
        return int(self.backbone.num_layers)

    def layer_id(self, name: str) -> int:
        """Backbone depth of parameter ``name``; everything outside the backbone is on top."""
        if name.startswith("backbone."):
            return self.backbone.layer_id(name.removeprefix("backbone."))
        return self.num_layers + 1

    def select_label_set(self, index: int) -> None:
        """Classify over dataset ``index`` of a joint model's ``label_sets`` from now on."""
        if not 0 <= index < len(self.label_sets):
            raise ValueError(f"label set {index} of {len(self.label_sets)}")
        if isinstance(self.head, PerDatasetHead):
            self.head.active = index
        else:
            emb = getattr(self, f"label_embeddings_{index}")
            self.class_embeddings = emb.clone().to(self.class_embeddings)
        self.class_names = list(self.label_sets[index][1])

    @contextlib.contextmanager
    def using_label_set(self, index: int) -> Iterator[None]:
        """:meth:`select_label_set` for a ``with`` block (evaluating one dataset mid-run); the
        first dataset's labels are back afterwards, so checkpoints keep their shapes."""
        self.select_label_set(index)
        try:
            yield
        finally:
            self.select_label_set(0)

    def no_weight_decay(self) -> set[str]:
        names = {f"backbone.{n}" for n in self.backbone.no_weight_decay()}
        for name, _ in self.named_parameters():
            if name.endswith(("joint_embed", "person_embed", "time_embed", "logit_scale")):
                names.add(name)
        return names

    # --------------------------------------------------------------------------------- forward
    def forward(
        self,
        video: torch.Tensor,
        joints: torch.Tensor | None = None,
        label_set: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """video ``(B,T,3,S,S)`` normalised, joints ``(B,T,P,K,3)`` -> ``{"logits": (B,C)}``,
        with ``"aux_logits": (B,C)`` (the pose feature's own, for the auxiliary loss) when the
        head has them and joints are given; ``label_set`` i (joint models): over dataset i's
        C_i labels, else the current ones."""
        pose_on = self.pose_encoder is not None and joints is not None
        if pose_on and self.kpt_conf > 0:  # x, y and confidence of unsure joints zeroed
            joints = joints * (joints[..., 2:] >= self.kpt_conf).to(joints.dtype)
        fed_back = None
        if isinstance(self.backbone, LSViT):
            fmap, pooled, fed_back = self._lsvit_features(video, joints if pose_on else None)
        else:
            fmap, pooled = self.backbone.forward_features(video)  # (B,T',h,w,D), (B,D)
        fmap = self.feature_map(fmap)  # unchanged; hooks on it see every arch's feature map
        frame_hw = (video.shape[-2], video.shape[-1])
        s = self._pose_feature(fmap, joints, fed_back, frame_hw) if pose_on else None
        if label_set is None or not self.label_sets:
            return self.head(pooled, s, self.class_embeddings)
        if isinstance(self.head, PerDatasetHead):
            return self.head(pooled, s, label_set=label_set)
        return self.head(pooled, s, getattr(self, f"label_embeddings_{label_set}"))

    def _lsvit_features(
        self, video: torch.Tensor, joints: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """LS-ViT block by block, joint tokens fed back into the last blocks when ``joints``
        are given and feedback is on: fmap ``(B,T,gh,gw,D)``, the pooled clip feature ``(B,D)``,
        the normalised fed-back joint tokens ``(B,T,P*K,D)`` or None."""
        bb = self.backbone
        x = bb.embed(video)  # (B, T, 1+N, D)
        n = x.shape[2]
        feedback = joints is not None and self.joint_tokens is not None
        start = self.feedback_from if feedback else len(bb.blocks)
        for blk in bb.blocks[:start]:
            x = bb.run_block(blk, x)
        fed_back = None
        if start < len(bb.blocks):
            pooled = pool_at_joints(x[:, :, 1:], bb.grid_size, joints, self.window)
            tokens, mask = self.joint_tokens(pooled, joints)  # (B,T,PK,D), (B,T,PK)
            keep = torch.cat([mask.new_ones((*mask.shape[:2], n)), mask], dim=2)  # (B,T,L)
            x = torch.cat([x, tokens], dim=2)
            for blk in bb.blocks[start:]:
                x = bb.run_block(blk, x, key_mask=keep)
            fed_back = bb.norm(x[:, :, n:])  # updated joint tokens (B, T, PK, D)
            x = x[:, :, :n]
        x = bb.norm(x)
        fmap = x[:, :, 1:].unflatten(2, bb.grid_size)  # (B, T, gh, gw, D)
        return fmap, bb.pool_tokens(x), fed_back

    def _pose_feature(
        self,
        fmap: torch.Tensor,
        joints: torch.Tensor,
        fed_back: torch.Tensor | None,
        frame_hw: tuple[int, int],
    ) -> torch.Tensor:
        """fmap ``(B,T',h,w,D)`` of ``frame_hw`` frames pooled at the joints ``(B,T,P,K,3)``
        (resampled to the T' steps by ``self.time_cells``; placed by ``self.cells``), plus the
        fed-back joint tokens ``(B,T,P*K,D)`` -> pose feature ``s (B,Ds)``."""
        b, t, h, w, d = fmap.shape
        joints = resample_joints(joints, t, self.time_cells)
        pooled = pool_at_joints(
            fmap.reshape(b, t, h * w, d), (h, w), joints, self.window,
            cells=self.cells, frame_hw=frame_hw,
        )  # fmt: skip
        if fed_back is not None:
            pooled = pooled + fed_back.view_as(pooled) * (joints[..., 2:] > 0)
        return self.pose_encoder(pooled, joints)


def class_text_embeddings(
    cfg: Config, class_names: Sequence[str], *, source: ClipSource | None = None
) -> torch.Tensor:
    """Template-averaged CLIP text embeddings ``(C, Dt)`` of ``class_names`` (unit rows).

    The frozen open_clip text tower of ``cfg.text`` is built only on a cache miss and dropped
    afterwards; it never becomes part of the model. ``source``: the checkpoint of
    ``cfg.text.pretrained`` when the backbone already resolved and read it.
    """
    from hpnet.text.encoder import build_text_encoder

    encoder = build_text_encoder(cfg, source=source)
    try:
        return encoder.encode_class_names(list(class_names), cfg.text.templates)
    finally:
        encoder.release()


def label_set_embeddings(
    cfg: Config,
    label_sets: Sequence[tuple[str, Sequence[str]]],
    *,
    source: ClipSource | None = None,
) -> list[torch.Tensor]:
    """Text embeddings ``(C_i, Dt)`` of every joint dataset's classes, from one encoder pass
    over their union (a class name two datasets share gets the same row in both)."""
    union = list(dict.fromkeys(name for _, names in label_sets for name in names))
    rows = class_text_embeddings(cfg, union, source=source)  # (U, Dt)
    where = {name: i for i, name in enumerate(union)}
    return [rows[[where[n] for n in names]] for _, names in label_sets]


def build_model(
    cfg: Config,
    class_names: Sequence[str],
    *,
    class_embeddings: torch.Tensor | None = None,
    load_weights: bool = True,
    label_sets: Sequence[tuple[str, Sequence[str]]] = (),
    label_embeddings: Sequence[torch.Tensor] | None = None,
) -> HPNet:
    """The one factory: backbone, FPM, text embeddings and head from the config.

    ``class_embeddings (C, Dt)`` skips the text encoder (e.g. taken from a checkpoint);
    ``load_weights=False`` skips ``model.pretrained`` (the caller loads a full state dict).
    ``label_sets``: ``(name, class names)`` per dataset of a joint run (the first's names are
    ``class_names``); ``label_embeddings`` their ``(C_i, Dt)`` (else from the text encoder).
    """
    check_model_config(cfg)
    m = cfg.model
    built = build_backbone(cfg, load_weights=load_weights)
    clip = built.clip  # LS-ViT: the CLIP checkpoint of model.pretrained, shared with the text
    aligned = clip is not None and m.text and m.pool == "cls"  # CLIP projects the class token
    image_proj = clip.state_dict().get("visual.proj") if aligned else None
    dim = built.module.embed_dim  # pooled feature width
    fmap_dim = getattr(built.module, "fmap_dim", dim)  # feature map width, read by the FPM
    pose_dim, pose_encoder, joint_tokens = _pose_stream(cfg, dim, fmap_dim)
    if m.text:
        class_embeddings, label_embeddings = _text_embeddings(
            cfg, class_names, class_embeddings, label_sets, label_embeddings, clip
        )
    model = HPNet(
        built.module,
        _build_head(cfg, dim, pose_dim, class_embeddings, class_names, label_sets),
        joint_tokens=joint_tokens,
        pose_encoder=pose_encoder,
        feedback_from=m.feedback_from if joint_tokens is not None else None,
        class_embeddings=class_embeddings if m.text else None,
        class_names=class_names,
        label_sets=label_sets,
        label_embeddings=label_embeddings if m.text and label_sets else (),
        kpt_conf=cfg.pose.kpt_conf,
        cells=CELL_CENTRES.get(m.arch),
        time_cells=TIME_CELLS.get(m.arch),
    )
    if m.pretrained:
        model.pretrained_prefixes = ("backbone.",)
    if built.report is not None:
        model.pretrained_names = {f"backbone.{name}" for name in built.pretrained_names}
    model.pretrained_report = str(built.report) if built.report is not None else ""
    if image_proj is not None and start_from_clip_alignment(model.head, image_proj):
        # (a head weight still, at train.lr: the optimizer's groups never depend on whether
        # the two towers' settings name the same file, which may change on resume)
        model.pretrained_report += "; CLIP's image projection -> head.fuse.rgb"
    if clip is not None:
        clip.release()
    return model


def _pose_stream(
    cfg: Config, dim: int, fmap_dim: int
) -> tuple[int | None, PoseEncoder | None, JointTokens | None]:
    """``model.pose``: the pose feature's width, its encoder (joints + the ``fmap_dim`` wide
    feature map) and, with ``model.feedback``, the joint tokens fed back into the ``dim``
    wide token path; all None without pose."""
    m = cfg.model
    if not m.pose:
        return None, None, None
    pose_dim = max(128, fmap_dim // 2)
    pose_encoder = PoseEncoder(
        fmap_dim,
        pose_dim,
        kind=m.pose_encoder,
        max_persons=cfg.pose.persons,
        max_frames=max(64, cfg.data.frames),
    )
    joint_tokens = JointTokens(dim, max_persons=cfg.pose.persons) if m.feedback else None
    return pose_dim, pose_encoder, joint_tokens


def _text_embeddings(
    cfg: Config,
    class_names: Sequence[str],
    class_embeddings: torch.Tensor | None,
    label_sets: Sequence[tuple[str, Sequence[str]]],
    label_embeddings: Sequence[torch.Tensor] | None,
    clip: ClipSource | None,
) -> tuple[torch.Tensor, Sequence[torch.Tensor] | None]:
    """The text head's class embeddings ``(C, Dt)`` and a joint run's per dataset, from the
    text encoder for those not given (one pass for every dataset; ``clip``: the backbone's
    CLIP checkpoint, which the text tower may share)."""
    if class_embeddings is None:  # a training run: its datasets' classes
        for name, names in label_sets or [(cfg.data.dataset, class_names)]:
            check_distinct_phrases(names, f"the classes of {name}")
    if label_sets and label_embeddings is None:
        label_embeddings = label_set_embeddings(cfg, label_sets, source=clip)
        class_embeddings = label_embeddings[0] if class_embeddings is None else class_embeddings
    if class_embeddings is None:
        class_embeddings = class_text_embeddings(cfg, class_names, source=clip)
    return class_embeddings, label_embeddings


def _build_head(
    cfg: Config,
    dim: int,
    pose_dim: int | None,
    class_embeddings: torch.Tensor | None,
    class_names: Sequence[str],
    label_sets: Sequence[tuple[str, Sequence[str]]],
) -> nn.Module:
    """The text head (``model.text``: cosine to ``class_embeddings (C, Dt)`` through the TRMM)
    or a linear head (one per dataset of a joint run) over pooled ``(B, dim)`` + pose feature."""
    m = cfg.model
    if m.text:
        return TextHead(
            dim, pose_dim, class_embeddings.shape[1], dropout=m.dropout, aux=m.aux_weight > 0
        )
    kw = {"dropout": m.dropout, "aux": m.aux_weight > 0, "init_scale": m.head_init_scale}
    heads = [
        LinearHead(dim, pose_dim, len(names), **kw)
        for _, names in label_sets or [("", class_names)]
    ]
    return PerDatasetHead(heads) if label_sets else heads[0]
