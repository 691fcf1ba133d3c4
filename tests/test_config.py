"""Config tree: defaults, YAML files, dotted overrides, type and limit checks, round trips."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpnet.cli import UserError
from hpnet.config import (
    Config,
    config_from_dict,
    config_to_dict,
    flat_config,
    load_config,
    save_config,
)
from hpnet.config_cli import describe


def test_defaults_are_valid():
    cfg = load_config()
    assert cfg.data.frames == 16
    assert cfg.model.size == "base"
    assert isinstance(cfg, Config)


def test_file_then_overrides(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("data:\n  frames: 8\n  synthetic:\n    distractor: true\ntrain:\n  lr: 0.01\n")
    cfg = load_config(path, ["train.lr=2e-3", "model.smif_offsets=1,3", "text.templates=a {}"])
    assert cfg.data.frames == 8  # from the file
    assert cfg.data.synthetic.distractor is True
    assert cfg.train.lr == pytest.approx(2e-3)  # override beats file; "2e-3" is a float
    assert cfg.model.smif_offsets == [1, 3]
    assert cfg.text.templates == ["a {}"]


def test_yaml_booleans_are_words_where_a_choice_wants_words(tmp_path):
    """YAML 1.1 reads off / on / no / yes as booleans; train.amp=off must still mean "off"."""
    assert load_config(None, ["train.amp=off"]).train.amp == "off"
    path = tmp_path / "fp32.yaml"
    path.write_text("train:\n  amp: off\n")
    assert load_config(path).train.amp == "off"
    with pytest.raises(UserError, match=r"'train\.amp' got True"):
        load_config(None, ["train.amp=on"])  # no "on" among the choices
    assert load_config(None, ["model.smif_offsets=[1,2]"]).model.smif_offsets == [1, 2]


def test_int_accepted_for_float_and_str_keeps_digits():
    cfg = load_config(None, ["train.lr=1", "train.out_dir=123", "train.resume=auto"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.out_dir == "123"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("data.frames=0", "'data.frames' got 0; it must be an integer > 0"),
        ("train.lr=0", "'train.lr' got 0.0; it must be a number > 0"),
        ("data.frame=3", "did you mean 'data.frames'"),
        ("frames=3", "did you mean 'data.frames'?"),  # a bare key: the sections that have it
        ("seed=3", "did you mean 'data.seed' or 'train.seed'?"),
        ("learning_rate=3", "did you mean 'train.lr'?"),  # another framework's name
        ("train.learning_rate=3", "did you mean 'train.lr'?"),  # (nearest: train.clip_grad)
        ("train.backbone=3", "did you mean 'train.backbone_lr'?"),  # (an alias of another section)
        ("train.num_workers=2", "did you mean 'data.workers'?"),  # (nothing near in train)
        ("train.model=x", "did you mean 'text.model'?"),  # (not pose.model's alias pose.weights)
        ("train.num_frames=8", "did you mean 'data.frames'?"),
        ("model.learning_rate=1e-3", "did you mean 'train.lr'?"),
        ("train.randaug_n=3", "or 'data.augment.randaug_n'?"),  # (not train.repeat_aug alone)
        ("train.batch=3", "did you mean 'train.batch_size' or 'pose.batch'?"),  # own section 1st
        ("erase_prob=0.2", "did you mean 'data.augment.erase_prob'?"),  # a bare key, 2 deep
        ("reprob=0.2", "did you mean 'data.augment.erase_prob'?"),  # VideoMAE's name
        ("pose.model=y.pt", "did you mean 'pose.weights'?"),  # Ultralytics' name
        ("model.arch=LRCN", "got 'LRCN' (did you mean 'lrcn'?); it must be one of"),  # a choice
        ("model.arch=r3d18", "(did you mean 'r3d_18'?)"),
        ("model.arch=nonlocl", "(did you mean 'nonlocal'?)"),
        ("model.arch=resnet", "got 'resnet'; it must be one of 'lsvit'"),  # nothing near
        ("data.frames=abc", "must be an integer"),
        ("data.frames=1.5", "must be an integer"),
        ("data.dataset=kinetics", "'hmdb51', 'ucf101', 'folder', 'list', 'synthetic'"),
        ("model.pose=maybe", "true or false"),
        ("data=3", "is a section"),
        ("train.lr=inf", "got inf; it must be a finite number"),
        ("text.templates=null", "'text.templates' got []; it must be a non-empty list"),
        ("train.lr=nan", "got nan; it must be a finite number"),
        ("data.augment.std=[.5,.5,inf]", "it must be a finite number"),
        ("model.temporal_width=0", "a multiple of 64, at least 64"),
        ("pose.imgsz=-32", "a multiple of 32, at least 32"),
        ("data.frames.x=3", "is a value, not a section"),
        ("train.lr=-1", "> 0"),
        ("eval.crops=2", "1 or 3"),
        ("text.templates=no placeholder", "'{}'"),
        ("noequals", "key.sub=value"),
        ("model.smif_offsets=[1,{2", "must be a list of integers"),
        ("train.seed=-1", "in [0, 2**32)"),
        ("data.seed=-3", "in [0, 2**32)"),
        ("train.seed=99999999999999999999999", "in [0, 2**32)"),  # (was a torch overflow)
        ("train.threads=99999999999", "in [0, 4096]"),
        ("pose.device=gpu", "auto, cpu, cuda or cuda:N"),  # (was a RuntimeError traceback)
        ("pose.device=cuda:x", "auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(UserError, match=None) as err:
        load_config(None, [override])
    assert fragment in str(err.value)


def test_yaml_mistakes_are_said_with_their_line(tmp_path, caplog):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n\tframes: 4\n")
    with pytest.raises(UserError, match=r"'\\t' .*\(line 2, column 1\); indent with spaces, not"):
        load_config(path)
    path.write_text("data:\n  frames: [4\n")
    with pytest.raises(UserError, match=r"c\.yaml is not valid YAML: expected ',' or '\]'.*line 3"):
        load_config(path)
    path.write_text("# all commented out\n")
    with caplog.at_level("WARNING", logger="hpnet.config"):
        assert load_config(path) == load_config(None)
    assert f"config file {path} sets nothing" in caplog.text


def test_bad_file_values(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  frames: 0\n")
    with pytest.raises(UserError, match=r"data\.frames"):
        load_config(path)
    path.write_text("datum:\n  frames: 4\n")
    with pytest.raises(UserError, match="unknown config key 'datum'"):
        load_config(path)
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    path.write_text("data: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(path)


def test_files_read_as_written(tmp_path):
    """A key given twice is refused (the first copy was dropped without a word); a section
    with every key commented out is empty; 010 is ten (not YAML 1.1's octal eight); a file
    that is not UTF-8 text is a one-line error."""
    path = tmp_path / "x.yaml"
    path.write_text("train:\n  lr: 0.001\n  epochs: 5\nmodel:\n  size: tiny\ntrain:\n  seed: 2\n")
    with pytest.raises(
        UserError, match=r"not valid YAML: .*'train' is given twice \(first on line 1"
    ):
        load_config(path)
    path.write_text("train:\n  # lr: 0.1\nmodel:\n  size: tiny\n")
    assert load_config(path).model.size == "tiny"
    path.write_text("train:\n  epochs: 010\n  lr: 1e-4\n")
    assert load_config(path).train.epochs == 10 and load_config(path).train.lr == 1e-4
    path.write_bytes("model:\n  size: tiny # caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="is not UTF-8 text"):
        load_config(path)
    path.write_text("? [a]\n: 1\n")  # (was a TypeError traceback)
    with pytest.raises(UserError, match=r"not valid YAML: .*a key must be a name, not a list"):
        load_config(path)
    # merge keys: the entries share the anchored settings, their own keys win
    joint = "  joint:\n    - &a {name: a, dataset: folder, root: /a, workers: 1}\n"
    joint += "    - {<<: *a, name: b, root: /b}\n"
    path.write_text("data:\n" + joint)
    entries = load_config(path).data.joint
    assert [(e["name"], e["root"], e["workers"]) for e in entries] == [
        ("a", "/a", 1),
        ("b", "/b", 1),
    ]


def test_a_saved_config_loads_back_the_same(tmp_path):
    """Strings the config reader takes for numbers (1e3, 010) are written quoted."""
    from hpnet.config import save_config

    cfg = load_config(None, ["data.root=1e3", "train.out_dir=010", "text.templates=1e3 {}"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert (again.data.root, again.train.out_dir, again.text.templates) == (
        "1e3",
        "010",
        ["1e3 {}"],
    )
    assert again == cfg


def test_an_empty_list_value_is_the_empty_list(tmp_path):
    """``key=`` and YAML's ``key:`` (null) set a list key to [], as ``key=[]`` does (not [''],
    not an error); a list that must not be empty says so."""
    for override in ("data.synthetic.actions=", "data.synthetic.actions=[]"):
        assert load_config(None, [override]).data.synthetic.actions == []
    (tmp_path / "c.yaml").write_text("data:\n  synthetic:\n    actions:\n")
    assert load_config(tmp_path / "c.yaml").data.synthetic.actions == []
    with pytest.raises(UserError, match=r"'data\.augment\.mean' got \[\]; it must be a list of 3"):
        load_config(None, ["data.augment.mean="])


def test_null_on_the_command_line_empties_a_string_key_as_in_a_file(tmp_path):
    """``model.pretrained=null`` is YAML's ``pretrained: null`` (''), not a file called null;
    a joint entry's string keys read it the same way; other text (``~`` too) stays as written."""
    for word in ("null", "NULL"):
        assert load_config(None, [f"model.pretrained={word}"]).model.pretrained == ""
    assert load_config(None, ["train.out_dir=~"]).train.out_dir == str(Path.home())
    (tmp_path / "c.yaml").write_text("model:\n  pretrained: null\n")
    assert load_config(tmp_path / "c.yaml").model.pretrained == ""
    assert load_config(None, ["text.pretrained=nullish"]).text.pretrained == "nullish"
    joint = load_config(
        None,
        [
            "data.joint=[{name: a, dataset: synthetic, root: x}, {name: b, dataset: synthetic}]",
            "data.joint.a.classes_file=null",
        ],
    )
    assert joint.data.joint[0]["classes_file"] == ""


def test_key_aliases_name_real_keys_and_shadow_none():
    """Each alias points at a key there is, and no alias is the name of a key in its target's
    section (it would never be unknown there, so never suggested; 'model' is text.model's
    name, and unknown in pose.*)."""
    from hpnet.config import flat_config
    from hpnet.config_schema import KEY_ALIASES

    keys = set(flat_config(config_to_dict(load_config(None, []))))
    assert set(KEY_ALIASES.values()) <= keys
    for alias, target in KEY_ALIASES.items():
        assert f"{target.rsplit('.', 1)[0]}.{alias}" not in keys, alias


def test_a_key_given_twice_takes_the_last_value_with_a_warning(caplog):
    with caplog.at_level("WARNING", logger="hpnet.config"):
        assert load_config(None, ["data.frames=8", "data.frames = 4"]).data.frames == 4
        assert load_config(None, ["train.lr=1e-3", "train.lr=1e-3"]).train.lr == 1e-3  # same
        assert load_config(None, ["model.pretrained=x.pt", "model.pretrained="])
    assert caplog.messages == [
        "data.frames is given twice (8, then 4): 4 is used",
        "model.pretrained is given twice (x.pt, then ''): '' is used",  # (it read "then ):  is")
    ]


def test_overrides_read_as_written():
    """010 is ten; 1:30 is no base-60 number; inf and nan are no setting; a comma list's
    items lose their spaces; ~ in the run folder is the home folder; a joint entry's string
    key keeps its text whole, as the same data key does."""
    assert load_config(None, ["train.epochs=010"]).train.epochs == 10
    with pytest.raises(UserError, match=r"'train\.epochs' got '1:30'; it must be an integer"):
        load_config(None, ["train.epochs=1:30"])
    for bad in ("inf", ".inf", "nan", "1e400"):
        with pytest.raises(UserError, match=r"'train\.warmup_epochs' got"):
            load_config(None, [f"train.warmup_epochs={bad}"])
    cfg = load_config(
        None, ["data.synthetic.actions=sit_down, stand_up", "text.templates=a {}, b {}"]
    )
    assert cfg.data.synthetic.actions == ["sit_down", "stand_up"]
    assert cfg.text.templates == ["a {}", "b {}"]
    cfg = load_config(None, ["train.out_dir=~/runs/x", "train.resume=~/runs/y/last.pt"])
    assert cfg.train.out_dir == str(Path.home() / "runs/x")
    assert cfg.train.resume == str(Path.home() / "runs/y/last.pt")
    joint = [
        "data.joint=[{name: a, dataset: synthetic}, {name: b, dataset: synthetic}]",
        "data.joint.a.root=/data/run #2", "data.joint.b.root=0755",
    ]  # fmt: skip
    entries = load_config(None, joint).data.joint
    assert [e["root"] for e in entries] == ["/data/run #2", "0755"]


def test_cross_key_rules():
    cfg = load_config(None, ["model.pose=false"])
    assert cfg.model.feedback is False  # feedback needs pooled joints
    with pytest.raises(UserError, match=r"classes_file is read only with data\.dataset=list"):
        load_config(None, ["data.dataset=folder", "data.classes_file=names.txt"])


def test_round_trip_through_yaml_and_dict(tmp_path):
    cfg = load_config(None, ["data.frames=4", "model.size=tiny", "text.templates=x {}.,y {}."])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)
    plain = config_to_dict(cfg)
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain  # only plain values inside
    assert config_from_dict(plain) == cfg


def test_the_default_normalisation_is_clips():
    """LS-ViT starts from CLIP: its frames are normalised with CLIP's mean/std (RGB order)."""
    from hpnet.models.clip_video import OPENAI_MEAN, OPENAI_STD

    augment = Config().data.augment
    assert (tuple(augment.mean), tuple(augment.std)) == (OPENAI_MEAN, OPENAI_STD)


def test_describe_lists_every_key_with_its_comment():
    """--help-config: every key, its default and type, and its comment in config_schema.py
    (the one after it on its line, or the block of comment lines above it)."""
    lines = describe().splitlines()
    assert len(lines) == len(flat_config(config_to_dict(Config())))
    for key in ("data.frames=16", "model.size='base'", "pose.source='cache'", "train.amp='bf16'"):
        assert sum(line.startswith(key) for line in lines) == 1
    said = {line.split("=", 1)[0]: line for line in lines}
    assert said["train.lr_gamma"].endswith(
        "(a number)  decay factor of exponential / step (0 = 0.95 / 0.1 respectively)"
    )
    assert said["train.grad_checkpointing"].startswith(
        "train.grad_checkpointing=False  (true or false)  recompute LS-ViT's blocks in the "
        "backward pass instead of keeping their activations: far less memory"
    )
    assert [key for key, line in said.items() if not re.search(r"\)  \S", line)] == []
    # a note that runs onto comment lines stays with its key (it was cut short there, and its
    # rest shown under the next key)
    assert [key for key, line in said.items() if line.count("(") != line.count(")")] == []
    assert said["model.aux_weight"].endswith("(a number)  weight of the auxiliary pose-stream loss")
    assert (
        "ssl_transformer: the last.pt of a pretrain.method=simsiam run" in said["model.pretrained"]
    )


def test_describe_without_the_sources_lists_the_keys(monkeypatch):
    import inspect

    def gone(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", gone)
    lines = describe().splitlines()
    assert "train.lr_gamma=0.0  (a number)" in lines  # no comment, no crash


def test_command_exits_2_with_one_line(tmp_path):
    """A bad key on a real command: exit code 2, one line on stderr, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "hpnet.data", "data.frames=0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.frames" in lines[0]
    assert "Traceback" not in proc.stderr


def test_list_override_as_a_yaml_list_keeps_commas_inside_items():
    cfg = load_config(None, ['text.templates=["a video of {}, outdoors", "{}"]'])
    assert cfg.text.templates == ["a video of {}, outdoors", "{}"]
    assert load_config(None, ["model.smif_offsets=[1, 3]"]).model.smif_offsets == [1, 3]
    assert load_config(None, ["text.templates=x {},y {}"]).text.templates == ["x {}", "y {}"]


def test_a_key_that_takes_text_keeps_the_text_of_the_file(tmp_path):
    """YAML reads 010 as ten, 1.50 as 1.5, off as false and 2024-01-01 as a date: a key that
    takes text gets what was written (as the same value on the command line does); number
    keys still read numbers."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "train:\n  out_dir: 010\n  epochs: 010\n  resume: 1.50\n"
        "model:\n  pretrained: 2024-01-01\n"
        "data:\n  root: off\n  synthetic:\n    actions: [wave, 010, off, ~]\n"
    )
    cfg = load_config(path)
    assert cfg.train.out_dir == "010" and cfg.train.epochs == 10
    assert cfg.train.resume == "1.50" and cfg.model.pretrained == "2024-01-01"
    assert cfg.data.root == "off"
    assert cfg.data.synthetic.actions[:3] == ["wave", "010", "off"]
    joint = "  joint:\n    - {name: a, root: 010, augment: {randaug_n: 2}, augment.randaug_m: 3}\n"
    path.write_text("data:\n" + joint + "    - {name: b, root: 1.50}\n")  # entries too
    entries = load_config(path).data.joint
    assert [e["root"] for e in entries] == ["010", "1.50"]
    assert entries[0]["augment"] == {"randaug_n": 2} and entries[0]["augment.randaug_m"] == 3
    both = joint.replace("root: 010", "root: x") + "    - {name: b}\n"
    path.write_text("data:\n" + both + "data.joint.a.root: 010\n")
    assert load_config(path).data.joint[0]["root"] == "010"
    path.write_text("train:\n  <<: {out_dir: 010}\n")  # (a merge key: its text as written too)
    assert load_config(path).train.out_dir == "010"
    path.write_text('"yes": 1\nyes: 2\n')  # (two keys to YAML, one as written: no traceback)
    with pytest.raises(UserError, match="not valid YAML: 'yes' is given twice"):
        load_config(path)
    path.write_text("data:\n  balance: no\n")  # a choice: the word is not one, say why
    with pytest.raises(UserError, match=r"got False; .*YAML reads an unquoted yes/no/on/off"):
        load_config(path)
    path.write_text("data:\n  frames: 2024-01-01\n")
    with pytest.raises(UserError, match=r"YAML reads a date as a date: quote it"):
        load_config(path)


def test_a_key_set_twice_in_one_file_or_a_missing_colon_is_said(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\ntrain.epochs: 0\n")  # (the last won, silently)
    with pytest.raises(UserError, match=r"'train\.epochs' is set twice in the file"):
        load_config(path)
    path.write_text("train:\n  lr 1e-3\n")
    with pytest.raises(
        UserError, match=r"'train' is a section, not a value: got 'lr 1e-3' \(a ':'"
    ):
        load_config(path)


def test_quotes_around_a_text_value_on_the_command_line_are_dropped(tmp_path):
    """``data.root='/a b'`` is ``/a b`` (the quotes were kept in the path), ``''`` is empty;
    a quote inside the text stays."""
    cfg = load_config(None, ["data.root='/a b'", 'model.pretrained=""', "train.out_dir=it's"])
    assert (cfg.data.root, cfg.model.pretrained, cfg.train.out_dir) == ("/a b", "", "it's")
    cfg = load_config(None, ["text.templates='a {}',\"b {}\""])
    assert cfg.text.templates == ["a {}", "b {}"]


def test_a_config_read_from_a_pipe_or_a_home_path(tmp_path, monkeypatch, caplog):
    """``--config <(...)`` is a pipe, not a folder; ``--config=~/c.yaml`` (no shell expansion
    after '=') is read from the home folder."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "c.yaml").write_text("train:\n  epochs: 7\n")
    assert load_config("~/c.yaml").train.epochs == 7
    with caplog.at_level("WARNING", logger="hpnet.config"):
        assert load_config("/dev/null") == load_config(None)  # (a character device)
    assert "sets nothing" in caplog.text
    with pytest.raises(UserError, match="config file is a folder, not a file"):
        load_config(tmp_path)
