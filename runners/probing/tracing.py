"""One traced forward pass per batch: hidden states, attention probabilities and per-head ``V``, ``W_O``."""

from __future__ import annotations

import string
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch
import transformers

from idsuite.runners.models.adapters import Adapter, attention_windows
from idsuite.runners.models.health import check_activations
from idsuite.runners.probing.linearized_feed_forward import LinearizedFeedForward, pays_off
from idsuite.runners.probing.mixing_probe import MixingProbe
from idsuite.suite.context_mixing import MixingLayer
from idsuite.suite.hidden_token_attribution import LayersFn
from idsuite.suite.masks import token_mask
from idsuite.suite.null_space import output_factor
from idsuite.suite.trace import BatchTrace, LayerConsumer, LayerTrace

PUNCTUATION = set(string.punctuation) | set("“”‘’–—…")
SUBWORD_MARKS = ("##", "Ġ", "▁")


def punctuation_ids(tokenizer: transformers.PreTrainedTokenizerBase) -> torch.Tensor:
    """Ids of vocabulary entries made only of punctuation (after sub-word marks are stripped)."""
    ids = []
    for token, idx in tokenizer.get_vocab().items():
        core = token
        for mark in SUBWORD_MARKS:
            core = core.removeprefix(mark)
        if core and all(ch in PUNCTUATION for ch in core):
            ids.append(idx)
    return torch.tensor(sorted(ids), dtype=torch.long)


class Tracer:
    """Runs a model with hooks on each block's value projection and returns ``BatchTrace`` objects.

    Also serves as the ``ModelProbe`` for attribution: ``layers_fn`` swaps the embedding output for
    a given ``x`` so that ``x -> (e^1, ..., e^L)`` can be differentiated with forward mode.
    """

    def __init__(self, model: transformers.PreTrainedModel, tokenizer, adapter: Adapter) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.adapter = adapter
        self.causal = adapter.causal
        config = model.config
        self.blocks = adapter.blocks(model, int(config.num_hidden_layers))
        self.n_heads = int(config.num_attention_heads)
        self.w_out = [adapter.w_out(b, self.n_heads).detach().float() for b in self.blocks]
        self.output_factors = [output_factor(w) for w in self.w_out]
        self.d_head = self.w_out[0].shape[1]
        self.hidden_size = self.w_out[0].shape[2]
        self.windows = attention_windows(config, len(self.blocks))
        self.punct = punctuation_ids(tokenizer)
        self.encodings: dict[int, dict[str, list[int]]] = {}
        self.special_only = 0  # probe items that tokenize to special tokens only (``encode``)
        self._mixing: MixingProbe | None = None
        if tokenizer.pad_token is None:  # decoders often have none; padded positions are masked anyway
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        special = {
            "cls": {tokenizer.cls_token_id, tokenizer.bos_token_id},
            "sep": {tokenizer.sep_token_id, tokenizer.eos_token_id},
        }
        self.special = {k: torch.tensor(sorted(i for i in v if i is not None)) for k, v in special.items()}

    def encode(self, items: list[tuple[str, str | None]], max_tokens: int | None = None) -> list[int]:
        """Tokenise probe items ``(text, pair or None)`` into ``encodings`` under their positions in
        ``items``, keeping those of at most ``max_tokens`` tokens that hold a token other than the
        tokenizer's special ones (``special_only`` counts those that do not: nothing of their
        sentence is left to measure); the positions kept, in order."""
        special = set(self.tokenizer.all_special_ids) - {self.tokenizer.unk_token_id}
        kept = []
        for index, (text, pair) in enumerate(items):
            encoding = dict(self.tokenizer(text, pair, truncation=False))
            if all(i in special for i in encoding["input_ids"]):
                self.special_only += 1
            elif max_tokens is None or len(encoding["input_ids"]) <= max_tokens:
                self.encodings[index] = encoding
                kept.append(index)
        return kept

    @property
    def lengths(self) -> dict[int, int]:
        """Sequence id -> its number of tokens, for every encoded sequence."""
        return {s: len(e["input_ids"]) for s, e in self.encodings.items()}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _positions(self, ids: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {name: torch.isin(ids, special.to(ids.device)) & valid for name, special in self.special.items()}
        out["punct"] = torch.isin(ids, self.punct.to(ids.device)) & valid
        return out

    def _pad(self, sequence_ids: list[int]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer.pad(
            [self.encodings[s] for s in sequence_ids], padding=True, return_tensors="pt", padding_side="right"
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    @contextmanager
    def _stream_layers(self, batch: BatchTrace, on_layer: LayerConsumer | None, drop_from_output: bool) -> Iterator[None]:
        """Hooks that build each layer's ``LayerTrace`` as the forward pass runs (values from the value
        projection, probabilities from the attention module's output), append it to ``batch.layers``
        and, with ``on_layer``, hand it over and release it. ``drop_from_output``: the model returns
        the probabilities only when asked (``output_attentions``); the hook then takes them out of the
        module's output so the model does not keep every layer's."""
        values: list[torch.Tensor] = []  # in call order: one per layer, also for shared blocks
        rows = token_mask(batch.lengths, batch.token_ids.shape[1]).to(self.device).view(len(batch.lengths), 1, -1, 1)

        n = batch.token_ids.shape[1]

        def on_attention(module, inputs, output):
            # the probabilities: the (B, H, N, N) entry (index 1 in current transformers; older GPT-2 and
            # GPT-NeoX modules put their key-value cache there)
            index = next(i for i, o in enumerate(output) if isinstance(o, torch.Tensor) and o.dim() == 4
                         and o.shape[-2:] == (n, n))
            layer = len(batch.layers)
            v = self.adapter.values(values.pop(0), self.d_head)  # (B, H_kv, N, d_h)
            v = v.repeat_interleave(self.n_heads // v.shape[1], dim=1)  # query head h reads KV group h // (H / H_kv)
            batch.layers.append(LayerTrace(output[index].float(), torch.where(rows, v.float(), 0.0), self.w_out[layer],
                                           self.windows[layer], self.output_factors[layer]))
            if on_layer is not None:
                on_layer(batch, layer)
                batch.release(layer)
            return (*output[:index], None, *output[index + 1 :]) if drop_from_output else None

        def unique(path: str) -> list[torch.nn.Module]:
            return list({id(m): m for m in (b.get_submodule(path) for b in self.blocks)}.values())

        handles = [m.register_forward_hook(lambda m, i, o: values.append(o)) for m in unique(self.adapter.value)]
        handles += [m.register_forward_hook(on_attention) for m in unique(self.adapter.attention)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    @torch.no_grad()
    def trace(self, sequence_ids: list[int], on_layer: LayerConsumer | None = None) -> BatchTrace:
        """Forward pass over the given (already encoded) sequences, right-padded into one batch.

        With ``on_layer``, each attention layer is handed to it as the pass produces it and released
        when it returns (peak memory: one layer's maps and what ``on_layer`` makes of them); without,
        every layer is kept in the returned trace."""
        inputs = self._pad(sequence_ids)
        lengths = inputs["attention_mask"].sum(-1)
        valid = token_mask(lengths, inputs["input_ids"].shape[1])
        batch = BatchTrace(
            sequence_ids=torch.tensor(sequence_ids),
            lengths=lengths.cpu(),
            token_ids=inputs["input_ids"],
            d_head=self.d_head,
            positions=self._positions(inputs["input_ids"], valid),
            causal=self.adapter.causal,
            windows=self.windows,
            tokens=[self.tokenizer.convert_ids_to_tokens(self.encodings[s]["input_ids"]) for s in sequence_ids],
        )
        asked = "attentions" not in (getattr(type(self.model), "_can_record_outputs", None) or {})
        with self._stream_layers(batch, on_layer, drop_from_output=asked):
            out = self.model(**inputs, output_attentions=asked, output_hidden_states=True)
        hidden = torch.stack(out.hidden_states)
        check_activations(hidden, valid)  # NaN or inf: a clear failure naming the layer, not garbage
        batch.hidden_states = torch.where(valid.view(1, *valid.shape, 1), hidden.float(), 0.0)
        return batch

    def inputs(self, sequence_id: int) -> dict[str, torch.Tensor]:
        """The model inputs of one sequence (a batch of one)."""
        return {k: torch.tensor([v], device=self.device) for k, v in self.encodings[sequence_id].items()}

    def mixing_layers(self, sequence_id: int) -> list[MixingLayer]:
        """Every layer of one sequence as the context-mixing measures need it (``MixingProbe``)."""
        if self._mixing is None:
            self._mixing = MixingProbe(self.model, self.adapter, self.blocks, self.w_out, self.n_heads, self.d_head)
        return self._mixing.layers(self.inputs(sequence_id))

    def layers_fn(self, sequence_id: int, products_per_token: int = 0) -> tuple[torch.Tensor, LayersFn]:
        """``x`` (n, d) of one sequence and ``x -> e^1..e^L`` (L, n, d), for forward-mode products.

        ``products_per_token``: how many products the caller will push per input token (d for exact
        block norms). Where forming the feed-forward maps' per-token Jacobians pays off, they are formed
        now, at ``x``, and the function's products are valid there only (``LinearizedFeedForward``).
        """
        inputs = self.inputs(sequence_id)
        embeddings = self.adapter.embedding_module(self.model)
        n = inputs["input_ids"].shape[1]
        itemsize = next(self.model.parameters()).element_size()
        linearized = None
        if self.adapter.feed_forward and pays_off(n, products_per_token, self.hidden_size, len(self.blocks), itemsize):
            linearized = LinearizedFeedForward(self.blocks, self.adapter.feed_forward)

        def run(x: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
            with ExitStack() as stack:
                if x is not None:
                    hook = embeddings.register_forward_hook(lambda m, i, o: x.unsqueeze(0).to(o.dtype))
                    stack.callback(hook.remove)
                if linearized is not None:
                    stack.enter_context(linearized.installed())
                return self.model(**inputs, output_hidden_states=True).hidden_states

        with torch.no_grad():
            x0 = run(None)[0][0].float()
        return x0, lambda x: torch.stack(run(x)[1:]).squeeze(1).float()
