"""The model zoo (``models.yaml``): one validated entry per model, one clear line per bad entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import pydantic
import yaml

from idsuite.results.store import NAME_MAX, model_folder

DTypeName = Literal["float32", "bfloat16", "float16"]


MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 20
MAX_ALIASES = 20
"""Limits on a zoo file: its size, the nesting of its YAML, and how many aliases (``*name``) it may
use (each alias can multiply what a reader of the parsed data traverses)."""
MAX_SHOWN = 60
"""Longest piece of the input an error message quotes."""
MAX_PROBLEMS = 3
"""Problems of one entry named in its line (the rest are counted)."""


def _shown(value: object) -> str:
    """``repr(value)``, cut to ``MAX_SHOWN`` characters: a message never echoes an unbounded input."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _valid_id(value: str) -> str:
    if not value.strip():
        raise ValueError("'id' must not be empty")
    if value in (".", ".."):
        raise ValueError(f"'id' must not be {value!r}")
    if any(ord(ch) < 32 for ch in value) or len(value) > 200:
        raise ValueError("'id' must be at most 200 printable characters")
    folder = len(model_folder(value).encode())
    if folder > NAME_MAX:
        raise ValueError(f"'id' is too long for a file system: its result folder name (percent-encoded) has {folder} "
                         f"bytes, at most {NAME_MAX} fit")
    return value


class EntryFields(pydantic.BaseModel):
    """Fields every entry has. ``family`` and ``notes`` are descriptive; sizes are read from the config.
    ``trust_remote_code``: let transformers run the model's own Python code (off unless opted in;
    recorded in every row and marked in the leaderboard)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, pydantic.AfterValidator(_valid_id)]
    family: str | None = None
    dtype: DTypeName = "float32"
    tags: tuple[str, ...] = ()
    notes: str = ""
    trust_remote_code: bool = False


class HubEntry(EntryFields):
    """A Hugging Face hub model: ``repo`` (defaults to ``id``) at ``revision``."""

    source: Literal["hub"]
    repo: str | None = None
    revision: str = "main"


class LocalEntry(EntryFields):
    """A model saved with ``save_pretrained`` in a local folder (relative to models.yaml)."""

    source: Literal["local"]
    path: str


class PackageEntry(EntryFields):
    """A transformers folder shipped in PyPI packages (``packages``: their pip names).

    ``subdir``: the folder, relative to site-packages; or, with ``file``, inside the zip archive
    ``file``, shipped whole or split into parts (``file.001`` ...) across the packages.
    """

    source: Literal["package"]
    packages: tuple[str, ...] = pydantic.Field(min_length=1)
    subdir: str = ""
    file: str | None = None
    sha256: str | None = None


class GgufEntry(EntryFields):
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


DEFAULT_INIT_SEEDS = (0, 1, 2)


class RandomInitEntry(EntryFields):
    """The untrained control: ``base``'s config and tokenizer with freshly initialised weights, one
    model per seed in ``init_seeds`` (default three: the control is reported as the band they span;
    ``init_seed: k`` is the one seed k)."""

    source: Literal["random_init"]
    base: str
    init_seeds: tuple[Annotated[int, pydantic.Field(ge=0)], ...] = pydantic.Field(DEFAULT_INIT_SEEDS, min_length=1)
    init_seed: Annotated[int, pydantic.Field(ge=0)] | None = None

    @pydantic.model_validator(mode="after")
    def _one_seed_or_several(self) -> RandomInitEntry:
        if self.init_seed is not None:
            if "init_seeds" in self.model_fields_set:
                raise ValueError("give either 'init_seed' or 'init_seeds'")
            object.__setattr__(self, "init_seeds", (self.init_seed,))
        if len(set(self.init_seeds)) != len(self.init_seeds):
            raise ValueError("'init_seeds' repeats a seed")
        return self


class ConfigEntry(EntryFields):
    """A model built from a config alone, with seeded fresh weights: scaling studies, architecture
    sweeps, large-model fixtures. The config is ``config`` (a config.json, relative to models.yaml)
    or ``repo``'s config.json at ``revision`` (nothing else of the repo is downloaded), with the
    fields in ``overrides`` replaced (each must be a field of that file). A config has no tokenizer:
    ``tokenizer`` names the entry whose tokenizer is used. Weights: ``init_seed``."""

    source: Literal["config"]
    config: str | None = None
    repo: str | None = None
    revision: str = "main"
    tokenizer: str
    overrides: dict[str, pydantic.JsonValue] = pydantic.Field(default_factory=dict)
    init_seed: Annotated[int, pydantic.Field(ge=0)] = 0

    @pydantic.model_validator(mode="after")
    def _one_config(self) -> ConfigEntry:
        if (self.config is None) == (self.repo is None):
            raise ValueError("give either 'config' (a file) or 'repo' (a hub repo)")
        if self.config is not None and "revision" in self.model_fields_set:
            raise ValueError("'revision' goes with 'repo', not with 'config'")
        return self


LoadableEntry = HubEntry | LocalEntry | PackageEntry | GgufEntry
Entry = LoadableEntry | RandomInitEntry | ConfigEntry
ModelEntry = Annotated[Entry, pydantic.Field(discriminator="source")]
_ENTRY = pydantic.TypeAdapter(ModelEntry)


class ZooFileError(Exception):
    """The zoo file itself cannot be read (missing, not YAML, no ``models`` list)."""


@dataclass(frozen=True)
class EntryError:
    """A bad entry: its position, its id and tags when it has them, and one line saying what is wrong."""

    path: Path
    index: int
    entry_id: str | None
    message: str
    tags: tuple[str, ...] = ()

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
        if isinstance(entry, ConfigEntry):
            return entry.repo is not None or self.needs_hub(entry.tokenizer)
        return isinstance(entry, HubEntry)

    def select(self, names: list[str] | None) -> tuple[list[str], list[str]]:
        """Entry ids for ``names`` and the names that match nothing.

        A name is an entry id, a tag, ``all``, or ``all-offline`` (every entry that needs no hub
        access, except config entries: those are sweeps and fixtures, up to billions of fresh
        weights, chosen by id or tag); None means the tag ``default``.
        """
        wanted = names or ["default"]
        chosen: list[str] = []
        unknown: list[str] = []
        for name in wanted:
            if name == "all":
                matches = list(self.entries)
            elif name == "all-offline":
                matches = [i for i, e in self.entries.items() if not (isinstance(e, ConfigEntry) or self.needs_hub(i))]
            elif name in self.entries:
                matches = [name]
            else:  # a broken entry with the tag is selected too: it becomes failed rows, not silence
                matches = [i for i, e in self.entries.items() if name in e.tags]
                matches += [e.label for e in self.errors if e.entry_id == name or name in e.tags]
            if not matches:
                unknown.append(name)
            chosen += [m for m in matches if m not in chosen]
        return chosen, unknown


def _describe(error: pydantic.ValidationError) -> str:
    parts = []
    for err in error.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        if err["type"] == "union_tag_invalid":
            parts.append(f"unknown source {_shown(err['input'].get('source'))} (expected hub, local, package, gguf, random_init or config)")
        elif err["type"] == "union_tag_not_found":
            parts.append("missing key 'source'")
        elif err["type"] == "extra_forbidden":
            parts.append(f"unknown key {_shown(loc[-1])}")
        elif err["type"] == "missing":
            parts.append(f"missing key {loc[-1]!r}")
        elif err["type"] == "value_error":
            parts.append(str(err["ctx"]["error"]))
        else:  # the field, and within a mapping (overrides) the key: loc[0] is the source
            where = ".".join(loc[1:]) if len(loc) > 1 else loc[-1] if loc else "entry"
            parts.append(f"{_shown(where)}: {err['msg'].lower()} (got {_shown(err['input'])})")
    more = f"; and {len(parts) - MAX_PROBLEMS} more" if len(parts) > MAX_PROBLEMS else ""
    return "; ".join(parts[:MAX_PROBLEMS]) + more


class _BoundedLoader(yaml.SafeLoader):
    """YAML's safe loader (plain data only) that refuses deep nesting and many aliases."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.aliases = 0

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201  (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _tags_of(raw: object) -> tuple[str, ...]:
    tags = raw.get("tags") if isinstance(raw, dict) else None
    return tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list | tuple) else ()


def _borrowed(entry: Entry) -> tuple[str, str] | None:
    """(key, id) of the entry this one takes its config and tokenizer (``base``) or its tokenizer
    (``tokenizer``) from; None for an entry that stands alone."""
    if isinstance(entry, RandomInitEntry):
        return "base", entry.base
    if isinstance(entry, ConfigEntry):
        return "tokenizer", entry.tokenizer
    return None


DEFAULT_ZOO = Path(__file__).with_name("models.yaml")
"""The zoo that ships with idsuite (``runners/models/models.yaml`` in the repository)."""


def load_zoo(path: str | Path = DEFAULT_ZOO) -> Zoo:
    """Parse and validate a zoo file (by default the shipped one); bad entries are collected, the good ones kept."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ZooFileError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB; a zoo file lists models, not data")
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_BoundedLoader)  # noqa: S506  (a safe loader)
    except FileNotFoundError:
        raise ZooFileError(f"{path}: no such file (pass --zoo PATH)") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ZooFileError(f"{path}: cannot be read ({type(e).__name__})") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise ZooFileError(f"{path}: not valid YAML: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ZooFileError(f"{path}: expected a top-level 'models:' list")
    zoo = Zoo(path=path)
    positions: dict[str, int] = {}
    duplicates: dict[str, list[int]] = {}  # id -> the positions of every entry with it
    tags: dict[str, tuple[str, ...]] = {}  # id -> the tags of its later duplicates
    folders: dict[str, tuple[int, str]] = {}  # case-folded result folder -> (index, id)
    for index, raw in enumerate(data["models"]):
        raw_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        raw_id = raw_id if raw_id is None or len(raw_id) <= MAX_SHOWN else raw_id[: MAX_SHOWN - 1] + "…"
        if not isinstance(raw, dict):
            zoo.errors.append(EntryError(path, index, None, f"expected a mapping, got {type(raw).__name__}"))
            continue
        try:
            entry = _ENTRY.validate_python(raw)
        except pydantic.ValidationError as e:
            zoo.errors.append(EntryError(path, index, raw_id, _describe(e), _tags_of(raw)))
            continue
        if entry.id in positions:  # which of them was meant cannot be known: both are errors
            duplicates.setdefault(entry.id, [positions[entry.id]]).append(index)
            tags[entry.id] = tags.get(entry.id, ()) + tuple(t for t in entry.tags if t not in tags.get(entry.id, ()))
            continue
        positions[entry.id] = index
        folded = model_folder(entry.id).casefold()
        if folded in folders:  # distinct ids whose result folders differ only in case: one on macOS/Windows
            other_index, other = folders[folded]
            message = f"same result folder as entry #{other_index + 1} ({other!r}) on case-insensitive file systems"
            zoo.errors.append(EntryError(path, index, entry.id, message, entry.tags))
            continue
        folders[folded] = (index, entry.id)
        zoo.entries[entry.id] = entry
    for entry_id, indices in duplicates.items():
        entry = zoo.entries.pop(entry_id, None)
        where = ", ".join(f"#{i + 1}" for i in indices[:-1]) + f" and #{indices[-1] + 1}"
        first = entry.tags if entry else ()
        zoo.errors.append(EntryError(path, indices[0], entry_id, f"duplicate id: entries {where} are all named "
                                     f"{_shown(entry_id)} (rename all but one)",
                                     first + tuple(t for t in tags[entry_id] if t not in first)))
    for entry_id, entry in list(zoo.entries.items()):
        borrowed = _borrowed(entry)
        if borrowed is not None and not isinstance(zoo.entries.get(borrowed[1]), LoadableEntry):
            del zoo.entries[entry_id]
            message = f"{borrowed[0]!r}: {_shown(borrowed[1])} is not a loadable entry of this zoo"
            zoo.errors.append(EntryError(path, positions[entry_id], entry_id, message, entry.tags))
    return zoo
