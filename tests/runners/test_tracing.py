"""Tracing: special positions, and all-MiniLM-L6-v2 (d_h = 32) has null_dim = max(0, n - 32) in every head."""

import pandas as pd
import pytest
import torch
import transformers

from idsuite.runners.models.adapters import adapter_for
from idsuite.runners.probing.tracing import Tracer
from idsuite.suite.hidden_token_attribution import contribution_summary, contributions
from idsuite.suite.metrics import metric_class
from idsuite.suite.metrics.hidden_token_attribution import AttributionMetric
from idsuite.suite.rank_deficiency import rank_deficiency
from idsuite.suite.specs import SPECS
from idsuite.suite.specs.hidden_token_attribution import AttributionConfig
from tests.conftest import SENTENCES, TINY_CONFIGS, save_tiny

LONG = " ".join(SENTENCES)  # about 90 tokens


def tracer_for(folder):
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    # the tiny test models all carry a BERT word-level tokenizer (AutoTokenizer would swap in the
    # family's own class for some model types, e.g. Qwen2, which does not read that vocabulary)
    tokenizer = transformers.BertTokenizer.from_pretrained(folder)
    tracer = Tracer(model, tokenizer, adapter_for(model.config.model_type))
    return tracer, model, tokenizer


def encode(tracer, tokenizer, texts):
    return tracer.encode(texts)


def test_special_and_punctuation_positions(tiny_bert_dir):
    tracer, _, tokenizer = tracer_for(tiny_bert_dir)
    ids = encode(tracer, tokenizer, [(SENTENCES[1], None)])  # [CLS] a dog ran fast , but the cat was slow . [SEP]
    trace = tracer.trace(ids)
    assert trace.positions["cls"][0].nonzero().flatten().tolist() == [0]
    assert trace.positions["sep"][0].nonzero().flatten().tolist() == [12]
    assert trace.positions["punct"][0].nonzero().flatten().tolist() == [5, 11]


@pytest.mark.slow
def test_minilm_null_dim_is_n_minus_head_size(minilm_dir):
    tracer, model, tokenizer = tracer_for(minilm_dir)
    texts = [(SENTENCES[0], None), (SENTENCES[4], None), (LONG, None), (SENTENCES[6], SENTENCES[2]), ("Short one.", None)]
    trace = tracer.trace(encode(tracer, tokenizer, texts))
    lengths = trace.lengths
    assert (lengths < 32).any() and (lengths > 32).any()
    expected = (lengths - 32).clamp(min=0).view(-1, 1)
    for layer in range(len(trace.layers)):
        projection = trace.projection(layer, torch.float64)
        null_dim = rank_deficiency(projection.row_rank, projection.context, lengths).null_dim
        assert torch.equal(null_dim, expected.expand_as(null_dim))


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_exact_attribution_metric_matches_reverse_mode(family, tiny_bert_dir, tiny_llama_dir):
    """The metric's exact path (feed-forward maps linearised per token) against the full Jacobian of
    the model's own function by reverse mode, summarised the same way."""
    tracer, _, tokenizer = tracer_for(tiny_bert_dir if family == "bert" else tiny_llama_dir)
    ids = encode(tracer, tokenizer, [(SENTENCES[1], None)])
    metric = AttributionMetric(AttributionConfig(method="exact", min_sequences=1, max_sequences=1, max_tokens=20), seed=0)
    metric.update(tracer.trace(ids))
    rows = metric.finish(tracer)
    x, layers_fn = tracer.layers_fn(ids[0])
    reference = torch.autograd.functional.jacobian(layers_fn, x).square().sum(dim=(2, 4))  # (L, n, n)
    summary = contribution_summary(contributions(reference, tracer.causal), tracer.causal)
    for name in ("own", "entropy"):
        got = rows[(rows.variant == name) & rows.sequence.isna()].sort_values("layer").value.to_numpy()
        expected = getattr(summary, name).double().mean(-1).numpy()
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def tiny_tracer(request, tmp_path_factory):
    folder = save_tiny(tmp_path_factory.mktemp(request.param), request.param)
    return tracer_for(folder)


def test_streamed_layers_are_the_models_attentions_and_are_released(tiny_tracer):
    # every architecture: the maps handed over one layer at a time equal what the model returns with
    # output_attentions, the values equal the kept trace's, and only the current layer is held
    tracer, model, tokenizer = tiny_tracer
    ids = encode(tracer, tokenizer, [(SENTENCES[1], None), (SENTENCES[4], SENTENCES[2]), ("Why?", None)])
    kept = tracer.trace(ids)
    with torch.no_grad():
        reference = model(**tracer._pad(ids), output_attentions=True).attentions
    seen = []

    def consume(batch, layer):
        assert all(earlier is None for earlier in batch.layers[:layer])  # released before the next comes
        current = batch.layers[layer]
        assert torch.equal(current.attention, reference[layer].float())
        assert torch.equal(current.values, kept.layers[layer].values)
        seen.append(layer)

    streamed = tracer.trace(ids, consume)
    assert seen == list(range(len(tracer.blocks))) and all(layer is None for layer in streamed.layers)
    assert torch.equal(streamed.hidden_states, kept.hidden_states)
    assert all(torch.equal(a.attention, r.float()) for a, r in zip(kept.layers, reference, strict=True))


@pytest.mark.parametrize("name", ["rank_deficiency", "effective_attention", "feasible_attention"])
def test_metrics_read_streamed_layers_as_they_read_a_kept_trace(tiny_llama_dir, name):
    tracer, _, tokenizer = tracer_for(tiny_llama_dir)
    ids = encode(tracer, tokenizer, [(SENTENCES[1], None), (LONG, None), (SENTENCES[0], None)])
    frames = []
    for stream in (False, True):
        metric = metric_class(name)(SPECS.get(name).config_type(), seed=0)
        trace = tracer.trace(ids, metric.update_layer if stream else None)
        metric.update(trace)
        frames.append(metric.finish(tracer))
    pd.testing.assert_frame_equal(frames[0], frames[1])
