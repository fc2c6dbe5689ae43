"""What one traced forward pass hands to the metrics: tensors only, no model objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from suite.attribution import LayersFn
from suite.masks import pair_mask
from suite.null_space import ColumnSpace, column_space


@dataclass(frozen=True)
class LayerTrace:
    """One attention layer of a batch.

    ``attention`` (B, H, N, N): ``A_h``; ``values`` (B, H, N, d_h): ``V_h`` per query head (a GQA
    model repeats each KV group's values for its query heads), zero on padded rows;
    ``w_out`` (H, d_h, d): ``W_O^h``, the rows of the output projection that head h feeds.
    """

    attention: torch.Tensor
    values: torch.Tensor
    w_out: torch.Tensor


@dataclass
class BatchTrace:
    """A batch of left-aligned sequences after one forward pass.

    ``sequence_ids`` (B,): index of each sequence in the probe corpus; ``lengths`` (B,): ``n``;
    ``token_ids`` (B, N); ``hidden_states`` (L+1, B, N, d): ``e^0 = x`` (embedding output) to ``e^L``;
    ``layers``: L attention layers; ``positions``: named (B, N) masks of special positions
    (``cls``, ``sep``, ``punct``); ``causal``: decoder attention (row i sees keys j <= i).
    """

    sequence_ids: torch.Tensor
    lengths: torch.Tensor
    token_ids: torch.Tensor
    hidden_states: torch.Tensor
    layers: list[LayerTrace]
    positions: dict[str, torch.Tensor]
    causal: bool
    _column_spaces: dict[tuple[int, torch.dtype], ColumnSpace] = field(default_factory=dict, repr=False)

    def column_space(self, layer: int, compute_dtype: torch.dtype) -> ColumnSpace:
        """Column space of every head's ``T_h`` at ``layer`` (0-based), computed once per batch."""
        key = (layer, compute_dtype)
        if key not in self._column_spaces:
            if self.causal:
                raise NotImplementedError("prefix column spaces for causal attention are not implemented yet")
            trace = self.layers[layer]
            self._column_spaces[key] = column_space(trace.values, trace.w_out, self.lengths, compute_dtype)
        return self._column_spaces[key]

    def allowed(self) -> torch.Tensor:
        """(B, N, N) the (query, key) pairs a row may attend to."""
        return pair_mask(self.lengths, self.token_ids.shape[1], self.causal)


class ModelProbe(Protocol):
    """Access to the model as a function, for metrics that differentiate through it."""

    def layers_fn(self, sequence_id: int) -> tuple[torch.Tensor, LayersFn]:
        """``x`` (n, d) for the sequence and a function ``x -> e^1..e^L`` stacked (L, n, d)."""
        ...
