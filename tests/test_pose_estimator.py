"""The YOLO pose estimator: weights handling, batching, coordinates, person slots, real clips."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from hpnet.cli import UserError
from hpnet.pose.estimator import (
    PoseEstimator,
    letterbox_size,
    resolve_precision,
    resolve_weights,
)
from hpnet.pose.tracking import FrameDetections, PersonTracker, track_persons

# A random-init YOLO11n-pose scores every box around 1e-4: this threshold lets detections through.
LOW_CONF = 1e-5


def _random_estimator(precision: str) -> PoseEstimator:
    """yolo11n-pose from random weights, the same ones whatever ran before (seeded): with some
    draws a detection sits on the confidence threshold, where bf16 rounding decides it."""
    torch.manual_seed(0)
    return PoseEstimator(
        "yolo11n-pose.yaml", imgsz=64, conf=LOW_CONF, device="cpu", precision=precision
    )


@pytest.fixture(scope="module")
def random_yolo() -> PoseEstimator:
    return _random_estimator("fp32")


def _frames(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, height, width), generator=g, dtype=torch.uint8)


# ----------------------------------------------------------------------------- weights


def test_missing_weight_file_names_it_and_the_setting(tmp_path):
    missing = tmp_path / "weights" / "yolo11n-pose.pt"
    with pytest.raises(UserError, match=r"not found: .*yolo11n-pose\.pt.*pose\.weights="):
        PoseEstimator(missing, device="cpu")
    with pytest.raises(UserError, match="pose model config not found"):
        resolve_weights(tmp_path / "my-pose.yaml")


def test_known_name_offline_fails_fast_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not in the working directory
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(UserError, match=r"no network.*pose\.weights=/path/to/yolo11n-pose\.pt"):
        resolve_weights("yolo26x-pose.pt")  # an Ultralytics name never stored on this machine
    assert time.perf_counter() - start < 5  # nothing waited on the network
    with pytest.raises(UserError, match="not a local file nor an Ultralytics model name"):
        resolve_weights("my-own-pose.pt")


def test_wrong_or_corrupt_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="'detect' model, not a pose model"):
        PoseEstimator("yolo11n.yaml", device="cpu")
    corrupt = tmp_path / "broken-pose.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"broken-pose\.pt could not be loaded"):
        PoseEstimator(corrupt, device="cpu")


def test_precision_and_device_choices():
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert resolve_precision("auto", torch.device("cpu")) in ("bf16", "fp32")
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match=r"^pose.device=cuda but no CUDA GPU is visible"):
            PoseEstimator("yolo11n-pose.yaml", device="cuda")


# ----------------------------------------------------------------------------- batching


def test_letterbox_size_scales_the_long_side():
    assert letterbox_size(240, 320, 640) == (480, 640)
    assert letterbox_size(1080, 1920, 640) == (360, 640)
    assert letterbox_size(64, 48, 64) == (64, 48)


def test_mixed_size_blocks_in_one_batch(random_yolo):
    """Sizes that are not multiples of 32, two sizes in one call: one detection list per frame."""
    blocks = [_frames(3, 64, 64), _frames(2, 40, 72, seed=1)]
    dets = random_yolo.detect(blocks)
    assert len(dets) == 5
    for det in dets:
        assert len(det.scores) > 0  # the low threshold lets the random model's boxes through
        assert det.keypoints.shape == (len(det.scores), 17, 3)
        assert det.keypoints.dtype == np.float32
        assert ((det.boxes >= 0) & (det.boxes <= 1)).all()
        assert ((det.keypoints[..., :2] >= 0) & (det.keypoints[..., :2] <= 1)).all()
        missing = det.keypoints[..., 2] == 0
        assert (det.keypoints[missing][:, :2] == 0).all()  # missing joint: x = y = 0
        area = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
        rank = det.scores * area
        assert (np.diff(rank) <= 1e-12).all()  # best first
    assert any((d.keypoints[..., 2] > 0).any() for d in dets)


def test_batch_gives_the_same_joints_as_single_frames(random_yolo):
    frames = _frames(4, 64, 64, seed=2)
    batched = random_yolo.detect(frames)
    single = [random_yolo.detect(frames[i : i + 1])[0] for i in range(4)]
    for b, s in zip(batched, single, strict=True):
        np.testing.assert_allclose(b.keypoints, s.keypoints, atol=1e-4)
        np.testing.assert_allclose(b.scores, s.scores, rtol=1e-3)


def test_every_frame_runs_at_the_callers_thread_count():
    """Ultralytics resets torch's thread count when its first predict sets up: frames of the
    first call ran at another count than later ones (other float sums: another cache file)."""
    from ultralytics.utils import NUM_THREADS

    threads = torch.get_num_threads()
    torch.set_num_threads(NUM_THREADS + 1)  # not the count Ultralytics sets
    try:
        est = _random_estimator("fp32")
        seen: list[tuple[int, int]] = []
        hook = est.model.model.register_forward_pre_hook(
            lambda m, args: seen.append((args[0].shape[-1], torch.get_num_threads()))
        )
        est.detect(_frames(2, 64, 64))
        est.detect(_frames(2, 64, 64, seed=1))
        hook.remove()
        counts = [t for width, t in seen if width == 64]  # the frames' passes (64 px canvas)
        assert len(counts) >= 2 and set(counts) == {NUM_THREADS + 1}
        assert torch.get_num_threads() == NUM_THREADS + 1
    finally:
        torch.set_num_threads(threads)


# Frame sizes whose solo canvases at imgsz 64 differ (64x64, 32x64, 64x32): one call holding all
# three used to centre every frame on a 64x64 canvas, moving the small ones on the 32-pixel grid.
MIXED_SIZES = ((3, 64, 64), (2, 24, 96), (2, 100, 50))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_frames_do_not_depend_on_their_batch_neighbours(precision, random_yolo):
    """A mixed-size call gives every frame exactly what a call with that frame alone gives."""
    est = random_yolo
    if precision != est.precision:
        est = _random_estimator(precision)
    blocks = [_frames(n, h, w, seed=i) for i, (n, h, w) in enumerate(MIXED_SIZES)]
    together = est.detect(blocks)
    alone = [est.detect(frame)[0] for block in blocks for frame in block]
    assert len(together) == len(alone) == 7
    # fp32: bit for bit. bf16: once in a full run a frame's keypoints came out a few bf16 steps
    # apart (up to 0.04 of the frame through this random model's head; scores and boxes equal)
    # while a frame placed wrong on its canvas is off by a 32-pixel grid step (0.3-1.0 of it).
    same = partial(np.testing.assert_allclose, rtol=0, atol=0 if precision == "fp32" else 0.08)
    for i, (t, a) in enumerate(zip(together, alone, strict=True)):
        assert len(t.scores) == len(a.scores) > 0, f"frame {i}"
        same(t.scores, a.scores, err_msg=f"frame {i}")
        same(t.boxes, a.boxes, err_msg=f"frame {i}")
        same(t.keypoints, a.keypoints, err_msg=f"frame {i}")
    reversed_call = est.detect(blocks[::-1])  # the same blocks in the other order
    for t, r in zip(together[5:] + together[3:5] + together[:3], reversed_call, strict=True):
        same(t.keypoints, r.keypoints)


def test_frames_with_nobody_give_zeros(random_yolo):
    nobody = PoseEstimator("yolo11n-pose.yaml", imgsz=64, conf=0.99, device="cpu")
    joints = nobody(_frames(3, 50, 70), persons=2)
    assert joints.shape == (3, 2, 17, 3) and joints.dtype == np.float32
    assert (joints == 0).all()
    assert random_yolo.detect(torch.zeros(0, 3, 64, 64, dtype=torch.uint8)) == []
    assert random_yolo.detect([]) == []


def test_joints_are_normalised_to_each_frame(random_yolo, monkeypatch):
    """A point Ultralytics reports on the padded canvas maps back to the frame it came from;
    one in the padding is missing, one past the canvas is clipped onto it (as Ultralytics'
    Results clip)."""
    blocks = [_frames(1, 48, 64), _frames(1, 64, 32, seed=1)]  # letterboxed to 48x64 and 64x32
    points = [(0.25, 0.75), (0.5, 0.1)]
    # Each frame's own canvas (letterbox size rounded up to 32): frame by canvas shape.
    by_canvas = {(64, 64): (points[0], (48, 64)), (64, 32): (points[1], (64, 32))}

    def fake_predict(canvas, threads):
        assert len(canvas) == random_yolo.frames_per_pass
        (x, y), (h, w) = by_canvas[tuple(canvas.shape[-2:])]
        top, left = (canvas.shape[-2] - h) // 2, (canvas.shape[-1] - w) // 2
        row = torch.zeros(6 + 17 * 3)
        row[:5] = torch.tensor([left, top, left + w / 2, top + h / 2, 0.8])
        kpts = row[6:].view(17, 3)
        kpts[0] = torch.tensor([left + x * w, top + y * h, 0.9])
        kpts[1] = torch.tensor([left + w / 2, top - 1, 0.9])  # above the frame
        return [row[None].clone() for _ in canvas]

    monkeypatch.setattr(random_yolo, "_predict", fake_predict)
    dets = random_yolo.detect(blocks)
    for det, (x, y) in zip(dets, points, strict=True):
        np.testing.assert_allclose(det.keypoints[0, 0], [x, y, 0.9], atol=1e-5)
        np.testing.assert_allclose(det.boxes[0], [0, 0, 0.5, 0.5], atol=1e-5)
    assert (dets[0].keypoints[0, 1] == 0).all()  # in the canvas's padding: missing
    np.testing.assert_allclose(dets[1].keypoints[0, 1], [0.5, 0, 0.9])  # clipped to the top


def test_random_init_model_is_the_same_in_every_process():
    a = PoseEstimator("yolo11n-pose.yaml", imgsz=64, conf=LOW_CONF, device="cpu", precision="fp32")
    b = PoseEstimator("yolo11n-pose.yaml", imgsz=64, conf=LOW_CONF, device="cpu", precision="fp32")
    frames = _frames(2, 64, 64, seed=3)
    np.testing.assert_array_equal(a(frames), b(frames))


# ----------------------------------------------------------------------------- person slots


def _det(boxes, scores) -> FrameDetections:
    """Detections whose joint x says which box they belong to."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    kp = np.zeros((len(boxes), 17, 3), np.float32)
    kp[..., 0], kp[..., 1], kp[..., 2] = boxes[:, :1], 0.5, 1.0
    return FrameDetections(boxes, np.asarray(scores, np.float32), kp)


LEFT, RIGHT = [0.1, 0.1, 0.3, 0.9], [0.6, 0.1, 0.9, 0.9]


def test_slots_follow_people_when_the_ranking_changes():
    joints = track_persons(
        [_det([LEFT, RIGHT], [0.9, 0.8]), _det([RIGHT, LEFT], [0.9, 0.8]), _det([RIGHT], [0.9])],
        persons=2,
    )
    assert joints.shape == (3, 2, 17, 3)
    assert (joints[:2, 0, 0, 0] == pytest.approx(0.1)) and (
        joints[:2, 1, 0, 0] == pytest.approx(0.6)
    )
    assert (joints[2, 0] == 0).all() and joints[2, 1, 0, 0] == pytest.approx(0.6)


def test_main_person_keeps_slot_zero_after_a_duplicate_box():
    """A frame with a second, overlapping box must not move the person out of slot 0."""
    body, part = [0.30, 0.10, 0.70, 0.95], [0.32, 0.40, 0.70, 0.95]
    moved = [0.33, 0.30, 0.71, 0.95]  # overlaps the duplicate more than the old body box
    joints = track_persons(
        [_det(body, [0.9]), _det([body, part], [0.9, 0.5]), _det(moved, [0.9])], persons=2
    )
    assert (joints[:, 0, :, 2] > 0).all()
    assert (joints[2, 1] == 0).all()


def test_overlapping_people_keep_their_slots_when_one_is_missed():
    """A and B overlap (IoU 0.27); A is missed for a frame. B's box overlaps A's last box
    enough to be taken, but it is B's own (IoU 1 with slot 1's): the slots must not swap."""
    a, b = [0.20, 0.20, 0.55, 0.90], [0.40, 0.20, 0.75, 0.90]
    joints = track_persons([_det([a, b], [0.9, 0.8]), _det(b, [0.9]), _det([a, b], [0.9, 0.8])], 2)
    assert joints[:, 1, 0, 0].tolist() == pytest.approx([0.4] * 3)
    assert joints[[0, 2], 0, 0, 0].tolist() == pytest.approx([0.2] * 2)
    assert (joints[1, 0] == 0).all()
    # missed in turn: B, then A (B's slot, missed the frame before, still keeps its person)
    both = _det([a, b], [0.9, 0.8])
    joints = track_persons([both, _det(a, [0.9]), _det(b, [0.9]), both], 2)
    assert joints[:, 0, 0, 0].tolist() == pytest.approx([0.2, 0.2, 0, 0.2])
    assert joints[:, 1, 0, 0].tolist() == pytest.approx([0.4, 0, 0.4, 0.4])


def test_a_lone_detection_goes_to_the_slot_it_overlaps_clearly_better():
    """Two people, then one found: it overlaps B's last box (IoU 0.41) far more than A's
    (0.20, near enough to claim it by position): B's slot keeps it, A's is empty."""
    a, b = [0.097, 0.212, 0.299, 0.598], [0.144, 0.162, 0.419, 0.551]
    joints = track_persons([_det([a, b], [0.9, 0.8]), _det([0.211, 0.259, 0.471, 0.654], [0.9])], 2)
    assert joints[1, 1, 0, 0] == pytest.approx(0.211) and (joints[1, 0] == 0).all()


def test_a_person_walking_over_a_hidden_persons_spot_keeps_their_slot():
    """B is hidden behind A for frames 2-8 while A walks right, over B's last box: that old box
    must not claim A for B's slot (it overlaps A far better than A's own box of last frame)."""
    frames = []
    for t in range(10):
        a = [0.2 + 0.05 * t, 0.2, 0.4 + 0.05 * t, 0.9]
        b = [0.4 - 0.04 * t, 0.2, 0.6 - 0.04 * t, 0.9]
        frames.append(_det([a], [0.9]) if 2 <= t <= 8 else _det([a, b], [0.9, 0.8]))
    joints = track_persons(frames, persons=2)
    assert joints[:, 0, 0, 0].tolist() == pytest.approx([0.2 + 0.05 * t for t in range(10)])


def test_more_people_than_slots_and_a_long_absence():
    tracker = PersonTracker(persons=1, max_age=2)
    first = tracker.update(_det([RIGHT, LEFT], [0.9, 0.5]))  # best-ranked first
    assert first.shape == (1, 17, 3) and first[0, 0, 0] == pytest.approx(0.6)
    for _ in range(3):  # gone longer than max_age: the slot is free for anybody
        assert (tracker.update(FrameDetections.empty()) == 0).all()
    assert tracker.update(_det(LEFT, [0.4]))[0, 0, 0] == pytest.approx(0.1)


def test_a_briefly_missed_person_keeps_their_slot_from_a_bystander():
    """B is missed for one frame while a small bystander C far off is found: C must not take
    B's slot, and B is back in it when found again."""
    a, b = [0.05, 0.1, 0.3, 0.9], [0.4, 0.1, 0.65, 0.9]
    c = [0.9, 0.8, 0.98, 0.95]  # its centre 1.66 of B's widths right of B's
    frames = [_det([a, b], [0.9, 0.8]), _det([a, c], [0.9, 0.3]), _det([a, b, c], [0.9, 0.8, 0.3])]
    joints = track_persons(frames, persons=2)
    assert joints[:, 0, 0, 0].tolist() == pytest.approx([0.05] * 3)
    assert (joints[1, 1] == 0).all()  # nobody in B's slot while B is missed
    assert joints[2, 1, 0, 0] == pytest.approx(0.4)


def test_a_fast_moving_person_keeps_their_slot():
    """No overlap with the last box (IoU 0) but the centre 1.1 box widths on: the same slot,
    not the free one."""
    start, jumped = [0.1, 0.1, 0.3, 0.9], [0.32, 0.1, 0.52, 0.9]
    joints = track_persons([_det(start, [0.9]), _det(jumped, [0.9])], persons=2)
    assert joints[1, 0, 0, 0] == pytest.approx(0.32) and (joints[1, 1] == 0).all()


# ----------------------------------------------------------------------------- real weights

# Per-clip fraction of frames where yolo11n-pose (imgsz 640, conf 0.25, bf16 on this CPU; fp32
# within 0.03) finds a person, measured on every frame of the seven HMDB51 clips:
#   brush_hair 1.00, golf 1.00, shoot_bow 1.00, swing_baseball 1.00, punch 0.88, climb 0.72,
#   climb_stairs 0.49.
# The first four show one person, large and unoccluded: the model must find them nearly always,
# hence >= 0.95 (slack for frames the real model could miss under another precision/backend).
# punch / climb / climb_stairs have frames where the person really is hard (boxing bag in front
# of the body, a small climber far away, heavy motion blur and blocking on the stairs), shown by
# eye in the skeleton previews; over all seven clips the frame-weighted rate is 0.90, asserted
# as >= 0.80 so a regression (e.g. coordinates or thresholds broken) fails while codec-level
# differences between decoders do not.
EASY_CLIPS = ("brush_hair", "golf", "shoot_bow", "swing_baseball")
EASY_MIN, OVERALL_MIN = 0.95, 0.80


@pytest.fixture(scope="module")
def real_yolo(yolo_weights) -> PoseEstimator:
    return PoseEstimator(yolo_weights, imgsz=640, conf=0.25, device="cpu")


def _clip(hmdb51_mini: Path, name: str, step: int) -> torch.Tensor:
    from hpnet.data.decode import open_video

    with open_video(next((hmdb51_mini / name).glob("*.avi"))) as reader:
        return reader.frames(list(range(0, reader.info.num_frames, step)))


@pytest.mark.realdata
def test_real_weights_find_the_person_in_easy_clips(hmdb51_mini, real_yolo):
    for name in EASY_CLIPS[:3]:  # every 8th frame: ~75 frames, a few seconds
        joints = real_yolo(_clip(hmdb51_mini, name, 8), persons=2)
        found = (joints[..., 2] > 0).any(-1).any(-1)
        assert found.mean() >= EASY_MIN, f"{name}: person found in {found.mean():.0%} of frames"
        in_slot0 = (joints[:, 0, :, 2] > 0).any(-1)
        assert in_slot0.sum() >= 0.95 * found.sum(), f"{name}: the person left slot 0"


@pytest.mark.realdata
@pytest.mark.slow
def test_real_weights_find_people_in_all_clips(hmdb51_mini, real_yolo):
    found_frames = total = 0
    for clip_dir in sorted(
        p for p in hmdb51_mini.iterdir() if p.is_dir() and "split" not in p.name
    ):
        joints = real_yolo(_clip(hmdb51_mini, clip_dir.name, 2), persons=2)
        found = (joints[..., 2] > 0).any(-1).any(-1)
        if clip_dir.name in EASY_CLIPS:
            assert found.mean() >= EASY_MIN, f"{clip_dir.name}: {found.mean():.0%} of frames"
        found_frames += int(found.sum())
        total += len(found)
    assert found_frames / total >= OVERALL_MIN


@pytest.mark.realdata
def test_resized_frames_and_bf16_give_the_same_joints(hmdb51_mini, real_yolo, yolo_weights):
    """What the cache does (frames resized by the decoder, bf16 on capable CPUs) changes little."""
    frames = _clip(hmdb51_mini, "golf", 30)  # 3 frames, 320x240
    reference = PoseEstimator(yolo_weights, imgsz=640, device="cpu", precision="fp32")
    full = reference(frames)
    big = torch.nn.functional.interpolate(frames, size=(480, 640), mode="bilinear")
    resized = reference(big.round().clamp(0, 255).to(torch.uint8))
    seen = (full[..., 2] > 0.5) & (resized[..., 2] > 0.5)
    assert seen.sum() > 20
    assert np.abs(full[..., :2] - resized[..., :2])[seen].max() < 0.01  # < 3 px of 320
    lower = real_yolo(frames)  # precision auto: bf16 here if the CPU has it
    seen = (full[..., 2] > 0.5) & (lower[..., 2] > 0.5)
    assert np.median(np.abs(full[..., :2] - lower[..., :2])[seen]) < 0.005


# Real clips whose solo canvases at imgsz 640 differ: 320x240 and 384x288 -> 480x640, 424x240 ->
# 384x640 (a 362-row frame: row 11 alone, row 59 on a 480-row canvas), 340x256 -> 512x640.
MIXED_CLIPS = (
    "hmdb51_mini/golf/*.avi",
    "hmdb51_mini/swing_baseball/*.avi",
    "videos/other/kinetics_arm_wrestling.mp4",
    "videos/other/exercise_three_people.avi",
)


def _spread(path: Path, count: int) -> torch.Tensor:
    """``count`` frames spread over the video: uint8 (count, 3, H, W)."""
    from hpnet.data.decode import open_video

    with open_video(path) as reader:
        last = reader.info.num_frames - 1
        return reader.frames([round(last * (i + 0.5) / count) for i in range(count)])


@pytest.mark.realdata
def test_real_mixed_size_batch_matches_each_frame_alone(shared_data, real_yolo):
    """Clips of four sizes in one call: every frame's joints as in a call with it alone."""
    blocks = [_spread(next(shared_data.glob(pattern)), 3) for pattern in MIXED_CLIPS]
    assert len({tuple(b.shape[-2:]) for b in blocks}) == 4
    together = real_yolo.detect(blocks)
    alone = [real_yolo.detect(frame)[0] for block in blocks for frame in block]
    sizes = [block.shape[-2:] for block in blocks for _ in block]
    same_count, worst_px, seen_joints = [], 0.0, 0
    for t, a, (h, w) in zip(together, alone, sizes, strict=True):
        same_count.append(len(t.scores) == len(a.scores))
        n = min(len(t.scores), len(a.scores))
        seen = (t.keypoints[:n, :, 2] > 0.5) & (a.keypoints[:n, :, 2] > 0.5)
        px = np.abs(t.keypoints[:n, :, :2] - a.keypoints[:n, :, :2]) * np.array([w, h])
        worst_px = max(worst_px, float(px[seen].max(initial=0)))  # at the original scale
        seen_joints += int(seen.sum())
    assert seen_joints > 100  # people were found in these frames
    assert all(same_count) and worst_px < 0.5, (
        f"against each frame alone: joints moved up to {worst_px:.2f} px; "
        f"same number of persons per frame: {same_count}"
    )


def test_detection_leaves_torchs_thread_count_alone(random_yolo):
    """Ultralytics sets torch's CPU threads to cores - 1 when it picks the device; the pose
    model must not slow down the rest of hpnet (predict, the pose cache) that way."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        random_yolo.detect(_frames(2, 64, 64, seed=5))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def _from_results(result, place: tuple[int, int, int, int]) -> FrameDetections:
    """An Ultralytics Results (from its own predict()) as hpnet's detections: the reference."""
    if result.boxes is None or len(result.boxes) == 0:
        return FrameDetections.empty()
    top, left, h, w = place
    offset = torch.tensor([left, top], dtype=torch.float32)
    size = torch.tensor([w, h], dtype=torch.float32)
    boxes = ((result.boxes.xyxy.float().cpu().view(-1, 2, 2) - offset) / size).clamp_(0, 1)
    boxes = boxes.view(-1, 4)
    scores = result.boxes.conf.float().cpu()
    kpts = result.keypoints.data.float().cpu().clone()
    kpts[..., :2] = (kpts[..., :2] - offset) / size
    outside = (kpts[..., :2] < 0).any(-1) | (kpts[..., :2] > 1).any(-1) | (kpts[..., 2] <= 0)
    kpts[outside] = 0
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = torch.argsort(scores * area, descending=True, stable=True)
    return FrameDetections(
        boxes[order].numpy(), scores[order].numpy(), kpts[order].contiguous().numpy()
    )


@pytest.mark.realdata
def test_detections_equal_ultralytics_own_predict(hmdb51_mini, real_yolo):
    """detect() runs Ultralytics' preprocess, forward and NMS without predict()'s Results: the
    same detections, bit for bit, as predict() and its Results on the same canvases."""
    import math

    from hpnet.pose.estimator import canvas_size

    frames = _clip(hmdb51_mini, "punch", 12)  # people, some hard: boxes and joints near edges
    got = real_yolo.detect(frames)
    step = real_yolo.frames_per_pass
    hw = canvas_size(frames.shape[-2], frames.shape[-1], real_yolo.imgsz)
    canvas, places = real_yolo._canvas([frames], hw, math.ceil(len(frames) / step) * step)
    bf16 = real_yolo.precision == "bf16"
    expected, threads = [], torch.get_num_threads()  # (Ultralytics' predict() resets it)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(canvas), step):
            expected += real_yolo.model.predict(
                canvas[start : start + step], **real_yolo._predict_args()
            )
    torch.set_num_threads(threads)
    expected = [_from_results(r, p) for r, p in zip(expected[: len(frames)], places, strict=True)]
    assert sum(len(d.scores) for d in got) > len(frames) // 2  # people were found
    for ours, theirs in zip(got, expected, strict=True):
        np.testing.assert_array_equal(ours.boxes, theirs.boxes)
        np.testing.assert_array_equal(ours.scores, theirs.scores)
        np.testing.assert_array_equal(ours.keypoints, theirs.keypoints)


def test_thresholds_changed_after_the_first_call_apply(random_yolo):
    """conf and max_det are read at every pass, as each predict() call read them."""
    frames = _frames(3, 64, 64, seed=2)
    before = random_yolo.detect(frames)
    assert any(len(d.scores) > 1 for d in before)
    conf, max_det = random_yolo.conf, random_yolo.max_det
    try:
        random_yolo.max_det = 1
        assert all(len(d.scores) <= 1 for d in random_yolo.detect(frames))
        random_yolo.conf = 1.0
        assert not any(len(d.scores) for d in random_yolo.detect(frames))
    finally:
        random_yolo.conf, random_yolo.max_det = conf, max_det
