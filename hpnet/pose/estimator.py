"""YOLO pose estimation on batches of video frames, with persons kept in fixed slots per video.

The only module of hpnet that imports ``ultralytics``. Frames of any size (several sizes in one
call too) are letterboxed on the model's device and go through ``model.predict``; joints come
back normalised to each frame, so a frame resized as a whole before the call (e.g. by the
decoder, to the letterbox size) gives the same joints.

A frame's joints do not depend on what else is in the call: frames are grouped by the canvas a
solo call would give them (letterbox size rounded up to the 32-pixel grid), placed where a solo
call places them, and run in passes of a fixed number of frames (:data:`CPU_FRAMES_PER_PASS`,
:data:`CUDA_FRAMES_PER_PASS`; the last pass of a group is filled up with blank canvases), so
batching across videos, the order the decoding workers deliver in and ``pose.batch`` leave the
pose cache bit for bit the same.

    estimator = PoseEstimator("yolo11n-pose.pt", imgsz=640)
    joints = estimator(frames, persons=2)  # frames uint8 (N, 3, H, W) of one video -> (N, 2, 17, 3)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hpnet.cli import UserError, missing
from hpnet.devices import pick_device
from hpnet.pose.skeleton import NUM_KEYPOINTS
from hpnet.pose.tracking import FrameDetections, track_persons

STRIDE = 32  # YOLO's largest feature stride: the batch canvas is a multiple of it
PAD_VALUE = 114 / 255  # Ultralytics' letterbox grey
# Frames per forward pass, the same in every call: kernels are picked by shape, so a frame's result
# can depend on the pass size (yolo11n-pose raw fp32 outputs differ by up to 5e-4 between 1 and 2
# frames per pass on an AMD EPYC), not on the other frames' content (measured, fp32 and bf16). CPU:
# bigger passes are not faster (activations leave the caches); yolo11n-pose at 640x480, 1 thread,
# Xeon with AMX: fp32 67 / 68 / 73 / 88 ms per frame at 1 / 2 / 4 / 32 frames per pass; bf16 41 /
# 33 / 31 / 45 ms. CUDA: a guess, not yet measured on a GPU.
CPU_FRAMES_PER_PASS = {"fp32": 1, "bf16": 4}
CUDA_FRAMES_PER_PASS = 16
_WEIGHTS_HINT = "set pose.weights=/path/to/yolo11n-pose.pt"


# ------------------------------------------------------------------------------- weights


def local_weights(weights: str | Path) -> str | None:
    """The file ``pose.weights`` names, or None for a bare name (``yolo11n-pose.pt``, resolved
    by Ultralytics: :func:`resolve_weights`). Raises UserError for a path that is not there;
    imports nothing (``hpnet.load`` checks it before the pose model is built)."""
    text = str(weights).strip()
    path = Path(text).expanduser()
    if path.is_file():
        return str(path)
    if path.parent != Path(".") or path.is_dir():  # a path, not a bare name
        is_yaml = text.lower().endswith((".yaml", ".yml"))
        what = "pose model config" if is_yaml else "pose weights file"
        raise UserError(f"{what} {missing(path)}: {path} ({_WEIGHTS_HINT})")
    return None


def resolve_weights(weights: str | Path) -> str:
    """Return what to hand to ``ultralytics.YOLO``: a local file, a model YAML or a known name.

    Raises UserError when a path does not exist, or when a known Ultralytics name (e.g.
    ``yolo11n-pose.pt``) is not on disk and the machine is offline, so nothing waits on the network.
    """
    local = local_weights(weights)
    if local is not None:
        return local
    text = str(weights).strip()
    if text.lower().endswith((".yaml", ".yml")):
        return text  # a built-in model config, e.g. yolo11n-pose.yaml (random init, offline)
    from ultralytics.utils import SETTINGS, is_online
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    cached = Path(SETTINGS["weights_dir"]) / text
    if cached.is_file():
        return str(cached)
    if text not in GITHUB_ASSETS_NAMES:
        raise UserError(
            f"pose weights '{text}' are not a local file nor an Ultralytics model name "
            f"(looked in {Path.cwd()} and {cached.parent}); {_WEIGHTS_HINT}"
        )
    if not is_online():  # honours YOLO_OFFLINE=1; a quick DNS check otherwise
        raise UserError(
            f"pose weights file {text} is missing and there is no network to download it "
            f"(looked in {Path.cwd()} and {cached.parent}); download {text} from "
            f"https://github.com/ultralytics/assets/releases and {_WEIGHTS_HINT}"
        )
    return text


def weights_fingerprint(weights: str | Path, seed: int = 0) -> str:
    """Identity of a pose model for cache metadata: file SHA-256 prefix, or YAML name + seed."""
    resolved = resolve_weights(weights)
    path = Path(resolved)
    if path.is_file() and not resolved.lower().endswith((".yaml", ".yml")):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return f"sha256:{digest.hexdigest()[:16]}"
    return f"{path.name}:seed{seed}"


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _load_yolo(weights: str | Path, seed: int):
    """Build an Ultralytics YOLO pose model; every failure a user can fix becomes a UserError."""
    from ultralytics import YOLO

    resolved = resolve_weights(weights)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # a YAML (random-init) model is the same in every process
            model = YOLO(resolved, verbose=False)
    except (ConnectionError, FileNotFoundError) as err:
        raise UserError(
            f"cannot load pose weights {weights}: {_one_line(err)}; {_WEIGHTS_HINT}"
        ) from None
    except Exception as err:  # a corrupt or foreign file: torch.load / YAML parse errors
        raise UserError(
            f"pose weights {weights} could not be loaded ({type(err).__name__}: {_one_line(err)}); "
            f"{_WEIGHTS_HINT}"
        ) from None
    if getattr(model, "task", None) != "pose" or not getattr(model.model, "kpt_shape", None):
        raise UserError(
            f"{weights} is a YOLO '{model.task}' model, not a pose model; {_WEIGHTS_HINT}"
        )
    if tuple(model.model.kpt_shape) != (NUM_KEYPOINTS, 3):
        raise UserError(
            f"{weights} predicts keypoints of shape {tuple(model.model.kpt_shape)}; hpnet needs "
            f"the 17 COCO keypoints with confidence (17, 3); {_WEIGHTS_HINT}"
        )
    return model


# ------------------------------------------------------------------------------- devices


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 matrix units (AVX512-BF16 / AMX), where bf16 inference is faster."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` = fp16 on CUDA, bf16 on CPUs with native bf16 support, fp32 otherwise."""
    if precision == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise UserError("pose.precision=fp16 needs a CUDA device (use bf16 or fp32 on the CPU)")
    return precision


def letterbox_size(height: int, width: int, imgsz: int) -> tuple[int, int]:
    """(h, w) a frame is resized to before padding: its long side becomes ``imgsz``."""
    scale = imgsz / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def canvas_size(height: int, width: int, imgsz: int) -> tuple[int, int]:
    """(Hc, Wc) of the canvas a frame is centred on: its letterbox size rounded up to 32."""
    h, w = letterbox_size(height, width, imgsz)
    return math.ceil(h / STRIDE) * STRIDE, math.ceil(w / STRIDE) * STRIDE


# ------------------------------------------------------------------------------- estimator


class PoseEstimator:
    """An Ultralytics YOLO pose model run on batches of frames.

    Args:
        weights: checkpoint path, Ultralytics name (``yolo11n-pose.pt``) or model YAML
            (``yolo11n-pose.yaml`` builds a randomly initialised model, seeded by ``seed``).
        imgsz: inference size; each frame's long side is scaled to it, then padded to a multiple
            of 32 (as Ultralytics' own letterbox does).
        conf, iou: detection confidence threshold and NMS IoU threshold.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        precision: ``auto`` (fp16 on CUDA, bf16 on CPUs with AMX/AVX512-BF16, else fp32),
            ``fp32``, ``fp16``, ``bf16``.
        max_det: most detections kept per frame before person slots are assigned.
    """

    def __init__(
        self,
        weights: str | Path = "yolo11n-pose.pt",
        *,
        imgsz: int = 640,
        conf: float = 0.25,
        iou: float = 0.7,
        device: str = "auto",
        precision: str = "auto",
        max_det: int = 20,
        seed: int = 0,
    ) -> None:
        if imgsz < STRIDE or imgsz % STRIDE:
            raise UserError(f"pose.imgsz={imgsz} must be a multiple of {STRIDE}")
        self.weights = str(weights)
        self.imgsz, self.conf, self.iou, self.max_det = imgsz, conf, iou, max_det
        self.device = pick_device(device, option="pose.device")
        self.precision = resolve_precision(precision, self.device)
        self.model = _load_yolo(weights, seed)
        self._set_up = False  # whether Ultralytics' predictor exists (a first predict made it)

    def _predict_args(self) -> dict:
        return {
            "conf": self.conf,
            "iou": self.iou,
            "imgsz": self.imgsz,
            "max_det": self.max_det,
            "device": str(self.device),
            "quantize": 16 if self.precision == "fp16" else None,
            "verbose": False,
        }

    @property
    def frames_per_pass(self) -> int:
        """Frames in every forward pass (fixed per device and precision)."""
        if self.device.type == "cuda":
            return CUDA_FRAMES_PER_PASS
        return CPU_FRAMES_PER_PASS[self.precision]

    def _canvas(
        self, blocks: Sequence[torch.Tensor], canvas_hw: tuple[int, int], rows: int
    ) -> tuple[torch.Tensor, list[tuple]]:
        """Letterbox blocks of one canvas size into a float batch (rows, 3, Hc, Wc).

        Each frame is centred as a solo call centres it; rows past the frames stay blank (grey).
        Returns the batch and, per frame, (top, left, h, w) of the frame in it.
        """
        canvas_h, canvas_w = canvas_hw
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        canvas = torch.full(
            (rows, 3, canvas_h, canvas_w), PAD_VALUE, dtype=dtype, device=self.device
        )
        places: list[tuple] = []
        start = 0
        for block in blocks:
            h, w = letterbox_size(block.shape[-2], block.shape[-1], self.imgsz)
            x = block.to(self.device, non_blocking=True).to(dtype).div_(255)  # (n, 3, H, W)
            if x.shape[-2:] != (h, w):
                down = h < x.shape[-2]
                x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=down).clamp_(0, 1)
            top, left = (canvas_h - h) // 2, (canvas_w - w) // 2
            canvas[start : start + len(x), :, top : top + h, left : left + w] = x
            places += [(top, left, h, w)] * len(x)
            start += len(x)
        return canvas, places

    def _detect_group(
        self, blocks: Sequence[torch.Tensor], canvas_hw: tuple[int, int]
    ) -> list[FrameDetections]:
        """Frames that share one canvas size, in passes of :attr:`frames_per_pass` frames."""
        step = self.frames_per_pass
        count = sum(len(b) for b in blocks)
        canvas, places = self._canvas(blocks, canvas_hw, math.ceil(count / step) * step)
        found: list[torch.Tensor] = []
        threads = torch.get_num_threads()  # Ultralytics resets it to cores - 1 on the CPU
        for start in range(0, len(canvas), step):
            found += self._predict(canvas[start : start + step], threads)
        found = found[:count]
        if not any(len(f) for f in found):
            return [FrameDetections.empty() for _ in found]
        sizes = [len(f) for f in found]
        # Ultralytics' clipping to the canvas (its Results' scaling is the identity here: the
        # canvas is the network input), in the predictions' dtype; then one host copy
        every = torch.cat(found)
        canvas_h, canvas_w = canvas_hw
        every[:, [0, 2]] = every[:, [0, 2]].clamp(0, canvas_w)
        every[:, [1, 3]] = every[:, [1, 3]].clamp(0, canvas_h)
        kpts = every[:, 6:].view(len(every), NUM_KEYPOINTS, 3)
        kpts[..., 0] = kpts[..., 0].clamp(0, canvas_w)
        kpts[..., 1] = kpts[..., 1].clamp(0, canvas_h)
        rows = every.float().cpu().split(sizes)
        return [_to_detections(r, place) for r, place in zip(rows, places, strict=True)]

    def _predict(self, batch: torch.Tensor, threads: int) -> list[torch.Tensor]:
        """Detections per frame of a float batch ``(n, 3, Hc, Wc)``, at ``threads`` threads:
        ``(k, 6 + 51)`` rows (box xyxy, score, class, 17 x (x, y, conf)) in canvas pixels.

        Ultralytics' predictor's own preprocess, forward and NMS (with this estimator's
        ``conf``, ``iou`` and ``max_det``); a first ``predict()`` sets that predictor up, with
        the device and precision it keeps. Not ``predict()`` each time: it would also scan the
        batch, copy every canvas to the host as uint8 and wrap each frame in a Results."""
        from ultralytics.utils import nms

        use_bf16 = self.precision == "bf16"
        try:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                if not self._set_up:
                    self.model.predict(batch[:1, :, :STRIDE, :STRIDE], **self._predict_args())
                    self._set_up = True
                    torch.set_num_threads(threads)  # (the set-up changed it)
                predictor = self.model.predictor
                args = predictor.args
                preds = predictor.inference(predictor.preprocess(batch))
                return nms.non_max_suppression(  # (this estimator's settings, as each
                    preds, self.conf, self.iou, args.classes, args.agnostic_nms,  # predict())
                    max_det=self.max_det, nc=len(predictor.model.names),
                    end2end=getattr(predictor.model, "end2end", False),
                )  # fmt: skip
        finally:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def detect(self, frames: torch.Tensor | Sequence[torch.Tensor]) -> list[FrameDetections]:
        """Detect persons in every frame, each exactly as if it were alone in the call.

        Frames are grouped by their solo canvas size (:func:`canvas_size`) and each group runs in
        passes of :attr:`frames_per_pass` frames, the last one filled up with blank canvases.

        Args:
            frames: uint8 (N, 3, H, W), or a sequence of such blocks of different sizes.
        Returns:
            N :class:`FrameDetections` in input order, coordinates normalised to each frame.
        """
        blocks = [frames] if isinstance(frames, torch.Tensor) else list(frames)
        blocks = [b.unsqueeze(0) if b.dim() == 3 else b for b in blocks if b.shape[0] > 0]
        groups: dict[tuple[int, int], list[int]] = {}  # canvas (Hc, Wc) -> block numbers
        for i, block in enumerate(blocks):
            hw = canvas_size(block.shape[-2], block.shape[-1], self.imgsz)
            groups.setdefault(hw, []).append(i)
        firsts = np.cumsum([0] + [len(b) for b in blocks]).tolist()  # first row of each block
        detections: list[FrameDetections] = [FrameDetections.empty()] * firsts[-1]
        for canvas_hw, members in groups.items():
            found = self._detect_group([blocks[i] for i in members], canvas_hw)
            rows = [r for i in members for r in range(firsts[i], firsts[i + 1])]
            for row, det in zip(rows, found, strict=True):
                detections[row] = det
        return detections

    def __call__(self, frames: torch.Tensor, persons: int = 2) -> np.ndarray:
        """Joints of consecutive frames of ONE video: uint8 (N, 3, H, W) -> (N, P, 17, 3)."""
        return track_persons(self.detect(frames), persons)


def _to_detections(pred: torch.Tensor, place: tuple[int, int, int, int]) -> FrameDetections:
    """One frame's detections ``(k, 6 + 51)`` (float32, canvas pixels, clipped to the canvas)
    -> detections normalised to the frame, ranked."""
    if len(pred) == 0:
        return FrameDetections.empty()
    top, left, h, w = place
    offset = torch.tensor([left, top], dtype=torch.float32)
    size = torch.tensor([w, h], dtype=torch.float32)
    boxes = pred[:, :4].reshape(-1, 2, 2)
    boxes = ((boxes - offset) / size).clamp_(0, 1).view(-1, 4)
    scores = pred[:, 4].contiguous()
    kpts = pred[:, 6:].reshape(-1, NUM_KEYPOINTS, 3).clone()  # (k, 17, 3) canvas pixels
    kpts[..., :2] = (kpts[..., :2] - offset) / size
    outside = (kpts[..., :2] < 0).any(-1) | (kpts[..., :2] > 1).any(-1) | (kpts[..., 2] <= 0)
    kpts[outside] = 0  # missing joint: confidence 0 and x = y = 0
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = torch.argsort(scores * area, descending=True, stable=True)
    return FrameDetections(
        boxes[order].numpy(), scores[order].numpy(), kpts[order].contiguous().numpy()
    )
