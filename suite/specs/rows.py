"""The columns every metric emits, with their types (the results schema adds provenance and facts).

``layer`` is 1..L (0 is the embedding layer for identifiability), null on whole-model aggregates;
``head`` and ``sequence`` are null on rows aggregated over them; ``n_tokens``: the sequence's
length on per-sequence rows, the tokens averaged on aggregates; ``query``/``key``: positions of an
attention-map cell; ``label``: text (a token of the example sequence).
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
}
INDEX_COLUMNS = ("layer", "head", "sequence", "n_tokens", "query", "key")
"""The integer row columns a metric may set per row (null where not given)."""
