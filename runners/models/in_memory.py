"""A model the caller already holds (a notebook, a training script), run like a zoo entry.

It is not written in a zoo file: ``idsuite.evaluate`` builds the entry from the objects. Its
fingerprint is a hash of what determines its outputs: every tensor of the state dict (name, dtype,
shape, bytes), the config as canonical JSON and the tokenizer's vocabulary and special tokens, so
that a checkpoint evaluated twice reuses its cells and a changed weight makes new ones.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import pydantic

from idsuite.runners.models.zoo import EntryFields

CONFIG_FIELDS_IGNORED = {"_name_or_path", "transformers_version", "_attn_implementation", "_attn_implementation_internal",
                         "torch_dtype", "dtype", "architectures"}
"""Config fields that name where a model came from or how it is run, not what it computes."""


class InMemoryEntry(EntryFields):
    """An in-memory ``transformers`` model and its tokenizer, with the fingerprint computed once."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    source: Literal["memory"] = "memory"
    model: Any
    tokenizer: Any
    weights_fingerprint: str


def state_fingerprint(model: Any, tokenizer: Any) -> str:
    """``memory:sha256=<state>,config=<config>,tokenizer=<vocabulary>`` (16 hex digits each)."""
    import torch

    state = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        state.update(f"{name}:{data.dtype}:{tuple(data.shape)}\n".encode())
        state.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    fields = {k: v for k, v in model.config.to_dict().items() if k not in CONFIG_FIELDS_IGNORED}
    config = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode())
    vocabulary = {"class": type(tokenizer).__name__, "vocab": sorted(tokenizer.get_vocab().items()),
                  "special": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())}}
    words = hashlib.sha256(json.dumps(vocabulary, sort_keys=True, ensure_ascii=False).encode())
    return f"memory:sha256={state.hexdigest()[:16]},config={config.hexdigest()[:16]},tokenizer={words.hexdigest()[:16]}"


def in_memory_entry(model: Any, tokenizer: Any, entry_id: str, family: str | None = None) -> InMemoryEntry:
    """The entry of an in-memory model: its dtype is the model's own (it is run as it is)."""
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return InMemoryEntry(id=entry_id, family=family, dtype=dtype, model=model, tokenizer=tokenizer,
                         weights_fingerprint=state_fingerprint(model, tokenizer))
