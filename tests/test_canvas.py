"""Frames onto the loader canvas with their aspect kept (crop, pad) or not (stretch), joints with
them; CLIP's preprocessing for zero-shot; one test crop where three would be the same."""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from hpnet.config import load_config
from hpnet.data.canvas import Canvas, fit_frames, place
from hpnet.data.datasets import VideoClipDataset, VideoRecord, build_datasets
from hpnet.data.decode import open_video
from hpnet.data.eval_crops import distinct_crop_count
from hpnet.data.synthetic import SyntheticActions
from hpnet.data.transforms import ClipTransform
from hpnet.inference import JointFinder, read_sampled
from hpnet.zeroshot import _parser, clip_canvas, clip_eval_config, zero_shot_config

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _square_video(path: Path, frame_hw: tuple[int, int], frames: int = 3) -> tuple[int, ...]:
    """An MPEG-4 video of a white square on black, centred; returns the square's pixel box
    ``(x0, y0, x1, y1)`` (end exclusive)."""
    h, w = frame_hw
    side = min(h, w) // 3
    x0, y0 = (w - side) // 2, (h - side) // 2
    image = np.zeros((h, w, 3), np.uint8)
    image[y0 : y0 + side, x0 : x0 + side] = 255
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.height, stream.width, stream.pix_fmt = h, w, "yuv420p"
        stream.options = {"qscale": "2"}
        for _ in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return x0, y0, x0 + side, y0 + side


def _corner_joints(box: tuple[int, ...], frame_hw: tuple[int, int]):
    """A joint source putting joints 0 and 1 on the square's top-left and bottom-right corners."""
    h, w = frame_hw

    def source(record, indices, info):
        joints = np.zeros((*indices.shape, 1, 17, 3), np.float32)
        joints[..., 0, 0, :] = (box[0] / w, box[1] / h, 1.0)
        joints[..., 0, 1, :] = (box[2] / w, box[3] / h, 1.0)
        return joints

    return source


@pytest.mark.parametrize("frame_hw", [(144, 256), (256, 144)], ids=["16:9", "portrait"])
@pytest.mark.parametrize("mode", ["crop", "pad", "stretch"])
def test_aspect_kept_and_joints_stay_on_their_pixels(tmp_path, frame_hw, mode):
    path = tmp_path / "square.mp4"
    box = _square_video(path, frame_hw)
    canvas_hw = (96, 128)  # the default 4:3 canvas shape
    clips = VideoClipDataset(
        [VideoRecord(path, 0, "square.mp4")],
        frames=2,
        train=False,
        canvas_hw=canvas_hw,
        resize=mode,
        joint_source=_corner_joints(box, frame_hw),
    )
    sample = clips[0]
    assert sample["video"].shape == (1, 2, 3, *canvas_hw)
    white = sample["video"][0, 0].float().mean(0) > 128  # (H, W)
    ys, xs = torch.nonzero(white, as_tuple=True)
    seen = (xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1)
    aspect = (seen[2] - seen[0]) / (seen[3] - seen[1])
    h, w = frame_hw
    expected = 1.0 if mode != "stretch" else (canvas_hw[1] / w) / (canvas_hw[0] / h)
    assert aspect == pytest.approx(expected, rel=0.1)
    # The joints point at the square's corners on the canvas too (within 1.5 canvas pixels).
    joints = sample["joints"][0, 0, 0]  # (17, 3)
    assert (joints[:2, 2] == 1).all()
    corners = joints[:2, :2] * torch.tensor([canvas_hw[1], canvas_hw[0]])
    assert torch.allclose(corners.flatten(), torch.tensor(seen, dtype=torch.float32), atol=1.5)
    if mode == "pad":  # the borders are black, the whole frame is there
        assert sample["video"][0, 0].float().mean() < 0.2 * 255


def test_joints_cropped_away_become_missing():
    placement = place((100, 200), (100, 100), "crop")  # keeps x in [50, 150) of 200
    assert (placement.scaled_hw, placement.top, placement.left) == ((100, 200), 0, -50)
    joints = torch.tensor([[0.1, 0.5, 0.9], [0.5, 0.5, 0.8]])  # x = 20 px: cropped; x = 100: kept
    from hpnet.data.canvas import fit_joints

    out = fit_joints(joints, placement)
    assert out[0].tolist() == [0.0, 0.0, 0.0]
    assert out[1].tolist() == pytest.approx([0.5, 0.5, 0.8])


@pytest.mark.parametrize("mode", ["crop", "pad", "stretch"])
def test_joints_are_cleaned_alike_whatever_the_frames_shape(mode):
    """A missing joint is (0, 0, 0) and one off the frame is missing in every mode, also when
    the frame already has the canvas's shape (320x240 on 341x256: no crop or pad to do)."""
    from hpnet.data.canvas import fit_joints

    joints = torch.tensor([[0.3, 0.4, 0.0], [1.2, 0.5, 0.8], [0.5, 0.5, 0.9]])
    out = fit_joints(joints, place((240, 320), (256, 341), mode))
    assert out[:2].tolist() == [[0.0, 0.0, 0.0]] * 2
    assert out[2].tolist() == pytest.approx([0.5, 0.5, 0.9], abs=2e-3)


@pytest.mark.parametrize("frame_hw", [(240, 426), (426, 240), (240, 320), (97, 150), (224, 224)])
def test_crop_on_a_square_canvas_is_torchvisions_resize_and_centre_crop(frame_hw):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    g = torch.Generator().manual_seed(0)
    smooth = torch.rand(2, 3, 12, 12, generator=g)  # a smooth picture (no rounding lottery)
    frames = torch.nn.functional.interpolate(smooth, size=frame_hw, mode="bilinear")
    frames = (frames * 255).round().to(torch.uint8)
    ours = fit_frames(frames, (224, 224), "crop", "bicubic")
    resized = TF.resize(frames, 224, interpolation=InterpolationMode.BICUBIC, antialias=True)
    assert place(frame_hw, (224, 224), "crop").scaled_hw == tuple(resized.shape[-2:])
    reference = TF.center_crop(resized, 224)
    assert ours.shape == reference.shape == (2, 3, 224, 224)
    assert (ours.int() - reference.int()).abs().max() <= 1


def test_square_canvas_gives_one_test_crop_wide_gives_three():
    tf = ClipTransform(size=32, mean=MEAN, std=STD, flip=False)
    square = torch.randint(0, 255, (2, 3, 4, 3, 36, 36), dtype=torch.uint8)
    joints = torch.rand(2, 3, 4, 1, 17, 3)
    video, mapped = tf.test(square, joints, crops=3)
    assert video.shape == (2, 3, 4, 3, 32, 32) and mapped.shape == (2, 3, 4, 1, 17, 3)
    assert distinct_crop_count(36, 36, 32, 3) == 1
    wide = torch.randint(0, 255, (2, 3, 4, 3, 36, 48), dtype=torch.uint8)
    assert tf.test(wide, crops=3)[0].shape == (2, 9, 4, 3, 32, 32)
    assert distinct_crop_count(36, 48, 32, 3) == 3 and distinct_crop_count(36, 48, 32, 1) == 1


def test_synthetic_clips_follow_the_canvas_mode():
    kw = {"num_videos": 2, "frames": 3, "resolution": 32, "length": 6, "seed": 0}
    kw |= {"distractor": False, "train": False, "progress": False}
    plain = SyntheticActions("test", **kw)[0]
    padded = SyntheticActions("test", canvas=Canvas((32, 48), "pad"), **kw)[0]
    assert padded["video"].shape[-2:] == (32, 48)
    assert torch.equal(padded["video"][..., 8:40], plain["video"])  # centred, unresized
    assert not padded["video"][..., :8].any() and not padded["video"][..., 40:].any()
    j, p = plain["joints"], padded["joints"]
    seen = j[..., 2] > 0
    assert seen.any()
    torch.testing.assert_close(p[..., 0][seen], (j[..., 0][seen] * 32 + 8) / 48)
    torch.testing.assert_close(p[..., 1][seen], j[..., 1][seen])


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_predict_gives_the_model_the_pixels_of_the_test_loader(tmp_path, mode):
    """The model's frames are one resize of the decoded frames, as the loader makes them, also
    when larger ones are decoded for the pose model: predict and evaluate score the same pixels
    (resized again from the pose model's 640 px frames, a real clip was 26 of 255 off)."""
    path = tmp_path / "square.mp4"
    _square_video(path, (240, 400), frames=5)
    canvas = Canvas((96, 128), mode)
    loader = VideoClipDataset(
        [VideoRecord(path, 0, "square.mp4")], frames=2, train=False, views=2,
        canvas_hw=canvas.hw, resize=mode,
    )  # fmt: skip
    sampled = read_sampled(path, frames=2, views=2, max_side=300, canvas=canvas)
    assert sampled.shown.shape == (2, 2, 3, 180, 300)  # the pose model's: aspect kept
    on_canvas, _ = canvas.apply(sampled.frames.flatten(0, 1))
    assert torch.equal(on_canvas.view(2, 2, 3, 96, 128), loader[0]["video"])
    seen = []  # the pose model gets the large frames (not the model's 96 px ones)

    def pose_model(frames: torch.Tensor, persons: int) -> np.ndarray:
        seen.append(tuple(frames.shape[1:]))
        return np.zeros((len(frames), persons, 17, 3), np.float32)

    JointFinder("", 1, estimator=lambda: pose_model).estimate(sampled)
    assert seen == [(3, 180, 300)]
    small = read_sampled(path, frames=2, views=1, max_side=640, canvas=canvas)
    assert small.shown.shape[-2:] == (240, 400)  # never upscaled for the pose model


def test_frames_at_sizes_resizes_each_as_asked(tmp_path):
    """One decode, one resize per size with its interpolation: each what frames() gives."""
    path = tmp_path / "square.mp4"
    _square_video(path, (240, 400), frames=3)
    with open_video(path) as reader:
        full = reader.frames([2, 0])
        cubic, linear = reader.frames_at_sizes(
            [2, 0], [((90, 150), "bicubic"), ((90, 150), "bilinear")]
        )
    assert torch.equal(cubic, fit_frames(full, (90, 150), "stretch", "bicubic"))
    assert torch.equal(linear, fit_frames(full, (90, 150), "stretch", "bilinear"))
    assert not torch.equal(cubic, linear)


def test_zero_shot_files_and_dataset_give_the_same_pixels(hmdb51_mini):
    cfg = load_config(
        None,
        [
            "data.dataset=hmdb51",
            f"data.root={hmdb51_mini}",
            f"data.split_dir={hmdb51_mini / 'testTrainMulti_7030_splits'}",
            "data.split=2",  # the 424x240 swing_baseball clip is a test video of split 2
            "data.allow_missing=true",
            "data.frames=3",
            "eval.views=2",
            "text.model=ViT-S-32-alt",
        ],
    )
    cfg = clip_eval_config(cfg)
    _, test_ds, _ = build_datasets(cfg, None)
    wide = next(i for i, r in enumerate(test_ds.records) if "swing_baseball" in str(r.path))
    from_dataset = test_ds[wide]["video"]  # (V, T, 3, 224, 224), 424x240 clip
    sampled = read_sampled(
        test_ds.records[wide].path, frames=3, views=2, max_side=0, canvas=clip_canvas(224)
    )
    from_file, _ = clip_canvas(224).apply(sampled.frames.flatten(0, 1))
    assert from_dataset.shape == (2, 3, 3, 224, 224)
    assert torch.equal(from_file.view_as(from_dataset), from_dataset)


def test_zero_shot_frames_match_clips_own_preprocess_on_a_16_9_clip(hmdb51_mini):
    """open_clip's eval preprocess (PIL: bicubic resize of the short side, centre crop) of a full
    decoded frame vs hpnet's frames; the squashing loader was 8.7 of 255 off here."""
    from open_clip.transform import image_transform
    from PIL import Image

    from hpnet.data.decode import open_video

    path = next(hmdb51_mini.glob("swing_baseball/*.avi"))
    sampled = read_sampled(path, frames=4, views=1, max_side=0, canvas=clip_canvas(224))
    ours, _ = clip_canvas(224).apply(sampled.frames.flatten(0, 1))
    with open_video(path) as reader:
        assert (reader.info.width, reader.info.height) == (424, 240)
        full = reader.frames(sampled.indices.reshape(-1))  # (N, 3, 240, 424)
    preprocess = image_transform(224, is_train=False)
    to_pixels = preprocess.transforms[:-1]  # without Normalize: [0, 1] tensors
    reference = []
    for frame in full:
        image = Image.fromarray(frame.permute(1, 2, 0).contiguous().numpy())
        for step in to_pixels:
            image = step(image)
        reference.append(image)
    diff = (ours.float() / 255 - torch.stack(reference)).abs().mean().item() * 255
    assert diff < 2.0


def _zero_shot_args(*argv: str) -> argparse.Namespace:
    return _parser().parse_intermixed_args(["--dataset", "hmdb51", *argv])


def test_zero_shot_keeps_config_templates_unless_flags_say_otherwise(tmp_path):
    config = tmp_path / "zs.yaml"
    config.write_text('text:\n  templates: ["a clip of {}", "someone doing {}"]\n')
    assert zero_shot_config(_zero_shot_args("--config", str(config)), []).text.templates == [
        "a clip of {}",
        "someone doing {}",
    ]
    flagged = zero_shot_config(_zero_shot_args("--config", str(config), "--templates", "{}!"), [])
    assert flagged.text.templates == ["{}!"]
    override = zero_shot_config(_zero_shot_args(), ['text.templates=["x {}"]'])
    assert override.text.templates == ["x {}"]
    assert zero_shot_config(_zero_shot_args(), []).text.templates == ["{}"]  # bare default


def test_a_smoke_runs_max_steps_does_not_cut_a_zero_shot_test_short(tmp_path):
    config = tmp_path / "run_config.yaml"  # e.g. a smoke run's config.yaml, given as --config
    config.write_text("train:\n  max_steps: 1\n")
    assert zero_shot_config(_zero_shot_args("--config", str(config)), []).train.max_steps == 0
    asked = zero_shot_config(_zero_shot_args("--config", str(config)), ["train.max_steps=2"])
    assert asked.train.max_steps == 2  # asked for on the command line: kept


def test_crops_larger_than_the_canvas_are_warned_about(caplog):
    base = ["data.frames=2", "data.synthetic.train_videos=2", "data.synthetic.test_videos=2"]
    small = load_config(None, [*base, "data.size=64", "data.load_size=48", "data.aspect=1.0"])
    from hpnet.data.canvas import warn_small_canvas

    with caplog.at_level("WARNING"):
        warn_small_canvas(small)
    assert "data.size=64 is larger than the loader canvas 48x48" in caplog.text
    assert "data.load_size >= 64" in caplog.text
    caplog.clear()
    warn_small_canvas(load_config(None, [*base, "data.size=64", "data.load_size=0"]))
    tall = load_config(None, [*base, "data.size=64", "data.load_size=80", "data.aspect=0.5"])
    assert not caplog.text
    with caplog.at_level("WARNING"):
        warn_small_canvas(tall)  # 80 x 40: too narrow
    assert "data.load_size >= 128" in caplog.text
