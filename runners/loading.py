"""Load a zoo entry as (model, tokenizer), in eval mode with eager attention."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import transformers

from runners.gguf import GgufError, dequantised_folder
from runners.weights import ModelLoadError, gguf_file, weights_folder
from runners.zoo import Entry, GgufEntry, HubEntry, LoadableEntry, RandomInitEntry, Zoo


@dataclass
class LoadedModel:
    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase


def _source(entry: LoadableEntry, zoo: Zoo) -> tuple[str, dict]:
    if isinstance(entry, HubEntry):
        return entry.repo or entry.id, {"revision": entry.revision}
    if isinstance(entry, GgufEntry):
        try:
            return str(dequantised_folder(gguf_file(entry, zoo.path))), {}
        except GgufError as e:
            raise ModelLoadError(str(e)) from None
    return str(weights_folder(entry, zoo.path)), {}


def load_model(entry: Entry, zoo: Zoo, device: str = "cpu", dtype_name: str | None = None) -> LoadedModel:
    """Load an entry with eager attention (attention probabilities must be returned), in eval mode,
    in ``dtype_name`` (default: the entry's dtype)."""
    base = zoo.entries[entry.base] if isinstance(entry, RandomInitEntry) else entry
    assert not isinstance(base, RandomInitEntry)
    where, kwargs = _source(base, zoo)
    dtype = getattr(torch, dtype_name or entry.dtype)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(where, **kwargs)
        if isinstance(entry, RandomInitEntry):
            config = transformers.AutoConfig.from_pretrained(where, **kwargs)
            config._attn_implementation = "eager"
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(entry.init_seed)
                model = transformers.AutoModel.from_config(config, attn_implementation="eager", dtype=dtype)
        else:
            model = transformers.AutoModel.from_pretrained(where, attn_implementation="eager", dtype=dtype, **kwargs)
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(base, HubEntry) and ("connect" in first.lower() or "offline" in first.lower()):
            raise ModelLoadError(f"cannot reach the Hugging Face hub for {where!r}: {first}") from e
        raise ModelLoadError(f"cannot load {where!r}: {first}") from e
    except ValueError as e:
        raise ModelLoadError(f"cannot load {where!r}: {str(e).splitlines()[0]}") from e
    model.eval().requires_grad_(False).to(device)
    return LoadedModel(model=model, tokenizer=tokenizer)
