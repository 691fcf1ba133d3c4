"""CLIP weights: model.pretrained by tag (one download, one read for backbone and text tower),
the offline error, QuickGELU vs GELU in every file form, the random-tower warning, checkpoints.

The CLIP is a tiny open_clip architecture registered for the tests (``TINY``: the LS-ViT
``tiny`` shapes, patch 8, 32 px) with two tags: ``openai`` (QuickGELU, on the Hugging Face hub
like OpenAI's ViT-B/16) and ``laion`` (GELU). Only the network fetch is replaced: open_clip's
own ``hf_hub_download`` call serves a file saved from a randomly initialised model.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import warnings
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from hpnet.cli import UserError
from hpnet.config import Config, config_from_dict, config_to_dict
from hpnet.models.clip_video import build_image_tower, zero_shot_classifier
from hpnet.models.hpnet import build_model
from hpnet.text import download as clip_download
from hpnet.text import weights as clip_weights
from hpnet.text.encoder import ClassTextEncoder

TINY = "hpnet-tiny-clip"
QUICK = f"{TINY}-quickgelu"  # open_clip 3.3 builds OpenAI's weights right only under this name
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 128, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
OPENAI_REPO = "timm/hpnet_tiny_clip.openai"  # what the tags' weights are downloaded from
LAION_REPO = "laion/hpnet-tiny-clip-laion"
TEXTS = ["a video of a person climb.", "wave"]
HALF = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # the laion tag's (as LAION's ViT-L-14)


@pytest.fixture(autouse=True)
def tiny_clip(monkeypatch):
    """Register TINY and its two tags with open_clip, as its own configs are registered."""
    from open_clip.pretrained import _PRETRAINED, _pcfg

    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, TINY, TINY_CFG)
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, QUICK, {**TINY_CFG, "quick_gelu": True})
    openai = _pcfg(hf_hub=f"{OPENAI_REPO}/", quick_gelu=True)
    monkeypatch.setitem(
        _PRETRAINED, TINY, {"openai": openai, "laion": _pcfg(hf_hub=f"{LAION_REPO}/", **HALF)}
    )
    monkeypatch.setitem(_PRETRAINED, QUICK, {"openai": openai})  # as open_clip does for its own
    monkeypatch.setattr(clip_weights, "_WARNED", set())


@pytest.fixture(scope="module")
def weights_bin(tmp_path_factory) -> Path:
    """Random TINY weights as an open_clip state dict file with no provenance."""
    torch.manual_seed(7)
    model = open_clip.CLIP(**TINY_CFG)
    with torch.no_grad():
        for p in model.parameters():  # larger than init, so that the activations matter
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path_factory.mktemp("downloads") / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def hub(monkeypatch, tmp_path, weights_bin):
    """Online for hpnet's checks; open_clip's network fetch serves ``weights_bin``, counted."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(clip_download.socket, "create_connection", lambda *a, **k: _Closable())
    calls: list[str] = []

    def fetch(repo_id, filename, revision=None, cache_dir=None, **kwargs):
        if filename != "open_clip_pytorch_model.bin":  # the repo has no .safetensors
            raise FileNotFoundError(f"{repo_id}/{filename}")
        calls.append(f"{repo_id}/{filename}")
        folder = tmp_path / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / "0"
        folder.mkdir(parents=True, exist_ok=True)
        return shutil.copy(weights_bin, folder / filename)

    monkeypatch.setattr("open_clip.pretrained.hf_hub_download", fetch)
    return calls


class _Closable:
    def close(self) -> None:
        pass


def reference(path: Path, quick_gelu: bool) -> torch.nn.Module:
    """open_clip's own model of the weights, built with the activation they were trained with."""
    return open_clip.create_model(TINY, pretrained=str(path), force_quick_gelu=quick_gelu).eval()


def frames(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def tiny_cfg(tmp_path: Path, pretrained: str, **text: str) -> Config:
    cfg = Config()
    cfg.data.size, cfg.data.frames = 32, 2
    m = cfg.model
    m.size, m.patch_size, m.pose, m.feedback, m.drop_path = "tiny", 8, False, False, 0.0
    m.pretrained = pretrained
    cfg.text.model, cfg.text.pretrained = TINY, pretrained
    cfg.text.templates = ["{}"]
    cfg.text.cache_dir = str(tmp_path / "text_cache")
    for key, value in text.items():
        setattr(cfg.text, key, value)
    return cfg


def backbone_image_features(model, clip: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """LS-ViT features of still clips of ``x (N,3,S,S)`` projected like CLIP's: ``(N, E)``."""
    with torch.no_grad():
        tokens = model.backbone.forward_features(x.unsqueeze(1).repeat(1, 2, 1, 1, 1))
        return tokens[:, 0, 0] @ clip.visual.proj


def assert_towers_match(path: str, ref: torch.nn.Module, quick_gelu: str = "auto") -> None:
    """hpnet's text tower, zero-shot image tower and LS-ViT on ``path`` compute ``ref``'s."""
    tokens = open_clip.get_tokenizer(TINY)(TEXTS)
    x = frames()
    with torch.no_grad():
        text_ref = F.normalize(ref.encode_text(tokens), dim=-1)
        image_ref = ref.encode_image(x)
    encoder = ClassTextEncoder(TINY, path, cache_dir=None, quick_gelu=quick_gelu)
    torch.testing.assert_close(encoder.encode_texts(TEXTS), text_ref, atol=1e-5, rtol=0)
    tower = build_image_tower(TINY, path, quick_gelu=quick_gelu)
    with torch.no_grad():
        torch.testing.assert_close(tower.visual(x), image_ref, atol=1e-5, rtol=1e-4)
    cfg = tiny_cfg(Path(path).parent, path, quick_gelu=quick_gelu)
    cfg.model.text = False
    model = build_model(cfg, ["a", "b"]).eval()
    got = backbone_image_features(model, ref, x)
    torch.testing.assert_close(got, image_ref, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- tag, one read


def test_tag_is_downloaded_once_and_read_once_for_backbone_and_text(
    hub, weights_bin, tmp_path, monkeypatch
):
    reads: list[str] = []
    real_load = torch.load

    def counting_load(f, *args, **kwargs):
        reads.append(Path(f).name if isinstance(f, str | Path) else "?")
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    cfg = tiny_cfg(tmp_path, "openai")
    model = build_model(cfg, ["climb", "wave"]).eval()
    assert hub == [f"{OPENAI_REPO}/open_clip_pytorch_model.bin"]  # one download
    assert reads.count("open_clip_pytorch_model.bin") == 1  # one read for both towers
    assert "loaded" in model.pretrained_report and "quick_gelu" in model.pretrained_report
    assert model.backbone.act == "quick_gelu" and cfg.text.quick_gelu == "true"  # recorded

    monkeypatch.setattr(torch, "load", real_load)
    ref = open_clip.create_model(QUICK, pretrained="openai").eval()  # OpenAI's CLIP, right
    assert ref.transformer.resblocks[0].mlp.gelu.__class__.__name__ == "QuickGELU"
    x = frames()
    with torch.no_grad():
        text_ref = F.normalize(
            ref.encode_text(open_clip.get_tokenizer(TINY)(["climb", "wave"])), dim=-1
        )
        torch.testing.assert_close(model.class_embeddings, text_ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(
            backbone_image_features(model, ref, x), ref.encode_image(x), atol=1e-4, rtol=1e-4
        )


def test_offline_tag_for_the_backbone_is_an_error_naming_file_and_key(tmp_path, monkeypatch):
    def no_fetch(*args, **kwargs):
        raise AssertionError("offline: no download may be attempted")

    monkeypatch.setattr("open_clip.pretrained.hf_hub_download", no_fetch)
    cfg = tiny_cfg(tmp_path, "openai")  # conftest: HF_HUB_OFFLINE=1
    with pytest.raises(UserError) as err:
        build_model(cfg, ["climb"])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("model.pretrained='openai': open_clip weights hpnet-tiny-clip/openai")
    assert (
        f"https://huggingface.co/{OPENAI_REPO}/resolve/main/open_clip_pytorch_model.bin" in message
    )
    assert "model.pretrained=/path/to/open_clip_pytorch_model.bin text.quick_gelu=true" in message


# ---------------------------------------------------------------------- QuickGELU vs GELU


def test_plain_state_dict_of_a_model_with_openai_weights_is_refused_or_set(weights_bin):
    """The file hpnet's offline message recommends, saved anywhere: the activation is asked for."""
    for build in (
        lambda: ClassTextEncoder(TINY, str(weights_bin), cache_dir=None).encode_texts(TEXTS),
        lambda: build_image_tower(TINY, str(weights_bin)),
        lambda: build_model(tiny_cfg(weights_bin.parent, str(weights_bin)), ["a"]),
    ):
        with pytest.raises(UserError, match=r"open_clip_pytorch_model\.bin.*text\.quick_gelu=true"):
            build()
    assert_towers_match(str(weights_bin), reference(weights_bin, True), quick_gelu="true")
    assert_towers_match(str(weights_bin), reference(weights_bin, False), quick_gelu="false")


def test_a_backbone_file_is_judged_by_its_own_shape_not_by_text_model(weights_bin, tmp_path):
    """LS-ViT's file is an image tower of TINY's shape, which has OpenAI weights: refused as
    ambiguous even when text.model (here ViT-S-32-alt, no QuickGELU tags) would say GELU."""
    cfg = tiny_cfg(tmp_path, str(weights_bin))
    cfg.text.model, cfg.text.pretrained, cfg.model.text = "ViT-S-32-alt", "", False
    with pytest.raises(UserError, match=rf"\(model\.pretrained\).*{TINY} has both"):
        build_model(cfg, ["a"])
    cfg.text.quick_gelu = "true"
    x = frames()
    got = backbone_image_features(build_model(cfg, ["a"]).eval(), reference(weights_bin, True), x)
    with torch.no_grad():
        torch.testing.assert_close(
            got, reference(weights_bin, True).encode_image(x), atol=1e-4, rtol=1e-4
        )


@pytest.mark.parametrize(
    ("folder", "quick_gelu"),
    [
        (f"hub/models--{OPENAI_REPO.replace('/', '--')}/snapshots/abc", True),  # HF cache
        (OPENAI_REPO.split("/")[1], True),  # huggingface-cli download --local-dir <repo name>
        (f"hub/models--{LAION_REPO.replace('/', '--')}/snapshots/abc", False),
    ],
)
def test_file_from_a_known_download_gets_its_tags_activation(
    weights_bin, tmp_path, folder, quick_gelu
):
    path = tmp_path / folder / "open_clip_pytorch_model.bin"
    path.parent.mkdir(parents=True)
    shutil.copy(weights_bin, path)
    assert_towers_match(str(path), reference(weights_bin, quick_gelu))


def test_a_files_mean_and_std_come_from_its_download_or_its_config(weights_bin, tmp_path, caplog):
    """Zero-shot normalises frames as the weights were trained: a file of a known download gets
    its tag's mean/std, one with an open_clip_config.json its preprocess_cfg's; else OpenAI's,
    with a warning when other weights of the model used others."""
    openai_mean = build_image_tower(TINY, "", quick_gelu="false").mean
    laion = tmp_path / f"hub/models--{LAION_REPO.replace('/', '--')}/snapshots/abc"
    configured, plain = tmp_path / "configured", tmp_path / "plain"
    for folder in (laion, configured, plain):
        folder.mkdir(parents=True)
        shutil.copy(weights_bin, folder / "open_clip_pytorch_model.bin")
    preprocess = {"mean": [0.4, 0.4, 0.4], "std": [0.2, 0.3, 0.2], "resize_mode": "squash"}
    (configured / "open_clip_config.json").write_text(json.dumps({"preprocess_cfg": preprocess}))

    def tower(folder: Path):
        return build_image_tower(
            TINY, str(folder / "open_clip_pytorch_model.bin"), quick_gelu="false"
        )

    assert (tower(laion).mean, tower(laion).std) == (HALF["mean"], HALF["std"])
    assert "resize_mode" not in caplog.text
    with caplog.at_level(logging.WARNING):
        assert (tower(configured).mean, tower(configured).std) == ((0.4,) * 3, (0.2, 0.3, 0.2))
    assert "resize_mode=squash, interpolation=bicubic; hpnet's zero-shot resizes" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert tower(plain).mean == openai_mean != HALF["mean"]
    assert (
        "using OpenAI's image mean/std" in caplog.text and "tag(s) laion used others" in caplog.text
    )


def test_safetensors_and_openai_state_dict_and_torchscript_get_quick_gelu(weights_bin, tmp_path):
    from safetensors.torch import save_file

    state = torch.load(weights_bin, weights_only=True)
    ref = reference(weights_bin, True)
    local = tmp_path / OPENAI_REPO.split("/")[1]
    local.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, local / "open_clip_model.safetensors")
    assert_towers_match(str(local / "open_clip_model.safetensors"), ref)

    openai_style = dict(state)  # what OpenAI's archive holds besides the weights
    openai_style.update(
        input_resolution=torch.tensor(32), context_length=torch.tensor(16),
        vocab_size=torch.tensor(49408),
    )  # fmt: skip
    torch.save(openai_style, tmp_path / "tiny_openai_state.pt")
    assert_towers_match(str(tmp_path / "tiny_openai_state.pt"), ref)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        scripted = open_clip.create_model(
            TINY, pretrained=str(weights_bin), jit=True, force_quick_gelu=True
        )
        torch.jit.save(scripted, str(tmp_path / "TINY.pt"))
    assert_towers_match(str(tmp_path / "TINY.pt"), ref)


def test_following_the_offline_instructions_gives_open_clips_tag_model(hub, weights_bin, tmp_path):
    """The warning's download + settings give what create_model_and_transforms(tag) gives.

    With the QuickGELU the tag was trained with: open_clip 3.3's ``create_model_and_transforms(
    'ViT-B-16', pretrained='openai')`` itself builds GELU towers and only warns ("QuickGELU
    mismatch"); the right model is its ``ViT-B-16-quickgelu`` (or ``force_quick_gelu=True``).
    """
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"  # monkeypatched by `hub`: restored afterwards
    with pytest.warns(UserWarning, match="RANDOMLY") as record:
        ClassTextEncoder(TINY, "openai", cache_dir=None).encode_texts(TEXTS)
    message = str(record[0].message)
    url = re.search(r"download (\S+) and set", message).group(1)
    settings = dict(kv.split("=") for kv in re.search(r"and set (.+)\.$", message).group(1).split())
    assert url.endswith(f"{OPENAI_REPO}/resolve/main/open_clip_pytorch_model.bin")
    downloaded = tmp_path / "Downloads" / url.rsplit("/", 1)[1]  # a browser download
    downloaded.parent.mkdir()
    shutil.copy(weights_bin, downloaded)
    assert settings == {"text.pretrained": f"/path/to/{downloaded.name}", "text.quick_gelu": "true"}

    del os.environ["HF_HUB_OFFLINE"]
    ref, _, preprocess = open_clip.create_model_and_transforms(QUICK, pretrained="openai")
    assert_towers_match(str(downloaded), ref.eval(), quick_gelu=settings["text.quick_gelu"])
    tower = build_image_tower(TINY, str(downloaded), quick_gelu=settings["text.quick_gelu"])
    normalize = preprocess.transforms[-1]
    assert tower.mean == tuple(normalize.mean) and tower.std == tuple(normalize.std)


# ----------------------------------------------------------------------- warning, checkpoints


def test_random_tower_warning_is_printed_once_and_names_the_towers(caplog):
    """Each unavailable tag is reported once, on one channel (a warning, not also a log line)."""
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zero_shot_classifier(TINY, "openai", ["wave"], ["{}"], text_cache_dir=None)
        ClassTextEncoder(TINY, "openai", cache_dir=None).encode_texts(["wave"])  # warned already
        ClassTextEncoder(TINY, "laion", cache_dir=None).encode_texts(["wave"])
    printed = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    printed = [text for text in printed if "RANDOMLY" in text]
    assert len(printed) == 2, printed
    assert printed[0].startswith(f"open_clip weights {TINY}/openai are not available")
    assert "The image and text towers are RANDOMLY" in printed[0]  # zero-shot: both towers
    assert printed[1].startswith(f"open_clip weights {TINY}/laion are not available")
    assert "The text tower is RANDOMLY" in printed[1]
    assert "text.quick_gelu=false" in printed[1] and "text.quick_gelu=true" in printed[0]


def test_checkpoint_rebuilds_the_backbone_activation_without_the_file(weights_bin, tmp_path):
    cfg = tiny_cfg(tmp_path, str(weights_bin), quick_gelu="true")
    cfg.model.text = False
    trained = build_model(cfg, ["a", "b"]).eval()
    state = trained.state_dict()
    assert all(torch.is_tensor(v) for v in state.values())  # code reading state dicts keeps working
    assert state["backbone._extra_state"].tolist() == [1.0, 1.0, 1e-5]  # pre-norm, QuickGELU, eps
    saved = config_to_dict(cfg)
    saved["model"]["pretrained"] = str(tmp_path / "moved_away.bin")  # the file is gone

    rebuilt = build_model(config_from_dict(saved), ["a", "b"], load_weights=False).eval()
    rebuilt.load_state_dict(state)
    assert rebuilt.backbone.act == "quick_gelu" and rebuilt.backbone.norm.eps == 1e-5
    x = frames().unsqueeze(1).repeat(1, 2, 1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x)["logits"], trained(x)["logits"])

    old = {k: v for k, v in state.items() if k != "backbone._extra_state"}  # older checkpoints
    again = build_model(config_from_dict(saved), ["a", "b"], load_weights=False).eval()
    again.load_state_dict(old)
    assert again.backbone.act == "quick_gelu" and again.backbone.norm.eps == 1e-5


def test_zero_shot_reads_one_file_for_both_towers(weights_bin, tmp_path, monkeypatch):
    reads: list[str] = []
    real_load = torch.load

    def counting_load(f, *args, **kwargs):
        reads.append(str(f))
        return real_load(f, *args, **kwargs)

    path = tmp_path / OPENAI_REPO.split("/")[1] / "open_clip_pytorch_model.bin"
    path.parent.mkdir()
    shutil.copy(weights_bin, path)
    monkeypatch.setattr(torch, "load", counting_load)
    _, tower = zero_shot_classifier(TINY, str(path), ["wave"], ["{}"], text_cache_dir=None)
    assert reads.count(str(path.resolve())) == 1
    assert tower.weights.source == str(path.resolve())


@pytest.mark.slow  # ~30 s on 2 shared cores: a train run and an evaluation
def test_train_prints_the_load_report_and_evaluate_rebuilds_without_the_file(
    tiny_args, weights_bin, tmp_path, capsys
):
    """A CLIP-initialised run (OpenAI weights, QuickGELU): evaluate needs only the checkpoint."""
    from hpnet.evaluate import main as evaluate_main
    from hpnet.train import main as train_main

    path = tmp_path / OPENAI_REPO.split("/")[1] / "open_clip_pytorch_model.bin"
    path.parent.mkdir()
    shutil.copy(weights_bin, path)
    out = tmp_path / "run"
    clip = [f"model.pretrained={path}", f"text.model={TINY}", f"text.pretrained={path}"]
    steps = ["train.max_steps=1", "train.epochs=1", f"train.out_dir={out}"]
    assert train_main([*tiny_args, *clip, *steps]) == 0
    printed = capsys.readouterr().out
    assert f"model.pretrained: loaded 56 tensors from clip checkpoint {path.resolve()}" in printed
    assert "(activation quick_gelu)" in printed
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["config"]["text"]["quick_gelu"] == "true"
    assert ckpt["model"]["backbone._extra_state"].tolist() == [1.0, 1.0, 1e-5]

    path.unlink()  # evaluate and predict rebuild from the checkpoint alone
    assert evaluate_main(["--checkpoint", str(out / "last.pt"), "--out", str(tmp_path / "ev")]) == 0


def test_an_untrained_hpnet_scores_clips_as_clips_image_tower(weights_bin, tmp_path):
    """With the backbone and text tower from one CLIP file, the head starts from CLIP's image
    projection (and a near-zero pose projection): before any training a clip's image
    embedding is CLIP's mean frame embedding, so the logits rank classes as zero-shot CLIP."""
    from hpnet.fusion.head import centre_class_embeddings

    cfg = tiny_cfg(tmp_path, str(weights_bin), quick_gelu="false")
    cfg.model.pose = True
    model = build_model(cfg, ["climb", "wave", "run", "kick"]).eval()
    assert model.pretrained_report.endswith("CLIP's image projection -> head.fuse.rgb")
    assert "head.fuse.rgb.weight" not in model.pretrained_names  # a head weight, at train.lr
    ref = reference(weights_bin, quick_gelu=False)
    x = frames(4)
    clips = x.unsqueeze(1).repeat(1, 2, 1, 1, 1)  # (4, 2, 3, 32, 32): still clips
    joints = torch.rand(4, 2, 2, 17, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        image = F.normalize(ref.encode_image(x), dim=-1)
        out = model(clips, joints)
        zero_shot = image @ centre_class_embeddings(model.class_embeddings.float()).t()
    scale = model.head.logit_scale.exp()
    torch.testing.assert_close(out["logits"] / scale, zero_shot, atol=1e-2, rtol=0)
    cfg.model.pool = "mean"  # CLIP projects the class token only: a mean of tokens is not
    assert "image projection" not in build_model(cfg, ["climb", "wave"]).pretrained_report


def test_a_vit_of_another_width_is_said_with_the_files_shapes():
    """The file's (1, 197, 768) position embedding, not the grid-resized (1, 65, 768)."""
    from hpnet.models.lsvit_weights import _fit_shapes
    from hpnet.models.weights import PretrainedReport

    state = {"pos_embed": torch.zeros(1, 197, 768)}  # ViT-B/16 at 224
    own = {"pos_embed": torch.zeros(1, 65, 192)}  # a tiny one on an 8 x 8 grid
    with pytest.raises(UserError, match=r"pos_embed is \(1, 197, 768\) there, \(1, 65, 192\) here"):
        _fit_shapes(state, own, (8, 8), PretrainedReport("vit_b16.pt", "clip"))


def test_a_folder_given_as_weights_is_said_to_be_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w").mkdir()  # no "/" in the name: read as a tag first
    with pytest.raises(UserError, match=r"neither an open_clip tag .* \(w is a folder: give the"):
        clip_weights.resolve_tag("ViT-S-32-alt", "w", None, key="model.pretrained")
