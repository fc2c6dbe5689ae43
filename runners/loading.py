"""Load a zoo entry as (model, tokenizer), in eval mode with eager attention."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import transformers

from runners.gguf import GgufError, dequantised_folder
from runners.health import check_tokenizer_files, check_weights
from runners.hub import cached, hub_reachable, why_unreachable
from runners.weights import ModelLoadError, gguf_file, weights_folder
from runners.zoo import Entry, GgufEntry, HubEntry, LoadableEntry, RandomInitEntry, Zoo


@dataclass
class LoadedModel:
    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase


def _source(entry: LoadableEntry, zoo: Zoo) -> tuple[str, dict]:
    """Where transformers loads an entry from and with which arguments; folders must hold a tokenizer."""
    if isinstance(entry, HubEntry):
        repo = entry.repo or entry.id
        kwargs: dict = {"revision": entry.revision}
        if not hub_reachable():
            if not cached(repo, entry.revision):
                raise ModelLoadError(f"{why_unreachable()}, and {repo!r} is not in the local cache")
            kwargs["local_files_only"] = True
        return repo, kwargs
    if isinstance(entry, GgufEntry):
        try:
            folder = dequantised_folder(gguf_file(entry, zoo.path))
        except GgufError as e:
            raise ModelLoadError(str(e)) from None
    else:
        folder = weights_folder(entry, zoo.path)
    check_tokenizer_files(folder)
    return str(folder), {}


def load_model(entry: Entry, zoo: Zoo, device: str = "cpu", dtype_name: str | None = None,
               init_seed: int | None = None) -> LoadedModel:
    """Load an entry with eager attention (attention probabilities must be returned), in eval mode,
    in ``dtype_name`` (default: the entry's dtype); a random-init control with ``init_seed`` (one of
    its ``init_seeds``). Its weights must be finite."""
    base = zoo.entries[entry.base] if isinstance(entry, RandomInitEntry) else entry
    assert not isinstance(base, RandomInitEntry)
    where, kwargs = _source(base, zoo)
    kwargs["trust_remote_code"] = base.trust_remote_code or entry.trust_remote_code
    dtype = getattr(torch, dtype_name or entry.dtype)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(where, **kwargs)
        if isinstance(entry, RandomInitEntry):
            config = transformers.AutoConfig.from_pretrained(where, **kwargs)
            config._attn_implementation = "eager"
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(entry.init_seeds[0] if init_seed is None else init_seed)
                model = transformers.AutoModel.from_config(config, attn_implementation="eager", dtype=dtype,
                                                           trust_remote_code=kwargs["trust_remote_code"])
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
    check_weights(model.named_parameters())
    return LoadedModel(model=model, tokenizer=tokenizer)
