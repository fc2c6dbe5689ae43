"""The Streamlit leaderboard: main table, model page, compare view. It reads results only.

Start it with ``idsuite leaderboard --results PATH`` (which runs ``streamlit run`` on this file
with ``IDSUITE_RESULTS`` set).
"""

from __future__ import annotations

import os

import altair as alt
import pandas as pd
import streamlit as st

from leaderboard import data

st.set_page_config(page_title="idsuite leaderboard", layout="wide")
RESULTS = os.environ.get("IDSUITE_RESULTS", "results")


@st.cache_data(show_spinner="Reading results ...")
def _results(root: str) -> pd.DataFrame:
    return data.load_results(root)


@st.cache_data(show_spinner=False)
def _settings(root: str) -> dict[str, list[str]]:
    return data.settings(_results(root))


@st.cache_data(show_spinner=False)
def _selected(root: str, chosen: tuple[tuple[str, str], ...]) -> tuple[pd.DataFrame, int]:
    """The chosen cells' rows, and how many stored cells they leave out."""
    stored = _results(root)
    results = data.select_cells(stored, dict(chosen))
    return results, data.cell_count(stored) - data.cell_count(results)


def _choose_settings(root: str) -> pd.DataFrame:
    """Sidebar: a configuration per metric stored under several (default: the one most models have);
    returns the rows of the chosen cells."""
    chosen = {}
    for metric, options in _settings(root).items():
        if len(options) > 1:
            label = f"{data.specs()[metric].display_name}: configuration" if metric in data.specs() else metric
            names = data.setting_names(options)
            chosen[metric] = st.sidebar.selectbox(label, options, format_func=names.get, key=f"setting-{metric}",
                                                  help="Stored under several settings; the first is the one most models have.")
    results, hidden = _selected(root, tuple(sorted(chosen.items())))
    if hidden:
        st.sidebar.caption(f"{hidden} stored cell(s) of other configurations or older runs are not shown.")
    return results


def _line_chart(curves: pd.DataFrame, x_title: str, y_title: str) -> alt.Chart:
    return (
        alt.Chart(curves)
        .mark_line(point=True)
        .encode(x=alt.X("depth:Q", title=x_title), y=alt.Y("value:Q", title=y_title), color="model:N",
                tooltip=["model", "layer", "value"])
    )


def _heatmap(grid: pd.DataFrame, x: str, y: str, title: str, labels: list[str] | None = None) -> alt.Chart:
    frame = grid.stack().rename("value").reset_index()
    frame.columns = [y, x, "value"]
    if labels is not None:  # token positions as "i:token"
        for column in (x, y):
            frame[column] = [f"{int(i)}:{labels[int(i)]}" for i in frame[column]]
    return (
        alt.Chart(frame, title=title)
        .mark_rect()
        .encode(x=alt.X(f"{x}:O", sort=None), y=alt.Y(f"{y}:O", sort=None),
                color=alt.Color("value:Q", scale=alt.Scale(scheme="viridis")), tooltip=[x, y, "value"])
    )


def leaderboard_view(results: pd.DataFrame) -> None:
    st.header("Leaderboard")
    table = data.model_table(results)
    with st.sidebar:
        families = st.multiselect("Family", sorted(table["family"].dropna().unique()))
        kinds = st.multiselect("Encoder / decoder", ["encoder", "decoder"])
        sizes = table["n_params"].dropna().astype(float) / 1e6
        top = float(max(1.0, sizes.max())) if len(sizes) else 1.0
        params = st.slider("Parameters (millions)", 0.0, top, (0.0, top))
        search = st.text_input("Search models")
    shown = data.filter_table(table, families, kinds, params, search)
    st.caption(f"{len(shown)} of {len(table)} models; click a column to sort. Results: {RESULTS}")
    help_texts = {data.headline_label(s): s.description for s in data.specs().values()}
    config = {name: st.column_config.NumberColumn(name, help=text, format="%.3f") for name, text in help_texts.items()}
    config["n_params"] = st.column_config.NumberColumn("params", format="compact")
    st.dataframe(shown, hide_index=True, column_config=config, width="stretch")
    for _, row in shown[shown["status"] != "complete"].iterrows():
        st.warning(f"{row['model']}: {row['status']}. {row['note']}")
    left, right = st.columns(2)
    left.download_button("Download CSV", shown.to_csv(index=False), "leaderboard.csv", "text/csv")
    right.download_button("Download LaTeX", data.latex_table(shown), "leaderboard.tex", "text/plain")


def model_view(results: pd.DataFrame) -> None:
    st.header("Model")
    table = data.model_table(results)
    usable = table.loc[table["status"] != "failed", "model"].tolist()
    if not usable:
        st.info("No model has finished rows yet.")
        return
    model = st.selectbox("Model", usable)
    control = data.control_for(results, model)
    st.caption(f"Compared with {control}." if control else "No random-init control in these results.")
    with st.expander("Cells shown (provenance)"):
        st.dataframe(data.cell_provenance(results, model), hide_index=True)
    for name, spec in data.specs().items():
        variants = [v for v in spec.variants if not v.startswith(("map_", "token", "offset"))]
        variant = st.selectbox(f"{spec.display_name}: variant", variants, index=variants.index(spec.headline),
                               key=f"variant-{name}")
        curves = data.layer_curves(results, [m for m in (model, control) if m], name, variant)
        if curves.empty:
            st.info(f"No per-layer rows for {spec.display_name}.")
            continue
        st.altair_chart(_line_chart(curves, "layer", variant), width="stretch")
    st.subheader("Heads by layer")
    pairs = data.per_head_variants(results, model)
    if pairs:
        metric, variant = st.selectbox("Per-head quantity", pairs, format_func=lambda p: f"{p[0]}: {p[1]}")
        grid = data.head_matrix(results, model, metric, variant)
        st.altair_chart(_heatmap(grid, "head", "layer", f"{variant} per head"), width="stretch")
    st.subheader("Raw, effective and null attention for the example sentence")
    facts = table.set_index("model").loc[model]
    layers, heads = int(facts["n_layers"] or 1), int(facts["n_heads"] or 1)
    col_l, col_h = st.columns(2)
    layer = col_l.number_input("Layer", 1, layers, 1)
    head = col_h.number_input("Head", 0, heads - 1, 0)
    example = data.attention_example(results, model, int(layer), int(head))
    if example is None:
        st.info("These results hold no example attention maps (re-run with map_max_tokens > 0).")
        return
    st.caption(" ".join(example["tokens"]))
    cols = st.columns(3)
    for col, name in zip(cols, ("raw", "effective", "null")):
        grid = pd.DataFrame(example[name])
        col.altair_chart(_heatmap(grid, "key", "query", name, example["tokens"]), width="stretch")


def compare_view(results: pd.DataFrame) -> None:
    st.header("Compare")
    table = data.model_table(results)
    usable = table.loc[table["status"] != "failed", "model"].tolist()
    chosen = st.multiselect("Models", usable, default=usable[:2])
    normalise = st.checkbox("Normalised depth (layer / number of layers)", value=False)
    if len(chosen) < 2:
        st.info("Choose two or more models.")
        return
    for name, spec in data.specs().items():
        curves = data.layer_curves(results, chosen, name, spec.headline, normalise)
        if curves.empty:
            continue
        st.altair_chart(_line_chart(curves, "layer / L" if normalise else "layer", f"{spec.display_name}: {spec.headline}"),
                        width="stretch")


def main() -> None:
    st.title("Identifiability in transformers")
    view = st.sidebar.radio("View", ["Leaderboard", "Model", "Compare"])
    try:
        stored = _results(RESULTS)
    except Exception as e:  # a damaged file is reported, not a traceback
        st.error(f"Cannot read the results in {RESULTS}: {type(e).__name__}: {e}")
        return
    if stored.empty:
        st.info(f"No results in {RESULTS!r} yet. Run `idsuite run` first, or pass --results PATH.")
        return
    results = _choose_settings(RESULTS)
    {"Leaderboard": leaderboard_view, "Model": model_view, "Compare": compare_view}[view](results)


main()
