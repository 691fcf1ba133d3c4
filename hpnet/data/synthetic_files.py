"""The synthetic clips as real files: ``python -m hpnet.data.synthetic OUT``.

:func:`write_synthetic_videos` writes the clips :class:`~hpnet.data.synthetic.SyntheticActions`
renders as mp4 files with list files and their ground-truth pose cache, and records the settings
it wrote them with in ``synthetic.json``; a run that reads the files (``pose.source=cache``)
reads them as a list dataset (:func:`synthetic_file_records`) and warns when its
``data.synthetic.*`` and ``data.seed`` ask for other clips.
:func:`save_preview` draws a clip with its skeletons as a PNG strip.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from hpnet.atomic import temp_name, write_json, write_text
from hpnet.cli import CommandParser, UserError, progress_enabled
from hpnet.data.list_files import list_records
from hpnet.data.motions import ACTIONS
from hpnet.data.records import RecordSplits
from hpnet.data.synthetic_splits import render_one

if TYPE_CHECKING:
    from hpnet.config import Config

logger = logging.getLogger(__name__)

MANIFEST = "synthetic.json"  # the settings the files of a folder were written with
WHAT = "synthetic dataset file"
MIN_FPS = 0.1  # slower rates do not fit a video stream's time base (written as 24 fps)
SETTING_FLAGS = ("train", "test", "resolution", "length", "fps", "seed")  # with values
ALL_ACTIONS = ",".join(ACTIONS)


def config_settings(cfg: Config) -> dict[str, Any]:
    """The settings (``python -m hpnet.data.synthetic`` flags) of the clips ``cfg`` asks for."""
    s = cfg.data.synthetic
    return {
        "train": s.train_videos,
        "test": s.test_videos,
        "resolution": s.resolution,
        "length": s.length,
        "fps": float(s.fps),
        "seed": cfg.data.seed,
        "distractor": s.distractor,
        "actions": ",".join(s.actions or ACTIONS),
    }


def write_command(root: str | Path, settings: dict[str, Any]) -> str:
    """The command line that writes the clips of ``settings`` into ``root``."""
    flags = [f"--{key} {settings[key]}" for key in SETTING_FLAGS]
    if settings.get("distractor"):
        flags.append("--distractor")
    if settings.get("actions", ALL_ACTIONS) != ALL_ACTIONS:
        flags.append(f"--actions {settings['actions']}")
    return " ".join(["python -m hpnet.data.synthetic", str(root), *flags])


def written_settings(root: str | Path) -> dict[str, Any] | None:
    """The settings ``root``'s files were written with; None without a readable manifest
    (files of an interrupted or older writer)."""
    try:
        settings = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return settings if isinstance(settings, dict) else None


def settings_differ(written: dict[str, Any], asked: dict[str, Any]) -> str:
    """What differs between the settings files were ``written`` with and the ``asked`` ones
    (:func:`config_settings`), as text ("" when nothing does)."""
    return ", ".join(
        f"{key} {written.get(key)} (asked: {value})"
        for key, value in asked.items()
        if written.get(key) != value
    )


def synthetic_file_records(cfg: Config, allow_missing: bool) -> RecordSplits:
    """The synthetic clips written as video files (for ``pose.source=cache``).

    The pose cache is computed on files (``write_synthetic_videos`` into ``data.root``:
    ``train.txt``, ``test.txt``, ``classes.txt``), so they are read like a list dataset and
    the cached joints match the frames the pose model saw.
    """
    root = Path(cfg.data.root).expanduser()
    train_list, test_list, classes = root / "train.txt", root / "test.txt", root / "classes.txt"
    if not all(f.is_file() for f in (train_list, test_list, classes)):
        raise UserError(
            "data.dataset=synthetic with pose.source=cache reads the synthetic clips as video "
            f"files, but {root} has no train.txt/test.txt/classes.txt: write them with "
            f"{write_command(root, config_settings(cfg))} and run python -m hpnet.pose.cache "
            "with this config, or use pose.source=groundtruth"
        )
    splits = list_records(train_list, test_list, root, classes, allow_missing)
    _warn_other_settings(cfg, splits, root)
    return splits


def _warn_other_settings(cfg: Config, splits: RecordSplits, root: Path) -> None:
    """The files are read as written: say so when ``data.synthetic.*`` or ``data.seed`` ask
    for other clips (those settings made the files; here they change nothing)."""
    asked, written = config_settings(cfg), written_settings(root)
    if written is not None:
        differ = settings_differ(written, asked)
    else:
        differ = f"settings unknown (no {MANIFEST}: an interrupted or older writer)"
        differ += f", {len(splits.train)} train and {len(splits.test)} test videos"
        actions = list(cfg.data.synthetic.actions) or list(ACTIONS)
        if actions != list(splits.classes):
            differ += f", {len(splits.classes)} classes ({len(actions)} asked)"
    if differ:
        logger.warning(
            "%s holds synthetic clips with %s: with pose.source=cache the files are read as "
            "they are, whatever data.synthetic.* and data.seed say; write the asked ones with "
            "%s (then cache their joints again)%s", root, differ, write_command(root, asked),
            "" if written is None else _as_written(written, asked),
        )  # fmt: skip


SETTING_KEYS = {"seed": "data.seed", "train": "data.synthetic.train_videos"}
SETTING_KEYS |= {"test": "data.synthetic.test_videos"}


def _as_written(written: dict[str, Any], asked: dict[str, Any]) -> str:
    """``, or describe these files: <overrides>`` that make a run ask for the settings files
    were ``written`` with instead of the ``asked`` ones ("" when they are the same)."""
    overrides = []
    for key, value in written.items():
        if key not in asked or asked[key] == value:
            continue
        option = SETTING_KEYS.get(key, f"data.synthetic.{key}")
        if key == "actions":
            value = f"[{value}]"
        elif key == "distractor":
            value = str(value).lower()
        overrides.append(f"{option}={value}")
    return f", or describe these files: {' '.join(overrides)}" if overrides else ""


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
    actions: Sequence[str] = ACTIONS,
) -> Path:
    """Write the dataset as real videos so the whole file pipeline can run on it.

    ``<out>/<class>/<split>_<index>.mp4`` (H.264, yuv420p), ``train.txt`` / ``test.txt``
    (``<relative path> <label>`` lines, for ``data.dataset=list``), ``classes.txt``, and the
    ground-truth joints in the pose-cache format under ``<out>/pose_cache/`` (for
    ``pose.source=cache`` with ``pose.cache_dir=<out>/pose_cache``). The clips are the ones
    :class:`~hpnet.data.synthetic.SyntheticActions` renders for the same settings (``actions``:
    the classes, in label order, a subset of :data:`~hpnet.data.motions.ACTIONS`), and
    ``synthetic.json`` the settings, written last (a rewrite stopped half-way leaves none, and
    no old joints beside a new video). Returns ``out_dir``.
    """
    _check_settings(resolution, fps, actions)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    earlier = _listed_clips(out)  # (a rewrite removes what it does not redo)
    render = functools.partial(
        render_one, seed, resolution=resolution, length=length, distractor=distractor,
        actions=actions,
    )  # fmt: skip
    lists = {
        split: _write_split(out, split, n, render, actions, fps, progress)
        for split, n in (("train", num_train), ("test", num_test))
    }
    # the lists once every clip is there: a rewrite stopped half-way leaves the old lists,
    # whose clips the next rewrite then removes (none left behind unlisted)
    for split, clips in lists.items():
        _write_text(out / f"{split}.txt", "".join(f"{rel} {label}\n" for rel, label in clips))
    _write_text(out / "classes.txt", "\n".join(actions) + "\n")
    _remove_clips(out, earlier - {rel for clips in lists.values() for rel, _ in clips})
    settings = {"train": num_train, "test": num_test, "resolution": resolution}
    settings |= {"length": length, "fps": float(fps), "seed": seed, "distractor": distractor}
    settings |= {"actions": ",".join(actions)}
    write_json(out / MANIFEST, settings, indent=1, what=WHAT)
    return out


def _check_settings(resolution: int, fps: float, actions: Sequence[str]) -> None:
    if resolution % 2 or resolution < 16:
        raise ValueError(
            f"resolution must be even and >= 16 for yuv420p video files, got {resolution} "
            f"(use {max(16, resolution + resolution % 2)})"
        )
    if fps < MIN_FPS:
        raise ValueError(f"fps must be >= {MIN_FPS}, got {fps}")
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown or not actions:
        raise ValueError(f"actions must be some of {ALL_ACTIONS}, got {','.join(actions)!r}")


def _write_split(
    out: Path,
    split: str,
    count: int,
    render: Callable[[str, int], tuple[np.ndarray, np.ndarray, int]],
    actions: Sequence[str],
    fps: float,
    progress: bool,
) -> list[tuple[str, int]]:
    """Write clips ``0 .. count-1`` of ``split`` (``render(split, i)`` -> video (L, 3, R, R),
    joints (L, 2, 17, 3), label into ``actions``) and their ground-truth joints; each clip's
    relative path and label."""
    from hpnet.pose.store import cache_path, save_joints

    clips = []
    bar = tqdm(
        range(count), desc=f"writing synthetic {split} videos",
        disable=not progress_enabled(progress),
    )  # fmt: skip
    for i in bar:
        video, joints, label = render(split, i)
        length = video.shape[0]
        rel = f"{actions[label]}/{split}_{i:05d}.mp4"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        joints_path = cache_path(out / "pose_cache", rel)
        joints_path.unlink(missing_ok=True)  # never an old clip's joints beside a new video
        _write_mp4(out / rel, video, fps)
        meta = {"source": "groundtruth", "model": "groundtruth", "model_id": "groundtruth"}
        meta |= {"persons": 2, "stride": 1, "num_frames": length, "fps": fps}
        meta |= {"width": video.shape[-1], "height": video.shape[-2]}
        save_joints(joints_path, joints, np.arange(length), meta)
        clips.append((rel, label))
    return clips


def _listed_clips(out: Path) -> set[str]:
    """The clips ``out``'s ``train.txt`` and ``test.txt`` list (relative paths)."""
    listed = set()
    for split in ("train", "test"):
        try:
            lines = (out / f"{split}.txt").read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        listed |= {line.rsplit(" ", 1)[0] for line in lines if line.strip()}
    return listed


def _remove_clips(out: Path, rels: set[str]) -> None:
    """Remove the clips ``rels`` of ``out`` (an earlier write's that this one did not write
    again), their ground-truth joints and the class folders they leave empty."""
    from hpnet.pose.store import cache_path

    for rel in sorted(rels):
        action, _, name = rel.partition("/")
        if action not in ACTIONS or not re.fullmatch(r"(train|test)_\d{5}\.mp4", name):
            continue  # not a clip this writer names so (a list edited by hand): left alone
        video, joints = out / rel, cache_path(out / "pose_cache", rel)
        video.unlink(missing_ok=True)
        joints.unlink(missing_ok=True)
        for folder in (video.parent, joints.parent):
            with contextlib.suppress(OSError):  # not empty: other clips, other files
                folder.rmdir()


def _write_text(path: Path, text: str) -> None:
    write_text(path, text, what=WHAT)


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


def main(argv: Sequence[str] | None = None, description: str | None = None) -> int:
    """``python -m hpnet.data.synthetic OUT``: write the clips as files (or ``--preview`` PNGs);
    ``--help`` shows ``description`` (the dataset module's docstring; default this one's)."""
    parser = CommandParser(
        prog="python -m hpnet.data.synthetic", description=description or __doc__
    )
    parser.add_argument("out", help="output folder")
    parser.add_argument("--train", type=int, default=480, help="train clips")
    parser.add_argument("--test", type=int, default=160, help="test clips")
    parser.add_argument("--resolution", type=int, default=64, help="frame side (even)")
    parser.add_argument("--length", type=int, default=32, help="frames per clip")
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate of the files")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (data.seed)")
    parser.add_argument("--distractor", action="store_true", help="add a second figure")
    parser.add_argument(
        "--actions",
        default=ALL_ACTIONS,
        help="the classes, comma-separated (data.synthetic.actions)",
    )
    parser.add_argument(
        "--preview", action="store_true", help="only write <out>/<class>.png, one clip per class"
    )
    args = parser.parse_args(argv)
    _check_flags(parser, args)
    clip = {"resolution": args.resolution, "length": args.length, "distractor": args.distractor}
    actions = [a.strip() for a in args.actions.split(",") if a.strip()]
    if args.preview:
        for index, name in enumerate(actions):
            video, joints, _ = render_one(args.seed, "train", index, actions=actions, **clip)
            print(save_preview(Path(args.out) / f"{name}.png", video, joints))
        return 0
    try:
        out = write_synthetic_videos(
            args.out, num_train=args.train, num_test=args.test, fps=args.fps, seed=args.seed,
            actions=actions, **clip,
        )  # fmt: skip
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
