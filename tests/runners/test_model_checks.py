"""What a model must be before it is measured: a config of sane sizes that belongs to its weights
and fits the device (checked before anything is allocated), and probe sentences that keep a token
that is not special."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from idsuite.results.query import ResultQuery
from idsuite.results.store import ResultStore
from idsuite.runners.jobs import RunConfig, Runner
from idsuite.runners.models.zoo import load_zoo
from idsuite.runners.probing.corpus import Corpus
from idsuite.suite.specs import SPECS
from tests.conftest import SENTENCES
from tests.runners.test_faults import FAST

EMPTY = ["\u200b", "\u200d \ufeff", "\x00", "   "]
"""Sentences the tiny models' tokenizers turn into [CLS] [SEP] (or BOS EOS) alone."""


@pytest.fixture
def zoo(tmp_path, tiny_bert_dir, tiny_llama_dir):
    mismatched = shutil.copytree(tiny_bert_dir, tmp_path / "mismatched")
    config = json.loads((mismatched / "config.json").read_text())
    (mismatched / "config.json").write_text(json.dumps(config | {"intermediate_size": 1 << 18}))  # 2 layers x 65 x 2^18: 34.1M weights
    huge = dict(config, hidden_size=1 << 16, intermediate_size=1 << 19, num_hidden_layers=8, num_attention_heads=64)
    (tmp_path / "huge.json").write_text(json.dumps(huge))  # 8 x (4 h^2 + 2 h I) + pooler h^2: 691.5B weights
    (tmp_path / "deep.json").write_text(json.dumps(dict(config, num_hidden_layers=10**6)))
    (tmp_path / "models.yaml").write_text(f"""
models:
  - {{id: tiny, source: local, path: {tiny_bert_dir}}}
  - {{id: tiny-decoder, source: local, path: {tiny_llama_dir}}}
  - {{id: mismatched, source: local, path: {mismatched}}}
  - {{id: huge, source: config, config: huge.json, tokenizer: tiny}}
  - {{id: deep, source: config, config: deep.json, tokenizer: tiny}}
""")
    return load_zoo(tmp_path / "models.yaml")


def run(zoo, root, models, sentences):
    corpus = Corpus("probe", [(s, None) for s in sentences])
    runner = Runner(zoo, corpus, RunConfig(metrics=FAST, batch_size=4), ResultStore(root), "r", log=lambda line: None)
    return {o.model_id: o for o in runner.run(models)}


def test_absurd_configs_are_refused_before_allocation_and_the_next_model_runs(zoo, tmp_path):
    start = time.perf_counter()
    outcomes = run(zoo, tmp_path / "results", ["mismatched", "huge", "deep", "tiny"], SENTENCES)
    refused = {model: set(outcomes[model].failed.values()) for model in ("mismatched", "huge", "deep")}
    assert refused["mismatched"] == {"load: config: it describes 34.1M weights, its weight files hold 21.2k: the config "
                                     "does not belong to these weights"}
    (huge,) = refused["huge"]
    assert huge.startswith("load: config: 691.5B weights (2576.1 GiB in float32) do not fit the ") and huge.endswith(" of cpu")
    assert refused["deep"] == {"load: config: num_hidden_layers = 1000000 is not a sane size (1 to 1024)"}
    assert sorted(outcomes["tiny"].computed) == sorted(SPECS)
    assert time.perf_counter() - start < 120  # nothing of the refused models was built


def test_sentences_of_special_tokens_only_are_no_result(zoo, tmp_path):
    outcomes = run(zoo, tmp_path / "empty", ["tiny", "tiny-decoder"], [*EMPTY, SENTENCES[0]])
    for model in ("tiny", "tiny-decoder"):
        assert set(outcomes[model].failed.values()) == {
            "load: fewer than two probe sequences fit in 128 tokens and hold a token that is not special; 4 of the 5 "
            "tokenize to special tokens only"}, model
    outcomes = run(zoo, tmp_path / "some", ["tiny"], [*EMPTY, *SENTENCES])  # left out, the rest measured
    assert sorted(outcomes["tiny"].computed) == sorted(SPECS)
    rows = ResultQuery(tmp_path / "some").all_rows()
    assert set(rows["n_sequences"].dropna()) == {len(SENTENCES)}
    measured = rows.loc[rows["sequence"].notna(), "sequence"].astype(int)
    assert set(measured) <= set(range(len(EMPTY), len(EMPTY) + len(SENTENCES)))  # no empty sentence has a row
