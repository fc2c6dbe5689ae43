"""A cell's key changes with every identity column and nothing else; its setting leaves out dtype
and library versions."""

import pytest

from idsuite.results.identity import cell_key, setting_label, setting_parts, short_setting_names
from idsuite.results.schema import KEY_COLUMNS
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
    assert setting_parts(a) == ["corpus lee:all (c0ffee00)", "token limit 128", "seed 0", "method=estimate", "probes=32"]
    assert setting_parts(a | {"max_tokens": None})[1] == "seed 0"  # stores before the column
    names = short_setting_names([setting_label(a), setting_label(b)])
    assert sorted(names.values()) == ["method=estimate", "method=exact"]
