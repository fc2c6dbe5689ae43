"""Load a zoo entry as (model, tokenizer), in eval mode with eager attention."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import transformers

from idsuite.results.labels import count_label
from idsuite.runners.failures import ModelFailure
from idsuite.runners.models.gguf import GgufError, dequantised_folder
from idsuite.runners.models.health import check_tokenizer_files, check_vocabulary, check_weights
from idsuite.runners.models.hub import cached, endpoint, failure_cause, hub_reachable, why_unreachable
from idsuite.runners.models.in_memory import InMemoryEntry
from idsuite.runners.models.weights import ModelLoadError, config_fields, gguf_file, hub_commit, parameter_count, weights_folder
from idsuite.runners.models.zoo import ConfigEntry, Entry, GgufEntry, HubEntry, LoadableEntry, RandomInitEntry, Zoo

MAX_SIZES = {"num_hidden_layers": 1024, "num_attention_heads": 1024, "hidden_size": 1 << 16,
             "intermediate_size": 1 << 19, "vocab_size": 1 << 22, "max_position_embeddings": 1 << 22}
"""Caps on a config's sizes, far above any released transformer's (hidden sizes reach 2^14, layers
a few hundred, vocabularies 2^18): a config past one is refused before anything is built."""
WEIGHTS_SLACK = 4
"""How many times more weights a config may describe than its weight files hold (``.bin`` files are
counted from their size at 4 bytes a weight, so half-precision files count half)."""


def _memory_bytes(device: str) -> int:
    """What ``device`` can hold at most: the GPU's memory, or this machine's physical memory."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_sizes(config: transformers.PretrainedConfig, weights: int | None, device: str, dtype: torch.dtype,
                trust_remote_code: bool) -> None:
    """Refuse a config before any weight is allocated: a size past ``MAX_SIZES`` (or below 1), a
    model that would not fit ``device``, or one that describes more than ``WEIGHTS_SLACK`` times the
    ``weights`` its files hold (a config that does not belong to them). The count comes from the
    model built on the meta device (shapes only, no memory)."""
    for name, cap in MAX_SIZES.items():
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= cap:
            raise ModelFailure(f"config: {name} = {value} is not a sane size (1 to {cap})")
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    count = sum(p.numel() for p in model.parameters())
    need, have = count * dtype.itemsize, _memory_bytes(device)
    if need > have:
        raise ModelFailure(f"config: {count_label(count)} weights ({need / 2**30:.1f} GiB in {str(dtype)[6:]}) do not fit "
                           f"the {have / 2**30:.1f} GiB of {device}")
    if weights and count > WEIGHTS_SLACK * weights:
        raise ModelFailure(f"config: it describes {count_label(count)} weights, its weight files hold "
                           f"{count_label(weights)}: the config does not belong to these weights")


@dataclass
class LoadedModel:
    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase


def _source(entry: LoadableEntry, zoo: Zoo) -> tuple[str, dict]:
    """Where transformers loads an entry from and with which arguments (a hub entry at the commit
    its revision resolved to for this run, whatever the branch does meanwhile); folders must hold a
    tokenizer."""
    if isinstance(entry, HubEntry):
        repo = entry.repo or entry.id
        kwargs: dict = {"revision": hub_commit(repo, entry.revision)}
        if not hub_reachable():
            if not cached(repo, kwargs["revision"]):
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


def _files_of(entry: Entry, zoo: Zoo) -> LoadableEntry:
    """The entry whose files are loaded: the entry itself, a control's base (its config and
    tokenizer), or a config entry's ``tokenizer`` (its tokenizer only)."""
    if isinstance(entry, RandomInitEntry):
        return zoo.entries[entry.base]
    if isinstance(entry, ConfigEntry):
        return zoo.entries[entry.tokenizer]
    return entry


def config_of(entry: ConfigEntry, zoo: Zoo) -> transformers.PretrainedConfig:
    """A config entry's config: the fields ``config_fields`` reads (and ``fingerprint`` hashes), as
    the config class of their ``model_type``."""
    fields = config_fields(entry, zoo.path)
    if fields["model_type"] not in transformers.CONFIG_MAPPING:
        raise ModelLoadError(f"model_type {fields['model_type']!r} of {entry.config or entry.repo!r} is unknown to "
                             f"transformers {transformers.__version__}")
    return transformers.CONFIG_MAPPING[fields["model_type"]].from_dict(fields)


def _initialised(config: transformers.PretrainedConfig, seed: int, dtype: torch.dtype,
                 trust_remote_code: bool) -> transformers.PreTrainedModel:
    """A model of ``config`` with fresh weights drawn after ``torch.manual_seed(seed)`` (the global
    generator is restored afterwards): one config and seed give the same weights under one torch and
    transformers version."""
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transformers.AutoModel.from_config(config, attn_implementation="eager", dtype=dtype,
                                                  trust_remote_code=trust_remote_code)


def load_model(entry: Entry, zoo: Zoo, device: str = "cpu", dtype_name: str | None = None,
               init_seed: int | None = None) -> LoadedModel:
    """Load an entry with eager attention (attention probabilities must be returned), in eval mode,
    in ``dtype_name`` (default: the entry's dtype); a random-init control with ``init_seed`` (one of
    its ``init_seeds``); a config entry with its own ``init_seed`` and its tokenizer entry's
    tokenizer, which must fit its vocabulary; an in-memory model as it is (its device and dtype; only
    its attention implementation is set to eager, ``idsuite.evaluate`` restores it). Its weights must
    be finite."""
    if isinstance(entry, InMemoryEntry):
        entry.model.set_attn_implementation("eager")
        check_weights(entry.model.named_parameters())
        return LoadedModel(model=entry.model, tokenizer=entry.tokenizer)
    files = _files_of(entry, zoo)
    where, kwargs = _source(files, zoo)
    kwargs["trust_remote_code"] = files.trust_remote_code or entry.trust_remote_code
    dtype = getattr(torch, dtype_name or entry.dtype)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(where, **kwargs)
        if isinstance(entry, ConfigEntry):
            where = entry.config or entry.repo  # from here on a failure is the config's
            config = config_of(entry, zoo)
            check_vocabulary(len(tokenizer), getattr(config, "vocab_size", None), entry.tokenizer)
        else:
            config = transformers.AutoConfig.from_pretrained(where, **kwargs)
        check_sizes(config, parameter_count(entry, zoo), device, dtype, kwargs["trust_remote_code"])
        if isinstance(entry, RandomInitEntry):
            model = _initialised(config, entry.init_seeds[0] if init_seed is None else init_seed, dtype,
                                 kwargs["trust_remote_code"])
        elif isinstance(entry, ConfigEntry):
            model = _initialised(config, entry.init_seed, dtype, entry.trust_remote_code)
        else:
            model = transformers.AutoModel.from_pretrained(where, config=config, attn_implementation="eager", dtype=dtype,
                                                           **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(files, HubEntry):  # the root cause from the chain, else what transformers said, and the hub
            repo = files.repo or files.id
            first = failure_cause(e, repo, files.revision) or f"{first} (hub: {endpoint()}, {repo}@{files.revision})"
        raise ModelLoadError(f"cannot load {where!r}: {first}") from e
    model.eval().requires_grad_(False).to(device)
    check_weights(model.named_parameters())
    return LoadedModel(model=model, tokenizer=tokenizer)
