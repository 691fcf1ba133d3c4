"""The built-in dataset: rendered stick-figure actions with ground-truth joints, no download.

Each clip is a pure function of ``(seed, split, index)``: the label is ``index % C``, and the
scene (background clutter, lighting, moving shapes, figure size, speed, colours, and with
``distractor=True`` a second, smaller figure doing a different action) comes from
``numpy.random.default_rng([seed, split, index])``. A split is rendered once (about 8 ms per
32-frame 64 x 64 clip on one CPU core), kept in memory and cached on disk under
``<root>/synthetic-<key>/`` so later runs reuse it; the key covers the settings and the
renderer's source code, so a changed renderer never serves stale clips.

    ds = SyntheticActions("train", num_videos=480, frames=8, resolution=64, length=32, seed=0,
                          distractor=False, train=True, root="data/synthetic")
    ds[0]["video"]   # uint8 (8, 3, 64, 64)
    ds[0]["joints"]  # float32 (8, 2, 17, 3): the actor first, then the distractor (or zeros)

The same clips as real files, for the file pipeline (decode, pose cache, list datasets):
``python -m hpnet.data.synthetic data/synthetic_files --train 480 --test 160``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from hpnet.atomic import temp_name
from hpnet.cli import progress_enabled
from hpnet.data.canvas import Canvas
from hpnet.data.motions import ACTIONS, REVERSAL_PAIRS
from hpnet.data.sampling import DrawKey, sample_frame_indices, sample_rng, split_draw_key
from hpnet.data.synthetic_splits import SPLIT_ID, load_or_render, render_one, render_split

__all__ = [
    "ACTIONS",
    "REVERSAL_PAIRS",
    "SyntheticActions",
    "render_one",
    "render_split",
    "save_preview",
    "write_synthetic_videos",
]


class SyntheticActions(Dataset):
    """Rendered clips sampled like real videos; ground-truth joints when ``joints=True``.

    Train mode: ``video uint8 (T, 3, H, W)``, ``joints (T, P, 17, 3)`` with random frame offsets
    per segment, drawn from ``(sample_seed, epoch, index)`` (``set_epoch`` selects the epoch,
    also in DataLoader workers). Test mode: ``(V, T, ...)`` with ``views`` evenly spread clips.
    Frames are put on ``canvas`` (or a padding ``Canvas(canvas_hw)``) when given, the joints
    moved with them (:mod:`hpnet.data.canvas`; a no-op at the rendered size). Person 0
    is the actor, person 1 the distractor (all zeros without one); ``joints=False`` gives zeros.
    ``classes`` = ``actions`` (default :data:`ACTIONS`); ``labels`` (``index % C``) for
    class-balanced sampling.
    """

    draw_keys = True  # takes (index, draw) keys: a repeat in a pass samples its own frames

    def __init__(
        self,
        split: Literal["train", "test"],
        *,
        num_videos: int,
        frames: int,
        resolution: int,
        length: int,
        seed: int,
        distractor: bool,
        train: bool,
        views: int = 1,
        persons: int = 2,
        joints: bool = True,
        root: str | Path | None = None,
        canvas_hw: tuple[int, int] | None = None,
        canvas: Canvas | None = None,
        sample_seed: int = 0,
        progress: bool = True,
        actions: Sequence[str] = ACTIONS,
    ) -> None:
        if split not in SPLIT_ID:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        unknown = [a for a in actions if a not in ACTIONS]
        if unknown or len(set(actions)) != len(actions) or not actions:
            raise ValueError(f"actions must be distinct names from {ACTIONS}, got {actions}")
        for name, value in (("num_videos", num_videos), ("frames", frames), ("length", length)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if resolution < 16 or views < 1 or persons < 1:
            raise ValueError(
                f"need resolution >= 16, views >= 1 and persons >= 1, "
                f"got {resolution}, {views} and {persons}"
            )
        video, joints_gt, labels = load_or_render(
            split,
            num_videos=num_videos,
            resolution=resolution,
            length=length,
            seed=seed,
            distractor=distractor,
            root=root,
            progress=progress,
            actions=actions,
        )
        self.video = torch.from_numpy(video)  # (N, L, 3, R, R)
        self.joints_gt = torch.from_numpy(joints_gt)  # (N, L, 2, 17, 3)
        self._labels = labels.tolist()
        self.classes = list(actions)
        self.frames, self.train, self.views = frames, train, views
        self.persons, self.use_joints = persons, joints
        if canvas is None and canvas_hw is not None:
            canvas = Canvas(canvas_hw)
        self.canvas = canvas
        self.sample_seed = sample_seed
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> list[int]:
        return list(self._labels)

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    def subset(self, indices: Sequence[int], *, train: bool, views: int = 1) -> SyntheticActions:
        """The clips at ``indices`` (renumbered from 0) in train or test mode (``views``); the
        rest of the settings as here (a validation split of the training clips)."""
        out = copy.copy(self)
        rows = torch.as_tensor(list(indices), dtype=torch.long)
        out.video, out.joints_gt = self.video[rows], self.joints_gt[rows]
        out._labels = [self._labels[i] for i in indices]
        out.train, out.views = train, 1 if train else views
        out._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        return out

    def __getitem__(self, key: DrawKey) -> dict[str, Any]:
        index, draw = split_draw_key(key)  # key: an index or a draw_key
        index = range(len(self))[index]  # IndexError out of range; negative indices allowed
        length = self.video.shape[1]
        rng = sample_rng(self.sample_seed, int(self._epoch[0]), index, draw)
        idx = sample_frame_indices(
            length, self.frames, train=self.train, views=1 if self.train else self.views, rng=rng
        )  # (V, T)
        flat = torch.from_numpy(idx.reshape(-1))
        video = self.video[index, flat]  # (V*T, 3, R, R)
        p = self.persons
        joints = torch.zeros(*idx.shape, p, 17, 3)
        if self.use_joints:
            gt = self.joints_gt[index, flat][:, :p]  # (V*T, min(P, 2), 17, 3)
            joints[..., : gt.shape[1], :, :] = gt.view(*idx.shape, *gt.shape[1:])
        if self.canvas is not None:
            video, joints = self.canvas.apply(video, joints)
        video = video.view(*idx.shape, *video.shape[1:])  # (V, T, 3, H, W)
        if self.train:
            video, joints = video[0], joints[0]
        return {"video": video, "joints": joints, "label": self._labels[index], "index": index}


def _write_mp4(path: Path, video: np.ndarray, fps: float) -> None:
    """Encode ``video`` uint8 ``(L, 3, H, W)`` as H.264 (or MPEG-4 Part 2) yuv420p, atomically."""
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    tmp = temp_name(path)
    try:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = video.shape[3], video.shape[2]
            stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": "18", "preset": "veryfast"}
            for frame in video:
                rgb = np.ascontiguousarray(frame.transpose(1, 2, 0))
                container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            container.mux(stream.encode())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_synthetic_videos(
    out_dir: str | Path,
    *,
    num_train: int,
    num_test: int,
    resolution: int = 64,
    length: int = 32,
    fps: float = 15.0,
    seed: int = 0,
    distractor: bool = False,
    progress: bool = True,
) -> Path:
    """Write the dataset as real videos so the whole file pipeline can run on it.

    ``<out>/<class>/<split>_<index>.mp4`` (H.264, yuv420p), ``train.txt`` / ``test.txt``
    (``<relative path> <label>`` lines, for ``data.dataset=list``), ``classes.txt``, and the
    ground-truth joints in the pose-cache format under ``<out>/pose_cache/`` (for
    ``pose.source=cache`` with ``pose.cache_dir=<out>/pose_cache``). The clips are the ones
    :class:`SyntheticActions` renders for the same settings. Returns ``out_dir``.
    """
    from hpnet.pose.store import cache_path, save_joints

    if resolution % 2 or resolution < 16:
        raise ValueError(
            f"resolution must be even and >= 16 for yuv420p video files, got {resolution} "
            f"(use {max(16, resolution + resolution % 2)})"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(ACTIONS) + "\n")
    meta = {"source": "groundtruth", "model": "groundtruth", "model_id": "groundtruth"}
    meta |= {"persons": 2, "stride": 1, "num_frames": length, "fps": fps}
    meta |= {"width": resolution, "height": resolution}
    for split, n in (("train", num_train), ("test", num_test)):
        lines = []
        for i in tqdm(
            range(n),
            desc=f"writing synthetic {split} videos",
            disable=not progress_enabled(progress),
        ):
            video, joints, label = render_one(
                seed, split, i, resolution=resolution, length=length, distractor=distractor
            )
            rel = f"{ACTIONS[label]}/{split}_{i:05d}.mp4"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            _write_mp4(out / rel, video, fps)
            save_joints(cache_path(out / "pose_cache", rel), joints, np.arange(length), meta)
            lines.append(f"{rel} {label}")
        (out / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines))
    return out


def save_preview(
    path: str | Path, video: np.ndarray, joints: np.ndarray | None = None, *, columns: int = 8
) -> Path:
    """A PNG strip of ``columns`` evenly spaced frames of ``video`` uint8 ``(T, 3, H, W)`` with
    the skeletons of ``joints`` ``(T, P, 17, 3)`` drawn on top (person 0 red, 1 blue)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from hpnet.pose.preview import DRAW_EDGES, PERSON_COLOURS

    video = np.asarray(video)
    picks = np.linspace(0, len(video) - 1, min(columns, len(video))).round().astype(int)
    height, width = video.shape[2:]
    fig, axes = plt.subplots(1, len(picks), figsize=(2 * len(picks), 2), squeeze=False)
    for ax, t in zip(axes[0], picks, strict=True):
        ax.imshow(video[t].transpose(1, 2, 0), extent=(0, width, height, 0))
        ax.set_title(f"frame {t}", fontsize=8)
        ax.axis("off")
        for p, person in enumerate(np.zeros((0, 17, 3)) if joints is None else joints[t]):
            colour, (x, y, conf) = PERSON_COLOURS[p % len(PERSON_COLOURS)], person.T
            x, y = x * width, y * height
            for i, j in DRAW_EDGES:
                if conf[i] > 0 and conf[j] > 0:
                    ax.plot([x[i], x[j]], [y[i], y[j]], color=colour, lw=1)
            ax.scatter(x[conf > 0], y[conf > 0], s=4, color=colour)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hpnet.data.synthetic OUT``: write the clips as files (or ``--preview`` PNGs)."""
    from hpnet.cli import CommandParser

    parser = CommandParser(prog="python -m hpnet.data.synthetic", description=__doc__)
    parser.add_argument("out", help="output folder")
    parser.add_argument("--train", type=int, default=480, help="train clips")
    parser.add_argument("--test", type=int, default=160, help="test clips")
    parser.add_argument("--resolution", type=int, default=64, help="frame side (even)")
    parser.add_argument("--length", type=int, default=32, help="frames per clip")
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate of the files")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (data.seed)")
    parser.add_argument("--distractor", action="store_true", help="add a second figure")
    parser.add_argument(
        "--preview", action="store_true", help="only write <out>/<class>.png, one clip per class"
    )
    args = parser.parse_args(argv)
    _check_flags(parser, args)
    clip = {"resolution": args.resolution, "length": args.length, "distractor": args.distractor}
    if args.preview:
        for index, name in enumerate(ACTIONS):
            video, joints, _ = render_one(args.seed, "train", index, **clip)
            print(save_preview(Path(args.out) / f"{name}.png", video, joints))
        return 0
    try:
        out = write_synthetic_videos(
            args.out, num_train=args.train, num_test=args.test, fps=args.fps, seed=args.seed, **clip
        )
    except ValueError as err:
        parser.error(str(err))
    except OSError as err:  # e.g. the output folder is a file
        parser.error(f"cannot write to {args.out}: {err.strerror or err}")
    print(f"wrote {args.train} + {args.test} clips to {out}")
    return 0


def _check_flags(parser: Any, args: Any) -> None:
    """The flags in the ranges of the ``data.*`` keys they stand for (:data:`LIMITS`)."""
    from hpnet.config_limits import LIMITS

    flags = {"train": "synthetic.train_videos", "test": "synthetic.test_videos", "seed": "seed"}
    flags |= {name: f"synthetic.{name}" for name in ("resolution", "length", "fps")}
    for flag, key in flags.items():
        check, allowed = LIMITS[f"data.{key}"]
        if not check(getattr(args, flag)):
            parser.error(f"--{flag} {getattr(args, flag)}: it must be {allowed} (data.{key})")


if __name__ == "__main__":
    from hpnet.cli import run_cli

    run_cli(main)
