"""The paper's tables, written by ``idsuite.leaderboard.latex``: the ranked headlines (metrics first,
controls as baselines below, sample sizes in a footer row), the model facts, and a paired
comparison. Numbers come from the ``Board``; nothing is computed here."""

from __future__ import annotations

import pandas as pd

from idsuite.leaderboard.data import LENGTH_BOUND, LENGTH_BOUND_LABEL, TABLE_SPECS, Board, interval_label, sentences_label
from idsuite.leaderboard.latex import RAGGED, Section, Table, breakable, escape, estimate, stacked
from idsuite.results.labels import count_label, headline_label
from idsuite.suite.specs import SPECS
from idsuite.suite.uncertainty import MIN_CLUSTERS

ARROWS = {"higher": r"$\uparrow$", "lower": r"$\downarrow$", "none": ""}


def _header(spec) -> str:
    words = spec.column_name.split(" ")
    first, rest = (words[0], " ".join(words[1:])) if len(words) > 1 else (words[0], "")
    return stacked(escape(first), f"{escape(rest)} {ARROWS[spec.headline_variant().direction]}".strip())


def _rank(low: object, high: object) -> str:
    if pd.isna(low):
        return "--"
    return str(int(low)) if low == high else f"{int(low)}--{int(high)}"


def _count_range(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "--"
    low, high = int(values.min()), int(values.max())
    return str(low) if low == high else f"{low}--{high}"


def headline_table(board: Board, table: pd.DataFrame, rank_by: str, label: str = "tab:idsuite") -> str:
    """Trained models ranked by ``rank_by`` (rank with its bootstrap 95% interval), one column per
    metric headline (value over ``±`` half its 95% interval), the random-init controls below as
    unranked baselines, and the sentences behind each column in a footer row."""
    ranks = board.ranks(rank_by).set_index("model")
    trained = table[table["trained"] == "trained"].copy()
    trained["_order"] = [ranks.at[m, "rank"] if m in ranks.index else 10**6 for m in trained["model"]]
    trained = trained.sort_values(["_order", "model"])

    def cells(row: pd.Series) -> list[str]:
        return [estimate(row[headline_label(s)], row[interval_label(s)]) for s in TABLE_SPECS]

    sections = [Section([[_rank(ranks.at[r["model"], "rank_low"], ranks.at[r["model"], "rank_high"])
                          if r["model"] in ranks.index else "--", breakable(r["model"]), *cells(r)]
                         for _, r in trained.iterrows()])]
    controls = table[table["trained"] == "control"]
    if len(controls):
        sections.append(Section([["--", breakable(r["model"]), *cells(r)] for _, r in controls.iterrows()],
                                "Random-init controls (baselines, not ranked)"))
    footer = [["", "sentences", *[_count_range(table[sentences_label(s)]) for s in TABLE_SPECS]]]
    names = "; ".join(f"{escape(s.column_name)}: {escape(s.display_name)}"
                      + (" (last layer" if s.headline_layer == "last" else " (mean over layers")
                      + (", best mapping $g$)" if s.headline_best_of else ")") for s in TABLE_SPECS)
    spec = SPECS.get(rank_by)
    caption = (f"Identifiability headlines of {len(trained)} trained models and {len(controls)} random-init "
               f"controls, ranked by {escape(spec.display_name)}; rank: its 95\\% interval over bootstrap replicates "
               f"of the sentences. {names}. $\\uparrow$/$\\downarrow$: higher/lower is more identifiable. $\\pm$: half "
               "the 95\\% bootstrap interval over sentences (a control: spanning its init seeds' intervals); none "
               f"below {MIN_CLUSTERS} sentences.")
    bound = table[LENGTH_BOUND_LABEL].dropna() if LENGTH_BOUND_LABEL in table else pd.Series(dtype=float)
    if len(bound):
        caption += (f" {escape(SPECS.get(LENGTH_BOUND).display_name)} is bounded below by the corpus alone: "
                    f"{bound.min():.3f}--{bound.max():.3f} of sentences are longer than the head size $d_h$.")
    many = len(TABLE_SPECS) > 4  # five or more metric columns fit a two-column article's column set smaller and closer
    return Table(["r", RAGGED, *["r"] * len(TABLE_SPECS)], ["rank", "model", *[_header(s) for s in TABLE_SPECS]],
                 sections, caption, label, footer, "scriptsize" if many else "footnotesize", "2pt" if many else "3pt").render()


def facts_table(table: pd.DataFrame, label: str = "tab:idsuite-models") -> str:
    """The models' facts: kind, parameters, layers, heads, head size."""
    rows = [[breakable(r["model"]), escape(r["kind"] if isinstance(r["kind"], str) else "--"),
             count_label(r["n_params"]) or "--",
             *[("--" if pd.isna(r[c]) else str(int(r[c]))) for c in ("n_layers", "n_heads", "d_head")]]
            for _, r in table.iterrows()]
    return Table([RAGGED, "l", "r", "r", "r", "r"], ["model", "kind", "params", "$L$", "$H$", "$d_h$"], [Section(rows)],
                 "The models of Table~\\ref{tab:idsuite}: $L$ layers, $H$ heads of size $d_h$.", label).render()


def paired_table(diff: pd.DataFrame, model_a: str, model_b: str, label: str) -> str:
    """``model_a`` minus ``model_b`` per metric headline (and per layer), with paired intervals;
    ``*``: the interval excludes zero."""
    rows = []
    for row in diff.itertuples(index=False):
        layer = "all" if pd.isna(row.layer) else str(int(row.layer))
        star = "$^*$" if row.excludes_zero else ""
        interval = "--" if pd.isna(row.ci_low) else f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}]"
        rows.append([escape(SPECS.get(row.metric).display_name), layer, f"{row.difference:+.3f}{star}", interval])
    caption = (f"{escape(model_a)} minus {escape(model_b)} on the same sentences, with paired bootstrap 95\\% "
               "intervals; layer ``all'': the metric's headline (last layer or mean over layers); $^*$: the "
               f"interval excludes zero; --: fewer than {MIN_CLUSTERS} shared sentences, no interval.")
    return Table([RAGGED, "r", "r", "r"], ["metric", "layer", "difference", r"95\% interval"], [Section(rows)],
                 caption, label).render()
