"""A trained model back from its checkpoint: its own labels keep their stored embeddings, other
labels or templates are embedded again, and only by the text tower the run trained with."""

from __future__ import annotations

import warnings

import pytest
import torch

from hpnet.cli import UserError
from hpnet.config import config_to_dict, load_config
from hpnet.models.from_checkpoint import model_from_checkpoint
from hpnet.models.hpnet import build_model, class_text_embeddings

CLASSES = ["sit_down", "stand_up", "wave", "kick"]


def _cfg(text_cache: str, *extra: str):
    return load_config(
        None,
        [
            "model.size=tiny", "model.patch_size=8", "data.size=32", "data.frames=4",
            "text.model=ViT-S-32-alt", "text.pretrained=", f"text.cache_dir={text_cache}",
            *extra,
        ],
    )  # fmt: skip


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module")
def ckpt(text_cache) -> dict:
    """What hpnet.train saves of a text-head model (random text tower, seeded)."""
    cfg = _cfg(text_cache)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, CLASSES)
    return {"model": model.state_dict(), "classes": CLASSES, "config": config_to_dict(cfg)}


def _rows(model) -> dict[str, torch.Tensor]:
    return dict(zip(model.class_names, model.class_embeddings, strict=True))


def test_new_labels_share_the_trained_embedding_space(ckpt, text_cache):
    stored = dict(zip(CLASSES, ckpt["model"]["class_embeddings"], strict=True))
    model = model_from_checkpoint(ckpt, _cfg(text_cache), ["jump", "wave", "kick"])
    rows = _rows(model)
    assert model.class_names == ["jump", "wave", "kick"]
    torch.testing.assert_close(rows["wave"], stored["wave"])
    torch.testing.assert_close(rows["kick"], stored["kick"])
    with pytest.raises(UserError, match=r"'wave' and 'Wave' are the same words"):
        model_from_checkpoint(ckpt, _cfg(text_cache), ["jump", "wave", "Wave"])
    shuffled = model_from_checkpoint(ckpt, _cfg(text_cache), CLASSES[::-1])  # another order
    for name in CLASSES:
        torch.testing.assert_close(_rows(shuffled)[name], stored[name])


def test_other_text_weights_are_refused_for_new_labels(ckpt, text_cache, tmp_path):
    import open_clip

    torch.manual_seed(1)  # another tower: as a tag that was random offline and is real now
    other = open_clip.create_model("ViT-S-32-alt")
    weights = tmp_path / "other_clip.pt"
    torch.save(other.state_dict(), weights)
    cfg = _cfg(text_cache, f"text.pretrained={weights}", "text.quick_gelu=false")
    with pytest.raises(UserError, match=r"other text embeddings than .*other_clip.pt.* cosine"):
        model_from_checkpoint(ckpt, cfg, ["jump", "wave"], source="run/last.pt")
    assert model_from_checkpoint(ckpt, cfg).class_names == CLASSES  # its own: stored rows
    tampered = {**ckpt, "model": dict(ckpt["model"])}
    tampered["model"]["class_embeddings"] = ckpt["model"]["class_embeddings"].roll(1, dims=0)
    with pytest.raises(UserError, match=r"run/last.pt was trained with other text embeddings"):
        model_from_checkpoint(tampered, _cfg(text_cache), ["jump", "wave"], source="run/last.pt")


def test_other_templates_re_embed_even_the_trained_labels(ckpt, text_cache):
    cfg = _cfg(text_cache, 'text.templates=["a clip of {}.", "someone doing {}."]')
    model = model_from_checkpoint(ckpt, cfg)  # the trained labels, new templates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = class_text_embeddings(cfg, CLASSES)
    torch.testing.assert_close(model.class_embeddings, expected)
    assert not torch.allclose(model.class_embeddings, ckpt["model"]["class_embeddings"])
    reordered = model_from_checkpoint(ckpt, cfg, CLASSES[::-1])  # same prompts, any order
    torch.testing.assert_close(reordered.class_embeddings, expected.flip(0))


def test_a_linear_head_keeps_its_labels_whatever_the_templates(text_cache):
    cfg = _cfg(text_cache, "model.text=false")
    torch.manual_seed(0)
    model = build_model(cfg, CLASSES)
    ckpt = {"model": model.state_dict(), "classes": CLASSES, "config": config_to_dict(cfg)}
    again = _cfg(text_cache, "model.text=false", 'text.templates=["{}"]')
    assert model_from_checkpoint(ckpt, again).class_names == CLASSES
    with pytest.raises(UserError, match=r"linear head .*: its 4 labels are fixed"):
        model_from_checkpoint(ckpt, again, ["a", "b"])
    sets = [("a", CLASSES), ("b", ["jump", "clap", "wave"])]  # a joint run: a head per dataset
    model = build_model(cfg, CLASSES, label_sets=sets)
    joint = {**ckpt, "model": model.state_dict(), "label_sets": sets}
    assert model_from_checkpoint(joint, again, ["jump", "clap", "wave"]).class_names[0] == "jump"
    with pytest.raises(UserError, match="its a's 4 or b's 3 labels are fixed"):  # (said "4")
        model_from_checkpoint(joint, again, ["jump", "clap"])


def test_new_templates_re_embed_every_label_set_of_a_joint_run(text_cache):
    sets = [("a", CLASSES), ("b", ["jump", "clap", "wave"])]
    cfg = _cfg(text_cache)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, CLASSES, label_sets=sets)
    ckpt = {"model": model.state_dict(), "classes": CLASSES, "label_sets": sets}
    ckpt["config"] = config_to_dict(cfg)
    again = _cfg(text_cache, 'text.templates=["a clip of {}."]')
    rebuilt = model_from_checkpoint(ckpt, again)
    expected = class_text_embeddings(again, sets[1][1])
    torch.testing.assert_close(rebuilt.label_embeddings_1, expected)  # what evaluate scores b by
    with rebuilt.using_label_set(1):
        torch.testing.assert_close(rebuilt.class_embeddings, expected)


def test_new_labels_build_the_text_tower_once(ckpt, tmp_path, monkeypatch):
    from hpnet.text.encoder import ClassTextEncoder

    builds = []
    build = ClassTextEncoder._build_tower
    monkeypatch.setattr(
        ClassTextEncoder, "_build_tower", lambda self: builds.append(1) or build(self)
    )
    model_from_checkpoint(ckpt, _cfg(str(tmp_path / "fresh")), ["jump", "wave"])  # no cache yet
    assert len(builds) == 1  # the trained classes (the check) and the new labels: one tower


def test_keys_only_other_archs_read_are_no_other_model_and_are_warned_of_in_training(caplog):
    """model.depth on LS-ViT: the same model (evaluate refused it as another), and a training
    run that sets it is told the arch ignores it."""
    from hpnet.models.backbones import warn_unread_model_keys
    from hpnet.models.from_checkpoint import model_keys_changed

    lsvit = config_to_dict(load_config(None, []))
    assert model_keys_changed(lsvit, load_config(None, ["model.depth=18"])) == []
    small = load_config(None, ["model.size=small"])
    assert model_keys_changed(lsvit, small) == ["model.size=base -> small"]
    late = ["model.arch=late_fusion", "model.feedback=false"]
    changed = load_config(None, [*late, "model.depth=18"])
    assert model_keys_changed(config_to_dict(load_config(None, late)), changed) == [
        "model.depth=50 -> 18"
    ]
    with caplog.at_level("WARNING", logger="hpnet.models.backbones"):
        warn_unread_model_keys(load_config(None, ["model.depth=18", "model.lmi=false"]))
        warn_unread_model_keys(changed)  # late_fusion reads model.depth: nothing to say
    (record,) = caplog.records
    assert record.getMessage() == (
        "model.arch=lsvit ignores model.depth=18 (read by late_fusion, lrcn, ssl_transformer): "
        "only other archs read them"
    )  # model.lmi=false: LS-ViT's own key


def test_a_label_that_reads_almost_as_a_trained_one_is_warned_of(ckpt, text_cache, caplog):
    """'Sit Dwon' is embedded anew (open vocabulary), said as a likely misspelling of the
    trained 'sit_down'; the same words otherwise written ('Stand-Up'), new classes ('jump')
    and other real words one letter off ('kiss' beside 'kick') are no typos. New labels
    through a random text tower (text.pretrained='') are said to score nothing."""
    with caplog.at_level("WARNING", logger="hpnet.models.from_checkpoint"):
        model_from_checkpoint(ckpt, _cfg(text_cache), ["jump", "Stand-Up", "kiss"], source="r")
        assert [m.split(" (")[0] for m in caplog.messages] == ["text.pretrained=''"]  # random
        caplog.clear()
        model = model_from_checkpoint(ckpt, _cfg(text_cache), ["Sit Dwon", "wave"], source="r")
        model_from_checkpoint(ckpt, _cfg(text_cache), CLASSES[::-1], source="r")  # no new one
        model_from_checkpoint(ckpt, _cfg(text_cache), ["Sit Down", "Wave"], source="r")  # same
    assert model.class_names == ["Sit Dwon", "wave"]
    assert caplog.messages == [
        "'Sit Dwon' (trained: 'sit_down'): is not among the labels r was trained on: embedded "
        "anew by the text encoder (open vocabulary); to score the trained classes, spell them "
        "as trained",
        "text.pretrained='' (a random text tower, as r was trained with): new labels get "
        "embeddings unrelated to their words and their scores mean nothing; a text head "
        "trained with CLIP's weights scores new labels",
    ]


@pytest.mark.parametrize(
    ("phrase", "trained", "typo"),
    [
        ("brush hiar", "brush hair", True),  # two letters swapped
        ("climb stair", "climb stairs", True),  # one dropped
        ("handstand pushupz", "handstand pushups", True),  # one changed in a long word
        ("talk", "walk", False),  # HMDB51 classes both: a short word's change is a word
        ("playing sitar", "playing guitar", False),  # UCF101 classes both: two edits
        ("push ups", "pushup", False),  # other words
        ("sit dwon", "stand dwon", False),  # two words differ
    ],
)
def test_what_counts_as_a_typo_of_a_trained_label(phrase, trained, typo):
    from hpnet.models.from_checkpoint import _typo_of

    assert _typo_of(phrase, trained) is typo
