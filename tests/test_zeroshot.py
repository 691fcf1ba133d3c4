"""Zero-shot label prompting: the frozen CLIP image tower, the command on real clips, a split.

The CLIP here is open_clip's ViT-S-32-alt, randomly initialised and saved as a local weights
file (no pretrained CLIP can be downloaded on these machines), so the tests check that hpnet
computes exactly what open_clip computes, not how accurate the result is.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hpnet.cli import UserError
from hpnet.models.clip_video import (
    ClipVideoClassifier,
    build_image_tower,
    describe,
    zero_shot_classifier,
)
from hpnet.text import weights as clip_weights
from hpnet.zeroshot import main

SMALL = "ViT-S-32-alt"  # image tower width 384, 12 layers, 224 px, patch 32; embeddings 256


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A full open_clip model (seeded random weights) saved as a local checkpoint file."""
    import open_clip

    torch.manual_seed(3)
    model = open_clip.create_model(SMALL).eval()
    with torch.no_grad():
        model.logit_scale.fill_(torch.tensor(50.0).log())
    path = tmp_path_factory.mktemp("clip") / "small_clip.pt"
    torch.save(model.state_dict(), path)
    return path, model


def test_image_tower_and_logits_match_open_clip(clip_file, tmp_path):
    import open_clip

    path, source = clip_file
    tower = build_image_tower(SMALL, str(path))
    assert tower.weights.kind == "file" and tower.image_size == 224
    assert tower.logit_scale == pytest.approx(50.0, rel=1e-5)
    images = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        expected = source.encode_image(images, normalize=True)
        got = F.normalize(tower.visual(images), dim=-1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)

    labels = ["brush hair", "golf", "climb"]
    model, _ = zero_shot_classifier(
        SMALL, str(path), labels, ["a video of a person {}."], text_cache_dir=str(tmp_path)
    )
    tokens = open_clip.get_tokenizer(SMALL)([f"a video of a person {x}." for x in labels])
    with torch.no_grad():
        text = source.encode_text(tokens, normalize=True)
        # One frame per clip: exactly open_clip's zero-shot logits.
        reference = source.logit_scale.exp() * expected @ text.t()
        logits = model(images[:, None])["logits"]
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=0)


def test_video_embedding_is_the_mean_of_unit_frame_embeddings(clip_file):
    path, _ = clip_file
    tower = build_image_tower(SMALL, str(path))
    model = ClipVideoClassifier(
        tower.visual, F.normalize(torch.randn(4, 256), dim=-1), list("abcd")
    )
    video = torch.randn(2, 3, 3, 224, 224)
    with torch.no_grad():
        frames = F.normalize(tower.visual(video.flatten(0, 1)), dim=-1).view(2, 3, -1)
    expected = F.normalize(frames.mean(1), dim=-1)
    torch.testing.assert_close(model.encode_video(video), expected, atol=1e-5, rtol=0)
    shuffled = video[:, [2, 0, 1]]  # mean pooling ignores frame order
    torch.testing.assert_close(model.encode_video(shuffled), expected, atol=1e-5, rtol=0)
    assert all(not p.requires_grad for p in model.parameters())
    model.train()
    assert not model.visual.training  # frozen: stays in eval mode


def test_command_on_real_clips_json(clip_file, shared_data, tmp_path, capsys):
    path, _ = clip_file
    mini = shared_data / "hmdb51_mini"
    labels = ["brush hair", "climb", "golf", "punch"]
    args = [
        str(mini / "golf"),
        str(mini / "punch"),
        "--labels",
        ",".join(labels),
        "--model",
        SMALL,
        "--pretrained",
        str(path),
        "--json",
        f"text.cache_dir={tmp_path / 'text'}",
        "data.frames=4",
        "eval.views=1",
        "eval.crops=1",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert "CLIP image tower: " in captured.err
    assert doc["clip_model"] == SMALL and doc["clip_weights"] == str(path.resolve())
    assert doc["labels"] == labels and doc["failed"] == 0
    assert [Path(v["video"]).parent.name for v in doc["videos"]] == ["golf", "punch"]
    for video in doc["videos"]:
        assert video["ok"] and "pose" not in video and "pose" not in video["seconds"]
        assert sum(t["prob"] for t in video["top"]) == pytest.approx(1.0, abs=1e-4)
    assert doc["crops"] == 1
    assert main([*args, "eval.crops=3"]) == 0  # CLIP's square canvas: one crop, said as one
    again = json.loads(capsys.readouterr().out)
    assert again["crops"] == 1  # (it said 3 and computed 1)
    assert [v["top"] for v in again["videos"]] == [v["top"] for v in doc["videos"]]


def test_logits_are_fp32_under_autocast(clip_file, tmp_path):
    path, _ = clip_file
    model, _ = zero_shot_classifier(
        SMALL, str(path), ["golf", "climb"], ["{}"], text_cache_dir=str(tmp_path)
    )
    video = torch.randn(1, 2, 3, 224, 224)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(video)["logits"]
    assert logits.dtype == torch.float32


def test_dataset_split_is_scored_and_reported(
    clip_file, hmdb51_mini, tmp_path, capsys, monkeypatch
):
    path, _ = clip_file
    out = tmp_path / "zs"
    code = main(
        [
            "--dataset", "hmdb51", "--split", "1", f"data.root={hmdb51_mini}",
            "data.allow_missing=true", "--model", SMALL, "--pretrained", str(path),
            f"text.cache_dir={tmp_path / 'text'}", "data.frames=4", "eval.views=1",
            "eval.crops=1", "data.workers=0", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["num_videos"] == 2  # split 1 tests climb_stairs and punch among the 7 clips
    assert 0 <= report["top1"] <= report["top5"] <= 1
    assert report["templates"] == ["{}"]  # the bare class name by default
    assert report["setup"]["model.arch"] == "clip zero-shot"  # (hpnet.compare's model column)
    assert report["setup"]["model.pretrained"] == report["model"]
    assert len(report["per_class"]) == 51
    assert (out / "confusion_matrix.png").is_file()
    assert "zero-shot hmdb51 split 1" in capsys.readouterr().out
    # a folder of clips has no official splits: "folder split 1" and zeroshot-folder-split1
    folder = tmp_path / "clips"
    for name in ("golf", "punch"):
        (folder / name).mkdir(parents=True)
        for clip in (hmdb51_mini / name).iterdir():  # (two each: one tests; a copy, as a
            (folder / name / clip.name).symlink_to(clip)  # second link is read once)
            (folder / name / f"again_{clip.name}").write_bytes(clip.read_bytes())
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", "folder", f"data.root={folder}", "--model", SMALL, "--pretrained",
            str(path), f"text.cache_dir={tmp_path / 'text'}", "data.frames=4", "eval.views=1",
            "eval.crops=1", "data.workers=0", "data.test_fraction=0.5"]  # fmt: skip
    assert main(args) == 0
    assert "zero-shot folder (" in capsys.readouterr().out
    assert (tmp_path / "runs" / "zeroshot-folder" / "eval.json").is_file()


def test_splits_rerun_refuses_a_split_scored_with_other_weights(clip_file, hmdb51_mini, tmp_path):
    """A split is reused only when the weights resolve to the same file as then: another file
    behind the same setting, or random weights then (an offline tag), are not averaged in."""
    path, model = clip_file
    weights = tmp_path / "clip.pt"
    weights.write_bytes(path.read_bytes())
    out = tmp_path / "zs"
    args = [
        "--dataset", "hmdb51", "--splits", "1", f"data.root={hmdb51_mini}",
        "data.allow_missing=true", "--model", SMALL, "--pretrained", str(weights),
        f"text.cache_dir={tmp_path / 'text'}", "data.frames=2", "eval.views=1", "eval.crops=1",
        "data.workers=0", "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "split1" / "eval.json").read_text())
    assert report["weights"]["file"] == str(weights.resolve())
    assert main(args) == 0  # the same file: reused
    torch.save({k: v + 1 for k, v in model.state_dict().items()}, weights)  # replaced
    with pytest.raises(UserError, match=r"scored with weights .*clip.pt \(\d+ bytes.*this run"):
        main(args)
    report.pop("weights")  # a report from before weights were recorded, of a random CLIP
    report["model"] = f"{SMALL} random init"
    (out / "split1" / "eval.json").write_text(json.dumps(report))
    with pytest.raises(UserError, match=r"scored with weights 'random init' \(this run: '/"):
        main(args)


@pytest.mark.slow  # two torchrun processes, ~15 s: with -m slow
def test_dataset_split_on_two_processes_reports_what_one_does(clip_file, hmdb51_mini, tmp_path):
    """torchrun: each rank scores its share of the split, rank 0 writes the merged report."""
    import os
    import subprocess
    import sys

    from ddp_launch import TORCHRUN

    path, _ = clip_file
    args = [
        "--dataset", "hmdb51", "--split", "1", f"data.root={hmdb51_mini}",
        "data.allow_missing=true", "--model", SMALL, "--pretrained", str(path),
        f"text.cache_dir={tmp_path / 'text'}", "data.frames=4", "eval.views=1",
        "eval.crops=1", "data.workers=0",
    ]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    cmd = [sys.executable, *TORCHRUN, "-m", "hpnet.zeroshot", *args, "--out", str(tmp_path / "two")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("zero-shot hmdb51 split 1") == 1  # rank 0 alone reports
    one = json.loads((tmp_path / "one" / "eval.json").read_text())
    two = json.loads((tmp_path / "two" / "eval.json").read_text())
    assert one["num_videos"] == two["num_videos"] == 2
    assert two["per_class"] == one["per_class"]
    assert two["top5"] == pytest.approx(one["top5"])


def test_offline_tag_warns_and_missing_file_is_an_error(shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(clip_weights, "_WARNED", set())
    with pytest.warns(UserWarning, match="RANDOMLY"):  # conftest: HF_HUB_OFFLINE=1
        tower = build_image_tower("ViT-B-32", "openai")
    assert tower.weights.kind == "random" and tower.weights.fallback_from == "openai"
    assert "RANDOM init (weights 'openai' unavailable" in describe(tower)
    with pytest.raises(UserError, match="neither an open_clip tag"):
        build_image_tower(SMALL, "laion400m_e32")
    with pytest.raises(
        UserError, match=r"CLIP weights file not found: .*nope\.pt \(text\.pretrained\)"
    ):
        build_image_tower(SMALL, str(tmp_path / "nope.pt"))
    text_only = tmp_path / "text_only.pt"
    torch.save({"token_embedding.weight": torch.zeros(2, 2)}, text_only)
    with pytest.raises(UserError, match="no image tower"):
        build_image_tower(SMALL, str(text_only))
    clip = shared_data / "hmdb51_mini" / "golf"
    with pytest.raises(UserError, match="--labels"):
        main([str(clip)])
    with pytest.raises(UserError, match="drop the videos"):
        main([str(clip), "--dataset", "hmdb51"])


def test_trained_hpnet_over_new_labels(tiny_args, shared_data, tmp_path, capsys):
    from hpnet.train import main as train_main

    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps = ["train.epochs=1", "train.max_steps=1", "model.pose=false"]
        assert train_main([*tiny_args, f"train.out_dir={out}", *steps]) == 0
    capsys.readouterr()
    labels = ["ride a horse", "golf", "eat"]
    clip = shared_data / "videos" / "other" / "kinetics_cleaning_pool.mp4"
    args = [str(clip), "--checkpoint", str(out / "last.pt"), "--labels", ",".join(labels)]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["checkpoint"] == str(out / "last.pt") and doc["labels"] == labels
    assert sum(t["prob"] for t in doc["videos"][0]["top"]) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(UserError, match="drop --model"):
        main([*args, "--model", SMALL])
    # Other prompts for the new labels: other class embeddings, so other probabilities (the
    # trained default, "a video of a person {}.", once passed as one bracketed string: differed).
    assert main([*args, "--json", "--templates", "someone doing {}, on video"]) == 0
    prompted = json.loads(capsys.readouterr().out)
    assert prompted["videos"][0]["top"] != doc["videos"][0]["top"]


def test_templates_of_a_config_file_are_kept_nested_or_dotted(tmp_path, monkeypatch):
    """A config's text.templates (as a section or a dotted key) is used; without, the bare name.
    The file is read once (``--config <(...)``, a pipe, gave the default the second time) and
    from ``~``."""
    from hpnet.zeroshot import _parser, zero_shot_config

    monkeypatch.setenv("HOME", str(tmp_path))
    nested, dotted, other = (tmp_path / f"{n}.yaml" for n in ("nested", "dotted", "other"))
    nested.write_text("text:\n  templates: ['a clip of {}']\n")
    dotted.write_text("text.templates: ['a clip of {}']\n")
    other.write_text("eval:\n  views: 1\n")

    def templates(config: str, *overrides: str) -> list[str]:
        args = _parser().parse_args(["v.mp4", "--config", config])
        return zero_shot_config(args, list(overrides)).text.templates

    assert templates(str(nested)) == templates("~/dotted.yaml") == ["a clip of {}"]
    assert templates(str(other)) == ["{}"]  # (the bare class name)
    assert templates(str(other), "text.templates=x {}") == ["x {}"]
    read_once = tmp_path / "pipe"
    os.mkfifo(read_once)
    writer = threading.Thread(target=read_once.write_text, args=(nested.read_text(),))
    writer.start()
    assert templates(str(read_once)) == ["a clip of {}"]
    writer.join()
