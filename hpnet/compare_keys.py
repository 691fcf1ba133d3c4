"""Which settings ``hpnet.compare`` shows beside the scores, and each run's value of one.

A row's settings are its report's records (:mod:`hpnet.run_scores`); a table shows those
that differ between its runs (:func:`differing_keys`), less bookkeeping and the settings a run
does not use (``-``: ``text.*`` without the text head), and says above it the recorded ones
they share (:func:`shared_keys`). ``?``: a setting not known for a run.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from typing import Any

from hpnet.cli import UserError
from hpnet.config import config_to_dict, flat_config
from hpnet.config_schema import Config, arch_reads
from hpnet.eval_report import protocol
from hpnet.run_scores import RunScores

# settings that do not change what a run learns or how it is scored: never a column of their own
BOOKKEEPING = frozenset(
    {  # (and pretrain.*: a pretraining run's, not a fine-tuning's)
        "data.root",
        "data.split_dir",
        "data.train_list",
        "data.test_list",
        "data.classes_file",
        "data.joint",
        "data.workers",
        "data.on_error",
        "data.allow_missing",
        "data.max_pixels",
        "data.decoder",
        "pose.cache_dir",
        "pose.workers",
        "pose.device",
        "pose.batch",
        "text.cache_dir",
        "train.out_dir",
        "train.resume",
        "train.checkpoint_minutes",
        "train.checkpoint_steps",
        "train.tensorboard",
        "train.threads",
        "train.device",
        "train.compile",
        "train.grad_checkpointing",
        "eval.batch_size",
        "train.eval_every",
    }
)  # fmt: skip (train.eval_every: when to test on the way; the final test is last.pt's)
PROTOCOL_KEYS = (*protocol(Config()), "classes")
# what a test may set apart from its run's config.yaml: not read from there for a report that
# did not record its protocol (data.frames, data.size: the model's, the same)
GUESSED = ("data.dataset", "data.split", "eval.views", "eval.crops")
UNKNOWN, NOT_USED = "?", "-"
# settings that mean nothing unless another one is set so: (key prefix, that key, its value)
ONLY_WHEN = (
    ("data.synthetic.", "data.dataset", "synthetic"),
    ("text.", "model.text", True),
    ("pose.", "model.pose", True),
    ("model.feedback", "model.pose", True),
    ("model.pose_encoder", "model.pose", True),
    ("model.aux_weight", "model.pose", True),
)  # fmt: skip (and the model.* keys of some archs only: config_schema.ARCH_KEYS)


def parse_keys(text: str) -> list[str]:
    """``--keys``: config keys, each checked against the config's keys."""
    valid = [*flat_config(config_to_dict(Config())), "classes"]
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise UserError(f"--keys {text!r}: give config keys, e.g. --keys model.pose,train.lr")
    for key in keys:
        if key in valid:
            continue
        section = [k for k in valid if k.startswith(f"{key}.")]
        if section:
            raise UserError(
                f"--keys: '{key}' is a section; give its keys, e.g. {', '.join(section[:3])}"
            )
        near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise UserError(f"--keys: unknown config key '{key}'{hint}")
    return list(dict.fromkeys(keys))


def value_of(row: RunScores, key: str) -> Any:
    """``key``'s value for ``row``: its protocol / setup record, else its config (recorded, or
    an older report's config.yaml); ``?`` unknown, ``-`` where the run does not use it
    (:data:`ONLY_WHEN`: ``text.model`` without a text head; and what a zero-shot test did not
    record: it trained nothing)."""
    if key in row.keys:
        return row.keys[key]
    for prefix, switch, on in ONLY_WHEN:
        if key.startswith(prefix) and value_of(row, switch) not in (on, UNKNOWN):
            return NOT_USED
    arch = (
        value_of(row, "model.arch") if key.startswith("model.") and key != "model.arch" else UNKNOWN
    )
    if arch != UNKNOWN and not arch_reads(str(arch), key.removeprefix("model.")):
        return NOT_USED  # (model.size of a late_fusion run, model.depth of an LS-ViT one)
    if row.zero_shot:  # (CLIP untrained: its record is all it has)
        return NOT_USED
    if not row.recorded and key in GUESSED:  # (config.yaml: the run's, maybe not the test's)
        return UNKNOWN
    if row.config is not None and key in row.config:
        return row.config[key]
    return UNKNOWN


def differing_keys(rows: Sequence[RunScores]) -> list[str]:
    """The settings with two or more values among the runs that record them: the reports'
    protocol and setup keys first, then the configs' (less :data:`BOOKKEEPING`)."""
    recorded = list(dict.fromkeys(k for r in rows for k in r.keys))
    configs = [
        k for r in rows for k in (r.config or {})
        if k not in BOOKKEEPING and not k.startswith("pretrain.")
    ]  # fmt: skip
    keys = []
    for key in dict.fromkeys([*recorded, *configs]):
        known = {text_of(v) for r in rows if (v := value_of(r, key)) not in (UNKNOWN, NOT_USED)}
        if len(known) > 1:
            keys.append(key)
    return keys


def shared_keys(rows: Sequence[RunScores], shown: Sequence[str]) -> dict[str, Any]:
    """The protocol and setup records every run holds alike (said above the table)."""
    keys = [k for k in dict.fromkeys(k for r in rows for k in r.keys) if k not in shown]
    values = {k: {text_of(value_of(r, k)) for r in rows} for k in keys}
    return {k: value_of(rows[0], k) for k, v in values.items() if len(v) == 1 and UNKNOWN not in v}


def text_of(value: Any) -> str:
    """A setting as written in a config (``true``, ``''`` for an empty string)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return "''"
    if value == NOT_USED:  # (not used: not a value to quote)
        return value
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)
