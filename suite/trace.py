"""What one traced forward pass hands to the metrics: tensors only, no model objects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from idsuite.suite.context_mixing import MixingLayer
from idsuite.suite.hidden_token_attribution import LayersFn
from idsuite.suite.masks import pair_mask
from idsuite.suite.null_space import Projection, project_attention


@dataclass(frozen=True)
class LayerTrace:
    """One attention layer of a batch.

    ``attention`` (B, H, N, N): ``A_h``; ``values`` (B, H, N, d_h): ``V_h`` per query head (a GQA
    model repeats each KV group's values for its query heads), zero on padded rows;
    ``w_out`` (H, d_h, d): ``W_O^h``, the rows of the output projection that head h feeds;
    ``window``: sliding-window size of the layer (row i sees keys with ``|i - j| < window``), if any;
    ``output_factor`` (H, d_h, d_h): ``idsuite.suite.null_space.output_factor(w_out)`` when the model's
    tracer computed it once (else it is computed per batch).
    """

    attention: torch.Tensor
    values: torch.Tensor
    w_out: torch.Tensor
    window: int | None = None
    output_factor: torch.Tensor | None = None


@dataclass
class BatchTrace:
    """A batch of left-aligned sequences in one forward pass.

    ``sequence_ids`` (B,): index of each sequence in the probe corpus; ``lengths`` (B,): ``n``;
    ``token_ids`` (B, N); ``d_head``: d_h; ``hidden_states`` (L+1, B, N, d): ``e^0 = x`` (embedding
    output) to ``e^L``, set once the pass ends; ``layers``: the attention layers in the order the pass
    produced them (a layer handed to ``LayerConsumer``s is released, ``None``, once they return, so
    no more than one layer's n x n maps are held); ``positions``: named (B, N) masks of special
    positions (``cls``, ``sep``, ``punct``); ``causal``: decoder attention (row i sees keys j <= i);
    ``windows``: each layer's sliding-window size, if any; ``tokens``: each sequence's tokens as text
    (for labelling example maps).
    """

    sequence_ids: torch.Tensor
    lengths: torch.Tensor
    token_ids: torch.Tensor
    d_head: int
    positions: dict[str, torch.Tensor]
    causal: bool
    windows: list[int | None] = field(default_factory=list)
    tokens: list[list[str]] = field(default_factory=list)
    hidden_states: torch.Tensor | None = None
    layers: list[LayerTrace | None] = field(default_factory=list)
    _projections: dict[tuple[int, torch.dtype], Projection] = field(default_factory=dict, repr=False)
    _allowed: dict[int | None, torch.Tensor] = field(default_factory=dict, repr=False)

    def release(self, layer: int) -> None:
        """Drop ``layer``'s maps and its projections (0-based)."""
        self.layers[layer] = None
        for key in [k for k in self._projections if k[0] == layer]:
            del self._projections[key]

    def projection(self, layer: int, compute_dtype: torch.dtype) -> Projection:
        """Effective attention and per-row ranks of every head at ``layer`` (0-based), computed once per batch."""
        key = (layer, compute_dtype)
        if key not in self._projections:
            trace = self.layers[layer]
            if trace is None:
                raise ValueError(f"layer {layer + 1} was released: consume it while the forward pass hands it over")
            shared = not self.causal and trace.window is None
            self._projections[key] = project_attention(
                trace.attention, trace.values, trace.w_out, self.allowed(layer), compute_dtype, shared, trace.output_factor
            )
        return self._projections[key]

    def allowed(self, layer: int) -> torch.Tensor:
        """(B, N, N) the (query, key) pairs a row of ``layer`` (0-based) may attend to (built once per window size)."""
        window = self.windows[layer]
        if window not in self._allowed:
            lengths = self.lengths.to(self.token_ids.device)
            self._allowed[window] = pair_mask(lengths, self.token_ids.shape[1], self.causal, window)
        return self._allowed[window]


LayerConsumer = Callable[[BatchTrace, int], None]
"""Called with the batch and a layer's index (0-based) as the forward pass produces that layer."""


class ModelProbe(Protocol):
    """Access to the model as a function, for metrics that differentiate through it.

    ``causal``: hidden state i depends on inputs j <= i only; ``hidden_size``: d.
    """

    causal: bool
    hidden_size: int

    def layers_fn(self, sequence_id: int, products_per_token: int = 0) -> tuple[torch.Tensor, LayersFn]:
        """``x`` (n, d) for the sequence and a function ``x -> e^1..e^L`` stacked (L, n, d).

        ``products_per_token``: forward-mode products the caller will push per input token; the probe
        may then prepare the function for them, valid at ``x`` only."""
        ...

    def mixing_layers(self, sequence_id: int) -> list[MixingLayer]:
        """Every layer of the sequence as the context-mixing measures need it."""
        ...
