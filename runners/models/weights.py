"""Where a zoo entry's weights are and what identifies them, without loading them (no torch).

``fingerprint`` names the weights: a hub repo at its resolved commit, a hash of the weight files, a
control's base and init seed, a config entry's config, init seed and tokenizer, or an in-memory
model's state hash. It is part of every cell's key, so changed weights make new cells;
``model_commit`` is the hub commit the weights (or a control's base, or a config entry's config)
were read at.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
from pathlib import Path

from idsuite.runners.failures import ModelFailure
from idsuite.runners.models.cache import feed, file_sha256, remembered
from idsuite.runners.models.hub import HubError, cached, failure_cause, hub_reachable, resolved_commit, why_unreachable
from idsuite.runners.models.in_memory import InMemoryEntry
from idsuite.runners.models.package_files import PackageFileError, extracted, package_folder, packaged_file
from idsuite.runners.models.zoo import ConfigEntry, Entry, GgufEntry, HubEntry, LocalEntry, PackageEntry, RandomInitEntry, Zoo

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


class ModelLoadError(ModelFailure):
    """A model cannot be loaded; the message is one line naming the cause."""


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


def hub_commit(repo: str, revision: str) -> str:
    """The commit ``revision`` of the model repo ``repo`` names (``hub.resolved_commit``, once per
    process); a ``ModelLoadError`` naming the cause when it cannot be resolved."""
    try:
        return resolved_commit(repo, revision)
    except HubError as e:
        raise ModelLoadError(str(e)) from None


def _hub_config_file(repo: str, revision: str) -> Path:
    """``repo``'s config.json at ``revision`` (its resolved commit), alone (downloaded once into the
    hub cache); the cached copy when the hub cannot be reached."""
    from huggingface_hub import hf_hub_download

    commit = hub_commit(repo, revision)
    offline = not hub_reachable()
    if offline and not cached(repo, commit):
        raise ModelLoadError(f"{why_unreachable()}, and {repo!r} is not in the local cache")
    try:
        return Path(hf_hub_download(repo, "config.json", revision=commit, local_files_only=offline))
    except Exception as e:  # noqa: BLE001  (the cause is named in one line)
        cause = failure_cause(e, repo, revision) or (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelLoadError(f"cannot download the config.json of {repo!r} at {revision!r}: {cause}") from None


def config_file(entry: ConfigEntry, zoo_path: Path) -> Path:
    """The config.json a config entry is built from: its file (relative to models.yaml) or its repo's."""
    if entry.config is None:
        assert entry.repo is not None
        return _hub_config_file(entry.repo, entry.revision)
    path = _relative(zoo_path, entry.config)
    if not path.is_file():
        raise ModelLoadError(f"config file {str(path)!r} does not exist")
    return path


def config_fields(entry: ConfigEntry, zoo_path: Path) -> dict:
    """The fields a config entry's model is built from: its config.json with ``overrides`` replaced.
    An override must name a field of the file (a typo would otherwise measure the unchanged model
    under the sweep's name)."""
    path = config_file(entry, zoo_path)
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"config file {str(path)!r} is not JSON: {e}") from None
    if not isinstance(fields, dict) or not isinstance(fields.get("model_type"), str):
        raise ModelLoadError(f"config file {str(path)!r} has no 'model_type' (not a transformers config.json)")
    absent = [key for key in entry.overrides if key not in fields]
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise ModelLoadError(f"'overrides': config file {str(path)!r} has no field {absent[0]!r}{more}")
    return fields | entry.overrides


def _config_digest(fields: dict) -> str:
    """sha256 of the config as canonical JSON (keys sorted, no spaces): the same fields give the same
    digest however the file spells them (order, spacing, ``1e-05`` or ``0.00001``)."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _hash_folder(folder: Path) -> str:
    """sha256 of the weight and JSON files of a folder (names and bytes), read once per version of
    the files (``idsuite.runners.models.cache.remembered``)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES + (".json",))
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise ModelLoadError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in {str(folder)!r}")
    return remembered(f"folder:{folder.resolve()}", files, lambda: _hash_files(folder, files))


def _hash_files(folder: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.relative_to(folder).as_posix().encode())
        feed(digest, p)
    return digest.hexdigest()[:16]


def model_commit(entry: Entry, zoo: Zoo) -> str | None:
    """The hub commit an entry's weights are read at: a hub entry's resolved revision, a control's
    base's, a config entry's repo's (its config); None for weights that are not from the hub."""
    if isinstance(entry, RandomInitEntry):
        entry = zoo.entries[entry.base]
    if isinstance(entry, HubEntry):
        return hub_commit(entry.repo or entry.id, entry.revision)
    if isinstance(entry, ConfigEntry) and entry.repo is not None:
        return hub_commit(entry.repo, entry.revision)
    return None


def fingerprint(entry: Entry, zoo: Zoo, init_seed: int | None = None) -> str:
    """What identifies the weights without loading them: hub repo at its resolved commit, file hash, base + init seed
    (``init_seed``: one of a control's seeds; default its first), or a config entry's config digest
    (after its overrides) + init seed + its tokenizer entry's fingerprint. Fresh weights also depend
    on the torch and transformers versions that drew them; both are in every cell's key beside this.
    Files that cannot be read give a ``ModelLoadError``."""
    try:
        return _fingerprint(entry, zoo, init_seed)
    except OSError as e:
        where = f" {e.filename!r}" if getattr(e, "filename", None) else ""
        raise ModelLoadError(f"cannot read the weights{where}: {type(e).__name__}: {e.strerror or e}") from None


def _fingerprint(entry: Entry, zoo: Zoo, init_seed: int | None) -> str:
    if isinstance(entry, InMemoryEntry):
        return entry.weights_fingerprint
    if isinstance(entry, HubEntry):
        repo = entry.repo or entry.id
        return f"hub:{repo}@{hub_commit(repo, entry.revision)}"
    if isinstance(entry, RandomInitEntry):
        seed = entry.init_seeds[0] if init_seed is None else init_seed
        return f"random_init(seed={seed}):{_fingerprint(zoo.entries[entry.base], zoo, None)}"
    if isinstance(entry, ConfigEntry):
        digest = _config_digest(config_fields(entry, zoo.path))
        return f"config(seed={entry.init_seed}):sha256={digest},tokenizer={_fingerprint(zoo.entries[entry.tokenizer], zoo, None)}"
    if isinstance(entry, GgufEntry):
        return f"gguf:sha256={file_sha256(gguf_file(entry, zoo.path))[:16]}"
    folder = weights_folder(entry, zoo.path)
    label = "local"
    if isinstance(entry, PackageEntry):
        first = entry.packages[0]
        more = f"+{len(entry.packages) - 1}" if len(entry.packages) > 1 else ""
        label = f"package:{first}=={importlib.metadata.version(first)}{more}"
    return f"{label}:sha256={_hash_folder(folder)}"


def _safetensors_parameters(path: Path) -> int:
    """Parameters in a safetensors file, from its header alone (8-byte length, then JSON shapes)."""
    with path.open("rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        if not 0 < size < 1 << 27:
            raise ValueError(f"{path.name}: not a safetensors header")
        header = json.loads(fh.read(size))
    return sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")


def parameter_count(entry: Entry, zoo: Zoo) -> int | None:
    """The number of weights of an entry without loading it, where its files are on this machine:
    exact from safetensors headers, else estimated from file sizes (4 bytes a weight; a GGUF file's
    quantised weights at about half a byte); None for hub entries (their files are not here yet) and
    config entries (no weight files)."""
    base = zoo.entries[entry.base] if isinstance(entry, RandomInitEntry) else entry
    try:
        if isinstance(base, HubEntry | ConfigEntry):
            return None
        if isinstance(base, GgufEntry):
            return gguf_file(base, zoo.path).stat().st_size * 2
        files = [p for p in weights_folder(base, zoo.path).rglob("*") if p.suffix in WEIGHT_SUFFIXES]
        return sum(_safetensors_parameters(p) if p.suffix == ".safetensors" else p.stat().st_size // 4 for p in files)
    except (OSError, ValueError, KeyError, ModelLoadError):
        return None
