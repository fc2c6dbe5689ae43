"""The job loop on tiny from-config models: complete cells, failures recorded, resume without recompute."""

import pandas as pd
import pytest

import idsuite.runners.preparation
from idsuite.results.query import ResultQuery
from idsuite.results.schema import COLUMNS
from idsuite.results.store import ResultStore
from idsuite.runners.batching import length_batches
from idsuite.runners.failures import RunInterrupted
from idsuite.runners.jobs import Runner
from idsuite.runners.models.zoo import load_zoo
from idsuite.runners.probing.corpus import Corpus
from idsuite.runners.run_config import RunConfig
from idsuite.suite.specs import SPECS
from tests.conftest import SENTENCES

FAST = {
    "context_mixing": {"max_sequences": 2, "max_tokens": 12},
    "token_identifiability": {"mlp_max_epochs": 5, "max_train_tokens": 200},
    "hidden_token_attribution": {"min_sequences": 2, "max_sequences": 2, "max_tokens": 10},
    "effective_attention": {"map_max_tokens": 8},
    "feasible_attention": {"min_sequences": 2, "max_sequences": 2, "max_tokens": 12, "rows_per_sequence": 2},
}


@pytest.fixture
def zoo(tmp_path, tiny_bert_dir, tiny_llama_dir):
    (tmp_path / "models.yaml").write_text(f"""
models:
  - id: tiny
    source: local
    path: {tiny_bert_dir}
    family: bert
  - id: tiny-decoder
    source: local
    path: {tiny_llama_dir}
    family: llama
  - id: tiny-random-init
    source: random_init
    base: tiny
    init_seed: 3
  - id: unreachable-hub-model
    source: hub
    repo: no-such-org/no-such-model
  - id: gone
    source: local
    path: does/not/exist
  - id: broken
    source: hub
    colour: red
""")
    return load_zoo(tmp_path / "models.yaml")


@pytest.fixture
def corpus():
    pairs = [(a, b) for a, b in zip(SENTENCES[::2], SENTENCES[1::2], strict=False)]
    return Corpus("tiny", [(s, None) for s in SENTENCES] + pairs)


def make_runner(zoo, corpus, root, **overrides):
    config = RunConfig(metric_settings=FAST, batch_size=4, **overrides)
    return Runner(zoo, corpus, config, ResultStore(root), run_id="test", log=lambda line: None)


def test_failures_are_recorded_and_the_rest_completes(zoo, corpus, tmp_path):
    runner = make_runner(zoo, corpus, tmp_path / "results")
    names = ["unreachable-hub-model", "tiny", "gone", "broken", "tiny-random-init", "tiny-decoder"]
    outcomes = {o.model_id: o for o in runner.run(names)}
    assert sorted(outcomes["tiny"].computed) == sorted(SPECS) and not outcomes["tiny"].failed
    assert sorted(outcomes["tiny-random-init"].computed) == sorted(SPECS)
    assert "cannot reach the hub at https://huggingface.co" in outcomes["unreachable-hub-model"].failed["rank_deficiency"]
    assert "does not exist" in outcomes["gone"].failed["rank_deficiency"]
    assert "unknown key 'colour'" in outcomes["broken"].failed["rank_deficiency"]

    results = ResultQuery(tmp_path / "results").all_rows()
    failed = results[results["status"] == "failed"]
    assert set(failed["model_id"]) == {"unreachable-hub-model", "gone", "broken"}
    assert failed["error"].str.contains("\n").sum() == 0
    ok = results[results["status"] == "ok"]
    assert set(ok["model_id"]) == {"tiny", "tiny-random-init", "tiny-decoder"}
    # every metric family has a row for every layer of every model
    for model in ("tiny", "tiny-random-init", "tiny-decoder"):
        rows = ok[ok["model_id"] == model]
        for metric in SPECS:
            layers = set(rows.loc[rows["metric"] == metric, "layer"].dropna().astype(int))
            assert {1, 2} <= layers, metric
    # every declared provenance, key, setting and fact column has a value on every finished row (a
    # control's own columns on a control's rows, the hub commit on hub rows, only)
    applies = {"": ok["status"] == "ok", "controls": ok["model_id"] == "tiny-random-init", "hub": ok["model_source"] == "hub"}
    for column in COLUMNS:
        if column.role in ("provenance", "fact"):
            assert ok.loc[applies[column.only_for], column.name].notna().all(), column.name
    assert ok.loc[ok["model_id"] == "tiny-random-init", "is_control"].all()
    assert (ok["d_head"] == 8).all() and (ok["n_layers"] == 2).all()
    decoder = ok[ok["model_id"] == "tiny-decoder"]
    assert decoder["causal"].all() and (decoder["n_kv_heads"] == 2).all()
    offsets = decoder.loc[decoder["variant"].str.startswith("offset:"), "variant"].str[7:].astype(int)
    assert len(offsets) and (offsets <= 0).all()  # a decoder token only draws on earlier inputs


def test_example_attention_maps_are_stored(zoo, corpus, tmp_path):
    make_runner(zoo, corpus, tmp_path).run(["tiny"])
    rows = ResultQuery(tmp_path).all_rows()
    rows = rows[rows["metric"] == "effective_attention"]  # feasible_attention stores an example of its own
    maps = rows[rows["variant"].isin(["map_raw", "map_eff"])]
    tokens = rows[rows["variant"] == "token"].sort_values("key")
    n = len(tokens)
    # the example is the longest corpus item of at most 8 tokens (sentences 0 and 7 have more)
    assert set(maps["sequence"]) == {3} and n == int(tokens["n_tokens"].iloc[0])
    assert tokens["label"].tolist() == ["[CLS]", *SENTENCES[3].split(), "[SEP]"]
    assert len(maps) == 2 * 2 * 4 * n * n  # raw and effective, 2 layers, 4 heads, n x n
    raw = maps[maps["variant"] == "map_raw"].groupby(["layer", "head", "query"])["value"].sum()
    assert ((raw - 1).abs() < 1e-5).all()  # softmax rows
    eff = maps[maps["variant"] == "map_eff"].set_index(["layer", "head", "query", "key"])["value"]
    raw_cells = maps[maps["variant"] == "map_raw"].set_index(["layer", "head", "query", "key"])["value"]
    assert n <= 8 and ((eff - raw_cells).abs() < 1e-5).all()  # n <= d_h: no null space, A_eff = A


def test_killed_run_restarts_without_recomputing_finished_cells(zoo, corpus, tmp_path, monkeypatch):
    root = tmp_path / "results"
    loads: list[str] = []
    real_load = idsuite.runners.preparation.load_model

    def counting_load(entry, *args, **kwargs):
        loads.append(entry.id)
        if entry.id == "tiny-random-init" and len(loads) == 2:
            raise RunInterrupted  # the user stops the run while the second model starts
        return real_load(entry, *args, **kwargs)

    monkeypatch.setattr(idsuite.runners.preparation, "load_model", counting_load)
    with pytest.raises(RunInterrupted):
        make_runner(zoo, corpus, root).run(["tiny", "tiny-random-init"])
    first = ResultQuery(root).all_rows()
    assert set(first["model_id"]) == {"tiny"}
    stamps = {p: p.stat().st_mtime_ns for p in (root / "cells").rglob("*.parquet")}

    outcomes = make_runner(zoo, corpus, root).run(["tiny", "tiny-random-init"])
    assert loads == ["tiny", "tiny-random-init", "tiny-random-init"]  # tiny was not loaded again
    assert sorted(outcomes[0].cached) == sorted(SPECS) and outcomes[0].computed == []
    assert sorted(outcomes[1].computed) == sorted(SPECS)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())

    # a new metric version or config is a new cell: only that metric is recomputed
    changed = dict(FAST, token_identifiability={"mlp_max_epochs": 6, "max_train_tokens": 200})
    again = Runner(zoo, corpus, RunConfig(metric_settings=changed, batch_size=4), ResultStore(root), "t2", log=lambda s: None)
    outcome = again.run(["tiny"])[0]
    assert outcome.computed == ["token_identifiability"]


def test_same_inputs_give_same_numbers(zoo, corpus, tmp_path):
    values = []
    for name in ("a", "b"):
        make_runner(zoo, corpus, tmp_path / name).run(["tiny"])
        frame = ResultQuery(tmp_path / name).all_rows()
        cols = ["metric", "variant", "layer", "head", "sequence"]
        values.append(frame.sort_values(cols, na_position="first")[cols + ["value"]].reset_index(drop=True))
    pd.testing.assert_frame_equal(values[0], values[1])


def test_device_and_forward_dtype_resolution(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert RunConfig().resolved_device() == "cpu" and RunConfig().forward_dtype("float32") == "float32"
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    auto = RunConfig()
    assert auto.resolved_device() == "cuda" and auto.forward_dtype("float32") == "bfloat16"
    assert auto.forward_dtype("float16") == "float16"  # an entry's own half precision is kept
    assert RunConfig(device="cpu").forward_dtype("float32") == "float32"
    assert RunConfig(dtype="float32").forward_dtype("float32") == "float32"


def test_bfloat16_forward_with_float32_metrics(zoo, corpus, tmp_path):
    """The GPU path's precision (bfloat16 forward, metrics in float32, ranks in float64), here on the
    CPU: every cell finishes, rows say bfloat16, ranks equal those of a float32 forward and the
    summaries differ by bfloat16 rounding only (own contributions are ratios of Jacobian norms, so
    the norms' ~1% errors cancel)."""
    exact = {**FAST, "hidden_token_attribution": {**FAST["hidden_token_attribution"], "method": "exact"}}
    per_dtype = {}
    for dtype in ("float32", "bfloat16"):
        root = tmp_path / dtype
        Runner(zoo, corpus, RunConfig(metric_settings=exact, batch_size=4, dtype=dtype), ResultStore(root), "t",
               log=lambda line: None).run(["tiny", "tiny-decoder"])
        frame = ResultQuery(root).all_rows()
        assert (frame["status"] == "ok").all() and set(frame["dtype"]) == {dtype}
        aggregates = frame[frame["head"].isna() & frame["sequence"].isna() & frame["layer"].notna()]
        per_dtype[dtype] = aggregates.set_index(["model_id", "metric", "variant", "layer"])["value"]
    full, half = per_dtype["float32"], per_dtype["bfloat16"]
    assert full.index.equals(half.index)
    difference = (full - half).abs()
    assert (difference.xs("rank_deficiency", level="metric") == 0).all()
    assert difference.xs(("hidden_token_attribution", "own"), level=("metric", "variant")).max() < 1e-3
    assert difference.xs(("effective_attention", "null_share"), level=("metric", "variant")).max() < 5e-3
    assert difference.xs(("effective_attention", "pearson"), level=("metric", "variant")).max() < 2e-2
    assert difference.xs(("effective_attention", "null_share"), level=("metric", "variant")).max() > 0  # it did run in bfloat16


def test_an_unreadable_cell_is_quarantined_and_recomputed_the_rest_kept(zoo, corpus, tmp_path):
    root = tmp_path / "results"
    make_runner(zoo, corpus, root).run(["tiny"])
    store = ResultStore(root)
    cells = {store.ref_of(p).metric: p for p in store.cell_files()}
    broken = cells["effective_attention"]
    broken.write_bytes(broken.read_bytes()[:100])  # truncated on disk
    stamps = {m: p.stat().st_mtime_ns for m, p in cells.items() if m != "effective_attention"}
    assert len(ResultQuery(root).cells()) == len(SPECS)  # readers still list it (its summary is whole) ...
    outcome = make_runner(zoo, corpus, root).run(["tiny"])[0]
    assert outcome.computed == ["effective_attention"] and sorted(outcome.cached) == sorted(
        m for m in SPECS if m != "effective_attention")
    assert {m: p.stat().st_mtime_ns for m, p in cells.items() if m != "effective_attention"} == stamps
    assert [p.suffix for p in sorted(store.quarantined.iterdir())].count(".reason") == 1
    rows = ResultQuery(root).all_rows()
    assert set(rows["metric"]) == set(SPECS) and (rows["status"] == "ok").all()


def test_a_long_only_corpus_fails_neither_attribution_nor_context_mixing(zoo, tmp_path):
    """Every sentence is longer than attribution's and feasible attention's cap (2.5 x d_h = 8: 20
    tokens) and context mixing's (16): all record that they left all out and why; no metric of
    either model fails."""
    from idsuite.cli.run_report import run_notes

    long_only = Corpus("long", [(" ".join([s, *SENTENCES[i + 1 : i + 3]]), None) for i, s in enumerate(SENTENCES[:5])])
    models = ["tiny", "tiny-decoder"]
    settings = dict(FAST, hidden_token_attribution={"min_sequences": 2, "max_sequences": 2},
                    context_mixing={"max_sequences": 2})
    runner = Runner(zoo, long_only, RunConfig(metric_settings=settings, batch_size=4), ResultStore(tmp_path), "t",
                    log=lambda line: None)
    outcomes = runner.run(models)
    assert all(not o.failed and sorted(o.computed) == sorted(SPECS) for o in outcomes), [o.failed for o in outcomes]
    rows = ResultQuery(tmp_path).all_rows()
    assert (rows["status"] == "ok").all()
    for model in models:
        counts = rows[(rows["model_id"] == model) & rows["variant"].str.endswith("_sequences")]
        values = counts.set_index(["metric", "variant"])["value"].to_dict()
        assert values == {("hidden_token_attribution", "attributed_sequences"): 0,
                          ("hidden_token_attribution", "skipped_sequences"): 5,
                          ("context_mixing", "scored_sequences"): 0, ("context_mixing", "skipped_sequences"): 5,
                          ("feasible_attention", "sampled_sequences"): 0, ("feasible_attention", "skipped_sequences"): 5}
        sampled = ["hidden_token_attribution", "context_mixing", "feasible_attention"]
        assert not rows[(rows["model_id"] == model) & rows["metric"].isin(sampled)
                        & rows["layer"].notna()].size  # no numbers from sentences that were not used
    notes = run_notes(rows)
    for model in models:
        assert (f"{model}: hidden_token_attribution: no sequence attributed: none of the 5 probe sequences has at "
                "most 20 tokens (2.5 x d_h = 8, rounded up)") in "\n".join(notes)
        assert any(line.startswith(f"{model}: context_mixing: 5 probe sequences left out: 5 longer than max_tokens = 16 "
                                   "(the shortest of them has 30 tokens), 0 shorter than 3 tokens") for line in notes), notes


def test_batches_are_cut_by_the_map_budget_and_the_numbers_do_not_move(zoo, corpus, tmp_path):
    # a budget of 4 heads x 24^2 entries: short sentences share a batch, longer ones go alone; every
    # stored value equals the run with one batch of 16 (padding and batching change nothing beyond
    # float round-off), and the batch size actually used is recorded
    from idsuite.runners.models.adapters import adapter_for
    from idsuite.runners.models.loading import load_model
    from idsuite.runners.probing.tracing import Tracer

    loaded = load_model(zoo.entries["tiny-decoder"], zoo)
    tracer = Tracer(loaded.model, loaded.tokenizer, adapter_for(loaded.model.config.model_type))
    tracer.encode(corpus.items)
    budget = tracer.n_heads * 24 * 24
    batches = length_batches(tracer.lengths, tracer.n_heads, 3, budget)
    lengths = [[len(tracer.encodings[s]["input_ids"]) for s in batch] for batch in batches]
    assert sorted(s for batch in batches for s in batch) == sorted(tracer.encodings)
    assert all(len(b) == 1 or (len(b) <= 3 and len(b) * tracer.n_heads * max(b) ** 2 <= budget) for b in lengths)
    assert any(len(b) > 1 for b in lengths) and any(len(b) == 1 and b[0] > 24 for b in lengths)
    frames = []
    for name, config in (("small", dict(batch_size=3, batch_map_elements=budget)), ("one", dict(batch_size=16))):
        Runner(zoo, corpus, RunConfig(metric_settings=FAST, **config), ResultStore(tmp_path / name), name, log=lambda s: None).run(
            ["tiny-decoder"])
        frame = ResultQuery(tmp_path / name).all_rows()
        cols = ["metric", "variant", "layer", "head", "sequence", "query", "key"]
        frames.append(frame.sort_values(cols, na_position="first").reset_index(drop=True))
    assert set(frames[0]["batch_size"]) == {max(map(len, lengths))} and set(frames[1]["batch_size"]) == {len(tracer.encodings)}
    fitted = frames[0]["variant"].str.endswith("heldout_loss")  # an iterative fit carries the round-off further
    for part in (~fitted, fitted):
        pd.testing.assert_series_equal(frames[0]["value"][part], frames[1]["value"][part], rtol=1e-3 if part is fitted else 1e-5,
                                       atol=1e-6)
