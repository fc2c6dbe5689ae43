"""Tracing: special positions, and all-MiniLM-L6-v2 (d_h = 32) has null_dim = max(0, n - 32) in every head."""

import pytest
import torch
import transformers

from runners.adapters import adapter_for
from runners.tracing import Tracer
from suite.rank_deficiency import rank_deficiency
from tests.conftest import SENTENCES

LONG = " ".join(SENTENCES)  # about 90 tokens


def tracer_for(folder):
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    # the tiny test models all carry a BERT word-level tokenizer (AutoTokenizer would swap in the
    # family's own class for some model types, e.g. Qwen2, which does not read that vocabulary)
    tokenizer = transformers.BertTokenizer.from_pretrained(folder)
    tracer = Tracer(model, tokenizer, adapter_for(model.config.model_type))
    return tracer, model, tokenizer


def encode(tracer, tokenizer, texts):
    for i, (text, pair) in enumerate(texts):
        tracer.encodings[i] = dict(tokenizer(text, pair))
    return list(range(len(texts)))


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
