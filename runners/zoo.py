"""The model zoo (``models.yaml``): one validated entry per model, one clear line per bad entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import pydantic
import yaml

DTypeName = Literal["float32", "bfloat16", "float16"]


class _Entry(pydantic.BaseModel):
    """Fields every entry has. ``family`` and ``notes`` are descriptive; sizes are read from the config."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    id: str = pydantic.Field(min_length=1)
    family: str | None = None
    dtype: DTypeName = "float32"
    tags: tuple[str, ...] = ()
    notes: str = ""


class HubEntry(_Entry):
    """A Hugging Face hub model: ``repo`` (defaults to ``id``) at ``revision``."""

    source: Literal["hub"]
    repo: str | None = None
    revision: str = "main"


class LocalEntry(_Entry):
    """A model saved with ``save_pretrained`` in a local folder (relative to models.yaml)."""

    source: Literal["local"]
    path: str


class PackageEntry(_Entry):
    """A transformers folder shipped in PyPI packages (``packages``: their pip names).

    ``subdir``: the folder, relative to site-packages; or, with ``file``, inside the zip archive
    ``file``, shipped whole or split into parts (``file.001`` ...) across the packages.
    """

    source: Literal["package"]
    packages: tuple[str, ...] = pydantic.Field(min_length=1)
    subdir: str = ""
    file: str | None = None
    sha256: str | None = None


class GgufEntry(_Entry):
    """A GGUF file: ``path`` (relative to models.yaml), or ``file`` shipped whole or in parts in ``packages``."""

    source: Literal["gguf"]
    path: str | None = None
    packages: tuple[str, ...] = ()
    file: str | None = None
    sha256: str | None = None

    @pydantic.model_validator(mode="after")
    def _one_location(self) -> GgufEntry:
        if (self.path is None) == (not (self.packages and self.file)):
            raise ValueError("give either 'path' or both 'packages' and 'file'")
        return self


class RandomInitEntry(_Entry):
    """The untrained control: ``base``'s config and tokenizer with freshly initialised weights."""

    source: Literal["random_init"]
    base: str
    init_seed: int = 0


LoadableEntry = HubEntry | LocalEntry | PackageEntry | GgufEntry
Entry = LoadableEntry | RandomInitEntry
ModelEntry = Annotated[Entry, pydantic.Field(discriminator="source")]
_ENTRY = pydantic.TypeAdapter(ModelEntry)


class ZooFileError(Exception):
    """The zoo file itself cannot be read (missing, not YAML, no ``models`` list)."""


@dataclass(frozen=True)
class EntryError:
    """A bad entry: its position, its id when it has one, and one line saying what is wrong."""

    path: Path
    index: int
    entry_id: str | None
    message: str

    @property
    def label(self) -> str:
        return self.entry_id or f"entry #{self.index + 1}"

    def __str__(self) -> str:
        name = f"entry #{self.index + 1}" + (f" ({self.entry_id!r})" if self.entry_id else "")
        return f"{self.path}: {name}: {self.message}"


@dataclass
class Zoo:
    path: Path
    entries: dict[str, Entry] = field(default_factory=dict)
    errors: list[EntryError] = field(default_factory=list)

    def needs_hub(self, entry_id: str) -> bool:
        entry = self.entries[entry_id]
        if isinstance(entry, RandomInitEntry):
            return self.needs_hub(entry.base)
        return isinstance(entry, HubEntry)

    def select(self, names: list[str] | None) -> tuple[list[str], list[str]]:
        """Entry ids for ``names`` and the names that match nothing.

        A name is an entry id, a tag, ``all``, or ``all-offline`` (every entry that needs no hub
        access); None means the tag ``default``.
        """
        wanted = names or ["default"]
        chosen: list[str] = []
        unknown: list[str] = []
        for name in wanted:
            if name == "all":
                matches = list(self.entries)
            elif name == "all-offline":
                matches = [i for i in self.entries if not self.needs_hub(i)]
            elif name in self.entries:
                matches = [name]
            else:
                matches = [i for i, e in self.entries.items() if name in e.tags]
                matches += [e.label for e in self.errors if e.entry_id == name]
            if not matches:
                unknown.append(name)
            chosen += [m for m in matches if m not in chosen]
        return chosen, unknown


def _describe(error: pydantic.ValidationError) -> str:
    parts = []
    for err in error.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        if err["type"] == "union_tag_invalid":
            parts.append(f"unknown source {err['input'].get('source')!r} (expected hub, local, package, gguf or random_init)")
        elif err["type"] == "union_tag_not_found":
            parts.append("missing key 'source'")
        elif err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc[-1]!r}")
        elif err["type"] == "missing":
            parts.append(f"missing key {loc[-1]!r}")
        elif err["type"] == "value_error":
            parts.append(str(err["ctx"]["error"]))
        else:
            where = loc[-1] if loc else "entry"
            parts.append(f"{where!r}: {err['msg'].lower()} (got {err['input']!r})")
    return "; ".join(parts)


def load_zoo(path: str | Path) -> Zoo:
    """Parse and validate ``models.yaml``; bad entries are collected, the good ones kept."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ZooFileError(f"{path}: no such file (pass --zoo PATH)") from None
    except yaml.YAMLError as e:
        raise ZooFileError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ZooFileError(f"{path}: expected a top-level 'models:' list")
    zoo = Zoo(path=path)
    positions: dict[str, int] = {}
    for index, raw in enumerate(data["models"]):
        raw_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        if not isinstance(raw, dict):
            zoo.errors.append(EntryError(path, index, None, f"expected a mapping, got {type(raw).__name__}"))
            continue
        try:
            entry = _ENTRY.validate_python(raw)
        except pydantic.ValidationError as e:
            zoo.errors.append(EntryError(path, index, raw_id, _describe(e)))
            continue
        if entry.id in zoo.entries:
            zoo.errors.append(EntryError(path, index, entry.id, "duplicate id"))
            continue
        zoo.entries[entry.id] = entry
        positions[entry.id] = index
    for entry_id, entry in list(zoo.entries.items()):
        if isinstance(entry, RandomInitEntry) and not isinstance(zoo.entries.get(entry.base), LoadableEntry):
            del zoo.entries[entry_id]
            message = f"'base': {entry.base!r} is not a loadable entry of this zoo"
            zoo.errors.append(EntryError(path, positions[entry_id], entry_id, message))
    return zoo
