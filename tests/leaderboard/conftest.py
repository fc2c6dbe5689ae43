"""A small result store made by the real job loop: two trained tiny models and a control, a model
that failed to load, and a partial model (one metric's cell removed, as if the run was cut)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from idsuite.results.store import ResultStore
from idsuite.runners.jobs import Runner
from idsuite.runners.models.zoo import load_zoo
from idsuite.runners.probing.corpus import Corpus
from idsuite.runners.run_config import RunConfig
from idsuite.suite.specs import SPECS
from tests.conftest import SENTENCES

FAST = {
    "context_mixing": {"max_sequences": 2, "max_tokens": 12},
    "token_identifiability": {"mlp_max_epochs": 5, "max_train_tokens": 100, "mlp_hidden_size": 16},
    "hidden_token_attribution": {"min_sequences": 2, "max_sequences": 2, "max_tokens": 10, "probes": 4},
    "effective_attention": {"map_max_tokens": 10},
    "feasible_attention": {"min_sequences": 2, "max_sequences": 2, "max_tokens": 12, "rows_per_sequence": 2},
}
MODELS = ["tiny-bert", "tiny-bert-random-init", "tiny-llama", "tiny-partial", "broken-hub-model"]


def fixture_corpus() -> Corpus:
    """The test sentences, alone and as pairs."""
    return Corpus("tiny", [(s, None) for s in SENTENCES] + list(zip(SENTENCES[::2], SENTENCES[1::2], strict=False)))


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory, tiny_bert_dir, tiny_llama_dir) -> Path:
    root = tmp_path_factory.mktemp("leaderboard")
    (root / "models.yaml").write_text(f"""
models:
  - {{id: tiny-bert, source: local, path: {tiny_bert_dir}, family: bert}}
  - {{id: tiny-bert-random-init, source: random_init, base: tiny-bert, family: bert}}
  - {{id: tiny-llama, source: local, path: {tiny_llama_dir}, family: llama}}
  - {{id: tiny-partial, source: random_init, base: tiny-llama, init_seed: 5, family: llama}}
  - {{id: broken-hub-model, source: hub, repo: no-such-org/no-such-model, family: gpt2}}
""")
    zoo = load_zoo(root / "models.yaml")
    corpus = fixture_corpus()
    store = ResultStore(root / "results")
    Runner(zoo, corpus, RunConfig(metric_settings=FAST, batch_size=4), store, "fixture", log=lambda s: None).run(MODELS)
    for cell in (root / "results" / "cells" / "tiny-partial").glob("hidden_token_attribution-*.parquet"):
        cell.unlink()
    return root / "results"


@pytest.fixture(scope="session")
def two_settings_dir(results_dir, tmp_path_factory) -> Path:
    """The fixture store plus, for tiny-bert, a newer cell of every metric in the same settings (a
    bfloat16 forward: another cell key, the same corpus, token limit, seed and configs) and then exact
    attribution (a second setting)."""
    root = tmp_path_factory.mktemp("two-settings")
    shutil.copytree(results_dir, root / "results")
    zoo = load_zoo(results_dir.parent / "models.yaml")
    corpus = fixture_corpus()
    store = ResultStore(root / "results")
    exact = {**FAST, "hidden_token_attribution": {**FAST["hidden_token_attribution"], "method": "exact"}}
    for config in (RunConfig(metric_settings=FAST, batch_size=4, dtype="bfloat16"), RunConfig(metric_settings=exact, batch_size=4)):
        Runner(zoo, corpus, config, store, "second", log=lambda s: None).run(["tiny-bert"])
    return root / "results"


TWELVE = [f"{base}-{k:02d}" for base in ("tiny-bert", "tiny-llama") for k in range(6)]
"""The synthetic store's trained models (each with its random-init control, ``<id>-random-init``)."""
SCALED = {name: {v for v, d in spec.variants.items() if d.kind == "layer"} for name, spec in SPECS.items()}
"""The variants whose values the copies scale (the per-layer quantities, not maps, labels or counts)."""


@pytest.fixture(scope="session")
def twelve_models_dir(results_dir, tmp_path_factory) -> Path:
    """A store of twelve trained models and their twelve controls, made from the fixture's real
    cells: copy k of tiny-bert (tiny-llama) and of its control, every per-layer value and its interval
    scaled by 1 - k / 50 (so the copies have a known order and rates stay in [0, 1]), under new model
    ids, fingerprints and cell keys."""
    from idsuite.results.identity import cell_key
    from idsuite.results.query import ResultQuery
    from idsuite.results.schema import KEY_COLUMNS
    from idsuite.results.store import CellRef

    root = tmp_path_factory.mktemp("twelve") / "results"
    store, query = ResultStore(root), ResultQuery(results_dir)
    cells = query.cells()
    sources = {"tiny-bert": "tiny-bert-random-init", "tiny-llama": "tiny-partial"}
    for model in TWELVE:
        base, k = model.rsplit("-", 1)
        for source, new in ((base, model), (sources[base], f"{model}-random-init")):
            for cell in cells[(cells["model_id"] == source) & cells["ok"]].itertuples():
                frame = query.cell_rows([CellRef(cell.model_id, cell.metric, cell.cell_key)])
                scale = 1 - int(k) / 50
                numbers = frame["variant"].isin(SCALED[cell.metric])  # the rates, not maps or counts
                for column in ("value", "ci_low", "ci_high"):
                    frame.loc[numbers, column] = frame.loc[numbers, column] * scale
                frame["model_id"] = new
                frame["model_fingerprint"] = f"synthetic:{new}"
                if new != model:
                    frame["control_of"] = model
                key = cell_key(frame.iloc[0][KEY_COLUMNS].to_dict())
                frame["cell_key"] = key
                store.write(CellRef(new, cell.metric, key), frame)
    query.close()
    return root
