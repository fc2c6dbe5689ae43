"""The BERT-family adapter on real weights: T from the trace equals T rebuilt from the module weights,
and all-MiniLM-L6-v2 (d_h = 32) has null_dim = max(0, n - 32) in every head."""

import pytest
import torch
import transformers

from runners.adapters import adapter_for
from runners.tracing import Tracer
from suite.null_space import column_space, value_output_matrix
from tests.conftest import SENTENCES

LONG = " ".join(SENTENCES)  # about 90 tokens


def tracer_for(folder):
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    tracer = Tracer(model, tokenizer, adapter_for(model.config.model_type))
    return tracer, model, tokenizer


def encode(tracer, tokenizer, texts):
    for i, (text, pair) in enumerate(texts):
        tracer.encodings[i] = dict(tokenizer(text, pair))
    return list(range(len(texts)))


def test_trace_matches_weights_by_hand(tiny_bert_dir):
    tracer, model, tokenizer = tracer_for(tiny_bert_dir)
    ids = encode(tracer, tokenizer, [(SENTENCES[0], None), (SENTENCES[4], SENTENCES[2])])
    trace = tracer.trace(ids)
    for layer, block in enumerate(model.encoder.layer):
        e = trace.hidden_states[layer]  # BERT is post-norm: the block input is e^(l-1)
        attn = block.attention
        v = attn.self.value(e).view(*e.shape[:2], 4, 8).transpose(1, 2)  # (B, H, N, d_h)
        w = attn.output.dense.weight.T.reshape(4, 8, 32)  # rows of W_O per head
        valid = (torch.arange(e.shape[1]) < trace.lengths.view(-1, 1)).view(2, 1, -1, 1)
        torch.testing.assert_close(trace.layers[layer].values, v * valid, atol=1e-5, rtol=1e-5)
        t_hand = torch.einsum("bhnk,hkd->bhnd", v * valid, w)
        torch.testing.assert_close(value_output_matrix(trace.layers[layer].values, trace.layers[layer].w_out), t_hand,
                                   atol=1e-5, rtol=1e-5)
        # sum_h A_h T_h + b_O equals the output projection applied to the concatenated head contexts
        a = trace.layers[layer].attention
        context = (a @ (v * valid)).transpose(1, 2).reshape(*e.shape[:2], 32)
        out = torch.einsum("bhij,bhjd->bid", a, t_hand) + attn.output.dense.bias
        torch.testing.assert_close(out, attn.output.dense(context), atol=1e-5, rtol=1e-5)


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
    for layer in trace.layers:
        space = column_space(layer.values, layer.w_out, lengths)
        null_dim = lengths.view(-1, 1) - space.rank
        assert torch.equal(null_dim, expected.expand_as(null_dim))
