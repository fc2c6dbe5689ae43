"""The one declaration of the stored columns: name, type, role, and whether a column is part of a
cell's identity (its key) or of its setting (what must match for two models to be compared).

Every other list of columns (provenance, model facts, the key's parts, the leaderboard's setting)
is derived from ``COLUMNS``. Older cells are read through ``select_list``: a column a cell lacks
reads as its ``absent`` SQL expression (NULL unless a migration says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from idsuite.suite.specs.rows import ROW_COLUMNS

SCHEMA_VERSION = 3
"""1: the first store. 2: per-cell summary files and cards, ``trust_remote_code``, ``init_seed``, and
every aggregate's uncertainty (``n``, ``n_unit``, ``n_clusters``, ``ci_low``, ``ci_high``). 3:
``model_commit``, the hub commit the weights were read at (hub fingerprints name it too)."""

Role = Literal["row", "status", "provenance", "fact"]
FactGroup = Literal["", "kind", "size", "run"]
ARROW_TYPES = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
DUCKDB_TYPES = {"string": "VARCHAR", "int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN"}


@dataclass(frozen=True)
class Column:
    """A stored column. ``key``: hashed into the cell key; ``setting``: part of the comparable
    setting; ``group`` (facts only): ``kind`` (what the model is), ``size`` (its dimensions) or
    ``run`` (what the run gave it); ``absent``: SQL for cells written before the column existed;
    ``shown`` (setting columns): how the value reads in a setting's label, a format of ``{}``, or
    ``JSON_ITEMS`` for a JSON object read as its ``key=value`` items; ``only_for``: null except on a
    random-init control's cells (``controls``) or on cells of weights read from the hub (``hub``);
    every other provenance and fact column has a value on every finished row."""

    name: str
    type: str
    role: Role
    description: str
    key: bool = False
    setting: bool = False
    group: FactGroup = ""
    absent: str = "NULL"
    shown: str = "{}"
    only_for: Literal["", "controls", "hub"] = ""


JSON_ITEMS = "key=value"


_PINNED_SHA = ("CASE WHEN regexp_matches(model_fingerprint, '@[0-9a-f]{40}$') "
               "THEN regexp_extract(model_fingerprint, '@([0-9a-f]{40})$', 1) END")
"""``model_commit`` of a cell written before the column: the sha its hub fingerprint was pinned to
(``hub:org/model@<sha>``); NULL for a branch or tag (its commit was never recorded) and for weights
not from the hub."""

_ROW_DESCRIPTIONS = {
    "metric": "metric name (idsuite.suite.specs)",
    "variant": "reported quantity of the metric",
    "layer": "1..L (0: embedding layer); null on whole-model aggregates",
    "head": "attention head; null when aggregated over heads",
    "sequence": "probe corpus index; null when aggregated over sequences",
    "n_tokens": "sequence length (per-sequence rows) or tokens averaged (aggregates)",
    "query": "attention-map row position",
    "key": "attention-map column position",
    "label": "text, e.g. a token of the example sequence",
    "value": "the number",
    "n": "units the aggregate averages",
    "n_unit": "what n counts: sequences, tokens, sequence-heads, rows, seeds",
    "n_clusters": "sequences the bootstrap resampled",
    "ci_low": "lower end of the 95% bootstrap interval",
    "ci_high": "upper end of the 95% bootstrap interval",
}

COLUMNS: tuple[Column, ...] = (
    *(Column(name, kind, "row", _ROW_DESCRIPTIONS[name], key=name == "metric") for name, kind in ROW_COLUMNS.items()),
    Column("status", "string", "status", "ok or failed"),
    Column("error", "string", "status", "one line: why the cell failed"),
    Column("schema_version", "int64", "provenance", "version of this schema the cell was written with"),
    Column("run_id", "string", "provenance", "the run that wrote the cell"),
    Column("cell_key", "string", "provenance", "hash of the identity columns"),
    Column("model_id", "string", "provenance", "zoo entry id"),
    Column("init_seed", "int64", "provenance", "a random-init control's seed (one model each; together a band)",
           only_for="controls"),
    Column("model_source", "string", "provenance", "hub, local, package, gguf, random_init or config"),
    Column("model_fingerprint", "string", "provenance",
           "what identifies the weights (idsuite.results.identity.FINGERPRINT_KINDS): hub repo at its commit, "
           "weight-file hash, base + init seed, or config hash + init seed + tokenizer", key=True),
    Column("model_commit", "string", "provenance",
           "hub commit sha the weights (a control's base, a config entry's config) were read at; null when not "
           "from the hub (older cells: the sha a hub fingerprint was pinned to)", key=True, absent=_PINNED_SHA,
           only_for="hub"),
    Column("trust_remote_code", "bool", "provenance", "the entry let transformers run the model's own code", key=True,
           absent="FALSE"),
    Column("is_control", "bool", "provenance", "a random-init control"),
    Column("control_of", "string", "provenance", "the control's trained base entry", only_for="controls"),
    Column("corpus_id", "string", "provenance", "probe corpus name", setting=True, shown="corpus {}"),
    Column("corpus_hash", "string", "provenance", "hash of the probe items", key=True, setting=True, shown="(corpus hash {:.8})"),
    Column("metric_version", "int64", "provenance", "the metric's version when the cell was written", key=True),
    Column("metric_config", "string", "provenance", "the metric's config (sorted JSON)", key=True, setting=True,
           shown=JSON_ITEMS),
    Column("seed", "int64", "provenance", "run seed (corpus order, splits, probes)", key=True, setting=True, shown="seed {}"),
    Column("max_tokens", "int64", "provenance", "longest probe sequence kept", key=True, setting=True,
           shown="token limit {}"),
    Column("dtype", "string", "provenance", "forward-pass dtype", key=True),
    Column("device", "string", "provenance", "device name the cell was computed on"),
    Column("batch_size", "int64", "provenance", "most sequences in one forward pass of the model (see RunConfig)"),
    Column("timestamp", "string", "provenance", "UTC time the cell was written (ISO 8601, microseconds)"),
    Column("suite_version", "string", "provenance", "idsuite version", key=True),
    Column("torch_version", "string", "provenance", "torch version", key=True),
    Column("transformers_version", "string", "provenance", "transformers version", key=True),
    Column("family", "string", "fact", "model family (zoo entry, else model_type)", group="kind"),
    Column("model_type", "string", "fact", "transformers model_type", group="kind"),
    Column("causal", "bool", "fact", "decoder (row i attends to keys j <= i)", group="kind"),
    Column("n_params", "int64", "fact", "parameters", group="size"),
    Column("n_layers", "int64", "fact", "layers L", group="size"),
    Column("n_heads", "int64", "fact", "attention heads H", group="size"),
    Column("n_kv_heads", "int64", "fact", "key-value heads", group="size"),
    Column("d_head", "int64", "fact", "head size d_h", group="size"),
    Column("d_model", "int64", "fact", "hidden size d", group="size"),
    Column("n_sequences", "int64", "fact", "probe sequences that fit the token limit", group="run"),
)
BY_NAME = {c.name: c for c in COLUMNS}
NAMES = [c.name for c in COLUMNS]
KEY_COLUMNS = [c.name for c in COLUMNS if c.key]
SETTING_COLUMNS = [c.name for c in COLUMNS if c.setting]
FACT_COLUMNS = [c.name for c in COLUMNS if c.role == "fact"]
SIZE_FACTS = [c.name for c in COLUMNS if c.group == "size"]
PROVENANCE_COLUMNS = [c.name for c in COLUMNS if c.role == "provenance"]
CARD_COLUMNS = ["metric", *[c for c in PROVENANCE_COLUMNS + FACT_COLUMNS if c != "timestamp"]]
"""The columns that are the same on every row of a cell; with ``ok``, ``error`` and ``written``
they make its card (``idsuite.results.store.cell_card``), kept in each file's footer."""
ARROW_SCHEMA = pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in COLUMNS])


def conform(table: pa.Table) -> pa.Table:
    """``table`` with exactly the declared columns, in order and of the declared types (absent ones
    null); a column the schema does not declare is an error, not silently dropped."""
    unknown = set(table.column_names) - set(NAMES)
    if unknown:
        raise ValueError(f"columns not in the results schema: {', '.join(sorted(unknown))}")
    columns = [
        table.column(c.name).cast(ARROW_TYPES[c.type]) if c.name in table.column_names
        else pa.nulls(len(table), ARROW_TYPES[c.type])
        for c in COLUMNS
    ]
    return pa.Table.from_arrays(columns, schema=ARROW_SCHEMA)


IDENTITY_COLUMNS = ["model_id", "metric", "cell_key", "status"]
"""Columns every idsuite cell and summary has had since the first schema: a file without them is not one."""


def schema_problem(schema: pa.Schema) -> str | None:
    """Why a Parquet file's schema is not a (possibly older) idsuite cell's, in one line, or None:
    every column must be declared here with a type that casts to the declared one, and the
    ``IDENTITY_COLUMNS`` must be there (older cells may lack later columns)."""
    unknown = [name for name in schema.names if name not in BY_NAME]
    if unknown:
        return f"not an idsuite cell: column {unknown[0]!r} is not in the results schema"
    absent = [name for name in IDENTITY_COLUMNS if name not in schema.names]
    if absent:
        return f"not an idsuite cell: no column {absent[0]!r}"
    for field in schema:
        declared = BY_NAME[field.name].type
        kind = _kind(field.type)
        numbers = {kind, declared} <= {"int64", "float64"}  # pandas writes an int column with nulls as floats
        if kind != declared and kind != "null" and not numbers:
            return f"not an idsuite cell: column {field.name!r} holds {field.type}, not {declared}"
    return None


def _kind(arrow_type: pa.DataType) -> str | None:
    """The declared type name (``ARROW_TYPES``) a stored Arrow type reads as, "null" for an
    all-null column, None for any other type."""
    checks = {"string": (pa.types.is_string, pa.types.is_large_string), "int64": (pa.types.is_integer,),
              "float64": (pa.types.is_floating,), "bool": (pa.types.is_boolean,), "null": (pa.types.is_null,)}
    return next((name for name, tests in checks.items() if any(test(arrow_type) for test in tests)), None)


def select_list(present: set[str], names: list[str] | None = None) -> str:
    """SQL select list of ``names`` (default: every column) for files holding the columns
    ``present``: older cells read a missing column as its ``absent`` expression."""
    parts = []
    for name in names or NAMES:
        c = BY_NAME[name]
        source = f'"{name}"' if name in present else c.absent
        parts.append(f'CAST({source} AS {DUCKDB_TYPES[c.type]}) AS "{name}"')
    return ", ".join(parts)
