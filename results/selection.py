"""Which stored cells to compare: one setting per metric, one set of weights and the newest cell
per model, staleness.

All functions take the cell list of ``ResultQuery.cells()`` (one row per cell) and return cell
lists, so they never touch result rows.
"""

from __future__ import annotations

import pandas as pd

from idsuite.results.identity import SUBJECT_COLUMNS, UNIDENTIFIED, setting_label
from idsuite.results.schema import SETTING_COLUMNS
from idsuite.suite.specs import SPECS


def with_settings(cells: pd.DataFrame) -> pd.DataFrame:
    """``cells`` with ``setting`` (the readable label of its setting) and ``stale``: written by an
    older version of its metric than the installed one, with no cell of the installed version in
    the same setting for the same model (a recomputed cell is no longer stale; unknown metrics are
    never stale)."""
    out = cells.copy()
    out["setting"] = [setting_label(dict(zip(SETTING_COLUMNS, row, strict=True)))
                      for row in out[SETTING_COLUMNS].itertuples(index=False)] if len(out) else []
    installed = out["metric"].map({name: spec.version for name, spec in SPECS.items()})
    older = installed.notna() & out["metric_version"].notna() & (out["metric_version"] < installed)
    where = ["model_id", "metric", "setting"]
    current = pd.MultiIndex.from_frame(out.loc[out["metric_version"] == installed, where])
    out["stale"] = older & ~pd.MultiIndex.from_frame(out[where]).isin(current)
    return out


def ranked_settings(cells: pd.DataFrame) -> dict[str, list[str]]:
    """Per metric, the settings stored: the one with finished cells for the most models first (ties:
    the most recently written first)."""
    if cells.empty:
        return {}
    cells = cells if "setting" in cells else with_settings(cells)
    by = ["metric", "setting"]
    ranked = pd.DataFrame({
        "models": cells[cells["ok"]].groupby(by)["model_id"].nunique(),
        "written": cells.groupby(by)["written"].max(),
    }).fillna({"models": 0}).sort_values(["models", "written"], ascending=False)
    return {str(metric): part.index.get_level_values("setting").tolist()
            for metric, part in ranked.groupby(level="metric", sort=True)}


def select(cells: pd.DataFrame, chosen: dict[str, str] | None = None) -> pd.DataFrame:
    """The cells to compare models on: per metric one setting (``chosen[metric]``, else the first of
    ``ranked_settings``); per model (per init seed of a control) one set of weights, those of its
    most recently written cell (a failure whose weights could not even be identified stands for
    none: ``UNIDENTIFIED``), so that a row, a headline or a comparison is never built from two
    sets of weights; and of those, per metric, its cell of the newest metric version, the most
    recently written of them (a re-run under newer library versions or another dtype supersedes
    the older cell). ``mixed_weights``: the model has newer cells of other weights than those
    chosen in some metric (a branch moved, files changed, an interrupted re-run), left out. A
    model with no cell in a metric's setting has no cell of that metric."""
    if cells.empty:
        return cells.assign(mixed_weights=pd.Series(dtype=bool))
    cells = cells if "setting" in cells else with_settings(cells)
    wanted = {metric: (chosen or {}).get(metric) or options[0] for metric, options in ranked_settings(cells).items()}
    cells = cells[cells["setting"] == cells["metric"].map(wanted)].sort_values(["written", "cell_key"])
    subjects = _subjects(cells)
    identified = cells["model_fingerprint"] != UNIDENTIFIED
    weights = dict(zip(subjects[identified], cells.loc[identified, "model_fingerprint"], strict=True))  # the newest wins
    chosen_weights = subjects.map(weights)
    mine = cells[chosen_weights.isna() | (cells["model_fingerprint"] == chosen_weights)]
    # per metric the newest identified cell of any weights: where it is not of the chosen weights, they disagree
    latest = cells[identified].drop_duplicates([*SUBJECT_COLUMNS, "metric"], keep="last")
    mixed = set(_subjects(latest)[latest["model_fingerprint"] != _subjects(latest).map(weights)])
    # a model's cells of its newest metric version only (a stale cell never hides a recomputed one) ...
    version = mine.groupby(["model_id", "metric"])["metric_version"].transform("max")
    mine = mine[mine["metric_version"].fillna(-1) == version.fillna(-1)]
    # ... and of those the newest written one per init seed (a control keeps one cell per seed)
    subject = [*SUBJECT_COLUMNS, "metric"]
    out = mine.drop_duplicates(subject, keep="last").sort_values(subject, ignore_index=True)
    return out.assign(mixed_weights=_subjects(out).isin(mixed).to_numpy())


def _subjects(cells: pd.DataFrame) -> pd.Series:
    """Each cell's subject (model id, init seed or -1) as one hashable value."""
    seeds = cells["init_seed"].astype("Float64").fillna(-1).astype(int)
    return pd.Series(list(zip(cells["model_id"], seeds, strict=True)), index=cells.index, dtype=object)
