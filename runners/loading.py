"""Load a zoo entry as (model, tokenizer) plus the facts that identify its weights."""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import transformers

from runners.gguf import GgufError, dequantised_folder
from runners.package_files import PackageFileError, extracted, file_sha256, package_folder, packaged_file
from runners.zoo import Entry, GgufEntry, HubEntry, LoadableEntry, LocalEntry, PackageEntry, RandomInitEntry, Zoo

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


class ModelLoadError(Exception):
    """A model cannot be loaded; the message is one line naming the cause."""


@dataclass
class LoadedModel:
    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase


def _relative(zoo_path: Path, path: str) -> Path:
    return (zoo_path.parent / path).resolve()


def gguf_file(entry: GgufEntry, zoo_path: Path) -> Path:
    """The entry's .gguf file: a local path (relative to models.yaml) or assembled from packages."""
    if entry.path is not None:
        path = _relative(zoo_path, entry.path)
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {str(path)!r} does not exist")
        return path
    assert entry.file is not None
    try:
        return packaged_file(entry.packages, entry.file, entry.sha256)
    except PackageFileError as e:
        raise ModelLoadError(str(e)) from None


def weights_folder(entry: LocalEntry | PackageEntry, zoo_path: Path) -> Path:
    """Folder holding a local or packaged model's files (local paths are relative to models.yaml)."""
    if isinstance(entry, LocalEntry):
        folder = _relative(zoo_path, entry.path)
        if not folder.is_dir():
            raise ModelLoadError(f"local folder {str(folder)!r} does not exist")
        return folder
    try:
        if entry.file is None:
            return package_folder(entry.packages, entry.subdir)
        folder = extracted(packaged_file(entry.packages, entry.file, entry.sha256)) / entry.subdir
    except PackageFileError as e:
        raise ModelLoadError(str(e)) from None
    if not folder.is_dir():
        raise ModelLoadError(f"archive {entry.file!r} has no folder {entry.subdir!r}")
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
    if isinstance(entry, GgufEntry):
        return f"gguf:sha256={file_sha256(gguf_file(entry, zoo.path))[:16]}"
    folder = weights_folder(entry, zoo.path)
    label = "local"
    if isinstance(entry, PackageEntry):
        first = entry.packages[0]
        more = f"+{len(entry.packages) - 1}" if len(entry.packages) > 1 else ""
        label = f"package:{first}=={importlib.metadata.version(first)}{more}"
    return f"{label}:sha256={_hash_folder(folder)}"


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
