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
from idsuite.runners.jobs import Runner
from idsuite.runners.models.zoo import load_zoo
from idsuite.runners.probing.corpus import Corpus
from idsuite.runners.run_config import RunConfig
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
    (tmp_path / "wide.json").write_text(json.dumps(dict(config, vocab_size=1 << 23)))  # harmless if built: 1 GiB
    (tmp_path / "models.yaml").write_text(f"""
models:
  - {{id: tiny, source: local, path: {tiny_bert_dir}}}
  - {{id: tiny-decoder, source: local, path: {tiny_llama_dir}}}
  - {{id: mismatched, source: local, path: {mismatched}}}
  - {{id: wide, source: config, config: wide.json, tokenizer: tiny}}
""")
    return load_zoo(tmp_path / "models.yaml")


def run(zoo, root, models, sentences):
    corpus = Corpus("probe", [(s, None) for s in sentences])
    runner = Runner(zoo, corpus, RunConfig(metric_settings=FAST, batch_size=4), ResultStore(root), "r", log=lambda line: None)
    return {o.model_id: o for o in runner.run(models)}


def test_absurd_configs_are_refused_before_allocation_and_the_next_model_runs(zoo, tmp_path):
    start = time.perf_counter()
    outcomes = run(zoo, tmp_path / "results", ["mismatched", "wide", "tiny"], SENTENCES)
    refused = {model: set(outcomes[model].failed.values()) for model in ("mismatched", "wide")}
    assert refused["mismatched"] == {"load: config: it describes 34.1M weights, its weight files hold 21.2k: the config "
                                     "does not belong to these weights"}
    assert refused["wide"] == {"load: config: vocab_size = 8388608 is not a sane size (1 to 4194304)"}
    assert sorted(outcomes["tiny"].computed) == sorted(SPECS)
    assert time.perf_counter() - start < 120  # nothing of the refused models was built


def test_a_model_larger_than_the_device_is_refused_from_its_shapes_alone(tiny_bert_dir):
    """Checked on the meta device: nothing is allocated (built for real, the first matrix alone
    would take 128 GiB)."""
    import torch
    import transformers

    from idsuite.runners.failures import ModelFailure
    from idsuite.runners.models.loading import check_sizes

    config = transformers.AutoConfig.from_pretrained(tiny_bert_dir)
    for name, value in dict(hidden_size=1 << 16, intermediate_size=1 << 19, num_hidden_layers=8, num_attention_heads=64).items():
        setattr(config, name, value)
    with pytest.raises(ModelFailure) as refused:  # 8 x (4 h^2 + 2 h I) + a pooler h^2 + embeddings: 691.5B weights
        check_sizes(config, None, "cpu", torch.float32, False)
    assert str(refused.value).startswith("config: 691.5B weights (2576.1 GiB in float32) do not fit the ")
    assert str(refused.value).endswith(" GiB of cpu")
    check_sizes(transformers.AutoConfig.from_pretrained(tiny_bert_dir), 21_200, "cpu", torch.float32, False)  # tiny: fine


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
