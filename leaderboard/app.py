"""The Streamlit leaderboard: main table, model page, compare view. It reads results only.

Start it with ``idsuite leaderboard --results PATH`` (which runs ``streamlit run`` on this file
with ``IDSUITE_RESULTS`` set).
"""

from __future__ import annotations

import os
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from idsuite.leaderboard import data, feasible_example
from idsuite.results.identity import short_setting_names
from idsuite.results.summary import headline_label
from idsuite.suite.specs import SPECS
from idsuite.suite.specs.context_mixing import MEASURES

st.set_page_config(page_title="idsuite leaderboard", layout="wide", initial_sidebar_state="collapsed")
RESULTS = os.environ.get("IDSUITE_RESULTS", "idsuite-results")


def _store_signature(root: str) -> tuple[int, int]:
    """Changes whenever a cell is added or replaced (number of summary files, newest change)."""
    count, newest = 0, 0
    summaries = Path(root) / "summaries"
    if summaries.is_dir():
        for folder in os.scandir(summaries):
            for entry in os.scandir(folder.path) if folder.is_dir() else ():
                count += 1
                newest = max(newest, entry.stat().st_mtime_ns)
    return count, newest


@st.cache_resource(show_spinner="Reading results ...", max_entries=16)
def _board(root: str, chosen: tuple[tuple[str, str], ...], signature: tuple[int, int]) -> data.Board:
    return data.Board(root, dict(chosen))


def _choose_board(root: str) -> data.Board:
    """Above the views: a setting per metric stored under several (default: the one most models
    have); returns the board of the chosen cells."""
    signature = _store_signature(root)
    settings = _board(root, (), signature).settings
    several = {metric: options for metric, options in settings.items() if len(options) > 1}
    chosen = {}
    if several:
        with st.expander(f"Configurations: {len(several)} metric(s) stored under several settings"):
            for metric, options in several.items():
                label = f"{SPECS.get(metric).display_name}: configuration" if metric in SPECS else metric
                names = short_setting_names(options)
                chosen[metric] = st.selectbox(label, options, format_func=names.get, key=f"setting-{metric}",
                                              help="Stored under several settings; the first is the one most models have.")
    board = _board(root, tuple(sorted(chosen.items())), signature)
    if board.hidden:
        st.caption(f"{board.hidden} stored cell(s) of other configurations or older runs are not shown.")
    if board.query.bad_files:
        st.warning("Unreadable files skipped: " + ", ".join(p.name for p, _ in board.query.bad_files))
    return board


def _layer_axis(normalise: bool) -> alt.X:
    if normalise:
        return alt.X("depth:Q", title="layer / L", axis=alt.Axis(format=".2f"))
    return alt.X("depth:Q", title="layer", axis=alt.Axis(format="d", tickMinStep=1))


def _line_chart(curves: pd.DataFrame, title: str, y_title: str, normalise: bool = False,
                controls: frozenset[str] = frozenset()) -> alt.Chart:
    """One line per model with its band (the 95% interval; a control's: the range over its init
    seeds); controls drawn wide, dashed and pale beneath, so that a trained model's line stays
    visible on top of an equal control."""
    frame = curves.assign(role=["control" if m in controls else "trained" for m in curves["model"]])
    legend = alt.Legend(orient="bottom", labelLimit=0, columns=1, title=None, symbolOpacity=1)  # not the band's
    base = alt.Chart(frame, title=title).encode(
        x=_layer_axis(normalise), color=alt.Color("model:N", legend=legend),
        tooltip=["model", "layer", alt.Tooltip("value:Q", format=".4f"), alt.Tooltip("ci_low:Q", format=".4f"),
                 alt.Tooltip("ci_high:Q", format=".4f")])
    band = base.mark_area(opacity=0.18).encode(y=alt.Y("ci_low:Q", title=y_title), y2="ci_high:Q")
    line = base.encode(y=alt.Y("value:Q", title=y_title))
    control = line.transform_filter(alt.datum.role == "control").mark_line(
        strokeWidth=6, opacity=0.35, strokeDash=[6, 3], point=alt.OverlayMarkDef(size=60, opacity=0.5))
    trained = line.transform_filter(alt.datum.role == "trained").mark_line(strokeWidth=2, point=True)
    return alt.layer(band, control, trained)


def _difference_chart(diff: pd.DataFrame, title: str) -> alt.Chart:
    """A paired difference per layer with its interval; layers whose interval excludes zero filled."""
    frame = diff[diff["layer"].notna()].astype({"layer": int, "excludes_zero": bool})
    frame = frame.assign(depth=frame["layer"].astype(float),
                         significant=frame["excludes_zero"].map({True: "interval excludes 0", False: "includes 0"}))
    base = alt.Chart(frame, title=title).encode(x=_layer_axis(False))
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="gray").encode(y="y:Q")
    bars = base.mark_errorbar().encode(y=alt.Y("ci_low:Q", title="difference"), y2="ci_high:Q")
    points = base.mark_point(size=70, filled=True).encode(
        y="difference:Q", shape=alt.Shape("significant:N", legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["layer", alt.Tooltip("difference:Q", format=".4f"), alt.Tooltip("ci_low:Q", format=".4f"),
                 alt.Tooltip("ci_high:Q", format=".4f"), "sequences"])
    return alt.layer(zero, bars, points)


def _heatmap(grid: pd.DataFrame, x: str, y: str, title: str, labels: list[str] | None = None) -> alt.Chart:
    """Cells of ``grid`` (rows ``y``, columns ``x``), axes in index order (token positions as
    ``i:token`` in position order when ``labels`` are given)."""
    frame = grid.stack().rename("value").reset_index()
    frame.columns = [y, x, "value"]
    order: dict[str, list] = {x: sorted(frame[x].unique()), y: sorted(frame[y].unique())}
    if labels is not None:
        for column in (x, y):
            frame[column] = [f"{int(i)}:{labels[int(i)]}" for i in frame[column]]
            order[column] = [f"{i}:{token}" for i, token in enumerate(labels)]
    return (
        alt.Chart(frame, title=title)
        .mark_rect()
        .encode(x=alt.X(f"{x}:O", sort=order[x]), y=alt.Y(f"{y}:O", sort=order[y]),
                color=alt.Color("value:Q", scale=alt.Scale(scheme="viridis")),
                tooltip=[x, y, alt.Tooltip("value:Q", format=".4f")])
    )


def _legend() -> str:
    """What each headline column is: where it is taken, its unit and which way is more identifiable."""
    parts = []
    for spec in data.TABLE_SPECS:
        variant = spec.headline_variant()
        where = "last layer" if spec.headline_layer == "last" else "mean over layers"
        best = ", best g" if spec.headline_best_of else ""
        direction = {"higher": "higher = more identifiable", "lower": "lower = more identifiable"}.get(variant.direction, "")
        parts.append(f"**{spec.display_name}**: {variant.unit}, {where}{best}; {direction}")
    return " · ".join(parts)


def _with_intervals(table: pd.DataFrame, full: pd.DataFrame):
    """The table for display: each headline shown as ``value ± half-width`` while its column keeps the
    number, so that sorting stays numeric (a pandas Styler's display text)."""
    styler = table.style
    for spec in data.TABLE_SPECS:
        column, half = headline_label(spec), data.interval_label(spec)
        if column not in table:
            continue
        for row in table.index:
            value, width = full.at[row, column], full.at[row, half]
            text = "–" if pd.isna(value) else f"{value:.3f}" + ("" if pd.isna(width) else f" ± {width:.3f}")
            styler = styler.format(lambda _, text=text: text, subset=pd.IndexSlice[[row], [column]])
    return styler


def leaderboard_view(board: data.Board) -> None:
    st.header("Leaderboard")
    table = board.model_table()
    family_col, kind_col, size_col, search_col = st.columns([2, 2, 3, 2])
    families = family_col.multiselect("Family", sorted(table["family"].dropna().unique()))
    kinds = kind_col.multiselect("Encoder / decoder", ["encoder", "decoder"])
    sizes = table["n_params"].dropna().astype(float) / 1e6  # Int64: dropna leaves numbers only
    top = float(max(1.0, sizes.max())) if len(sizes) else 1.0
    params = size_col.slider("Parameters (millions)", 0.0, top, (0.0, top))
    search = search_col.text_input("Search models")
    shown = data.filter_table(table, families, kinds, params, search)
    facts = st.toggle("Show all model facts", value=False, help="family, type, layers, heads, head size, ...")
    hidden = set(data.DETAIL_COLUMNS) | {data.interval_label(s) for s in data.TABLE_SPECS}
    columns = [c for c in shown.columns if (facts and not c.endswith(": ±")) or c not in hidden and not c.endswith(": best g")]
    st.caption(f"{len(shown)} of {len(table)} models; click a column title to sort. Results: {RESULTS}")
    st.caption(_legend() + " · ± : half the 95% bootstrap interval over sentences (a control run under several "
               "init seeds: half their range)")
    config = {headline_label(s): st.column_config.NumberColumn(
        s.display_name + (", last" if s.headline_layer == "last" else ""),
        help=f"{headline_label(s)}, ± half its 95% interval. {s.description} ({s.paper})") for s in data.TABLE_SPECS}
    config["n_params"] = st.column_config.NumberColumn("params", format="compact", help="number of parameters")
    config["model"] = st.column_config.TextColumn("model", pinned=True)
    st.dataframe(_with_intervals(shown[columns], shown), hide_index=True, column_config=config, width="stretch")
    for _, row in shown[shown["status"] != "complete"].iterrows():
        st.warning(f"{row['model']}: {row['status']}. {row['note']}")
    for _, row in shown[shown["stale"] != ""].iterrows():
        st.warning(f"{row['model']}: stale cells (written by an older metric version): {row['stale']}. "
                   "`idsuite run` recomputes them.")
    remote = shown.loc[shown["remote_code"], "model"].tolist()
    if remote:
        st.info("Ran the model's own code (trust_remote_code): " + ", ".join(remote))
    left, right = st.columns(2)
    left.download_button("Download CSV", shown.to_csv(index=False), "leaderboard.csv", "text/csv")
    right.download_button("Download LaTeX", data.latex_table(shown, "Identifiability headlines."), "leaderboard.tex",
                          "text/plain")


def model_view(board: data.Board) -> None:
    st.header("Model")
    usable = board.models()
    if not usable:
        st.info("No model has finished rows yet.")
        return
    model = st.selectbox("Model", usable)
    control = board.control_for(model)
    base = board.base_of(model)
    if base is not None:
        st.caption(f"A random-init control of {base}." + ("" if control else f" {base} is not in these results."))
    else:
        st.caption(f"Compared with its random-init control {control}." if control else
                   "No random-init control of this model in these results.")
    with st.expander("Cells shown (provenance)"):
        st.dataframe(board.provenance(model), hide_index=True)
    pair = [m for m in (model, control) if m]
    controls = frozenset(m for m in pair if board.base_of(m) is not None)
    for name, spec in SPECS.items():
        variants = spec.variants_of("layer")
        variant = st.selectbox(f"{spec.display_name}: variant", variants, index=variants.index(spec.headline),
                               key=f"variant-{name}")
        curves = board.layer_curves(pair, name, variant)
        if curves.empty:
            st.info(f"No per-layer rows for {spec.display_name}.")
            continue
        unit = spec.variants[variant].unit
        st.altair_chart(_line_chart(curves, f"{spec.display_name}: {variant} per layer", f"{variant} ({unit})" if unit
                                    else variant, controls=controls), width="stretch")
    st.subheader("Heads by layer")
    pairs = board.per_head_variants(model)
    if pairs:
        metric, variant = st.selectbox("Per-head quantity", pairs, format_func=lambda p: f"{p[0]}: {p[1]}")
        grid = board.head_matrix(model, metric, variant)
        if len(grid):
            st.altair_chart(_heatmap(grid, "head", "layer", f"{variant} per head and layer ({model})"), width="stretch")
    st.subheader("Raw, effective and null attention for the example sentence")
    facts = board.model_table().set_index("model").loc[model]
    layers, heads = int(facts["n_layers"] or 1), int(facts["n_heads"] or 1)
    col_l, col_h = st.columns(2)
    layer = col_l.number_input("Layer", 1, layers, 1)
    head = col_h.number_input("Head", 0, heads - 1, 0)
    example = board.attention_example(model, int(layer), int(head))
    if example is None:
        st.info("These results hold no example attention maps (re-run with map_max_tokens > 0).")
    else:
        st.caption(f"Sequence {example['sequence']}, {len(example['tokens'])} tokens: " + " ".join(example["tokens"]))
        cols = st.columns(3)
        for col, name in zip(cols, ("raw", "effective", "null"), strict=True):
            grid = pd.DataFrame(example[name])
            col.altair_chart(_heatmap(grid, "key", "query", f"{name} attention, layer {layer}, head {head}",
                                      example["tokens"]), width="stretch")
    feasible_example.show(board, model, int(layer), int(head))


def compare_view(board: data.Board) -> None:
    st.header("Compare")
    usable = board.models()
    chosen = st.multiselect("Models", usable, default=usable[:2])
    normalise = st.checkbox("Normalised depth (layer / number of layers)", value=False)
    if len(chosen) < 2:
        st.info("Choose two or more models.")
        return
    controls = frozenset(m for m in chosen if board.base_of(m) is not None)
    for name, spec in SPECS.items():
        curves = board.layer_curves(chosen, name, spec.headline, normalise)
        if curves.empty:
            continue
        st.altair_chart(_line_chart(curves, f"{spec.display_name}: {spec.headline}", spec.headline, normalise, controls),
                        width="stretch")
    st.subheader(f"Paired difference: {chosen[0]} minus {chosen[1]}")
    st.caption("On the sentences both models were measured on, with a paired bootstrap 95% interval (a control's "
               "init seeds pooled); filled points: layers where the interval excludes zero.")
    for spec in data.PAIRED_SPECS:
        name = spec.name
        diff = board.paired(chosen[0], chosen[1], name)
        if diff.empty:
            st.info(f"{spec.display_name}: no shared sentences, or the models have different numbers of layers.")
            continue
        head = diff[diff["layer"].isna()].iloc[0]
        where = "last layer" if spec.headline_layer == "last" else "mean over layers"
        st.caption(f"{spec.display_name} ({spec.headline}, {where}): {head['difference']:+.3f} "
                   f"[{head['ci_low']:+.3f}, {head['ci_high']:+.3f}] on {int(head['sequences'])} sentences"
                   + (" (excludes zero)" if head["excludes_zero"] else ""))
        st.altair_chart(_difference_chart(diff, f"{spec.display_name}: {spec.headline}, {chosen[0]} - {chosen[1]}"),
                        width="stretch")


def mixing_view(board: data.Board) -> None:
    st.header("Context mixing")
    st.caption("How well each context-mixing measure agrees with Jacobian attribution: rolled out against c^l "
               "(global), or one layer against the one-layer Jacobian (local). Scores are means over the scored "
               "tokens; see docs/metrics.md.")
    left, right = st.columns(2)
    score = left.selectbox("Score", ["spearman", "top_agreement", "own_error"])
    local = right.radio("Against", ["attribution c^l (rolled out)", "one-layer Jacobian (local)"], horizontal=True)
    table = board.mixing_agreement(score, local.startswith("one-layer"))
    if table.empty:
        st.info("These results hold no context-mixing cells.")
        return
    usable = data.reader_order(table["model"].unique())
    axes = {"x": alt.X("measure:N", sort=list(MEASURES), axis=alt.Axis(labelLimit=0)),
            "y": alt.Y("model:N", sort=usable, axis=alt.Axis(labelLimit=0))}  # whole model names, never cut
    for column, where in (("last", "last layer"), ("mean", "mean over layers")):
        frame = table.rename(columns={column: "value"})
        chart = alt.Chart(frame, title=f"{score}, {where}").mark_rect().encode(
            **axes, color=alt.Color("value:Q", scale=alt.Scale(scheme="viridis")),
            tooltip=["model", "measure", alt.Tooltip("value:Q", format=".3f")])
        values = frame["value"].dropna()  # numbers white on viridis' dark half, black on its light one
        middle = float(values.min() + values.max()) / 2 if len(values) else 0.0
        text = alt.Chart(frame).mark_text(fontSize=11).encode(
            **axes, text=alt.Text("value:Q", format=".2f"),
            color=alt.condition(alt.datum.value < middle, alt.value("white"), alt.value("black")))
        st.altair_chart(chart + text, width="stretch")
    model = st.selectbox("Model", usable, key="mixing-model")
    where = ":local" if local.startswith("one-layer") else ""
    curves = pd.concat([board.layer_curves([model], "context_mixing", f"{m}{where}/{score}").assign(model=m)
                        for m in MEASURES], ignore_index=True)
    st.altair_chart(_line_chart(curves, f"{score} per layer, {model} (one line per measure)", score), width="stretch")
    n_layers = int(board.model_table().set_index("model").loc[model, "n_layers"] or 1)
    layer = st.number_input("Layer", 1, n_layers, n_layers, key="mixing-layer")
    matrices = board.mixing_matrices(model, int(layer))
    if not matrices:
        st.info("No example matrices stored for this model.")
        return
    st.caption("The example sentence: each measure's rolled-out matrix beside the attribution it is scored against.")
    names = ["attribution", *MEASURES]
    columns = st.columns(4)
    for i, name in enumerate(n for n in names if n in matrices):
        columns[i % 4].altair_chart(_heatmap(pd.DataFrame(matrices[name]), "key", "query", f"{name}, layer {layer}"),
                                    width="stretch")


def main() -> None:
    st.title("Identifiability in transformers")
    view = st.radio("View", ["Leaderboard", "Model", "Compare", "Context mixing"], horizontal=True,
                    label_visibility="collapsed")
    board = _choose_board(RESULTS)
    if board.stored.empty:
        st.info(f"No results in {RESULTS!r} yet. Run `idsuite run` first, or pass --results PATH.")
        return
    views = {"Leaderboard": leaderboard_view, "Model": model_view, "Compare": compare_view, "Context mixing": mixing_view}
    views[view](board)


main()
