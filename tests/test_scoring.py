"""The test loop's arithmetic: views and crops averaged as softmaxes, the views counted, and
the classification report (top-1, top-5, per-class accuracy, confusion) against hand counts."""

from __future__ import annotations

import pytest
import torch

from hpnet.data.transforms import ClipTransform
from hpnet.metrics import classification_report
from hpnet.scoring import evaluate, view_probs


class _MeanBrightness(torch.nn.Module):
    """Logits ``(N, 2)`` = (10 x mean pixel, 0): a view's score follows its pixels."""

    def forward(self, video, joints):
        mean = video.float().mean(dim=(1, 2, 3, 4))
        return {"logits": torch.stack([10 * mean, torch.zeros_like(mean)], dim=1)}


def _clips(b: int, v: int, h: int, w: int) -> torch.Tensor:
    """uint8 ``(b, v, 2, 3, h, w)``: each view of each clip a different flat grey, and the left
    and right halves of every frame differ (so three crops of a wide frame see different means)."""
    video = torch.zeros(b, v, 2, 3, h, w, dtype=torch.uint8)
    for i in range(b):
        for j in range(v):
            video[i, j] = 30 + 60 * j + 20 * i
    video[..., : w // 3] += 40
    return video


def test_views_and_crops_average_as_softmaxes():
    transform = ClipTransform(16, (0.5,) * 3, (0.25,) * 3)
    video = _clips(2, 3, 16, 32)  # wide: 3 distinct crops
    model = _MeanBrightness()
    probs = view_probs(model, video, None, transform=transform, amp_dtype=None, crops=3)
    views, _ = transform.test(video, None, crops=3)  # (2, 9, T, 3, S, S)
    each = model(views.flatten(0, 1), None)["logits"].softmax(-1).view(2, 9, 2)
    assert each[0, :, 0].std() > 0.05  # the 9 views really differ
    torch.testing.assert_close(probs, each.mean(1))  # the mean of softmaxes, over every view
    mean_logits = model(views.flatten(0, 1), None)["logits"].view(2, 9, 2).mean(1).softmax(-1)
    assert not torch.allclose(probs, mean_logits)
    batch = {"video": video, "joints": torch.zeros(2, 3, 2, 1, 17, 3),
             "label": torch.tensor([0, 1]), "index": torch.tensor([5, 6])}  # fmt: skip
    out = evaluate(model, [batch], transform=transform, device=torch.device("cpu"),
                   amp_dtype=None, crops=3, use_pose=False, progress=False)  # fmt: skip
    assert out["views"] == 9 and out["indices"].tolist() == [5, 6]
    torch.testing.assert_close(out["probs"], probs)
    square = evaluate(model, [{**batch, "video": _clips(2, 3, 16, 16)}], transform=transform,
                      device=torch.device("cpu"), amp_dtype=None, crops=3, use_pose=False,
                      progress=False)  # fmt: skip
    assert square["views"] == 3  # a square canvas has one distinct crop


def test_classification_report_against_hand_counts():
    names = ["a", "b", "c", "d", "e", "f"]
    probs = torch.tensor(
        [
            [0.50, 0.20, 0.10, 0.10, 0.05, 0.05],  # true a: top-1 a
            [0.06, 0.50, 0.20, 0.10, 0.09, 0.05],  # true a: top-1 b, a 5th: in the top 5
            [0.30, 0.02, 0.40, 0.10, 0.10, 0.08],  # true b: top-1 c, b 6th: not in the top 5
            [0.05, 0.05, 0.60, 0.10, 0.10, 0.10],  # true c: top-1 c
        ]
    )
    labels = torch.tensor([0, 0, 1, 2])
    report = classification_report(probs, labels, names)
    assert report["top1"] == pytest.approx(2 / 4) and report["top5"] == pytest.approx(3 / 4)
    assert report["per_class"] == {"a": 0.5, "b": 0.0, "c": 1.0, "d": None, "e": None, "f": None}
    assert report["mean_class_acc"] == pytest.approx((0.5 + 0.0 + 1.0) / 3)  # absent: left out
    confusion = report["confusion"]  # rows: true class, columns: predicted
    assert confusion[0][:3] == [1, 1, 0] and confusion[1][:3] == [0, 0, 1]
    assert confusion[2][:3] == [0, 0, 1] and sum(map(sum, confusion)) == 4
    with pytest.raises(ValueError, match="no videos"):
        classification_report(torch.zeros(0, 6), torch.zeros(0, dtype=torch.long), names)
    three_of_five = classification_report(torch.eye(6)[:5], torch.tensor([0, 1, 2, 0, 0]), names)
    assert three_of_five["top1"] == 0.6  # exactly, as eval.json says it (not 0.6000000238)


def test_tied_scores_rank_in_label_order_as_predict_ranks_them():
    """All six tied: predicted a (as predict's top-k and argmax say), top-5 a-e (topk's order
    of ties is unspecified: it predicted d and dropped b from the top 5)."""
    from hpnet.inference import top_k

    names = ["a", "b", "c", "d", "e", "f"]
    tied = torch.full((4, 6), 1 / 6)
    report = classification_report(tied, torch.tensor([0, 1, 4, 5]), names)
    assert report["top1"] == 0.25 and report["top5"] == 0.75
    assert [row[0] for row in report["confusion"]] == [1, 1, 0, 0, 1, 1]  # all predicted a
    assert [t["label"] for t in top_k(tied[0], names, 5)] == names[:5]


def test_processes_results_are_merged_in_the_datasets_order(monkeypatch):
    """Rank r scores videos r, r + 2, ...: rank 0 puts the gathered rows back in dataset order
    (what per-video output needs; the metrics do not depend on it)."""
    from hpnet import eval_report as evaluate_module
    from hpnet.config import load_config
    from hpnet.distributed import DistInfo

    def part(indices: list[int]) -> dict:
        index = torch.tensor(indices)
        probs = torch.nn.functional.one_hot(index, 5).float()
        return {"probs": probs, "labels": index, "indices": index, "views": 1, "skipped": 0}

    parts = [part([0, 2, 4]), part([1, 3])]
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *a, **k: parts[0])
    monkeypatch.setattr(evaluate_module, "gather_objects", lambda _: parts)
    seen = {}

    def report(probs, labels, classes):
        seen["labels"], seen["probs"] = labels.tolist(), probs.argmax(1).tolist()
        return {"num_videos": len(labels)}

    monkeypatch.setattr(evaluate_module, "classification_report", report)
    cfg = load_config(None, ["data.workers=0"])
    dataset = [{"label": 0}] * 5
    evaluate_module.run_test(None, dataset, cfg, None, torch.device("cpu"), None, DistInfo(0, 2),
                             crops=1)  # fmt: skip
    assert seen == {"labels": [0, 1, 2, 3, 4], "probs": [0, 1, 2, 3, 4]}


@pytest.mark.parametrize("rank", [0, 1])
def test_non_finite_scores_stop_every_process_alike(monkeypatch, rank):
    """A video whose class scores are NaN (an overflowed model) is no prediction of class 0:
    every process stops with the same one-line error (not rank 0 alone, leaving others waiting)."""
    from hpnet import eval_report as evaluate_module
    from hpnet.cli import UserError
    from hpnet.config import load_config
    from hpnet.distributed import DistInfo

    def part(probs: list[list[float]]) -> dict:
        index = torch.arange(len(probs))
        return {"probs": torch.tensor(probs), "labels": index, "indices": index, "views": 1,
                "skipped": 0}  # fmt: skip

    parts = [part([[1.0, 0.0], [float("nan")] * 2]), part([[0.0, 1.0]])]
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *a, **k: parts[rank])
    monkeypatch.setattr(evaluate_module, "gather_objects", lambda _: parts)
    cfg = load_config(None, ["data.workers=0", "train.amp=fp16"])
    said = r"^1 of 3 test videos got non-finite class scores \(NaN or inf\).*train\.amp=fp16"
    with pytest.raises(UserError, match=said):
        evaluate_module.run_test(None, [{"label": 0}] * 3, cfg, None, torch.device("cpu"), None,
                                 DistInfo(rank, 2), crops=1)  # fmt: skip
    with pytest.raises(ValueError, match="NaN or inf"):
        classification_report(parts[0]["probs"], parts[0]["labels"], ["a", "b"])
