"""(2) exact attribution (forward mode, jvp + vmap) vs the naive full Jacobian by reverse mode, and
(3) the probe estimator vs exact, on MiniLM and a 9-token sentence; scaling in n and d."""

import pytest
import torch
import transformers

from benchmarks.conftest import NOTES, record, ratio
from runners.adapters import adapter_for
from runners.tracing import Tracer
from suite.attribution import contributions, estimate_block_norms, jacobian_block_norms

SENTENCE = "The cat sat on the mat."  # 9 tokens with [CLS] and [SEP]
PROBES = 12
ratio("(2) naive reverse-mode Jacobian / exact forward mode", "reverse_mode_jacobian", "exact_forward_mode", ">= 50x")
ratio(f"(3) exact / estimator ({PROBES} probes)", "exact_forward_mode", "estimator", ">= 20x")
RESULTS: dict[str, torch.Tensor] = {}


@pytest.fixture(scope="module")
def sentence(minilm):
    tracer, _ = minilm
    tracer.encodings[-1] = dict(tracer.tokenizer(SENTENCE))
    assert len(tracer.encodings[-1]["input_ids"]) == 9
    return tracer.layers_fn(-1)


def test_exact_forward_mode(benchmark, sentence):
    x, layers_fn = sentence
    RESULTS["exact"] = benchmark.pedantic(jacobian_block_norms, args=(layers_fn, x), rounds=3, warmup_rounds=1)
    record(benchmark, "exact_forward_mode")


def test_reverse_mode_jacobian(benchmark, sentence):
    x, layers_fn = sentence

    def naive():
        jac = torch.autograd.functional.jacobian(layers_fn, x)  # one backward pass per output coordinate
        return jac.square().sum(dim=(2, 4))

    reference = benchmark.pedantic(naive, rounds=1)
    record(benchmark, "reverse_mode_jacobian")
    exact = RESULTS.get("exact", jacobian_block_norms(layers_fn, x))
    torch.testing.assert_close(exact.sqrt(), reference.sqrt(), rtol=1e-5, atol=1e-5)
    NOTES.append(f"(2) same numbers: max |difference| of block norms {(exact.sqrt() - reference.sqrt()).abs().max():.2e}")


def test_estimator(benchmark, sentence):
    x, layers_fn = sentence
    estimate = benchmark.pedantic(estimate_block_norms, args=(layers_fn, x, PROBES, 0), rounds=3, warmup_rounds=1)
    record(benchmark, "estimator")
    exact = RESULTS.get("exact", jacobian_block_norms(layers_fn, x))
    own_exact = contributions(exact).diagonal(dim1=-2, dim2=-1)
    own_est = contributions(estimate.squared).diagonal(dim1=-2, dim2=-1)
    layer_err = (own_est.mean(-1) - own_exact.mean(-1)).abs() / own_exact.mean(-1)
    token_err = (own_est - own_exact).abs() / own_exact
    NOTES.append(
        f"(3) own contribution, estimator vs exact: per-layer means within {layer_err.max():.2%} (goal 2%), "
        f"single tokens within {token_err.max():.2%} (median {token_err.median():.2%}); "
        f"stated standard error of ||J_ii|| {0.5 * estimate.rel_error.diagonal(dim1=-2, dim2=-1).mean():.2%}"
    )
    assert layer_err.max() < 0.02


def _tiny_bert(tokenizer, d, n, layers=4):
    """``x`` and ``x -> e^1..e^L`` of a random 4-layer BERT of width d on an n-token input."""
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=d, num_attention_heads=d // 32,
                                     num_hidden_layers=layers, intermediate_size=4 * d)
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(config, attn_implementation="eager").eval()
    tracer = Tracer(model, tokenizer, adapter_for("bert"))
    tracer.encodings[0] = {"input_ids": list(range(1000, 1000 + n)), "attention_mask": [1] * n}
    return tracer.layers_fn(0)


@pytest.mark.parametrize("d, n", [(96, 9), (192, 9), (384, 9), (192, 5), (192, 17)])
@pytest.mark.parametrize("method", ["exact", "estimator"])
def test_attribution_scaling_in_n_and_d(benchmark, minilm, method, d, n):
    """Exact costs n * d products (each through the whole model); the estimator n * probes.
    Products are batched 96 at a time (memory grows with the batch and with d)."""
    x, layers_fn = _tiny_bert(minilm[0].tokenizer, d, n)
    if method == "exact":
        benchmark.pedantic(jacobian_block_norms, args=(layers_fn, x, 96), rounds=1, warmup_rounds=1)
    else:
        benchmark.pedantic(estimate_block_norms, args=(layers_fn, x, PROBES, 0, 96), rounds=3, warmup_rounds=1)
