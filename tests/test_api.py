"""The Python API (``hpnet.load``): the same results as ``python -m hpnet.predict`` (which is
built on it), frames already in memory, and exported files through the same preprocessing."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import hpnet
from hpnet.cli import UserError
from hpnet.inference import read_sampled
from hpnet.predict import main as predict_main

NO_POSE = {"pose_cache": "", "estimate_pose": False}


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def clips(shared_data, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    for name in ("golf", "punch"):
        src = next((shared_data / "hmdb51_mini" / name).glob("*.avi"))
        shutil.copy(src, folder / f"{name}.avi")
    return folder


def test_load_and_predict_match_the_command(checkpoint, clips, capsys):
    clf = hpnet.load(checkpoint, overrides=["eval.views=2"], **NO_POSE)
    assert len(clf.labels) == 11 and "Classifier(" in repr(clf)
    one = clf.predict(clips / "golf.avi", top_k=3)
    assert isinstance(one, dict) and one["ok"] and len(one["top"]) == 3
    many = clf.predict([clips], top_k=3)
    assert [Path(r["video"]).name for r in many] == ["golf.avi", "punch.avi"]
    assert many[0]["top"] == one["top"]
    capsys.readouterr()
    args = [str(clips), "--checkpoint", str(checkpoint), "--top-k", "3", "--json"]
    assert predict_main([*args, "--pose-cache", "", "--no-pose-estimation", "eval.views=2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [v["top"] for v in doc["videos"]] == [r["top"] for r in many]
    with pytest.raises(UserError, match="top_k must be at least 1"):
        clf.predict(clips / "golf.avi", top_k=0)


def test_bad_api_arguments_are_refused_before_any_video_is_scored(
    checkpoint, clips, tmp_path, caplog
):
    """As the command refuses them (they were accepted: top_k=0 gave one label; a timeline plot
    named .mp4 was a PNG; an overlay=.txt or a PNG timeline overlay failed after scoring)."""
    clf = hpnet.load(checkpoint, overrides=["eval.views=1"], **NO_POSE)
    video = clips / "golf.avi"
    with pytest.raises(UserError, match="top_k must be at least 1, got -3"):
        clf.timeline(video, top_k=-3)
    with pytest.raises(UserError, match="top_k must be at least 1, got 0"):
        clf.predict_tensor(np.zeros((4, 3, 32, 32), np.uint8), top_k=0)
    with pytest.raises(UserError, match=r"overlay= .*o\.txt: name it with one of \.mp4"):
        clf.predict(video, overlay=str(tmp_path / "o.txt"))
    with pytest.raises(UserError, match=r"plot= .*t\.mp4: name it out\.png"):
        clf.timeline(video, plot=str(tmp_path / "t.mp4"))
    with pytest.raises(UserError, match=r"overlay= .*t\.png: a timeline's overlay writes a video"):
        clf.timeline(video, overlay=str(tmp_path / "t.png"))
    assert not list(tmp_path.iterdir())  # nothing written
    with caplog.at_level(logging.WARNING, logger="hpnet.timeline"):
        gaps = clf.timeline(video, window=0.5, stride=1.0, smooth=1)
    assert gaps["windows"][1]["start"] - gaps["windows"][0]["end"] == pytest.approx(0.5)
    said = "--stride 1 s (run as 1 s, whole steps of 0.125 s) is longer than --window 0.5 s: 0.5 s"
    assert said in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hpnet.timeline"):  # runs as 4 steps = 0.5 s
        clf.timeline(video, window=0.5, stride=0.55, smooth=1)
    assert "longer than --window" not in caplog.text
    with pytest.raises(UserError, match=r"overrides must be a list .*\['eval\.views=2'\]"):
        hpnet.load(checkpoint, overrides="eval.views=2")  # (each letter was an override)
    import torch

    on_cpu = hpnet.load(checkpoint, device="cpu", **NO_POSE).cfg
    assert (on_cpu.train.device, on_cpu.pose.device) == ("cpu", "cpu")  # the pose model too
    placed = hpnet.load(checkpoint, device="cpu", overrides=["pose.device=auto"], **NO_POSE).cfg
    assert (placed.train.device, placed.pose.device) == ("cpu", "auto")
    if not torch.cuda.is_available():  # said as the argument given (was: train.device=cuda)
        said = r"^device=cuda but no CUDA GPU is visible \(use device=auto or cpu\)"
        with pytest.raises(UserError, match=said):
            hpnet.load(checkpoint, device="cuda")


def test_predict_tensor_on_frames_in_memory(checkpoint, clips):
    clf = hpnet.load(checkpoint, overrides=["eval.views=1"], **NO_POSE)
    sampled = read_sampled(clips / "punch.avi", frames=4, views=1, max_side=320)
    zeros = np.zeros((4, 2, 17, 3), np.float32)  # what predict gives a video without joints
    got = clf.predict_tensor(sampled.frames[0], zeros, top_k=11)
    assert len(got["probs"]) == 11 and sum(got["probs"]) == pytest.approx(1.0, abs=1e-5)
    from_file = clf.predict(clips / "punch.avi", top_k=11)
    assert [t["label"] for t in got["top"]] == [t["label"] for t in from_file["top"]]
    np.testing.assert_allclose(
        [t["prob"] for t in got["top"]], [t["prob"] for t in from_file["top"]], atol=1e-4
    )
    two = sampled.frames[0].expand(2, -1, -1, -1, -1)
    views = clf.predict_tensor(two, np.stack([zeros, zeros]))
    np.testing.assert_allclose(views["probs"], got["probs"], atol=1e-5)  # 2 equal views
    for joints in (zeros, zeros[None]):  # one clip's joints for two clips: what they are given
        with pytest.raises(ValueError, match=r"must be \(2, 4, P, 17, 3\) for this video of 2 "):
            clf.predict_tensor(two, joints)
    with pytest.raises(ValueError, match=r"must be \(4, P, 17, 3\) or \(1, 4, P.*got \(4, 17, 3\)"):
        clf.predict_tensor(sampled.frames[0], zeros[:, 0])
    with pytest.raises(ValueError, match=r"T = 4 \(data.frames\)"):
        clf.predict_tensor(sampled.frames[0, :3])
    with pytest.raises(ValueError, match="uint8"):
        clf.predict_tensor(sampled.frames[0].float())
    with pytest.raises(ValueError, match=r"got torch.uint8 \(0, 4, 3, "):  # no clip at all
        clf.predict_tensor(sampled.frames[:0])
    as_array = clf.predict_tensor(sampled.frames[0].numpy(), torch.tensor(zeros).requires_grad_())
    assert as_array["probs"] == got["probs"]  # a numpy video, joints that require grad
    pixels, nans = zeros.copy(), zeros.copy()
    pixels[..., 0, :] = (320.0, 240.0, 0.9)  # (YOLO's keypoints.xy, not .xyn: read as missing)
    nans[..., 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"joints reach 320: x, y must be in \[0, 1\]"):
        clf.predict_tensor(sampled.frames[0], pixels)
    with pytest.raises(ValueError, match="joints hold NaN or inf"):
        clf.predict_tensor(sampled.frames[0], nans)
    for confidence in (1.5, -0.1):
        odd = zeros.copy()
        odd[..., 0, :] = (0.5, 0.5, confidence)
        with pytest.raises(ValueError, match=rf"confidences must be in \[0, 1\].*{confidence}"):
            clf.predict_tensor(sampled.frames[0], odd)
    near, unseen = zeros.copy(), zeros.copy()
    near[..., 0, :] = (1.3, -0.2, 0.9)  # (YOLO's keypoints just outside the frame: kept)
    unseen[..., 0, :] = (500.0, 500.0, 0.0)  # (confidence 0: a missing joint, any x, y)
    for fine in (near, unseen):
        clf.predict_tensor(sampled.frames[0], fine)
    with pytest.raises(ValueError, match=r"joints must be \(4, P, 17, 3\)"):  # (not IndexError)
        clf.predict_tensor(sampled.frames[0], zeros[..., :2])
    with pytest.raises(TypeError, match="videos must be a path"):
        clf.predict(str(clips / "punch.avi").encode())


def test_without_a_joint_source_the_model_gets_missing_joints(checkpoint, clips):
    """Trained with pose.source=none, a pose model saw every joint missing (zeros, as for a
    video without joints): predict and predict_tensor give it the same, not no joints at all
    (which skipped its pose branch: other scores than evaluate's, and a crash when exported)."""
    no_source = hpnet.load(checkpoint, overrides=["eval.views=1", "pose.source=none"])
    no_joints = hpnet.load(checkpoint, overrides=["eval.views=1"], **NO_POSE)
    a, b = (c.predict(clips / "golf.avi", top_k=11) for c in (no_source, no_joints))
    assert a["pose"] == b["pose"] == "none" and a["top"] == b["top"]
    frames = read_sampled(clips / "golf.avi", frames=4, views=1, max_side=320).frames[0]
    zeros = np.zeros((4, 2, 17, 3), np.float32)
    for clf in (no_source, no_joints):
        np.testing.assert_allclose(
            clf.predict_tensor(frames)["probs"], clf.predict_tensor(frames, zeros)["probs"]
        )


@pytest.mark.slow  # two exports, ~20 s: with -m slow (tests/test_export.py checks the file itself)
def test_an_exported_file_predicts_like_its_checkpoint(checkpoint, clips, tmp_path):
    from hpnet.export import main as export_main

    out = tmp_path / "model.pt2"
    assert export_main(["--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    eager = hpnet.load(checkpoint, overrides=["eval.views=1"], **NO_POSE)
    exported = hpnet.load(out, overrides=["eval.views=1"], **NO_POSE)
    assert exported.labels == eager.labels
    a, b = (c.predict(clips / "golf.avi", top_k=11) for c in (eager, exported))
    assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
    np.testing.assert_allclose(
        [t["prob"] for t in a["top"]], [t["prob"] for t in b["top"]], atol=1e-4
    )
    no_source = hpnet.load(out, overrides=["eval.views=1", "pose.source=none"])
    assert no_source.predict(clips / "golf.avi", top_k=11)["top"] == b["top"]  # zero joints
    with pytest.raises(UserError, match="labels and config are baked in"):
        hpnet.load(out, labels=["a", "b"])
    with pytest.raises(UserError, match=r"input shape is fixed, not data\.frames=8 \(it takes 4"):
        hpnet.load(out, overrides=["data.frames=8"])
    with pytest.raises(UserError, match="exported"):
        exported.predict(clips / "golf.avi", overlay=str(tmp_path / "o.png"), cam=True)
    # trained (or exported) with train.device=cuda: the baked config's device is not the caller's
    on_cuda = tmp_path / "cuda.pt2"
    assert (
        export_main(["--checkpoint", str(checkpoint), "--out", str(on_cuda), "train.device=cuda"])
        == 0
    )
    assert (
        hpnet.load(on_cuda, overrides=["eval.views=1"], **NO_POSE).predict(
            clips / "golf.avi", top_k=11
        )["top"]
        == b["top"]
    )
    with pytest.raises(UserError, match="an exported model runs on the CPU"):
        hpnet.load(on_cuda, overrides=["train.device=cuda"])  # asked for by the caller


def test_one_pose_model_runs_one_video_at_a_time_across_threads():
    """Two threads of one Classifier ran the Ultralytics model at once: it keeps per-shape
    state, so they got each other's joints or a shape error. The JointFinder now holds it."""
    import threading
    import time

    import torch

    from hpnet.inference import JointFinder, SampledVideo

    inside, most, built = [0], [0], []

    class PoseModel:
        def __call__(self, frames, persons):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            time.sleep(0.02)
            inside[0] -= 1
            return np.zeros((len(frames), persons, 17, 3), np.float32)

    def build():
        built.append(1)
        time.sleep(0.02)
        return PoseModel()

    class Streamed:  # (a long video's pieces: the timeline's path)
        def detect(self, frames):
            from hpnet.pose.tracking import FrameDetections

            inside[0] += 1
            most[0] = max(most[0], inside[0])
            time.sleep(0.02)
            inside[0] -= 1
            return [FrameDetections.empty() for _ in frames]

    def stream(finder):
        from hpnet.pose.tracking import PersonTracker

        finder.from_stream(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), PersonTracker(2))

    streamed = JointFinder("", 2, estimator=Streamed)
    threads = [threading.Thread(target=stream, args=(streamed,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
    finder = JointFinder("", 2, estimator=build)
    sampled = SampledVideo(
        torch.zeros(1, 4, 3, 8, 8, dtype=torch.uint8), np.arange(4).reshape(1, 4), info=None
    )
    threads = [
        threading.Thread(target=lambda: [finder.estimate(sampled) for _ in range(3)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1 and len(built) == 1  # (without the lock: 4 at once, built 4 times)


def test_hpnet_user_error_is_what_a_bad_argument_raises(checkpoint):
    with pytest.raises(hpnet.UserError, match="top_k"):
        hpnet.load(checkpoint, **NO_POSE).predict("x.mp4", top_k=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a missing GPU is what it says")
def test_a_pose_device_that_is_not_there_is_said_at_load(checkpoint):
    """``pose.device=cuda`` without a GPU loaded fine and failed at the first predict."""
    with pytest.raises(hpnet.UserError, match=r"^pose.device=cuda but no CUDA GPU is visible"):
        hpnet.load(checkpoint, overrides=["pose.device=cuda"])
    hpnet.load(checkpoint, overrides=["pose.device=cuda"], estimate_pose=False)  # (no model)


def test_a_pose_weights_file_that_is_not_there_is_said_at_load(checkpoint, tmp_path):
    gone = tmp_path / "nope" / "yolo11n-pose.pt"
    with pytest.raises(hpnet.UserError, match=r"^pose weights file not found: .*nope"):
        hpnet.load(checkpoint, overrides=[f"pose.weights={gone}"])
    hpnet.load(checkpoint, overrides=[f"pose.weights={gone}"], estimate_pose=False)
