"""Shaping the long-format result rows for the leaderboard and the paper export (pandas only).

Columns and help texts come from each metric's ``MetricSpec``: adding a metric adds its column.
Nothing here runs a model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from runners import summary
from runners.store import ResultStore
from suite.metrics import METRICS
from suite.metrics.base import MetricSpec

FACTS = ["family", "model_type", "causal", "n_params", "n_layers", "n_heads", "n_kv_heads", "d_head", "d_model"]
ARROWS = {"higher": " ↑", "lower": " ↓", "none": ""}


def load_results(root: str | Path) -> pd.DataFrame:
    """Every stored row under ``root`` (empty frame if there are none), of every configuration:
    pass it through ``select_cells`` before comparing models."""
    return ResultStore(root).read()


SETTING_SEPARATOR = "; "


def _setting_parts(corpus_id: str, corpus_hash: str, max_tokens: object, seed: object, metric_config: str) -> list[str]:
    """A cell's setting as readable parts: corpus, token limit (absent in older stores), seed, and
    each entry of the metric config as ``key=value``."""
    parts = [f"corpus {corpus_id} ({str(corpus_hash)[:8]})"]
    parts += [] if pd.isna(max_tokens) else [f"token limit {int(max_tokens)}"]
    parts.append(f"seed {seed}")
    return parts + [f"{key}={value}" for key, value in json.loads(metric_config).items()]


def setting_names(options: list[str]) -> dict[str, str]:
    """Short names for one metric's settings: the parts that are not common to all of them."""
    split = {option: option.split(SETTING_SEPARATOR) for option in options}
    common = set.intersection(*(set(parts) for parts in split.values())) if len(options) > 1 else set()
    return {option: SETTING_SEPARATOR.join(p for p in parts if p not in common) for option, parts in split.items()}


def _cells(results: pd.DataFrame) -> pd.DataFrame:
    """One row per stored cell: model_id, metric, cell_key; its setting (what must match for two
    models' values of a metric to be compared: corpus, token limit, seed, metric config); when it was
    written (UTC); whether it finished (ok)."""
    results = results if "max_tokens" in results else results.assign(max_tokens=None)  # stores before the column
    cells = results.groupby(["model_id", "metric", "cell_key"], as_index=False, sort=False).agg(
        corpus_id=("corpus_id", "first"), corpus_hash=("corpus_hash", "first"), max_tokens=("max_tokens", "first"),
        seed=("seed", "first"), metric_config=("metric_config", "first"), timestamp=("timestamp", "max"),
        ok=("status", lambda s: bool((s == "ok").all())))
    cells["setting"] = [SETTING_SEPARATOR.join(_setting_parts(*row)) for row in zip(
        cells["corpus_id"], cells["corpus_hash"], cells["max_tokens"], cells["seed"], cells["metric_config"], strict=True)]
    cells["written"] = pd.to_datetime(cells["timestamp"], utc=True, format="ISO8601")
    return cells


def _ranked_settings(cells: pd.DataFrame) -> dict[str, list[str]]:
    by_setting = ["metric", "setting"]
    ranked = pd.DataFrame({
        "models": cells[cells["ok"]].groupby(by_setting)["model_id"].nunique(),
        "written": cells.groupby(by_setting)["written"].max(),
    }).fillna({"models": 0}).sort_values(["models", "written"], ascending=False)
    return {str(metric): part.index.get_level_values("setting").tolist()
            for metric, part in ranked.groupby(level="metric", sort=True)}


def settings(results: pd.DataFrame) -> dict[str, list[str]]:
    """Per metric, the settings (corpus, token limit, seed, metric config) stored: the one with
    finished cells for the most models first (ties: the most recently written first)."""
    return {} if results.empty else _ranked_settings(_cells(results))


def select_cells(results: pd.DataFrame, chosen: dict[str, str] | None = None) -> pd.DataFrame:
    """The rows to compare models on: per metric one setting (``chosen[metric]``, else the first of
    ``settings``), and per model the most recently written cell of it (a re-run under newer library
    versions or another dtype supersedes the older cell). A model with no cell in a metric's setting
    has no rows of that metric."""
    if results.empty:
        return results
    cells = _cells(results)
    wanted = {metric: (chosen or {}).get(metric) or options[0] for metric, options in _ranked_settings(cells).items()}
    cells = cells[cells["setting"] == cells["metric"].map(wanted)]
    newest = cells.sort_values(["written", "cell_key"]).drop_duplicates(["model_id", "metric"], keep="last")
    cell = ["model_id", "metric", "cell_key"]
    return results[results.set_index(cell).index.isin(newest.set_index(cell).index)]


def cell_count(results: pd.DataFrame) -> int:
    """How many cells (model, metric, cell key) the rows come from."""
    return len(results.drop_duplicates(["model_id", "metric", "cell_key"])) if len(results) else 0


def cell_provenance(results: pd.DataFrame, model_id: str) -> pd.DataFrame:
    """One row per cell of a model: which corpus, seed, config, dtype, device and run it came from."""
    columns = ["metric", "status", "corpus_id", "max_tokens", "seed", "metric_config", "dtype", "device", "timestamp",
               "run_id", "cell_key"]
    rows = results.loc[results["model_id"] == model_id, [c for c in columns if c in results]]
    return rows.drop_duplicates("cell_key").sort_values("metric").reset_index(drop=True)


def specs() -> dict[str, MetricSpec]:
    return {name: cls.spec for name, cls in METRICS.items()}


def headline_label(spec: MetricSpec) -> str:
    variant = spec.variants[spec.headline_best_of[0] if spec.headline_best_of else spec.headline]
    layer = " (last layer)" if spec.headline_layer == "last" else ""
    best = " (best g)" if spec.headline_best_of else ""
    return f"{spec.display_name}{layer}{best}{ARROWS[variant.direction]}"


def layer_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The run summary's per-layer rows (ok, aggregated over sequences and heads), layer as int."""
    return summary.layer_rows(results).astype({"layer": int})


def _headline(rows: pd.DataFrame, spec: MetricSpec) -> tuple[float, str]:
    """(value, variant) of a model's headline from its per-layer rows of one metric."""
    candidates = spec.headline_best_of or (spec.headline,)
    best: tuple[float, str] = (np.nan, "")
    direction = spec.variants[candidates[0]].direction
    for variant in candidates:
        part = rows[rows["variant"] == variant].sort_values("layer")
        if part.empty:
            continue
        value = float(part["value"].iloc[-1]) if spec.headline_layer == "last" else float(part["value"].mean())
        better = value < best[0] if direction == "lower" else value > best[0]
        if np.isnan(best[0]) or better:
            best = (value, variant)
    return best


def model_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per model: facts, trained or control, status, and one column per metric headline."""
    if results.empty:
        return pd.DataFrame()
    per_layer = layer_rows(results)
    all_specs = specs()
    out = []
    for model_id, rows in results.groupby("model_id", sort=True):
        ok = rows[rows["status"] == "ok"]
        facts = ok[FACTS].dropna(how="all").head(1)
        record = {"model": model_id}
        record.update({c: (facts[c].iloc[0] if len(facts) else None) for c in FACTS})
        record["kind"] = None if record["causal"] is None else ("decoder" if record["causal"] else "encoder")
        record["trained"] = "control" if bool(rows["is_control"].fillna(False).any()) else "trained"
        done = set(ok["metric"])
        failed = set(rows.loc[rows["status"] == "failed", "metric"]) - done
        record["status"] = "complete" if done >= set(all_specs) else ("failed" if not done else "partial")
        errors = rows.loc[rows["status"] == "failed", "error"].dropna()
        record["note"] = errors.iloc[0] if len(errors) and record["status"] != "complete" else (
            f"missing: {', '.join(sorted(set(all_specs) - done - failed))}" if record["status"] == "partial" else ""
        )
        model_layers = per_layer[per_layer["model_id"] == model_id]
        for name, spec in all_specs.items():
            value, variant = _headline(model_layers[model_layers["metric"] == name], spec)
            record[headline_label(spec)] = value
            if spec.headline_best_of:
                record[f"{spec.display_name}: best g"] = variant or None
        out.append(record)
    return pd.DataFrame(out)


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
        millions = table["n_params"].astype(float) / 1e6
        keep &= millions.between(*params) | millions.isna()
    if search:
        keep &= table["model"].str.contains(search, case=False, regex=False)
    return table[keep]


def control_for(results: pd.DataFrame, model_id: str) -> str | None:
    """The random-init control of a trained model (or the trained base of a control)."""
    rows = results[results["model_id"] == model_id]
    base = rows["control_of"].dropna()
    if len(base):
        return str(base.iloc[0])
    controls = results.loc[results["control_of"] == model_id, "model_id"].unique()
    return str(controls[0]) if len(controls) else None


def layer_curves(results: pd.DataFrame, model_ids: list[str], metric: str, variant: str,
                 normalise_depth: bool = False) -> pd.DataFrame:
    """(model, layer, depth, value): one curve per model; ``depth`` = layer / L when normalised."""
    rows = layer_rows(results)
    part = rows[rows["model_id"].isin(model_ids) & (rows["metric"] == metric) & (rows["variant"] == variant)]
    part = part[["model_id", "layer", "n_layers", "value"]].rename(columns={"model_id": "model"}).sort_values(["model", "layer"])
    part["depth"] = part["layer"] / part["n_layers"].astype(float) if normalise_depth else part["layer"].astype(float)
    return part[["model", "layer", "depth", "value"]].reset_index(drop=True)


def head_matrix(results: pd.DataFrame, model_id: str, metric: str, variant: str) -> pd.DataFrame:
    """Layer x head values (aggregated over sequences); empty if the metric has no per-head rows."""
    rows = results[(results["model_id"] == model_id) & (results["status"] == "ok") & (results["metric"] == metric)
                   & (results["variant"] == variant) & results["head"].notna() & results["sequence"].isna()]
    if rows.empty:
        return pd.DataFrame()
    return rows.pivot_table(index="layer", columns="head", values="value", aggfunc="first")


def per_head_variants(results: pd.DataFrame, model_id: str) -> list[tuple[str, str]]:
    rows = results[(results["model_id"] == model_id) & results["head"].notna() & results["sequence"].isna()]
    return sorted(set(zip(rows["metric"], rows["variant"])))


def attention_example(results: pd.DataFrame, model_id: str, layer: int, head: int) -> dict[str, object] | None:
    """The stored example sentence's tokens and its raw, effective and null maps (n x n) for one head."""
    rows = results[(results["model_id"] == model_id) & (results["metric"] == "effective_attention")
                   & (results["status"] == "ok")]
    tokens = rows[rows["variant"] == "token"].sort_values("key")
    if tokens.empty:
        return None
    n = len(tokens)
    maps = {}
    for name in ("map_raw", "map_eff"):
        part = rows[(rows["variant"] == name) & (rows["layer"] == layer) & (rows["head"] == head)]
        grid = np.full((n, n), np.nan)
        grid[part["query"].astype(int), part["key"].astype(int)] = part["value"]
        maps[name] = grid
    return {"tokens": tokens["label"].tolist(), "raw": maps["map_raw"], "effective": maps["map_eff"],
            "null": maps["map_raw"] - maps["map_eff"], "sequence": int(tokens["sequence"].iloc[0])}


def latex_table(table: pd.DataFrame) -> str:
    """The main table as a LaTeX tabular (booktabs), headline values to three decimals."""
    columns = ["model", "family", "kind", "trained", "n_params", "n_layers", "n_heads", "d_head"]
    columns += [headline_label(s) for s in specs().values()]
    frame = table[[c for c in columns if c in table]].copy()
    frame["n_params"] = (frame["n_params"].astype(float) / 1e6).map(lambda v: f"{v:.0f}M" if v == v else "")
    frame.columns = [str(c).replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$") for c in frame.columns]
    return frame.to_latex(index=False, float_format="%.3f", na_rep="--", escape=False,
                          column_format="l" * 4 + "r" * (len(frame.columns) - 4)).replace("_", r"\_")
