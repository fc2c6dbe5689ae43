"""A cell's identity: one definition from which its key, its setting and their labels derive.

A cell is one metric of one model under one configuration. Its *key* hashes every schema column
marked ``key`` (weights, corpus, metric version and config, seed, token limit, dtype, library
versions): a finished cell is never recomputed, and changing any part makes a new cell. Its
*setting* is the part that must match for two models' values to be compared (corpus, token
limit, seed, metric config); dtype and library versions are not in it, so a re-run under newer
libraries supersedes the older cell of the same setting.

A cell's *weights* are its ``model_fingerprint``, of one of the ``FINGERPRINT_KINDS``; cells of
one model made from different weights are never combined (``idsuite.results.selection``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

from idsuite.results.schema import BY_NAME, JSON_ITEMS, KEY_COLUMNS, SETTING_COLUMNS

SETTING_SEPARATOR = "; "
SUBJECT_COLUMNS = ["model_id", "init_seed"]
"""What a cell is of: a model, or one init seed of a random-init control (which has several)."""


FINGERPRINT_KINDS: dict[str, re.Pattern[str]] = {
    "hub": re.compile(r"hub:(?P<repo>[^@]+)@(?P<commit>[0-9a-f]{40})"),
    "folder": re.compile(r"local:sha256=[0-9a-f]{16}"),
    "packaged": re.compile(r"package:[^=]+==[^:]+:sha256=[0-9a-f]{16}"),
    "gguf": re.compile(r"gguf:sha256=[0-9a-f]{16}"),
    "random_init": re.compile(r"random_init\(seed=\d+\):(?P<base>.+)"),
    "config": re.compile(r"config\(seed=\d+\):sha256=[0-9a-f]{16},tokenizer=(?P<tokenizer>.+)"),
}
"""Every kind of weights a cell can be of, as the pattern of its ``model_fingerprint``: a hub repo
at its resolved commit (never a branch name: a branch moves), a local folder's or a package's
weight and JSON files (sha256 of names and bytes), a GGUF file (sha256), a random-init control
(its seed and its base's fingerprint), a config entry (its config's digest, init seed and its
tokenizer entry's fingerprint)."""
UNIDENTIFIED = "unavailable"
"""The fingerprint of failed cells whose weights could not even be identified (unreachable hub,
missing files): such a failure never stands for, or supersedes, a model's weights."""


def fingerprint_kind(fingerprint: str) -> str | None:
    """The kind (``FINGERPRINT_KINDS``) a fingerprint is of; None for ``UNIDENTIFIED`` and for
    fingerprints of older stores (a hub branch name instead of its commit)."""
    return next((kind for kind, pattern in FINGERPRINT_KINDS.items() if pattern.fullmatch(fingerprint)), None)


def cell_key(identity: Mapping[str, object]) -> str:
    """sha256 (20 hex digits) of the identity's key columns as sorted JSON. A key column that is
    None (``model_commit`` of weights not from the hub) is left out, so that declaring a new key
    column keeps the keys of the cells it does not apply to."""
    missing = [c for c in KEY_COLUMNS if c not in identity]
    if missing:
        raise KeyError(f"a cell identity needs {', '.join(missing)}")
    parts = {c: identity[c] for c in KEY_COLUMNS if identity[c] is not None}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value) or str(value) in ("<NA>", "nan", "NaT")


def setting_parts(setting: Mapping[str, object]) -> list[str]:
    """A setting as readable parts, one per declared setting column (``Column.shown``) in schema
    order; a value the cell lacks (a store from before its column) is left out."""
    parts = []
    for name in SETTING_COLUMNS:
        value, shown = setting.get(name), BY_NAME[name].shown
        if _is_missing(value):
            continue
        if shown == JSON_ITEMS:
            parts += [f"{k}={v}" for k, v in (json.loads(value) if isinstance(value, str) else {}).items()]
        else:
            parts.append(shown.format(int(value) if isinstance(value, float) and value.is_integer() else value))
    return parts


def setting_label(setting: Mapping[str, object]) -> str:
    """The setting as one string (the value the leaderboard selects on)."""
    return SETTING_SEPARATOR.join(setting_parts(setting))


def short_setting_names(labels: list[str]) -> dict[str, str]:
    """Short names for one metric's settings: the parts that are not common to all of them."""
    split = {label: label.split(SETTING_SEPARATOR) for label in labels}
    common = set.intersection(*(set(parts) for parts in split.values())) if len(labels) > 1 else set()
    return {label: SETTING_SEPARATOR.join(p for p in parts if p not in common) for label, parts in split.items()}
