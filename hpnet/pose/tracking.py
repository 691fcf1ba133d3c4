"""Persons in fixed slots across the frames of one video: each frame's detections
(:class:`FrameDetections`, as :class:`~hpnet.pose.estimator.PoseEstimator` returns them) ->
joints ``(F, P, 17, 3)`` where slot ``p`` follows one person by box overlap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hpnet.pose.skeleton import NUM_KEYPOINTS


@dataclass
class FrameDetections:
    """Persons found in one frame, best first (detection score x box area)."""

    boxes: np.ndarray  # float32 (n, 4): x1, y1, x2, y2 normalised to the frame
    scores: np.ndarray  # float32 (n,): detection confidence
    keypoints: np.ndarray  # float32 (n, 17, 3): x, y normalised to the frame, confidence

    @classmethod
    def empty(cls) -> FrameDetections:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, NUM_KEYPOINTS, 3), np.float32),
        )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (m, 4) and b (n, 4) as x1, y1, x2, y2 -> (m, n)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


NEAR = 1.5  # a missed slot's person may have moved this many box sizes (per axis) in a frame
CLEARER = 0.25  # IoU by which another slot's last box must beat a slot's to keep its person
STEADY = 0.5  # a slot matching its last box at least this well keeps it from a stale claim


class PersonTracker:
    """Keeps up to ``persons`` people in fixed slots across the frames of one video.

    Each frame, slots in order (slot 0 first, so the main person keeps slot 0) take the free
    detection whose box overlaps their last seen box most, if that IoU is >= ``min_iou`` and the
    box is not clearly another slot's person (that slot's best match, by ``CLEARER`` more IoU:
    two people overlapping, this slot's one missed in the frame; see :meth:`_overlap_match`). A slot
    whose person was seen within ``max_age`` frames but not matched then takes the best-ranked
    remaining detection whose centre moved at most ``NEAR`` box widths / heights from its last
    box's (the same person moving fast), else stays empty: a bystander elsewhere cannot take it
    over while its person is briefly missed. Truly free slots (never used, or unseen for
    longer) take what remains, best-ranked first. A slot with nobody in the frame gives zeros.
    """

    def __init__(self, persons: int, min_iou: float = 0.2, max_age: int = 15) -> None:
        self.persons, self.min_iou, self.max_age = persons, min_iou, max_age
        self.last_boxes: list[np.ndarray | None] = [None] * persons
        self.unseen = [0] * persons  # frames since each slot's person was last seen

    def _recent(self, slot: int) -> bool:
        return self.last_boxes[slot] is not None and self.unseen[slot] <= self.max_age

    def _near(self, slot: int, box: np.ndarray) -> bool:
        """Whether ``box``'s centre moved from that of ``slot``'s last box by at most 1.5 times
        that box's width across and 1.5 times its height up or down."""
        last = self.last_boxes[slot]
        assert last is not None
        shift = np.abs((box[:2] + box[2:]) / 2 - (last[:2] + last[2:]) / 2)
        return bool((shift <= NEAR * (last[2:] - last[:2])).all())

    def _overlap_match(
        self, slot: int, iou: dict[int, np.ndarray], free: list[int], taken: dict[int, int]
    ) -> int | None:
        """The free detection overlapping ``slot``'s last box most (IoU >= ``min_iou``), passing
        over one that is clearly another unmatched slot's person: that slot's best match, by at
        least ``CLEARER`` more IoU (two overlapping people, this slot's one missed). A slot
        whose person was missed in the previous frame claims it only from a slot that does not
        continue smoothly (IoU < ``STEADY``): an old last box says little about where its
        person is now, and someone may be walking over the spot."""
        waiting = [s for s in iou if s != slot and s not in taken]
        for d in sorted(free, key=lambda d: -iou[slot][d]):
            own = iou[slot][d]
            if own < self.min_iou:
                return None
            theirs = [
                s for s in waiting
                if (self.unseen[s] == 0 or own < STEADY) and iou[s][d] >= own + CLEARER
                and max(free, key=lambda e: iou[s][e]) == d
            ]  # fmt: skip
            if not theirs:
                return d
        return None

    def update(self, det: FrameDetections) -> np.ndarray:
        """Detections of the next frame -> joints float32 (P, 17, 3) in slot order."""
        out = np.zeros((self.persons, NUM_KEYPOINTS, 3), np.float32)
        taken: dict[int, int] = {}  # slot -> detection
        free_dets = list(range(len(det.scores)))  # in rank order
        recent = [s for s in range(self.persons) if self._recent(s)]
        if recent and free_dets:  # IoU of each recent slot's last box with each detection
            last = np.stack([self.last_boxes[s] for s in recent])
            iou = dict(zip(recent, box_iou(last, det.boxes), strict=True))  # slot -> (n,)
            for slot in recent:
                d = self._overlap_match(slot, iou, free_dets, taken)
                if d is not None:
                    taken[slot] = d
                    free_dets.remove(d)
        for slot in range(self.persons):
            if slot not in taken and self._recent(slot):
                near = [d for d in free_dets if self._near(slot, det.boxes[d])]
                if near:
                    taken[slot] = near[0]
                    free_dets.remove(near[0])
        free_slots = [s for s in range(self.persons) if s not in taken and not self._recent(s)]
        for slot, d in zip(free_slots, free_dets, strict=False):
            taken[slot] = d
        for slot in range(self.persons):
            self.unseen[slot] += 1
        for slot, d in taken.items():
            out[slot] = det.keypoints[d]
            self.last_boxes[slot], self.unseen[slot] = det.boxes[d], 0
        return out


def track_persons(detections: Sequence[FrameDetections], persons: int) -> np.ndarray:
    """Consecutive frames' detections -> joints float32 (F, P, 17, 3) with stable person slots."""
    tracker = PersonTracker(persons)
    if not detections:
        return np.zeros((0, persons, NUM_KEYPOINTS, 3), np.float32)
    return np.stack([tracker.update(d) for d in detections])
