"""The Streamlit leaderboard: ranked table with controls as baselines, model page, compare view,
context mixing and an About page. It reads results only.

Start it with ``idsuite leaderboard --results PATH`` (which runs ``streamlit run`` on this file
with ``IDSUITE_RESULTS`` set). Every view, selection and filter is kept in the page's URL
(``st.query_params``), so a view can be shared. Columns, selectors and help texts come from the
metric declarations (``idsuite.suite.specs``): a new metric appears without edits here.
"""

from __future__ import annotations

import os
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from idsuite.leaderboard import charts, data, feasible_example
from idsuite.leaderboard.export import latex_tables
from idsuite.results.identity import short_setting_names
from idsuite.results.labels import DIRECTION_WORDS, INTERVAL_MEANING, count_label, headline_label, variant_label
from idsuite.suite.specs import SPECS
from idsuite.suite.specs.context_mixing import MEASURES
from idsuite.suite.specs.context_mixing import SCORES as SCORE_DECLARATIONS
from idsuite.suite.uncertainty import MIN_CLUSTERS

TITLES = {m.name: m.title for m in MEASURES}  # each context-mixing measure's name in words (its declaration);
# a comment, not a string: Streamlit's magic writes a bare string of the script onto the page

st.set_page_config(page_title="idsuite leaderboard", layout="wide", initial_sidebar_state="collapsed")
RESULTS = os.environ.get("IDSUITE_RESULTS", "idsuite-results")
VIEWS = ["Leaderboard", "Model", "Compare", "Context mixing", "About"]
DOCS = "`docs/metrics.md` in the idsuite repository"  # the package declares no web address to link to


# -- the URL: every selection a view makes is read from and written to st.query_params -----------
def _url(key: str, default: str = "") -> str:
    return st.query_params.get(key, default)


def _url_list(key: str) -> list[str]:
    return [v for v in st.query_params.get_all(key) if v]


def _keep(key: str, value: object) -> None:
    """Write a selection into the URL (a list as repeated keys; an empty one removed)."""
    if isinstance(value, list | tuple):
        if value:
            st.query_params[key] = [str(v) for v in value]
        else:
            st.query_params.pop(key, None)
    elif value in ("", None):
        st.query_params.pop(key, None)
    else:
        st.query_params[key] = str(value)


def _choice(options: list, key: str, default=None):
    """The option named in the URL under ``key`` (else ``default``, else the first)."""
    named = _url(key)
    by_name = {str(o): o for o in options}
    return by_name.get(named, default if default in options else options[0] if options else None)


def _start(widget: str, value: object) -> str:
    """A widget's first value (from the URL) in its session state, set once: a widget whose default
    changed between runs would be a new widget and lose what the reader chose. Returns ``widget``."""
    if widget not in st.session_state:
        st.session_state[widget] = value
    return widget


# -- reading the store (cached: a view redraws without reading it again) -------------------------
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


# -- the leaderboard ---------------------------------------------------------------------------
def _estimate(value: object, half: object) -> str:
    if pd.isna(value):
        return "–"
    return f"{value:.3f}" if pd.isna(half) else f"{value:.3f} ± {half:.3f}"


def _difference(row: pd.Series | None) -> str:
    if row is None or pd.isna(row["difference"]):
        return "–"
    if row["sequences"] < MIN_CLUSTERS:
        return f"{row['difference']:+.3f}"
    return f"{row['difference']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"


def _rank(low: object, high: object) -> str:
    if pd.isna(low):
        return "–"
    return str(int(low)) if low == high else f"{int(low)}–{int(high)}"


def _table_height(rows: int) -> int:
    """Pixels that show every row of a data frame (no scrolling inside the page) up to 40 rows."""
    return 38 + 35 * min(rows, 40)


def _metric_columns(table: pd.DataFrame, board: data.Board, against_control: bool) -> dict[str, list[str]]:
    """Per metric its display text for every row: value ± half-width, or the paired difference to
    the model's own control with its interval."""
    out = {}
    for spec in data.TABLE_SPECS:
        if against_control:
            diffs = board.control_differences(spec.name).set_index("model")
            out[spec.display_name] = [_difference(diffs.loc[m] if m in diffs.index else None) for m in table["model"]]
        else:
            out[spec.display_name] = [_estimate(v, h) for v, h in
                                      zip(table[headline_label(spec)], table[data.interval_label(spec)], strict=True)]
    return out


def _column_help(spec, against_control: bool) -> str:
    variant = spec.headline_variant()
    where = "at the last layer" if spec.headline_layer == "last" else "mean over layers"
    best = "; the best mapping g per model" if spec.headline_best_of else ""
    shown = ("the model minus its own random-init control on the same sentences, paired bootstrap 95% interval"
             if against_control else INTERVAL_MEANING)
    return (f"{spec.description} {variant.unit}, {where}{best}; {DIRECTION_WORDS[variant.direction]}. "
            f"Shown: {shown}. ({spec.paper})")


def _sample_line(table: pd.DataFrame, board: data.Board) -> str:
    parts = []
    for spec in data.TABLE_SPECS:
        counts = table[data.sentences_label(spec)].dropna()
        if len(counts):
            low, high = int(counts.min()), int(counts.max())
            parts.append(f"{spec.display_name} {low}" + (f"–{high}" if high != low else ""))
    corpora = ", ".join(sorted(board.cells["corpus_id"].dropna().unique()))
    return f"Corpus {corpora}; sentences behind each number: " + ", ".join(parts) + "."


def leaderboard_view(board: data.Board) -> None:
    st.header("Leaderboard")
    table = board.model_table()
    families_all = sorted(table["family"].dropna().unique())
    family_col, kind_col, search_col = st.columns([2, 2, 2])
    families = family_col.multiselect("Family", families_all,
                                      key=_start("w-family", [f for f in _url_list("family") if f in families_all]))
    kinds = kind_col.multiselect("Encoder / decoder", ["encoder", "decoder"],
                                 key=_start("w-kind", [k for k in _url_list("kind") if k in ("encoder", "decoder")]))
    search = search_col.text_input("Search models", key=_start("w-search", _url("search")))
    _keep("family", families)
    _keep("kind", kinds)
    _keep("search", search)
    names = {s.name: f"{s.display_name} ({DIRECTION_WORDS[s.headline_variant().direction]})" for s in data.TABLE_SPECS}
    rank_col, show_col = st.columns([3, 3])
    rank_by = rank_col.selectbox("Rank trained models by", list(names), format_func=names.get,
                                 key=_start("w-rank", _choice(list(names), "rank")))
    shows = ["Value ± 95% interval", "Difference to its own random-init control"]
    show = show_col.radio("Numbers shown", shows, key=_start("w-show", _choice(shows, "show")), horizontal=True)
    _keep("rank", rank_by)
    _keep("show", show if show != shows[0] else "")
    against = show == shows[1]
    shown = data.filter_table(table, families, kinds, None, search)
    with st.spinner("Ranking (bootstrap over sentences) ..."):
        ranks = board.ranks(rank_by).set_index("model")
        columns = _metric_columns(shown, board, against)
    spec = SPECS.get(rank_by)
    trained = shown[shown["trained"] == "trained"]
    cards = board.model_cards()
    view = pd.DataFrame({
        "rank": [_rank(ranks.at[m, "rank_low"], ranks.at[m, "rank_high"]) if m in ranks.index else "–"
                 for m in trained["model"]],
        "model": trained["model"].tolist(),
        **{name: [text for text, keep in zip(values, shown["trained"] == "trained", strict=True) if keep]
           for name, values in columns.items()},
        "params": trained["n_params"].map(count_label).tolist(),
        "d_h": trained["d_head"].tolist(),
        "status": trained["status"].tolist(),
        "card": [cards.get(m) for m in trained["model"]],
    })
    order = [ranks.at[m, "rank"] if m in ranks.index else 10**6 for m in trained["model"]]
    view = view.assign(_order=order).sort_values(["_order", "model"]).drop(columns="_order")
    config = {s.display_name: st.column_config.TextColumn(s.display_name, help=_column_help(s, against))
              for s in data.TABLE_SPECS}
    config["model"] = st.column_config.TextColumn("model", width=charts.MODEL_WIDTH, pinned=True)
    config["rank"] = st.column_config.TextColumn(
        "rank", width=charts.RANK_WIDTH, pinned=True, help=f"Rank by {spec.display_name} (1 = best) and its 95% interval over bootstrap "
                               "replicates of the sentences: models whose intervals overlap are not separated.")
    card_column, card = "card", st.column_config.LinkColumn(
        "card", display_text="model card", help="the hub page, or the package's page (a control: its base's)")
    config[card_column] = card
    config["d_h"] = st.column_config.NumberColumn("d_h", help="head size d_h: a sentence longer than d_h tokens "
                                                  "always leaves every head a null space")
    st.caption(f"{len(trained)} trained models, ranked by **{spec.display_name}** "
               f"({DIRECTION_WORDS[spec.headline_variant().direction]}). {_sample_line(shown, board)} "
               + ("Differences to the model's own random-init control (same sentences, paired bootstrap 95% "
                  "interval, the control's init seeds pooled)." if against else f"{INTERVAL_MEANING}.")
               + f" Below {MIN_CLUSTERS} sentences no interval is shown: a bootstrap over so few is no 95% interval.")
    st.dataframe(view, hide_index=True, column_config=config, width="stretch", height=_table_height(len(view)))
    bound = data.LENGTH_BOUND_LABEL
    lengths = shown[[bound, headline_label(SPECS.get(data.LENGTH_BOUND))]].dropna()
    if len(lengths):
        st.caption(f"**{SPECS.get(data.LENGTH_BOUND).display_name}** is mostly a property of the corpus and the head "
                   f"size d_h, not of the weights: a sentence of n > d_h tokens leaves every head a null space. "
                   f"From sentence length alone, these models would score {lengths[bound].min():.3f}"
                   + (f"–{lengths[bound].max():.3f}" if lengths[bound].max() != lengths[bound].min() else "")
                   + "; the column shows the share actually measured.")
    controls = shown[shown["trained"] == "control"]
    if len(controls):
        st.subheader("Baselines: random-init controls (not ranked)")
        base = pd.DataFrame({"control": controls["model"].tolist(), "control of": controls["control_of"].tolist(),
                             **{s.display_name: [_estimate(v, h) for v, h in zip(
                                 controls[headline_label(s)], controls[data.interval_label(s)], strict=True)]
                                for s in data.TABLE_SPECS},
                             "status": controls["status"].tolist(),
                             "card": [cards.get(m) for m in controls["model"]]})
        st.caption("Each model's architecture with random weights, run under several init seeds: what the numbers "
                   "are without training. " + INTERVAL_MEANING + ".")
        st.dataframe(base, hide_index=True, width="stretch", height=_table_height(len(base)),
                     column_config={card_column: card} | {
                         s.display_name: st.column_config.TextColumn(s.display_name, help=_column_help(s, False))
                         for s in data.TABLE_SPECS})
    problems = [f"{row['model']}: {row['status']}. {row['note']}"
                for _, row in shown[shown["status"] != "complete"].iterrows()]
    problems += [f"{row['model']}: stale cells (written by an older metric version): {row['stale']}. "
                 "`idsuite run` recomputes them." for _, row in shown[shown["stale"] != ""].iterrows()]
    if problems:  # one box, a line per model
        st.warning("  \n".join(problems))
    remote = shown.loc[shown["remote_code"], "model"].tolist()
    if remote:
        st.info("Ran the model's own code (trust_remote_code): " + ", ".join(remote))
    with st.expander("All model facts"):
        st.dataframe(shown, hide_index=True, width="stretch")
    columns = st.columns(4)  # each file made when its button is clicked, not on every run: the per-sentence
    models = shown["model"].tolist()  # rows of every shown model are the largest thing the app reads
    columns[0].download_button("Download CSV", lambda: shown.to_csv(index=False), "leaderboard.csv", "text/csv")
    columns[1].download_button("Download LaTeX", lambda: latex_tables(board, shown, rank_by), "leaderboard.tex",
                               "text/plain")
    columns[2].download_button("Per-sentence rows (Parquet)", lambda: board.sentence_rows(models).to_parquet(index=False),
                               "per-sentence.parquet", "application/octet-stream")
    columns[3].download_button("Per-sentence rows (CSV)", lambda: board.sentence_rows(models).to_csv(index=False),
                               "per-sentence.csv", "text/csv")


# -- a model ------------------------------------------------------------------------------------
def model_view(board: data.Board) -> None:
    st.header("Model")
    usable = board.models()
    if not usable:
        st.info("No model has finished rows yet.")
        return
    model = st.selectbox("Model", usable, key=_start("w-model", _choice(usable, "model")))
    _keep("model", model)
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
        variant = st.selectbox(f"{spec.display_name}: quantity", variants, index=variants.index(spec.headline),
                               format_func=lambda v, spec=spec: variant_label(spec, v), key=f"variant-{name}")
        curves = board.layer_curves(pair, name, variant)
        if curves.empty:
            st.info(f"No per-layer rows for {spec.display_name}.")
            continue
        st.altair_chart(charts.line_chart(curves, f"{spec.display_name} per layer", charts.axis_title(spec, variant),
                                          controls=controls), width="stretch")
    st.subheader("Heads by layer")
    pairs = board.per_head_variants(model)
    pairs = sorted(pairs, key=lambda p: p[0] == data.LENGTH_BOUND)  # the corpus-bound quantity last: flat by design
    if pairs:
        metric, variant = st.selectbox("Per-head quantity", pairs,
                                       format_func=lambda p: f"{SPECS.get(p[0]).display_name}: {variant_label(SPECS.get(p[0]), p[1])}")
        grid = board.head_matrix(model, metric, variant)
        if len(grid):
            st.altair_chart(charts.heatmap(grid, "head", "layer", f"{variant_label(SPECS.get(metric), variant)}, {model}",
                                           direction=SPECS.get(metric).variant(variant).direction), width="content")
    st.subheader("Raw, effective and null attention of the example sentence")
    facts = board.model_table().set_index("model").loc[model]
    layers, heads = int(facts["n_layers"] or 1), int(facts["n_heads"] or 1)
    col_l, col_h = st.columns(2)
    layer = col_l.number_input("Layer", 1, layers, 1)
    head = col_h.number_input("Head", 0, heads - 1, 0)
    example = board.attention_example(model, int(layer), int(head))
    if example is None:
        st.info("These results hold no example attention maps (re-run with map_max_tokens > 0).")
    else:
        n, d_head = len(example["tokens"]), facts["d_head"]
        st.caption(f"Sentence {example['sequence']}, n = {n} tokens, head size d_h = {d_head}: "
                   + (f"its attention has a null space of at least n - d_h = {n - int(d_head)} dimensions. "
                      if pd.notna(d_head) and n > int(d_head) else "not longer than d_h, so no null space is forced. ")
                   + "Raw = effective + null; raw and effective share one colour scale, the signed null part a "
                     "diverging one (0 white).")
        st.altair_chart(charts.attention_maps(example, f"layer {layer}, head {head}"))
    feasible_example.show(board, model, int(layer), int(head))


# -- compare ------------------------------------------------------------------------------------
def compare_view(board: data.Board) -> None:
    st.header("Compare")
    usable = board.models()
    named = [m for m in _url_list("models") if m in usable]
    chosen = st.multiselect("Models (the first minus the second is the paired difference)", usable,
                            key=_start("w-models", named or usable[:2]))
    _keep("models", chosen)
    if len(chosen) < 2:
        st.info("Choose two or more models.")
        return
    st.subheader(f"Paired difference: {chosen[0]} minus {chosen[1]}")
    st.caption("On the sentences both models were measured on, with a paired bootstrap 95% interval (a control's "
               f"init seeds pooled). {charts.SIGNIFICANCE_MEANING}")
    for spec in data.PAIRED_SPECS:
        diff = board.paired(chosen[0], chosen[1], spec.name)
        if diff.empty:
            st.info(f"{spec.display_name}: no shared sentences, or the models have different numbers of layers.")
            continue
        head = diff[diff["layer"].isna()].iloc[0]
        where = "last layer" if spec.headline_layer == "last" else "mean over layers"
        direction = DIRECTION_WORDS[spec.headline_variant().direction]
        sentences = int(head["sequences"])
        if pd.isna(head["ci_low"]):
            verdict = f" on {sentences} sentences — too few for a 95% interval (fewer than {MIN_CLUSTERS})"
        else:
            verdict = (f" [{head['ci_low']:+.3f}, {head['ci_high']:+.3f}] on {sentences} sentences — the interval "
                       + ("excludes zero" if head["excludes_zero"] else "includes zero"))
        st.markdown(f"**{spec.display_name}** ({where}, {direction}): {head['difference']:+.3f}{verdict}")
        st.altair_chart(charts.difference_chart(diff, f"{spec.display_name}: {chosen[0]} minus {chosen[1]} per layer",
                                                charts.axis_title(spec, spec.headline, difference=True)),
                        width="stretch")
    section = st.expander("Each model's curves", key="curves", bind="query-params")  # its state in the URL
    if not section.open:  # drawn only when opened: six charts that repeat the Model view, most of this view's time
        return
    with section:
        normalise = st.checkbox("Normalised depth (layer / number of layers)",
                                key=_start("w-depth", _url("depth") == "normalised"))
        _keep("depth", "normalised" if normalise else "")
        controls = frozenset(m for m in chosen if board.base_of(m) is not None)
        for name, spec in SPECS.items():
            curves = board.layer_curves(chosen, name, spec.headline, normalise)
            if curves.empty:
                continue
            st.altair_chart(charts.line_chart(curves, f"{spec.display_name} per layer",
                                              charts.axis_title(spec, spec.headline), normalise, controls),
                            width="stretch")


# -- context mixing -----------------------------------------------------------------------------
SCORES = {name: f"{text} ({', '.join(q for q in (unit, DIRECTION_WORDS[direction]) if q)})"
          for name, (text, direction, _, unit) in SCORE_DECLARATIONS.items()}


def mixing_view(board: data.Board) -> None:
    st.header("Context mixing")
    st.caption("How well each context-mixing measure agrees with Jacobian attribution: rolled out against c^l "
               "(global), or one layer against the one-layer Jacobian (local). Scores are means over the scored "
               f"tokens; see {DOCS}.")
    left, right = st.columns(2)
    score = left.selectbox("Score", list(SCORES), format_func=SCORES.get, key=_start("w-score", _choice(list(SCORES), "score")))
    places = ["attribution c^l (rolled out)", "one-layer Jacobian (local)"]
    local = right.radio("Against", places, horizontal=True, key=_start("w-against", _choice(places, "against")))
    _keep("score", score)
    _keep("against", local if local != places[0] else "")
    table = board.mixing_agreement(score, local.startswith("one-layer"))
    if table.empty:
        st.info("These results hold no context-mixing cells.")
        return
    usable = data.reader_order(table["model"].unique())
    direction = SCORE_DECLARATIONS[score][1]
    for column, where in (("last", "last layer"), ("mean", "mean over layers")):
        named = table.rename(columns={column: "value"}).assign(measure=table["measure"].map(TITLES))
        st.altair_chart(charts.agreement_heatmap(named, usable, list(TITLES.values()),
                                                 f"{SCORES[score]}, {where}", direction), width="stretch")
    model = st.selectbox("Model", usable, key=_start("w-mixing-model", _choice(usable, "model")))
    _keep("model", model)
    where = ":local" if local.startswith("one-layer") else ""
    curves = pd.concat([board.layer_curves([model], "context_mixing", f"{m.name}{where}/{score}").assign(model=m.title)
                        for m in MEASURES], ignore_index=True)
    st.altair_chart(charts.line_chart(curves, f"{SCORES[score]} per layer, {model} (one line per measure)",
                                      SCORES[score]), width="stretch")
    n_layers = int(board.model_table().set_index("model").loc[model, "n_layers"] or 1)
    layer = st.number_input("Layer", 1, n_layers, n_layers, key="mixing-layer")
    matrices = board.mixing_matrices(model, int(layer))
    if not matrices:
        st.info("No example matrices stored for this model.")
        return
    st.caption("The example sentence: each measure's rolled-out matrix beside the attribution it is scored against, "
               "on one colour scale (row: query token, column: key token).")
    named = {("attribution" if name == "attribution" else TITLES[name]): grid for name, grid in matrices.items()}
    st.altair_chart(charts.matrix_grid(named, ["attribution", *TITLES.values()],
                                       board.mixing_tokens(model), f"layer {layer}"))


# -- about --------------------------------------------------------------------------------------
def about_view(board: data.Board) -> None:
    st.header("About these results")
    cells = board.cells[board.cells["ok"]]
    written = cells["written"]
    st.markdown(f"Results in `{RESULTS}`: {cells['model_id'].nunique()} models, written "
                f"{written.min():%Y-%m-%d} to {written.max():%Y-%m-%d} (UTC) by idsuite "
                f"{', '.join(sorted(cells['suite_version'].dropna().unique()))}; corpus "
                f"{', '.join(sorted(cells['corpus_id'].dropna().unique()))}. The metrics are defined in {DOCS}.")
    st.markdown(f"**±**: {INTERVAL_MEANING}. Below {MIN_CLUSTERS} sentences no interval is shown. **Rank**: the "
                "2.5% and 97.5% percentiles of a model's rank over bootstrap replicates that redraw the sentences "
                "for all models at once. **Controls** (random weights of the same architecture) are baselines, "
                "never ranked.")
    table = board.model_table()
    for spec in SPECS.values():
        variant = spec.headline_variant()
        where = "last layer" if spec.headline_layer == "last" else "mean over layers"
        counts = table[data.sentences_label(spec)].dropna() if data.sentences_label(spec) in table else pd.Series()
        sample = f"{int(counts.min())}–{int(counts.max())} sentences per model" if len(counts) else ""
        st.markdown(f"- **{spec.display_name}** (`{spec.name}`): {spec.description} Headline: {variant.description}, "
                    f"{where}; {DIRECTION_WORDS[variant.direction] or 'no direction'}. {sample} ({spec.paper})")


def main() -> None:
    st.title("Identifiability in transformers")
    view = st.radio("View", VIEWS, horizontal=True, label_visibility="collapsed",
                    key=_start("w-view", _choice(VIEWS, "view")))
    _keep("view", view)
    board = _choose_board(RESULTS)
    if board.stored.empty:
        st.info(f"No results in {RESULTS!r} yet. Run `idsuite run` first, or pass --results PATH.")
        return
    views = {"Leaderboard": leaderboard_view, "Model": model_view, "Compare": compare_view,
             "Context mixing": mixing_view, "About": about_view}
    with st.spinner(f"Drawing {view} ..."):
        views[view](board)


alt.data_transformers.disable_max_rows()
main()
