"""``python -m hpnet.predict`` on real clips: probabilities, order, JSON schema, bad files,
open-vocabulary labels, pose from the cache or the YOLO model, overlays and Grad-CAM."""

from __future__ import annotations

import json
import shutil
import warnings
from functools import partial
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from hpnet.cli import UserError
from hpnet.inference import JointFinder, SampledVideo, VideoInput, collect_videos, read_sampled
from hpnet.predict import main
from hpnet.text.prompts import read_labels
from hpnet.video_cli import split_inputs

# The keys README.md documents for `--json` (document, per video, per failed video).
DOCUMENT_KEYS = {"checkpoint", "labels", "top_k", "frames", "views", "crops", "videos", "failed"}
VIDEO_KEYS = {
    "video",
    "ok",
    "top",
    "pose",
    "num_frames",
    "frame_indices",
    "seconds",
    "overlay",
    "explain",
}
FAILED_KEYS = {"video", "ok", "error"}
REPO = Path(__file__).resolve().parents[1]


def _train(args: list[str], out: Path, *extra: str) -> Path:
    from hpnet.train import main as train_main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = train_main(
            [*args, f"train.out_dir={out}", "train.epochs=1", "train.max_steps=2", *extra]
        )
    assert code == 0
    return out / "last.pt"


@pytest.fixture(scope="module")
def checkpoint(tiny_args, tmp_path_factory) -> Path:
    """A tiny HP-Net (text head, pose) trained for 2 steps on the synthetic actions."""
    return _train(tiny_args, tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def clips(shared_data, tmp_path_factory) -> Path:
    """Three real clips in a folder (two HMDB51 AVIs and a Kinetics mp4)."""
    folder = tmp_path_factory.mktemp("clips")
    mini = shared_data / "hmdb51_mini"
    for src in [*sorted((mini / "golf").glob("*.avi")), *sorted((mini / "punch").glob("*.avi"))]:
        shutil.copy(src, folder / f"{src.parent.name}.avi")
    shutil.copy(shared_data / "videos/other/kinetics_arm_wrestling.mp4", folder / "wrestle.mp4")
    return folder


def _predict_json(capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_json_over_real_clips_sums_to_one_and_is_stable(checkpoint, clips, capsys):
    args = [str(clips), "--checkpoint", str(checkpoint), "--top-k", "100", "--pose-cache", ""]
    args += ["--no-pose-estimation", "eval.views=2"]
    code, doc = _predict_json(capsys, *args)
    assert code == 0
    assert set(doc) == DOCUMENT_KEYS and doc["failed"] == 0
    assert doc["views"] == 2 and doc["frames"] == 4
    assert [Path(v["video"]).name for v in doc["videos"]] == [
        "golf.avi",
        "punch.avi",
        "wrestle.mp4",
    ]
    for video in doc["videos"]:
        assert set(video) == VIDEO_KEYS and video["ok"] and video["pose"] == "none"
        top = video["top"]
        assert len(top) == len(doc["labels"]) == 11  # top-k is capped at the label count
        assert doc["top_k"] == 11  # (as the document says)
        assert sum(t["prob"] for t in top) == pytest.approx(1.0, abs=1e-4)
        assert [t["prob"] for t in top] == sorted((t["prob"] for t in top), reverse=True)
        assert {t["label"] for t in top} == set(doc["labels"])
        assert all(doc["labels"][t["index"]] == t["label"] for t in top)
        assert np.array(video["frame_indices"]).shape == (2, 4)
        assert set(video["seconds"]) == {"decode", "pose", "model"}

    _, again = _predict_json(capsys, *args)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in doc["videos"]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in again["videos"]]


def test_a_video_that_is_not_there_is_said_before_the_model_loads(tmp_path):
    """One typo among other videos is reported with them; when no video given exists, the
    command stops at once (here before reading a checkpoint that is not there either)."""
    missing = tmp_path / "golf_video.avi"
    with pytest.raises(UserError, match=rf"video not found: {missing} \(check the path\)"):
        main([str(missing), "--checkpoint", str(tmp_path / "no_run" / "best.pt")])
    assert [v.rel for v in collect_videos([missing, __file__])] == [
        "golf_video.avi",
        "test_predict.py",
    ]


def test_bad_files_are_reported_and_the_others_predicted(checkpoint, clips, tmp_path, capsys):
    folder = tmp_path / "mixed"
    shutil.copytree(clips, folder)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.avi").write_text("not a video\n")
    data = (clips / "golf.avi").read_bytes()
    (folder / "truncated.avi").write_bytes(data[: len(data) // 50])
    code, doc = _predict_json(
        capsys, str(folder), str(tmp_path / "missing.mp4"), "--checkpoint", str(checkpoint),
        "--no-pose-estimation", "--pose-cache", "",
    )  # fmt: skip
    assert code == 1
    by_name = {Path(v["video"]).name: v for v in doc["videos"]}
    bad = {"empty.mp4", "notes.avi", "truncated.avi", "missing.mp4"}
    assert {n for n, v in by_name.items() if not v["ok"]} == bad
    for name in bad:
        assert set(by_name[name]) == FAILED_KEYS and by_name[name]["error"]
    assert all(by_name[n]["ok"] for n in ("golf.avi", "punch.avi", "wrestle.mp4"))
    assert doc["failed"] == 4

    capsys.readouterr()
    assert main([str(folder), "--checkpoint", str(checkpoint), "--no-pose-estimation"]) == 1
    printed = capsys.readouterr().out
    assert "empty.mp4: FAILED" in printed and "3 of 6 videos could not be read" in printed


def test_label_lists_are_checked_the_same_everywhere(tiny_checkpoint, tmp_path):
    """--labels, --labels-file, export --labels and hpnet.load(labels=...) share one check: an
    empty --labels (an unset shell variable) or a string for a list is refused, not ignored or
    split into letters."""
    import hpnet
    from hpnet.text.prompts import check_labels

    with pytest.raises(UserError, match=r"at least 2 labels, got \[\]"):
        read_labels("", None)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("wave\nsauter \xe0 la corde\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1\.txt is not UTF-8 text"):
        read_labels(None, str(latin1))
    bom = tmp_path / "bom.txt"
    bom.write_bytes("wave\nclap\n".encode("utf-8-sig"))
    assert read_labels(None, str(bom)) == ["wave", "clap"]  # (the BOM not in the first label)
    for bad, message in [
        ("wave,clap", "not the one string 'wave,clap'"), (["wave"], "at least 2 labels"),
        (["wave", "wave"], "'wave' is given twice"), (["wave", " "], "non-empty string"),
    ]:  # fmt: skip
        with pytest.raises(UserError, match=message):
            check_labels(bad)
        with pytest.raises(UserError, match=message):
            hpnet.load(tiny_checkpoint, labels=bad)
    from hpnet.export import main as export_main

    with pytest.raises(UserError, match="at least 2 labels"):  # (exported the trained ones)
        export_main(["--checkpoint", str(tiny_checkpoint), "--out", "m.pt2", "--labels", ""])


def test_open_vocabulary_labels_through_the_text_head(checkpoint, clips, tmp_path, capsys):
    labels = ["golf swing", "punch", "arm wrestling"]
    code, doc = _predict_json(
        capsys, str(clips / "golf.avi"), "--checkpoint", str(checkpoint),
        "--labels", ",".join(labels), "--no-pose-estimation", "--top-k", "3",
    )  # fmt: skip
    assert code == 0 and doc["labels"] == labels
    top = doc["videos"][0]["top"]
    assert sorted(t["label"] for t in top) == sorted(labels)
    assert sum(t["prob"] for t in top) == pytest.approx(1.0, abs=1e-4)

    file = tmp_path / "labels.txt"
    file.write_text("\n".join(labels) + "\n\n")
    assert read_labels(None, str(file)) == labels
    with pytest.raises(UserError, match="'wave' is given twice"):
        read_labels("wave,clap,wave", None)
    with pytest.raises(UserError, match="at least 2 labels"):
        read_labels("wave,", None)
    with pytest.raises(UserError, match="not both"):
        read_labels("a,b", str(file))


def test_linear_head_cannot_take_other_labels(tiny_args, clips, tmp_path):
    linear = _train(tiny_args, tmp_path / "linear", "model.text=false")
    with pytest.raises(UserError, match="linear head"):
        main([str(clips / "golf.avi"), "--checkpoint", str(linear), "--labels", "a,b"])


def test_pose_from_the_cache_else_from_yolo(
    checkpoint, clips, yolo_weights, tmp_path, capsys, caplog
):
    """A video with a cache file uses it (found by its path's tail), the others run YOLO."""
    cache = tmp_path / "cache"
    sampled = read_sampled(clips / "golf.avi", frames=4, views=1)
    from hpnet.pose.store import save_joints

    marker = np.zeros((sampled.info.num_frames, 1, 17, 3), np.float32)
    marker[..., 2] = 1.0
    marker[..., :2] = 0.5
    frames = np.arange(sampled.info.num_frames)
    save_joints(cache / f"{clips.name}/golf.avi.npz", marker, frames, {})
    code, doc = _predict_json(
        capsys, str(clips / "golf.avi"), str(clips / "wrestle.mp4"), "--checkpoint",
        str(checkpoint), "--pose-cache", str(cache), f"pose.weights={yolo_weights}",
        "pose.track=sampled",  # YOLO on 4 frames (dense: test_estimated_joints_are_...)
    )  # fmt: skip
    assert code == 0
    assert [v["pose"] for v in doc["videos"]] == ["cache", "estimated"]
    (cache / f"{clips.name}/golf.avi.npz").write_bytes(b"corrupt")  # falls back to YOLO
    code, doc = _predict_json(
        capsys, str(clips / "golf.avi"), "--checkpoint", str(checkpoint), "--pose-cache",
        str(cache), f"pose.weights={yolo_weights}", "pose.track=sampled",
    )  # fmt: skip
    assert code == 0 and doc["videos"][0]["pose"] == "estimated"
    assert "golf.avi.npz" in caplog.text and "estimating the joints instead" in caplog.text


@pytest.mark.slow  # (~18 s: YOLO on every frame of real clips, twice)
def test_estimated_joints_are_the_pose_caches_unless_pose_track_is_sampled(
    clips, yolo_weights, tmp_path
):
    """``pose.track=dense`` (the default) runs YOLO on a video without a cache file as the cache
    command runs it, so predict gives the model the very joints training read from the cache;
    ``sampled`` (YOLO on the sampled frames only) puts the boxers in other slots."""
    from hpnet.config import load_config
    from hpnet.pose.cache import main as cache_main
    from hpnet.pose.store import JointCache
    from hpnet.predictor import dense_frames, pose_estimator

    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(clips / "punch.avi", folder / "punch.avi")
    settings = [f"pose.weights={yolo_weights}", "pose.stride=3", "pose.batch=8"]
    assert cache_main(["--videos", str(folder), "--out", str(tmp_path / "cache"), *settings]) == 0
    video = VideoInput(folder / "punch.avi", "punch.avi")
    sampled = read_sampled(video.path, frames=16, views=2)
    cached = JointCache(tmp_path / "cache", persons=2)(video, sampled.indices, sampled.info)
    assert sampled.indices.max() % 3 == 2  # its nearest cached frame is the one after it
    estimated = {}
    for track in ("dense", "sampled"):
        cfg = load_config(REPO / "configs" / "demo.yaml", [*settings, f"pose.track={track}"])
        finder = JointFinder("", 2, partial(pose_estimator, cfg), dense_frames(cfg))
        estimated[track], source = finder(video, sampled)
        assert source == "estimated" and estimated[track].shape == (2, 16, 2, 17, 3)
    np.testing.assert_array_equal(estimated["dense"], cached)
    moved = np.abs(estimated["sampled"] - cached).max(axis=(-2, -1)) > 0.05  # (V, T, P)
    assert moved.sum() >= 8


def test_the_most_specific_cache_file_of_this_very_video_is_used(tmp_path, caplog):
    """``b/run.mp4`` given alone finds ``b/run.mp4.npz`` before a root-level ``run.mp4.npz``;
    a file recorded from another video (other size) is passed over, with a warning."""
    from hpnet.pose.same_video import video_facts
    from hpnet.pose.store import save_joints

    video = tmp_path / "videos" / "b" / "run.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"x" * 1000)
    cache = tmp_path / "cache"
    joints = np.zeros((1, 1, 17, 3), np.float32)
    for rel in ("run.mp4", "b/run.mp4"):
        save_joints(cache / f"{rel}.npz", joints, np.arange(1), video_facts(video))
    finder = JointFinder(cache, persons=2)
    assert finder.cached_record(VideoInput(video, "run.mp4")).rel == "b/run.mp4"
    other = tmp_path / "other.mp4"
    other.write_bytes(b"y" * 999)
    save_joints(cache / "b/run.mp4.npz", joints, np.arange(1), video_facts(other))
    assert finder.cached_record(VideoInput(video, "run.mp4")).rel == "run.mp4"  # still this one
    save_joints(cache / "run.mp4.npz", joints, np.arange(1), video_facts(other))
    assert finder.cached_record(VideoInput(video, "run.mp4")) is None
    assert "b/run.mp4.npz was made from another video than" in caplog.text
    assert "its joints count as missing" in caplog.text


def test_a_cache_file_of_other_pose_settings_is_warned_of_once(tmp_path, caplog):
    """hpnet.predict used a cache file made with other pose.* settings than the checkpoint's
    without a word (a training run warns of them): said once per settings."""
    from hpnet.config import load_config
    from hpnet.pose.same_video import video_facts
    from hpnet.pose.store import save_joints

    pose = load_config(None, []).pose
    cache, joints = tmp_path / "cache", np.zeros((1, 1, 17, 3), np.float32)
    videos = []
    for name, conf in (("a.mp4", pose.conf), ("b.mp4", 0.6), ("c.mp4", 0.6)):
        videos.append(tmp_path / name)
        videos[-1].write_bytes(b"x" * 100)
        meta = {**video_facts(videos[-1]), "model": pose.weights, "conf": conf, "persons": 2}
        save_joints(cache / f"{name}.npz", joints, np.arange(1), meta)
    finder = JointFinder(cache, persons=2, pose=pose)
    with caplog.at_level("WARNING", logger="hpnet.inference"):
        assert finder.cached_record(VideoInput(videos[0], "a.mp4")).rel == "a.mp4"
        assert caplog.messages == []  # the model's own settings
        for video in videos[1:]:
            assert finder.cached_record(VideoInput(video, video.name)) is not None
    assert caplog.messages == [
        f"pose cache file {cache / 'b.mp4.npz'} was made with other pose settings than the "
        f"model's: pose.conf=0.6 (the model's: {pose.conf}); its joints are used, but a video "
        "without a file gets the model's (pass --pose-cache '' to estimate every video's, or "
        "cache again with the checkpoint's config)"
    ]


def test_a_checkpoint_cache_folder_not_there_from_here_is_said(
    checkpoint, tmp_path, caplog, monkeypatch
):
    """predict run from another folder than training (a relative pose.cache_dir) ran YOLO on
    every video without a word; --pose-cache given, or the folder there: nothing said."""
    from hpnet.api import load

    monkeypatch.chdir(tmp_path)
    relative = ["pose.source=cache", "pose.cache_dir=rel_cache"]
    with caplog.at_level("WARNING", logger="hpnet.predictor"):
        load(checkpoint, overrides=relative)
        said = [r.getMessage() for r in caplog.records if r.name == "hpnet.predictor"]
        assert len(said) == 1 and said[0].startswith(
            f"the checkpoint's pose cache folder rel_cache (pose.cache_dir) is not there from "
            f"{tmp_path}: joints are estimated by the pose model; give --pose-cache"
        )
        caplog.clear()
        (tmp_path / "rel_cache").mkdir()
        load(checkpoint, overrides=relative)
        load(checkpoint, pose_cache="", overrides=["pose.cache_dir=gone"])
        assert not [r for r in caplog.records if r.name == "hpnet.predictor"]


def test_a_linked_video_finds_the_cache_file_of_its_own_name(tmp_path):
    """A dataset's ``cooking/drink.avi``, a link to ``clips/orig.avi``, given alone: its cache
    file (named as the dataset lists it) was looked for under the target's name only."""
    from hpnet.pose.same_video import video_facts
    from hpnet.pose.store import save_joints

    target = tmp_path / "clips" / "orig.avi"
    target.parent.mkdir()
    target.write_bytes(b"x" * 1000)
    link = tmp_path / "ds" / "cooking" / "drink.avi"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    cache = tmp_path / "cache"
    save_joints(cache / "cooking/drink.avi.npz", np.zeros((1, 1, 17, 3), np.float32),
                np.arange(1), video_facts(link))  # fmt: skip
    found = JointFinder(cache, persons=2).cached_record(VideoInput(link, "drink.avi"))
    assert found is not None and found.rel == "cooking/drink.avi"


def test_joint_finder_lays_estimated_joints_out_per_sampled_frame():
    """Repeated frames run once, in time order, and every (view, step) gets its frame's joints."""
    indices = np.array([[4, 0, 4], [2, 2, 6]])
    frames = torch.from_numpy(indices).to(torch.uint8).view(2, 3, 1, 1, 1).expand(2, 3, 3, 2, 2)
    seen: list[list[int]] = []

    def estimator(batch: torch.Tensor, persons: int) -> np.ndarray:
        values = batch[:, 0, 0, 0].tolist()
        seen.append(values)
        out = np.zeros((len(values), persons, 17, 3), np.float32)
        out[:, 0, 0, 0] = values
        return out

    finder = JointFinder("", persons=2, estimator=lambda: estimator)
    sampled = SampledVideo(frames.contiguous(), indices, info=None)  # type: ignore[arg-type]
    joints, source = finder(VideoInput(Path("x.mp4"), "x.mp4"), sampled)
    assert source == "estimated" and seen == [[0, 2, 4, 6]]
    assert joints.shape == (2, 3, 2, 17, 3)
    np.testing.assert_array_equal(joints[..., 0, 0, 0], indices)


def test_overlays_png_strip_and_mp4_with_grad_cam(checkpoint, clips, tmp_path, capsys, monkeypatch):
    import hpnet.overlay

    png, mp4 = tmp_path / "golf.png", tmp_path / "golf.mp4"
    base = [str(clips / "golf.avi"), "--checkpoint", str(checkpoint), "--no-pose-estimation"]
    # A 2-step model's Grad-CAM can be all negative (nothing to draw) for a label; on the cropped
    # canvas it is positive for the top label of this clip (pad gives a different input).
    base.append("data.resize=crop")
    drawn, draw = [], hpnet.overlay.write_clip_overlay

    def recorded(path, frames, *args, **kwargs):
        drawn.append(tuple(frames.shape))
        return draw(path, frames, *args, **kwargs)

    monkeypatch.setattr(hpnet.overlay, "write_clip_overlay", recorded)
    assert main([*base, "--overlay", str(png)]) == 0
    assert drawn == [(4, 3, 240, 320)]  # the frames as decoded (the model's are the canvas's)
    assert main([*base, "--overlay", str(mp4), "--cam"]) == 0
    assert f"overlay: {mp4}" in capsys.readouterr().out
    from PIL import Image

    strip = np.asarray(Image.open(png))
    assert strip.shape[1] >= 4 * 360  # 4 frames in a row, enlarged to >= 360 px high
    with av.open(str(mp4)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 4  # data.frames of the first view
    plain = tmp_path / "plain.mp4"
    assert main([*base, "--overlay", str(plain)]) == 0
    with av.open(str(plain)) as container:
        plain_frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    difference = np.abs(np.stack(plain_frames).astype(int) - np.stack(frames).astype(int))
    assert difference.mean() > 1.0  # the heat map shows

    assert main([str(clips), *base[1:], "--overlay", str(png)]) == 0
    names = sorted(p.name for p in tmp_path.glob("golf-*.png"))
    assert names == ["golf-golf.png", "golf-punch.png", "golf-wrestle.png"]  # one per video
    with pytest.raises(UserError, match="--overlay"):
        main([*base, "--cam"])


def test_backbone_cam_shape_range_and_no_leftover_gradients(checkpoint):
    from functools import partial

    from hpnet.checkpoint import load_checkpoint
    from hpnet.config import config_from_dict
    from hpnet.explain import explain_clip
    from hpnet.models.from_checkpoint import model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, config_from_dict(ckpt["config"]))
    backbone_cam = partial(explain_clip, model, method="gradcam")
    video = torch.randn(1, 4, 3, 32, 32)
    joints = torch.rand(1, 4, 2, 17, 3)
    heat = backbone_cam(video, joints, target=3)
    gh, gw = model.backbone.grid_size
    assert heat.shape == (4, gh, gw)
    assert float(heat.min()) >= 0 and float(heat.max()) == pytest.approx(1.0)
    assert all(p.grad is None for p in model.parameters())
    assert not torch.equal(heat, backbone_cam(video, joints, target=5))
    # Without joints the logits read only the class token: the map must still show something.
    assert float(backbone_cam(video, None, target=3).max()) == pytest.approx(1.0)


def test_inputs_overrides_and_folders(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.MP4").write_bytes(b"1")
    (tmp_path / "a" / "y.avi").write_bytes(b"1")
    (tmp_path / "a" / "readme.txt").write_text("")
    (tmp_path / "a" / "._y.avi").write_bytes(b"1")  # macOS AppleDouble: not a video
    (tmp_path / "a" / ".hidden").mkdir()
    (tmp_path / "a" / ".hidden" / "z.mp4").write_bytes(b"1")
    videos = collect_videos([tmp_path / "a", tmp_path / "gone.mp4"])
    assert [v.rel for v in videos] == ["b/x.MP4", "y.avi", "gone.mp4"]
    with pytest.raises(UserError, match="no video files"):
        collect_videos([_empty(tmp_path)])
    assert split_inputs(["clip.mp4", "data.frames=8", "eval.views=1"]) == (
        ["clip.mp4"],
        ["data.frames=8", "eval.views=1"],
    )
    odd = tmp_path / "data.frames=8"
    odd.write_bytes(b"1")
    assert split_inputs([str(odd)]) == ([str(odd)], [])
    typos = ["frames=8", "eval.Views=1", "data.joint.a-1.root=/x"]  # bad keys, named as such
    assert split_inputs(["clip.mp4", *typos, "my clips/a=b.mp4"]) == (
        ["clip.mp4", "my clips/a=b.mp4"],
        typos,
    )


def _empty(root: Path) -> Path:
    folder = root / "empty"
    folder.mkdir()
    return folder


def test_data_max_pixels_applies_to_predict(checkpoint, clips, capsys):
    code, doc = _predict_json(
        capsys, str(clips / "golf.avi"), str(clips / "wrestle.mp4"), "--checkpoint",
        str(checkpoint), "--no-pose-estimation", "--pose-cache", "", "data.max_pixels=80000",
    )  # fmt: skip
    assert code == 1 and [v["ok"] for v in doc["videos"]] == [True, False]  # 320x240 / 340x256
    assert "over the limit of 80000 pixels" in doc["videos"][1]["error"]


def test_overlay_labels_draw_accented_class_names():
    """Pillow's default font drew ``klättern`` as ``kl□ttern`` (its box for a glyph it lacks,
    the one it draws for Tamil, which no font here has)."""
    from hpnet.overlay import _font

    def drawn(text: str) -> tuple:
        mask = _font(20).getmask(text)
        return mask.size, bytes(mask)

    assert drawn("\u00e4") != drawn("\u0b95") and drawn("\u00e4") != drawn("a")


def test_overlay_files_never_overwrite_each_other():
    from hpnet.predictor import overlay_paths

    assert overlay_paths("ov/out.png", ["golf/clip.avi"]) == [Path("ov/out.png")]
    rels = ["clip.mp4", "clip.mp4", "golf/clip_x.avi", "golf_clip/x.avi", "clip-2.mp4"]
    names = [p.name for p in overlay_paths("ov/out.png", rels)]
    assert names == [
        "out-clip.png", "out-clip-2.png", "out-golf_clip_x.png", "out-golf_clip_x-2.png",
        "out-clip-2-2.png",
    ]  # fmt: skip
    video = Path("clips/../clips/golf.mp4")
    with pytest.raises(UserError, match=r"would overwrite the input video clips/golf\.mp4"):
        overlay_paths("clips/golf.mp4", ["golf.mp4"], [video])  # the same file, named otherwise
    with pytest.raises(UserError, match="would overwrite the input video"):
        overlay_paths("clips/out.mp4", ["a.mp4", "b.mp4"], [Path("clips/out-b.mp4")])


def test_an_overlay_that_cannot_be_written_is_a_one_line_error(tmp_path, monkeypatch):
    """A full disk under a PNG strip, a folder gone under a video: the WriteError naming the
    file, and no file or temp file left."""
    import errno

    from PIL import Image

    from hpnet.atomic import WriteError
    from hpnet.overlay import write_overlay

    def full(self, f, *args, **kwargs):
        f.write(b"half a PNG")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    frames = [np.zeros((32, 32, 3), np.uint8)] * 3
    with pytest.raises(WriteError, match=r"could not write overlay .*o\.png: .*ENOSPC.*disk"):
        write_overlay(tmp_path / "o.png", frames)
    gone = tmp_path / "gone"
    monkeypatch.setattr("hpnet.overlay.make_file_folder", lambda path, **kw: path)
    with pytest.raises(WriteError, match=rf"could not write overlay {gone}/o\.mp4: .*ENOENT"):
        write_overlay(gone / "o.mp4", frames)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", ["mp4", "mkv", "avi"])
def test_an_overlay_video_is_written_whole_or_not_at_all(tmp_path, monkeypatch, suffix):
    """Every rendered frame in the named container; an encoder failure half-way leaves no
    partial file behind (and no temp file)."""
    import av

    from hpnet.overlay import write_overlay

    ys, xs = np.mgrid[0:120, 0:212]  # moving gradients: H.264 would use B-frames
    moving = [
        np.stack([(xs + 7 * i) % 256, (ys + 3 * i) % 256, (xs + ys) % 256], -1) for i in range(8)
    ]
    path = write_overlay(tmp_path / f"moving.{suffix}", [f.astype(np.uint8) for f in moving], fps=4)
    with av.open(str(path)) as container:
        stamps = [f.pts for f in container.decode(video=0)]
    assert len(stamps) == 8 and stamps == sorted(stamps)  # an AVI's frames keep their order
    frames = [np.full((31, 45, 3), 20 * i, np.uint8) for i in range(6)]
    path = write_overlay(tmp_path / f"clip.{suffix}", frames, fps=5)
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6
    real, made = av.VideoFrame.from_ndarray, []

    def fail_late(array, format):  # after the encoder has written packets
        made.append(1)
        if len(made) == 90:
            raise OSError("disk full")
        return real(array, format=format)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", fail_late)
    with pytest.raises(OSError, match="disk full"):
        write_overlay(tmp_path / "broken" / f"clip.{suffix}", frames * 20, fps=5)
    assert list((tmp_path / "broken").iterdir()) == []


def test_dense_pose_tracking_reports_its_progress_over_the_frames_it_runs_on(tmp_path, monkeypatch):
    """``pose.track=dense`` on a long clip runs the pose model on every ``stride``-th frame up to
    the last sampled one: a bar (shown after 2 s) counts exactly those frames, and closes."""
    from videos import write_video

    import hpnet.inference
    from hpnet.pose.frames import FrameChunks
    from hpnet.pose.tracking import FrameDetections

    path = write_video(tmp_path / "long.mp4", 40)
    bars: list[dict] = []

    class Bar:
        def __init__(self, total: int, desc: str, unit: str, delay: float) -> None:
            self.state = {"total": total, "desc": desc, "delay": delay, "done": 0, "closed": False}
            bars.append(self.state)

        def update(self, n: int) -> None:
            self.state["done"] += n

        def close(self) -> None:
            self.state["closed"] = True

    class Model:
        device = torch.device("cpu")
        seen = 0

        def detect(self, frames: torch.Tensor) -> list[FrameDetections]:
            Model.seen += len(frames)
            return [FrameDetections.empty() for _ in frames]

    monkeypatch.setattr(hpnet.inference, "long_work_bar", Bar)
    frames = partial(FrameChunks, stride=3, chunk=4, imgsz=64)
    finder = JointFinder("", 2, Model, frames)
    sampled = read_sampled(path, frames=4, views=1)
    joints, source = finder(VideoInput(path, "long.mp4"), sampled)
    assert source == "estimated" and joints.shape == (1, 4, 2, 17, 3)
    last = int(sampled.indices.max())
    assert Model.seen == len(range(0, min(last + 3, 40), 3))  # up to the one at/after the last
    assert bars == [
        {"total": Model.seen, "desc": "pose long.mp4", "delay": 2.0, "done": Model.seen,
         "closed": True}
    ]  # fmt: skip
