"""The leaderboard's data: the main table, curves, head matrices and example maps of one store.

``Board`` reads the store through ``results`` (DuckDB over the Parquet files): the main table and
the curves come from the cells' small summary files, a model page's head matrices and example
maps from that model's cells only. Columns and help texts come from each metric's declaration
(``idsuite.suite.specs``): adding a metric adds its column. Nothing here imports torch or runs a model.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd

from idsuite.results.compare import PAIRED_COLUMNS, paired, ranked
from idsuite.results.headlines import aggregate_rows, combine_seeds, headlines, layer_rows
from idsuite.results.labels import headline_label, model_card
from idsuite.results.query import ResultQuery, refs
from idsuite.results.schema import SIZE_FACTS
from idsuite.results.selection import ranked_settings, select, with_settings
from idsuite.suite.specs import SPECS, MetricSpec
from idsuite.suite.specs.context_mixing import MEASURES
from idsuite.suite.uncertainty import MIN_CLUSTERS

LEAD_COLUMNS = ["model", "kind", "n_params"]
"""First in the main table: what the model is and its size; then the headlines, then ``status``."""
DETAIL_COLUMNS = ["family", "model_type", *[f for f in SIZE_FACTS if f != "n_params"], "trained", "control_of",
                  "remote_code", "mixed_weights", "stale", "note"]
"""The rest of the facts, behind a toggle. ``mixed_weights``: some metric of the model has newer
cells of other weights than the row's (``idsuite.results.selection.select``), left out of it."""
MIXING = "context_mixing"
EFFECTIVE_MAPS = {"raw": "map_raw", "effective": "map_eff"}
"""The effective-attention metric's two example maps (the null map is their difference)."""
AGGREGATE_COLUMNS = ["model_id", "init_seed", "metric", "variant", "layer", "head", "sequence", "value", "ci_low",
                     "ci_high", "n", "n_unit", "status", "n_layers"]
"""What the main table and the curves read from the summaries."""
CURVE_COLUMNS = ["model", "layer", "depth", "value", "ci_low", "ci_high", "seeds"]


TABLE_SPECS = [spec for spec in SPECS.values() if spec.in_main_table]
"""The metrics with a column in the main table (context mixing has a view of its own)."""
PAIRED_SPECS = [spec for spec in SPECS.values() if spec.variant(spec.headline).per_sequence]
"""The metrics whose headline can be compared sentence by sentence."""


def reader_order(models: Collection[str]) -> list[str]:
    """Model ids as a reader alphabetises them: case ignored (``all-MiniLM`` before ``SmolLM2``),
    ties by the exact id."""
    return sorted(models, key=lambda m: (m.casefold(), m))


def _true(value: object) -> bool:
    """A stored boolean that may be missing (NULL in older cells)."""
    return not pd.isna(value) and bool(value)


def best_of_label(spec: MetricSpec) -> str:
    return f"{spec.display_name}: best g"


def sentences_label(spec: MetricSpec) -> str:
    """The column of how many probe sentences a headline rests on."""
    return f"{spec.display_name}: sentences"


LENGTH_BOUND = "rank_deficiency"
"""The metric whose headline has a floor set by the corpus and the head size alone: a (sequence,
head) pair of a sentence of n > d_h tokens always has a null space (rank(T_h) <= d_h < n)."""
LENGTH_BOUND_LABEL = "From length alone (n > d_h)"
"""Its column: the share of sentences longer than the head size, the value any model of that d_h
gets on this corpus whatever its weights."""


def interval_ends(spec: MetricSpec) -> tuple[str, str]:
    """The columns of a headline's 95% interval ends (a bootstrap interval is not symmetric about
    the value, a control's spans its seeds'), for the CSV."""
    return f"{spec.display_name}: 95% low", f"{spec.display_name}: 95% high"


def interval_label(spec: MetricSpec) -> str:
    """The column of a headline's half-width (``idsuite.results.labels.INTERVAL_MEANING``); empty
    below ``MIN_CLUSTERS`` sentences, where a bootstrap gives no 95% interval."""
    return f"{spec.display_name}: ±"


class Board:
    """One store's data for the leaderboard, with one setting per metric (``chosen``: metric ->
    setting label; default the setting most models finished) and the newest cell per model.
    ``variants``: the (metric, variant) pairs whose aggregated rows are read (default: all; the paper
    export needs only the headlines, ``idsuite.results.headlines.headline_variants``)."""

    def __init__(self, root: str | Path, chosen: dict[str, str] | None = None,
                 variants: Collection[tuple[str, str]] | None = None) -> None:
        self.root = Path(root)
        self.query = ResultQuery(root)
        self.stored = with_settings(self.query.cells())
        self.settings = ranked_settings(self.stored)
        self.cells = select(self.stored, chosen)
        self.hidden = len(self.stored) - len(self.cells)
        where, names = "head IS NULL", sorted({v for _, v in variants or ()})
        if variants is not None:
            where += f" AND variant IN ({', '.join('?' * len(names))})" if names else " AND false"
        rows = self.query.summary_rows(refs(self.cells), where=where, columns=AGGREGATE_COLUMNS, parameters=names)
        if variants is not None:  # the exact pairs (a variant name may recur in another metric)
            rows = rows[pd.MultiIndex.from_arrays([rows["metric"], rows["variant"]]).isin(list(variants))]
        self.aggregates = aggregate_rows(rows)
        layers = layer_rows(self.aggregates)
        self.per_layer = combine_seeds(layers, ["model_id", "metric", "variant", "layer", "n_layers"])
        """Per-layer values, a control's init seeds combined (mean, the interval spanning theirs)."""
        self._table: pd.DataFrame | None = None
        self._headlines = headlines(self.aggregates)
        self._ranks: dict[str, pd.DataFrame] = {}
        self._differences: dict[str, pd.DataFrame] = {}
        self._sentence_rows: dict[tuple[str, ...], pd.DataFrame] = {}

    def close(self) -> None:
        """End the store connection (``ResultQuery.close``); what was read stays, nothing more is read."""
        self.query.close()

    # -- the main table --------------------------------------------------------------------------
    def model_table(self) -> pd.DataFrame:
        """One row per model: what it is, its size, one column per metric headline, its status, and
        the facts of ``DETAIL_COLUMNS`` (computed once per board)."""
        if self._table is None:
            self._table = self._model_table()
        return self._table.copy()

    def _model_table(self) -> pd.DataFrame:
        heads = [c for s in TABLE_SPECS
                 for c in (headline_label(s), interval_label(s), *interval_ends(s), sentences_label(s),
                           *([best_of_label(s)] if s.headline_best_of else []),
                           *([LENGTH_BOUND_LABEL] if s.name == LENGTH_BOUND else []))]
        if self.cells.empty:
            return pd.DataFrame(columns=LEAD_COLUMNS + heads + ["status"] + DETAIL_COLUMNS)
        best = {(r.model_id, r.metric): r for r in self._headlines.itertuples(index=False)}
        counted = self.query.sentences(refs(self.cells[self.cells["ok"]]))
        sentences = counted.groupby(["model_id", "metric"])["sentences"].max().to_dict()  # a control's seeds: the same
        bounds = self._length_bounds()
        by_model: dict[str, list[dict]] = {}
        for cell in self.cells.to_dict("records"):  # plain records: a hundred models in milliseconds
            by_model.setdefault(cell["model_id"], []).append(cell)
        out = []
        for model_id in reader_order(by_model):
            cells = by_model[model_id]
            ok = [c for c in cells if c["ok"]]
            facts = (ok or cells)[0]
            causal = facts["causal"]
            record = {"model": model_id, "kind": None if pd.isna(causal) else ("decoder" if causal else "encoder")}
            record |= {c: facts[c] for c in ["family", "model_type", *SIZE_FACTS]}
            for spec in TABLE_SPECS:
                found = best.get((model_id, spec.name))
                record[headline_label(spec)] = found.value if found is not None else np.nan
                counted = sentences.get((model_id, spec.name), 0)
                record[sentences_label(spec)] = counted if found is not None else pd.NA
                shown = found is not None and counted >= MIN_CLUSTERS
                record[interval_label(spec)] = (found.ci_high - found.ci_low) / 2 if shown else np.nan
                low, high = interval_ends(spec)
                record[low], record[high] = (found.ci_low, found.ci_high) if shown else (np.nan, np.nan)
                if spec.name == LENGTH_BOUND:
                    record[LENGTH_BOUND_LABEL] = bounds.get(model_id, np.nan)
                if spec.headline_best_of:
                    record[best_of_label(spec)] = found.variant if found is not None else None
            done = {c["metric"] for c in ok}
            failed = {c["metric"] for c in cells if not c["ok"]}
            record["status"] = "complete" if done >= set(SPECS) else ("failed" if not done else "partial")
            errors = [c["error"] for c in cells if not c["ok"] and isinstance(c["error"], str)]
            missing = sorted(set(SPECS) - done - failed)
            notes = [errors[0]] if errors and record["status"] != "complete" else []
            notes += [f"missing: {', '.join(missing)}"] if missing and record["status"] == "partial" else []
            record["mixed_weights"] = any(c["mixed_weights"] for c in cells)
            notes += ["cells of other weights written later left out (a row holds one set of weights)"
                      ] if record["mixed_weights"] else []
            record["note"] = "; ".join(notes)
            control = any(_true(c["is_control"]) for c in cells)
            record["trained"] = "control" if control else "trained"
            record["control_of"] = facts["control_of"] if control else None
            record["remote_code"] = any(_true(c["trust_remote_code"]) for c in cells)
            record["stale"] = ", ".join(sorted(c["metric"] for c in cells if c["stale"]))
            out.append(record)
        table = pd.DataFrame(out).astype({f: "Int64" for f in SIZE_FACTS} | {sentences_label(s): "Int64" for s in TABLE_SPECS})
        return table[LEAD_COLUMNS + heads + ["status"] + DETAIL_COLUMNS]

    def _length_bounds(self) -> dict[str, float]:
        """Per model: the share of its ``LENGTH_BOUND`` cell's sentences longer than its head size
        (n_s = rank + null_dim of a head, averaged over the heads, at the first layer; a control's
        seeds pooled)."""
        cells = self.cells[(self.cells["metric"] == LENGTH_BOUND) & self.cells["ok"] & self.cells["d_head"].notna()]
        if cells.empty:
            return {}
        rows = self.query.cell_rows(refs(cells), where="variant IN ('rank', 'null_dim') AND layer = 1 AND "
                                    "sequence IS NOT NULL", columns=["model_id", "init_seed", "sequence", "value"])
        keys = ["model_id", rows["init_seed"].fillna(-1), "sequence"]
        grouped = rows.groupby(keys)["value"]
        lengths = (grouped.sum() / (grouped.size() / 2)).round().rename("n").reset_index()  # rank and null_dim per head
        head = cells.groupby("model_id")["d_head"].first()
        longer = lengths["n"] > lengths["model_id"].map(head)
        return longer.groupby(lengths["model_id"]).mean().to_dict()

    def model_cards(self) -> dict[str, str]:
        """Model id -> its model card's address (``idsuite.results.labels.model_card``), where known."""
        found = {m: model_card(f) for m, f in zip(self.cells["model_id"], self.cells["model_fingerprint"], strict=True)}
        return {m: url for m, url in found.items() if url}

    def trained(self) -> list[str]:
        """The models that are not random-init controls (the ones ranked), in reader order."""
        controls = set(self.cells.loc[self.cells["control_of"].notna(), "model_id"])
        return [m for m in self.models() if m not in controls]

    def ranks(self, metric: str) -> pd.DataFrame:
        """The trained models ranked on ``metric``'s headline with rank intervals and the sentences
        behind each (``idsuite.results.compare.ranked``; controls are baselines, never ranked);
        computed once per board and metric."""
        if metric not in self._ranks:
            chosen = self._headlines[self._headlines["metric"] == metric].set_index("model_id")["variant"]
            spec = SPECS.get(metric)
            sides = {m: (refs(self._cell(m, metric)), chosen[m]) for m in self.trained() if m in chosen.index
                     and spec.variant(chosen[m]).per_sequence and len(self._cell(m, metric))}
            self._ranks[metric] = ranked(self.query, sides)
        return self._ranks[metric].copy()

    def control_differences(self, metric: str) -> pd.DataFrame:
        """(model, control, difference, ci_low, ci_high, excludes_zero, sequences): each trained
        model's headline minus its own random-init control's on the same sentences, paired bootstrap
        95% interval, the control's init seeds pooled; computed once per board and metric."""
        if metric not in self._differences:
            out = []
            for model in self.trained():
                control = self.control_for(model)
                diff = self.paired(model, control, metric) if control else pd.DataFrame()
                if len(diff):
                    out.append({"model": model, "control": control, **diff[diff["layer"].isna()].iloc[0].to_dict()})
            self._differences[metric] = pd.DataFrame(out, columns=["model", "control", *PAIRED_COLUMNS]).drop(
                columns="layer")
        return self._differences[metric].copy()

    # -- a model and its control -----------------------------------------------------------------
    def models(self) -> list[str]:
        return reader_order(self.cells.loc[self.cells["ok"], "model_id"].unique())

    def control_for(self, model_id: str) -> str | None:
        """The random-init control of a trained model, or the trained base of a control (None when
        that model is not in these results)."""
        cells = self.cells[self.cells["model_id"] == model_id]
        base = cells["control_of"].dropna()
        if len(base):
            return str(base.iloc[0]) if base.iloc[0] in set(self.cells["model_id"]) else None
        controls = sorted(self.cells.loc[self.cells["control_of"] == model_id, "model_id"].unique())
        return controls[0] if controls else None

    def base_of(self, model_id: str) -> str | None:
        """The trained base a control was made from (whether or not it is in these results)."""
        base = self.cells.loc[self.cells["model_id"] == model_id, "control_of"].dropna()
        return str(base.iloc[0]) if len(base) else None

    def provenance(self, model_id: str) -> pd.DataFrame:
        """One row per cell shown for a model: corpus, seed, config, dtype, device, run, whether stale."""
        columns = ["metric", "ok", "stale", "metric_version", "corpus_id", "max_tokens", "seed", "metric_config", "dtype",
                   "device", "written", "run_id", "cell_key"]
        return self.cells.loc[self.cells["model_id"] == model_id, columns].reset_index(drop=True)

    def layer_curves(self, model_ids: list[str], metric: str, variant: str, normalise_depth: bool = False) -> pd.DataFrame:
        """(model, layer, depth, value, ci_low, ci_high): one curve per model with its band (the 95%
        interval; for a control, the range over its init seeds); ``depth`` = layer / L when normalised."""
        rows = self.per_layer
        part = rows[rows["model_id"].isin(model_ids) & (rows["metric"] == metric) & (rows["variant"] == variant)]
        part = part.rename(columns={"model_id": "model"}).sort_values(["model", "layer"])
        part["depth"] = part["layer"] / part["n_layers"].astype(float) if normalise_depth else part["layer"].astype(float)
        return part[CURVE_COLUMNS].reset_index(drop=True)

    def paired(self, model_a: str, model_b: str, metric: str, variant: str | None = None) -> pd.DataFrame:
        """``model_a`` minus ``model_b`` on the same sentences, per layer and for the headline, with
        paired bootstrap intervals (``idsuite.results.compare.paired``; a control's init seeds pooled);
        below ``MIN_CLUSTERS`` shared sentences, no interval."""
        spec = SPECS.get(metric)
        variant = variant or spec.headline
        sides = [refs(self._cell(m, metric)) for m in (model_a, model_b)]
        if not all(sides):
            return pd.DataFrame(columns=PAIRED_COLUMNS)
        diff = paired(self.query, sides[0], sides[1], variant)
        few = diff["sequences"] < MIN_CLUSTERS  # no 95% interval from so few sentences: none is shown
        diff.loc[few, ["ci_low", "ci_high"]] = np.nan
        diff.loc[few, "excludes_zero"] = False
        return diff

    def mixing_agreement(self, score: str = "spearman", local: bool = False) -> pd.DataFrame:
        """(model, measure, last, mean): each context-mixing measure's agreement with attribution
        (``score``; rolled out against ``c^l``, or with ``local`` one layer against the one-layer
        Jacobian) at the last layer and its mean over layers, for every model."""
        where = ":local" if local else ""
        rows = self.per_layer[self.per_layer["metric"] == MIXING]
        out = []
        for measure in MEASURES:
            part = rows[rows["variant"] == f"{measure.name}{where}/{score}"]
            for model, curve in part.groupby("model_id", sort=True):
                curve = curve.sort_values("layer")
                out.append({"model": model, "measure": measure.name, "last": float(curve["value"].iloc[-1]),
                            "mean": float(curve["value"].mean())})
        return pd.DataFrame(out, columns=["model", "measure", "last", "mean"])

    def mixing_matrices(self, model_id: str, layer: int) -> dict[str, np.ndarray]:
        """The example sequence's rolled-out matrix of every measure and the attribution it is scored
        against, at ``layer`` (read from that model's context-mixing cell only); {} if none."""
        cell = self._cell(model_id, MIXING)
        if cell.empty:
            return {}
        rows = self.query.cell_rows(refs(cell), where="variant LIKE 'matrix:%' AND layer = ?",
                                    columns=["variant", "query", "key", "value"], parameters=[layer])
        out = {}
        for variant, part in rows.groupby("variant"):
            n = int(part["query"].max()) + 1
            grid = np.full((n, n), np.nan)
            grid[part["query"].astype(int), part["key"].astype(int)] = part["value"]
            out[variant.split(":", 1)[1]] = grid
        return out

    def mixing_tokens(self, model_id: str) -> list[str] | None:
        """The tokens of the context-mixing example sentence, where the effective-attention cell
        stored the same sentence's tokens (None otherwise: the matrices are then labelled by position)."""
        mixing = self._cell(model_id, MIXING)
        example = self.attention_example(model_id, 1, 0) if len(mixing) else None
        if example is None:
            return None
        rows = self.query.cell_rows(refs(mixing), where="variant LIKE 'matrix:%' AND layer = 1",
                                    columns=["sequence", "query"])
        if rows.empty or int(rows["sequence"].iloc[0]) != example["sequence"]:
            return None
        return list(example["tokens"]) if int(rows["query"].max()) + 1 == len(example["tokens"]) else None

    def sentence_rows(self, model_ids: list[str]) -> pd.DataFrame:
        """The per-sentence rows of the shown cells of these models (every metric; maps left out),
        every schema column with them (n, interval ends, provenance), for download; read once per
        board and selection."""
        key = tuple(sorted(model_ids))
        if key not in self._sentence_rows:
            cells = self.cells[self.cells["model_id"].isin(model_ids) & self.cells["ok"]]
            self._sentence_rows[key] = self.query.cell_rows(refs(cells), where="sequence IS NOT NULL AND query IS NULL")
        return self._sentence_rows[key]

    def _cell(self, model_id: str, metric: str) -> pd.DataFrame:
        return self.cells[(self.cells["model_id"] == model_id) & (self.cells["metric"] == metric) & self.cells["ok"]]

    def per_head_variants(self, model_id: str) -> list[tuple[str, str]]:
        """(metric, variant) pairs with per-head rows (declared ``per_head``) among the model's metrics."""
        shown = set(self.cells.loc[(self.cells["model_id"] == model_id) & self.cells["ok"], "metric"])
        return [(name, v) for name, spec in SPECS.items() if name in shown
                for v, variant in spec.variants.items() if variant.per_head]

    def head_matrix(self, model_id: str, metric: str, variant: str) -> pd.DataFrame:
        """Layer x head values (aggregated over sequences), read from that cell's summary only."""
        cell = self._cell(model_id, metric)
        if cell.empty:
            return pd.DataFrame()
        rows = self.query.summary_rows(refs(cell), where="head IS NOT NULL AND layer IS NOT NULL AND variant = ?",
                                       columns=["layer", "head", "value"], parameters=[variant])
        return rows.pivot_table(index="layer", columns="head", values="value", aggfunc="first") if len(rows) else rows

    def attention_example(self, model_id: str, layer: int, head: int) -> dict[str, object] | None:
        """The stored example sentence's tokens (in position order) and its raw, effective and null
        maps (n x n) for one head, read from that model's effective-attention cell only."""
        spec = SPECS.get("effective_attention")
        cell = self._cell(model_id, spec.name)
        if cell.empty:
            return None
        label, maps = spec.variants_of("label")[0], list(EFFECTIVE_MAPS.values())
        rows = self.query.cell_rows(
            refs(cell), where="variant = ? OR (variant IN (?, ?) AND layer = ? AND head = ?)",
            columns=["variant", "layer", "head", "sequence", "query", "key", "label", "value"],
            parameters=[label, *maps, layer, head])
        tokens = rows[rows["variant"] == label].sort_values("key")
        if tokens.empty:
            return None
        n = len(tokens)
        grids = {}
        for name, variant in EFFECTIVE_MAPS.items():
            part = rows[rows["variant"] == variant]
            grid = np.full((n, n), np.nan)
            grid[part["query"].astype(int), part["key"].astype(int)] = part["value"]
            grids[name] = grid
        return {"tokens": tokens["label"].tolist(), **grids, "null": grids["raw"] - grids["effective"],
                "sequence": int(tokens["sequence"].iloc[0])}


def filter_table(table: pd.DataFrame, families: list[str] | None = None, kinds: list[str] | None = None,
                 params: tuple[float, float] | None = None, search: str = "") -> pd.DataFrame:
    """Rows whose family and kind are among those given, whose size is in ``params`` (millions), and
    whose model id contains ``search`` (case-insensitive)."""
    keep = pd.Series(True, index=table.index)
    if families:
        keep &= table["family"].isin(families)
    if kinds:
        keep &= table["kind"].isin(kinds)
    if params is not None:
        millions = table["n_params"].astype("Float64").astype(float) / 1e6
        keep &= millions.between(*params) | millions.isna()
    if search:
        keep &= table["model"].str.contains(search, case=False, regex=False)
    return table[keep]
