"""Architecture adapters: where each family keeps its embeddings, layers, value and output projections.

Adding an architecture is one ``register`` call naming those module paths (and a test).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from suite.registry import Registry, RegistryError


class UnsupportedArchitecture(Exception):
    """The model's ``model_type`` has no adapter; the message names it and the supported ones."""


@dataclass(frozen=True)
class Adapter:
    """Module paths (dotted, from the base model) that give ``x = e^0``, ``V_h`` and ``W_O^h``.

    ``embeddings``: module whose output is ``x`` (fed to the first layer); ``layers``: the list of
    transformer blocks; ``value``/``output``: the value and attention-output projections inside a
    block (``nn.Linear``, weight (out, in)); ``causal``: decoder attention.
    """

    embeddings: str
    layers: str
    value: str
    output: str
    causal: bool = False

    def blocks(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        return list(model.get_submodule(self.layers))

    def w_out(self, block: torch.nn.Module, n_heads: int) -> torch.Tensor:
        """``W_O^h`` for all heads, (H, d_h, d): the rows of ``W_O`` (= ``weight^T``) head h feeds."""
        weight = block.get_submodule(self.output).weight  # (d, H * d_h)
        return weight.T.reshape(n_heads, -1, weight.shape[0])


ADAPTERS: Registry[Adapter] = Registry("architecture")
_BERT_LIKE = Adapter("embeddings", "encoder.layer", "attention.self.value", "attention.output.dense")
for _name in ("bert", "roberta", "xlm-roberta", "camembert"):
    ADAPTERS.register(_name, _BERT_LIKE)
ADAPTERS.register("distilbert", Adapter("embeddings", "transformer.layer", "attention.v_lin", "attention.out_lin"))
ADAPTERS.register("mpnet", Adapter("embeddings", "encoder.layer", "attention.attn.v", "attention.attn.o"))


def adapter_for(model_type: str) -> Adapter:
    """The adapter for a ``config.model_type``, or a one-line error naming what is supported."""
    try:
        return ADAPTERS.get(model_type)
    except RegistryError as e:
        raise UnsupportedArchitecture(f"no adapter for model_type {model_type!r}: {e}") from None
