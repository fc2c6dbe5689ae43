"""Each context-mixing measure's cost against one forward pass of the same sentence (MiniLM, a
16-token sentence; all layers), and the two references it is scored against."""

from __future__ import annotations

import pytest
import torch

from benchmarks.conftest import NOTES, ratio, record
from idsuite.suite.context_mixing import LayerParts, measure_matrix
from idsuite.suite.hidden_token_attribution import estimate_block_norms, jacobian_block_norms
from idsuite.suite.specs.context_mixing import MEASURES, Measure

SENTENCE = "The minister said on Tuesday that the talks would resume next week."


@pytest.fixture(scope="module")
def sentence(minilm):
    tracer, _ = minilm
    tracer.encodings[-2] = dict(tracer.tokenizer(SENTENCE))
    return tracer, tracer.mixing_layers(-2)


def _matrices(measure: Measure, layers) -> list[torch.Tensor]:
    """The measure's one-layer matrix of every layer, as the metric computes it (``u`` and ``T`` included)."""
    return [measure_matrix(measure, LayerParts(layer, causal=False)) for layer in layers]


for _measure in MEASURES:
    ratio(f"(15) context mixing: {_measure.name} (all layers) / one forward pass", f"mixing_{_measure.name}", "mixing_forward",
          "reported")
ratio("(15) the hooked capture of a sentence / one forward pass", "mixing_capture", "mixing_forward", "reported")
ratio("(15) exact attribution c^l (the global reference) / one forward pass", "mixing_exact_reference",
      "mixing_forward", "reported")
ratio("(15) one-layer Jacobians, estimated (the local reference) / one forward pass", "mixing_local_reference",
      "mixing_forward", "reported")


@torch.no_grad()
def test_mixing_forward(benchmark, sentence):
    tracer, _ = sentence
    inputs = tracer.inputs(-2)
    benchmark.pedantic(lambda: tracer.model(**inputs, output_attentions=True), rounds=20, warmup_rounds=2)
    record(benchmark, "mixing_forward")
    NOTES.append(f"(15) sentence of {inputs['input_ids'].shape[1]} tokens")


def test_mixing_capture(benchmark, sentence):
    tracer, _ = sentence
    benchmark.pedantic(tracer.mixing_layers, args=(-2,), rounds=5, warmup_rounds=1)
    record(benchmark, "mixing_capture")


@pytest.mark.parametrize("measure", MEASURES, ids=[m.name for m in MEASURES])
@torch.no_grad()
def test_mixing_measure(benchmark, sentence, measure):
    _, layers = sentence
    benchmark.pedantic(lambda: _matrices(measure, layers), rounds=5, warmup_rounds=1)
    record(benchmark, f"mixing_{measure.name}")


def test_mixing_exact_reference(benchmark, sentence):
    tracer, _ = sentence

    def exact():
        x, fn = tracer.layers_fn(-2, tracer.hidden_size)
        return jacobian_block_norms(fn, x)

    benchmark.pedantic(exact, rounds=1)
    record(benchmark, "mixing_exact_reference")


@torch.no_grad()
def test_mixing_local_reference(benchmark, sentence):
    _, layers = sentence
    benchmark.pedantic(lambda: [estimate_block_norms(lambda h, layer=layer: layer.block(h).unsqueeze(0), layer.residual,
                                                     8, 0).squared for layer in layers], rounds=3, warmup_rounds=1)
    record(benchmark, "mixing_local_reference")
