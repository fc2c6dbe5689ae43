"""Architecture adapters: where each family keeps its embeddings, layers, value and output projections.

Adding an architecture is one ``ADAPTERS.register`` call naming those module paths (and a test in
``tests/runners/test_adapters.py``). Values are taken at the output of the value projection (or the
value part of a fused QKV projection), so pre-norms, biases and rotary embeddings (which touch only Q
and K) are handled the same way for every family (docs/metrics.md, rank deficiency).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

from idsuite.suite.context_mixing import BlockForm
from idsuite.suite.registry import Registry, RegistryError

ValueLayout = Literal["separate", "fused_qkv", "fused_per_head"]


class UnsupportedArchitecture(Exception):
    """The model's ``model_type`` has no adapter; the message names it and the supported ones."""


@dataclass(frozen=True)
class Adapter:
    """Module paths (dotted, from the base model) that give ``x = e^0``, ``V_h`` and ``W_O^h``.

    ``embeddings``: candidate modules whose output is ``x`` (the first that exists is used, e.g.
    ELECTRA's ``embeddings_project`` when the embedding size differs from the hidden size);
    ``layers``: the list of transformer blocks; ``value``/``output``: the value and attention-output
    projections inside a block; ``attention``: the module inside a block whose output tuple holds the
    attention probabilities (B, H, N, N). ``value_layout``: ``separate`` (the module's output is V, with
    ``n_kv_heads * d_h`` features), ``fused_qkv`` (``[Q | K | V]``, GPT-2's ``c_attn``) or
    ``fused_per_head`` (per head ``[q k v]``, GPT-NeoX's ``query_key_value``). ``conv1d``: the
    output weight is stored (in, out) (GPT-2's ``Conv1D``) rather than ``nn.Linear``'s (out, in).
    ``shared_layers``: one block applied ``num_hidden_layers`` times (ALBERT). ``causal``: decoder.
    ``feed_forward``: the block's per-token feed-forward map (a module, or a method such as BERT's
    ``feed_forward_chunk`` that also adds the residual and normalises), which exact attribution
    linearises once per token (``runners/linearized_feed_forward.py``); None: products go through it.
    For the context-mixing measures (``suite/context_mixing.py``): ``mixing``, the block's form
    (``post``: a norm after each residual; ``pre``: norms before attention and FFN only; ``sandwich``:
    also a norm on the attention output before the residual); ``attention_norm``, the norm module
    that acts on the attention output (post: after the residual; sandwich: before it);
    ``ffn_norm`` (post), the norm after the FFN's residual; ``final_norm``, the model's norm after
    the last block (a decoder reports its last hidden state through it); ``norm_gain_offset``: an
    RMS norm scales by ``offset + weight`` (Gemma's by ``1 + weight``; 0 for the others).
    """

    embeddings: tuple[str, ...]
    layers: str
    value: str
    output: str
    attention: str
    causal: bool = False
    value_layout: ValueLayout = "separate"
    conv1d: bool = False
    shared_layers: bool = False
    feed_forward: str | None = None
    mixing: BlockForm = "pre"
    attention_norm: str | None = None
    ffn_norm: str | None = None
    final_norm: str | None = None
    norm_gain_offset: float = 0.0

    def embedding_module(self, model: torch.nn.Module) -> torch.nn.Module:
        for path in self.embeddings:
            try:
                return model.get_submodule(path)
            except AttributeError:
                continue
        raise UnsupportedArchitecture(f"none of the embedding modules {self.embeddings} exists in {type(model).__name__}")

    def blocks(self, model: torch.nn.Module, n_layers: int) -> list[torch.nn.Module]:
        """The block applied at each of the ``n_layers`` layers (the same module repeated if shared)."""
        blocks = list(model.get_submodule(self.layers))
        return blocks * n_layers if self.shared_layers else blocks

    def values(self, output: torch.Tensor, d_head: int) -> torch.Tensor:
        """``V`` (B, H_kv, N, d_h) from the value module's output (B, N, features)."""
        b, n, features = output.shape
        if self.value_layout == "fused_qkv":
            output = output[..., 2 * features // 3 :]
        elif self.value_layout == "fused_per_head":
            output = output.view(b, n, -1, 3 * d_head)[..., 2 * d_head :]
        return output.reshape(b, n, -1, d_head).transpose(1, 2)

    def w_out(self, block: torch.nn.Module, n_heads: int) -> torch.Tensor:
        """``W_O^h`` for all heads, (H, d_h, d): the rows of ``W_O`` (input x output) head h feeds."""
        weight = block.get_submodule(self.output).weight
        w = weight if self.conv1d else weight.T  # (H * d_h, d)
        return w.reshape(n_heads, -1, w.shape[1])


ADAPTERS: Registry[Adapter] = Registry("architecture")
_BERT_NORMS = {"mixing": "post", "attention_norm": "attention.output.LayerNorm", "ffn_norm": "output.LayerNorm"}
_BERT_LIKE = Adapter(
    ("embeddings",), "encoder.layer", "attention.self.value", "attention.output.dense", "attention.self",
    feed_forward="feed_forward_chunk",
    **_BERT_NORMS,
)
for _name in ("bert", "roberta", "xlm-roberta", "camembert"):
    ADAPTERS.register(_name, _BERT_LIKE)
ADAPTERS.register(
    "electra",
    Adapter(
        ("embeddings_project", "embeddings"),
        "encoder.layer",
        "attention.self.value",
        "attention.output.dense",
        "attention.self",
        feed_forward="feed_forward_chunk",
        **_BERT_NORMS,
    ),
)
ADAPTERS.register(
    "albert",
    Adapter(
        ("encoder.embedding_hidden_mapping_in",),
        "encoder.albert_layer_groups.0.albert_layers",
        "attention.value",
        "attention.dense",
        "attention",
        shared_layers=True,
        feed_forward="ff_chunk",
        mixing="post",
        attention_norm="attention.LayerNorm",
        ffn_norm="full_layer_layer_norm",
    ),
)
ADAPTERS.register(
    "distilbert", Adapter(("embeddings",), "transformer.layer", "attention.v_lin", "attention.out_lin", "attention",
                          feed_forward="ffn",
                          mixing="post", attention_norm="sa_layer_norm", ffn_norm="output_layer_norm")
)
ADAPTERS.register("mpnet", Adapter(("embeddings",), "encoder.layer", "attention.attn.v", "attention.attn.o", "attention.attn",
                                   mixing="post", attention_norm="attention.LayerNorm", ffn_norm="output.LayerNorm"))
ADAPTERS.register(
    "gpt2",
    Adapter(
        ("drop",), "h", "attn.c_attn", "attn.c_proj", "attn", causal=True, value_layout="fused_qkv", conv1d=True, feed_forward="mlp",
        final_norm="ln_f",
    ),
)
ADAPTERS.register(
    "gpt_neox",
    Adapter(
        ("embed_in",),
        "layers",
        "attention.query_key_value",
        "attention.dense",
        "attention",
        causal=True,
        value_layout="fused_per_head",
        feed_forward="mlp",
        final_norm="final_layer_norm",
    ),
)
_LLAMA_LIKE = Adapter(
    ("embed_tokens",), "layers", "self_attn.v_proj", "self_attn.o_proj", "self_attn", causal=True, feed_forward="mlp",
    final_norm="norm",
)
for _name in ("llama", "mistral", "qwen2", "qwen3"):
    ADAPTERS.register(_name, _LLAMA_LIKE)
ADAPTERS.register("gemma3_text", dataclasses.replace(_LLAMA_LIKE, mixing="sandwich",
                                                     attention_norm="post_attention_layernorm", norm_gain_offset=1.0))


def adapter_for(model_type: str) -> Adapter:
    """The adapter for a ``config.model_type``, or a one-line error naming what is supported."""
    try:
        return ADAPTERS.get(model_type)
    except RegistryError as e:
        raise UnsupportedArchitecture(f"no adapter for model_type {model_type!r}: {e}") from None


def attention_windows(config, n_layers: int) -> list[int | None]:
    """Per layer, the sliding-window size if the layer uses one (``layer_types`` or a global window)."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return [window if kind == "sliding_attention" else None for kind in layer_types]
    if window and getattr(config, "use_sliding_window", True):
        return [window] * n_layers
    return [None] * n_layers
