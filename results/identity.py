"""A cell's identity: one definition from which its key, its setting and their labels derive.

A cell is one metric of one model under one configuration. Its *key* hashes every schema column
marked ``key`` (weights, corpus, metric version and config, seed, token limit, dtype, library
versions): a finished cell is never recomputed, and changing any part makes a new cell. Its
*setting* is the part that must match for two models' values to be compared (corpus, token
limit, seed, metric config); dtype and library versions are not in it, so a re-run under newer
libraries supersedes the older cell of the same setting.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from idsuite.results.schema import BY_NAME, JSON_ITEMS, KEY_COLUMNS, SETTING_COLUMNS

SETTING_SEPARATOR = "; "
SUBJECT_COLUMNS = ["model_id", "init_seed"]
"""What a cell is of: a model, or one init seed of a random-init control (which has several)."""


def cell_key(identity: Mapping[str, object]) -> str:
    """sha256 (20 hex digits) of the identity's key columns as sorted JSON."""
    missing = [c for c in KEY_COLUMNS if c not in identity]
    if missing:
        raise KeyError(f"a cell identity needs {', '.join(missing)}")
    parts = {c: identity[c] for c in KEY_COLUMNS}
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
