"""Paired comparisons from stored per-sequence rows: a model against itself is exactly zero with a
zero-width interval; a constant shift is found exactly; only shared sentences count."""

import numpy as np
import pandas as pd

from idsuite.results.compare import paired
from idsuite.results.query import ResultQuery
from tests.results.conftest import cell_frame


def per_sequence_cell(model, shift=0.0, sequences=range(6), seed_values=0):
    """A rank cell whose per-sequence ``nonidentifiable_share`` rows (n = 4 heads) are random per
    (sequence, layer), plus ``shift``."""
    ref, frame = cell_frame(model)
    rng = np.random.default_rng(seed_values)
    rows = [{"variant": "nonidentifiable_share", "layer": layer, "sequence": s, "n": 4,
             "value": rng.integers(0, 5) / 4 + shift} for s in sequences for layer in (1, 2)]
    extra = pd.DataFrame(rows).assign(**{c: frame[c].iloc[0] for c in frame.columns
                                         if c not in ("variant", "layer", "sequence", "value", "head", "n")})
    return ref, pd.concat([frame, extra], ignore_index=True)


def test_a_model_against_itself_and_against_a_shifted_copy(store):
    a, frame = per_sequence_cell("a")
    store.write(a, frame)
    b, shifted = per_sequence_cell("b", shift=0.25)
    store.write(b, shifted)
    query = ResultQuery(store)
    same = paired(query, [a], [a], "nonidentifiable_share")
    assert (same["difference"] == 0).all() and (same["ci_low"] == 0).all() and (same["ci_high"] == 0).all()
    assert not same["excludes_zero"].any() and same["layer"].tolist()[:2] == [1, 2] and same["layer"].isna().iloc[-1]
    diff = paired(query, [b], [a], "nonidentifiable_share")
    assert np.allclose(diff["difference"], 0.25) and np.allclose(diff["ci_low"], 0.25) and diff["excludes_zero"].all()
    assert (diff["sequences"] == 6).all()


def test_only_shared_sentences_are_paired(store):
    a, frame = per_sequence_cell("a", sequences=range(6))
    store.write(a, frame)
    b, other = per_sequence_cell("b", sequences=range(3, 9), seed_values=1)
    store.write(b, other)
    result = paired(ResultQuery(store), [a], [b], "nonidentifiable_share")
    assert (result["sequences"] == 3).all()
    noisy = result.iloc[:2]
    assert (noisy["ci_low"] <= noisy["difference"]).all() and (noisy["difference"] <= noisy["ci_high"]).all()
