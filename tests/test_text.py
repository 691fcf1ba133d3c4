"""Class-name prompts and the frozen, cached CLIP text encoder (hpnet/text).

Most tests use open_clip's ViT-S-32-alt config (text width 256, 10 layers: the smallest CLIP
text tower open_clip ships); one uses the default ViT-B-16. All towers are randomly initialised,
and conftest sets HF_HUB_OFFLINE=1, so nothing here touches the network.
"""

from __future__ import annotations

import logging
import os
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hpnet.cli import UserError
from hpnet.config import Config
from hpnet.text import download as clip_download
from hpnet.text import weights as clip_weights
from hpnet.text.encoder import ClassTextEncoder, TextWeights, build_text_encoder, cache_key
from hpnet.text.prompts import (
    TEMPLATE_SETS,
    check_distinct_phrases,
    class_name_to_phrase,
    get_templates,
    make_prompts,
)
from hpnet.text.weights import is_torchscript_archive, parse_weights

SMALL = "ViT-S-32-alt"  # text tower: width 256, 10 layers, embedding width 256
NAMES = ["brush_hair", "ApplyEyeMakeup", "sit_down"]
TEMPLATES = ["a video of a person {}.", "{}"]


@pytest.fixture
def small_encoder(tmp_path) -> ClassTextEncoder:
    return ClassTextEncoder(SMALL, "", cache_dir=tmp_path / "cache")


# ----------------------------------------------------------------------------------- prompts


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ("brush_hair", "brush hair"),
        ("ApplyEyeMakeup", "apply eye makeup"),
        ("YoYo", "yo yo"),
        ("CleanAndJerk", "clean and jerk"),
        ("HandstandPushups", "handstand pushups"),
        ("flic-flac", "flic flac"),
        ("sit_down", "sit down"),
        ("Ride  Bike ", "ride bike"),
        ("TVRemote", "tv remote"),
    ],
)
def test_class_name_to_phrase(name, phrase):
    assert class_name_to_phrase(name) == phrase


def test_make_prompts_fills_every_template_for_every_class():
    prompts = make_prompts(["brush_hair", "PlayingDaf"], ["{}", "a video of a person {}."])
    assert prompts == [
        ["brush hair", "a video of a person brush hair."],
        ["playing daf", "a video of a person playing daf."],
    ]


def test_templates_by_name_and_bad_templates():
    assert get_templates("bare") == ["{}"]
    assert get_templates("video") == list(TEMPLATE_SETS["video"])
    assert get_templates(["{}!", "x {}"]) == ["{}!", "x {}"]
    with pytest.raises(UserError, match="unknown prompt template set"):
        get_templates("fancy")
    with pytest.raises(UserError, match=r"no '\{\}'"):
        make_prompts(["climb"], ["a video of a person"])


def test_labels_that_become_the_same_words_are_refused():
    from hpnet.text.prompts import read_labels

    check_distinct_phrases(["brush_hair", "climb", "brush_hair"])  # the same name: not a clash
    with pytest.raises(UserError, match=r"x: 'brush_hair' and 'BrushHair' are the same words"):
        check_distinct_phrases(["brush_hair", "wave", "BrushHair"], "x")
    with pytest.raises(UserError, match=r"--labels/--labels-file: 'Run' and 'run'"):
        read_labels("Run,jump,run", None)
    # one name in its composed and decomposed (macOS) forms: accepted twice, two equal scores
    nfc, nfd = "kl\u00e4ttern", "kla\u0308ttern"
    assert class_name_to_phrase(nfd) == class_name_to_phrase(nfc) == nfc
    with pytest.raises(UserError, match=r"\(two Unicode forms of one name\) are the same words"):
        read_labels(f"{nfc},golf,{nfd}", None)


def test_prompts_cut_at_the_context_length_are_warned_about(small_encoder, caplog):
    with caplog.at_level(logging.WARNING, logger="hpnet.text.encoder"):
        small_encoder.encode_class_names(["wave", "clap"], TEMPLATES)
        assert not caplog.records
        small_encoder.encode_class_names(["wave", " ".join(["jump"] * 90)], TEMPLATES)
    (record,) = caplog.records
    assert "2 prompt(s) reach the text tower's 77-token limit" in record.getMessage()


# ----------------------------------------------------------------------------------- encoder


def test_embeddings_have_class_rows_of_unit_norm(small_encoder):
    embeddings = small_encoder.encode_class_names(NAMES, TEMPLATES)
    assert embeddings.shape == (len(NAMES), small_encoder.width) == (3, 256)
    assert embeddings.dtype == torch.float32 and not embeddings.requires_grad
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(3))
    texts = small_encoder.encode_texts(["wave", "a person waves", "clap"])
    assert texts.shape == (3, 256)
    torch.testing.assert_close(texts.norm(dim=1), torch.ones(3))


def test_template_average_is_normalised_mean_of_single_templates(small_encoder):
    both = small_encoder.encode_class_names(NAMES, TEMPLATES)
    first = small_encoder.encode_class_names(NAMES, TEMPLATES[:1])
    second = small_encoder.encode_class_names(NAMES, TEMPLATES[1:])
    torch.testing.assert_close(both, F.normalize((first + second) / 2, dim=-1), atol=1e-5, rtol=0)
    assert not torch.allclose(first, second)


def test_cache_miss_then_hit_without_building(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = ClassTextEncoder(SMALL, "", cache_dir=cache).encode_class_names(NAMES, TEMPLATES)
    files = list(cache.glob("*.pt"))
    assert len(files) == 1 and len(files[0].stem) == 64  # <sha256>.pt, no temp files left

    def no_build(self):
        raise AssertionError("a cache hit must not build the text tower")

    monkeypatch.setattr(ClassTextEncoder, "_build_tower", no_build)
    again = ClassTextEncoder(SMALL, "", cache_dir=cache).encode_class_names(NAMES, TEMPLATES)
    assert torch.equal(first, again)
    with pytest.raises(AssertionError, match="must not build"):  # other labels: a miss
        ClassTextEncoder(SMALL, "", cache_dir=cache).encode_class_names(["climb"], TEMPLATES)


def test_corrupt_cache_file_is_recomputed(tmp_path):
    cache = tmp_path / "cache"
    first = ClassTextEncoder(SMALL, "", cache_dir=cache).encode_texts(["wave"])
    (path,) = cache.glob("*.pt")
    path.write_bytes(b"not a torch file")
    again = ClassTextEncoder(SMALL, "", cache_dir=cache).encode_texts(["wave"])
    torch.testing.assert_close(first, again)  # random init is seeded: same tower every time


def test_cache_key_changes_with_model_weights_labels_and_templates(tmp_path):
    weights_file = tmp_path / "w.pt"
    weights_file.write_bytes(b"0123")
    random, tag = TextWeights("random"), TextWeights("tag", "openai")
    file = TextWeights("file", str(weights_file))
    prompts = make_prompts(NAMES, TEMPLATES)
    base = cache_key(SMALL, random, prompts)
    assert base == cache_key(SMALL, random, make_prompts(NAMES, TEMPLATES))
    others = [
        cache_key("ViT-B-16", random, prompts),
        cache_key(SMALL, tag, prompts),
        cache_key(SMALL, TextWeights("random", fallback_from="openai"), prompts),
        cache_key(SMALL, file, prompts),
        cache_key(SMALL, random, make_prompts([*NAMES[:2], "stand_up"], TEMPLATES)),
        cache_key(SMALL, random, make_prompts(NAMES, TEMPLATES[:1])),
        cache_key(SMALL, random, prompts, quick_gelu="true"),  # another activation: other rows
        cache_key(SMALL, random, prompts, quick_gelu="false"),
    ]
    assert len({base, *others}) == 1 + len(others)
    before = cache_key(SMALL, file, prompts)
    weights_file.write_bytes(b"012345")  # new size (and mtime): a different file
    assert cache_key(SMALL, file, prompts) != before
    before, forced = cache_key(SMALL, file, prompts), cache_key(SMALL, file, prompts, "false")
    (tmp_path / "open_clip_config.json").write_text('{"model_cfg": {"quick_gelu": true}}')
    assert cache_key(SMALL, file, prompts) != before  # auto now decides QuickGELU: new key
    assert cache_key(SMALL, file, prompts, "false") == forced  # a forced setting: no change


def test_tower_is_frozen_and_outside_the_owner_parameters(small_encoder):
    tower = small_encoder.tower
    assert not tower.training
    assert all(not p.requires_grad for p in tower.parameters())

    class Owner(nn.Module):
        def __init__(self, encoder: ClassTextEncoder):
            super().__init__()
            self.text_encoder = encoder  # a plain attribute, not a submodule
            self.register_buffer("class_embeddings", encoder.encode_texts(["a", "b"]), False)
            self.scale = nn.Parameter(torch.ones(()))

    owner = Owner(small_encoder)
    assert [name for name, _ in owner.named_parameters()] == ["scale"]
    assert list(owner.state_dict()) == ["scale"]
    (owner.scale * owner.class_embeddings).sum().backward()  # usable in autograd
    assert owner.scale.grad is not None


def test_missing_weights_file_is_a_user_error(tmp_path):
    missing = tmp_path / "clip" / "ViT-B-16.pt"
    with pytest.raises(UserError, match=r"text\.pretrained") as err:
        ClassTextEncoder("ViT-B-16", str(missing), cache_dir=None)
    assert str(missing) in str(err.value)
    with pytest.raises(UserError, match=r"not_a_tag.*tags: openai"):
        ClassTextEncoder("ViT-B-16", "not_a_tag", cache_dir=None).encode_texts(["x"])
    with pytest.raises(UserError, match=r"unknown open_clip model.*text\.model"):
        _ = ClassTextEncoder("ViT-B-99", "", cache_dir=None).width


def test_offline_tag_warns_once_and_runs_with_random_weights(tmp_path, monkeypatch, caplog):
    """The default model: ViT-B-16 with 'openai' weights that cannot be downloaded here."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(clip_weights, "_WARNED", set())

    def no_download(*args, **kwargs):
        raise AssertionError("offline: no download may be attempted")

    monkeypatch.setattr("open_clip.pretrained.download_pretrained", no_download)
    cache = tmp_path / "cache"
    encoder = ClassTextEncoder("ViT-B-16", "openai", cache_dir=cache, download_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="RANDOMLY") as record:
        embeddings = encoder.encode_class_names(["wave"], ["{}"])
    message = str(record[0].message)
    assert (
        "meaningless" in message and "text.pretrained=" in message and "HF_HUB_OFFLINE" in message
    )
    assert len([w for w in record if "RANDOMLY" in str(w.message)]) == 1
    assert "text tower is RANDOMLY" in message and "text.quick_gelu=true" in message
    assert "vit_base_patch16_clip_224.openai/resolve/main/open_clip_pytorch_model.bin" in message
    assert not any("RANDOMLY" in r.getMessage() for r in caplog.records)  # not a 2nd time
    assert encoder.width == 512 and embeddings.shape == (1, 512)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(1))
    assert encoder.weights == TextWeights("random", fallback_from="openai")
    prompts = [["wave"]]
    assert (cache / f"{cache_key('ViT-B-16', encoder.weights, prompts)}.pt").is_file()
    assert not (cache / f"{cache_key('ViT-B-16', encoder.requested, prompts)}.pt").exists()

    again = ClassTextEncoder("ViT-B-16", "openai", cache_dir=cache, download_dir=str(tmp_path))
    with warnings.catch_warnings(record=True) as later:  # the warning was already given
        warnings.simplefilter("always")
        assert torch.equal(again.encode_class_names(["wave"], ["{}"]), embeddings)  # cache hit
    assert not [w for w in later if "RANDOMLY" in str(w.message)]


def test_unreachable_host_fails_fast_without_downloading(monkeypatch):
    from huggingface_hub import constants
    from open_clip.pretrained import get_pretrained_cfg

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)

    def no_route(address, timeout):
        assert timeout <= clip_download.PROBE_TIMEOUT_S
        raise OSError("Name or service not known")

    monkeypatch.setattr(clip_download.socket, "create_connection", no_route)
    reason = clip_download._offline_reason(get_pretrained_cfg("ViT-B-16", "openai"))
    assert reason.startswith("cannot reach huggingface.co")


def test_local_weights_file_gives_the_source_model_text_features(tmp_path):
    import open_clip

    torch.manual_seed(1)
    source = open_clip.create_model(SMALL).eval()
    path = tmp_path / "my_clip.pt"
    torch.save(source.state_dict(), path)
    texts = ["a video of a person brush hair.", "climb"]
    with torch.no_grad():
        tokens = open_clip.get_tokenizer(SMALL)(texts)
        expected = source.encode_text(tokens, normalize=True)

    encoder = ClassTextEncoder(SMALL, str(path), cache_dir=tmp_path / "cache")
    assert encoder.weights.kind == "file"
    torch.testing.assert_close(encoder.encode_texts(texts), expected, atol=1e-5, rtol=0)
    random_init = ClassTextEncoder(SMALL, "", cache_dir=None).encode_texts(texts)
    assert not torch.allclose(random_init, expected, atol=1e-3)

    state = source.state_dict()
    state.pop("ln_final.weight")
    torch.save(state, path)
    with pytest.raises(UserError, match=r"does not fit.*ln_final\.weight"):
        ClassTextEncoder(SMALL, str(path), cache_dir=None).encode_texts(texts)
    path.write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read CLIP weights file"):
        ClassTextEncoder(SMALL, str(path), cache_dir=None).encode_texts(texts)


def test_weights_parsing_and_openai_style_torchscript_archive(tmp_path):
    """OpenAI released CLIP as TorchScript archives trained with QuickGELU: both are handled."""
    import open_clip

    assert parse_weights("") == TextWeights("random")
    assert parse_weights("openai") == TextWeights("tag", "openai")
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, plain)
    assert parse_weights(str(plain)) == TextWeights("file", str(plain.resolve()))
    assert not is_torchscript_archive(plain)

    scripted = tmp_path / "ViT-S-32-alt.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        source = open_clip.create_model(SMALL, jit=True, force_quick_gelu=True)
        torch.jit.save(source, str(scripted))
    assert is_torchscript_archive(scripted)
    texts = ["climb", "wave"]
    with torch.no_grad():
        expected = F.normalize(source.encode_text(open_clip.get_tokenizer(SMALL)(texts)), dim=-1)
    encoder = ClassTextEncoder(SMALL, str(scripted), cache_dir=None)
    torch.testing.assert_close(encoder.encode_texts(texts), expected, atol=1e-5, rtol=0)

    from hpnet.checkpoint import load_checkpoint
    from hpnet.models.lsvit_weights import read_pretrain_checkpoint

    with warnings.catch_warnings():  # told apart before torch.load (which warns on one)
        warnings.simplefilter("error")
        assert read_pretrain_checkpoint(scripted) is None  # not a VideoMAE run: a CLIP file
        with pytest.raises(UserError, match=r"is a TorchScript archive .* as model\.pretrained"):
            load_checkpoint(scripted)  # given as --checkpoint: one line, no weights_only advice


def test_build_text_encoder_reads_the_text_config():
    cfg = Config()
    encoder = build_text_encoder(cfg)
    assert encoder.model_name == cfg.text.model == "ViT-B-16"
    assert encoder.requested == TextWeights("tag", "openai")
    assert encoder.cache_dir == type(encoder.cache_dir)(os.path.expanduser(cfg.text.cache_dir))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_encodes_on_cuda_like_on_cpu(tmp_path):
    cpu = ClassTextEncoder(SMALL, "", cache_dir=None).encode_texts(["wave", "climb"])
    gpu = ClassTextEncoder(SMALL, "", cache_dir=None, device="cuda").encode_texts(["wave", "climb"])
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


def test_an_image_tower_alone_as_text_weights_is_said_to_be_one(tmp_path):
    path = tmp_path / "visual_only.pt"
    state = {"visual.conv1.weight": torch.zeros(2, 3, 4, 4), "logit_scale": torch.ones(())}
    torch.save(state, path)
    with pytest.raises(UserError, match=r"only\.pt \(text\.pretrained\) holds no text tower"):
        ClassTextEncoder(SMALL, str(path), cache_dir=None).encode_texts(["wave"])
