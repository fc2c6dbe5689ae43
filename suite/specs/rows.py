"""The columns every metric emits, with their types (the results schema adds provenance and facts).

``layer`` is 1..L (0 is the embedding layer for identifiability), null on whole-model aggregates;
``head`` and ``sequence`` are null on rows aggregated over them; ``n_tokens``: the sequence's
length on per-sequence rows, the tokens averaged on aggregates; ``query``/``key``: positions of an
attention-map cell; ``label``: text (a token of the example sequence).

Every aggregate carries its uncertainty: ``n`` units averaged, named by ``n_unit`` (sequences,
tokens, sequence-heads, ...), ``n_clusters`` sequences resampled, and the 95% interval
[``ci_low``, ``ci_high``] of a seeded bootstrap over those sequences (``idsuite.suite.uncertainty``).
"""

ROW_COLUMNS: dict[str, str] = {
    "metric": "string",
    "variant": "string",
    "layer": "int64",
    "head": "int64",
    "sequence": "int64",
    "n_tokens": "int64",
    "query": "int64",
    "key": "int64",
    "label": "string",
    "value": "float64",
    "n": "int64",
    "n_unit": "string",
    "n_clusters": "int64",
    "ci_low": "float64",
    "ci_high": "float64",
}
INDEX_COLUMNS = ("layer", "head", "sequence", "n_tokens", "query", "key")
"""The integer row columns a metric may set per row (null where not given)."""
