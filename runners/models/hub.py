"""The Hugging Face hub: whether it can be reached (decided once per process), which commit a
revision names (once per run), and why a download failed.

Without a network every hub download retries for tens of seconds; a run of many hub entries would
spend minutes failing. ``HF_HUB_OFFLINE=1`` says so up front; otherwise one connection attempt to
the hub's host (two seconds at most) decides, and hub entries that are not in the local cache then
fail at once with one line.

A revision (a branch, a tag or a commit) is resolved to its commit sha once per run (the process
that plans a run hands its commits to its Ray workers): online from the configured endpoint
(``HF_ENDPOINT``), offline from the local cache's refs. Everything
of that repo is then read at that commit, and the commit is what a cell's key holds, so a branch
that moves makes new cells and one commit reached by branch or by sha is one cell.
"""

from __future__ import annotations

import os
import re
import socket
import urllib.parse
from functools import lru_cache
from pathlib import Path

from idsuite.runners.models.cache import remember_text

CONNECT_TIMEOUT = 2.0
COMMIT = re.compile(r"[0-9a-f]{40}")
"""What a git commit sha looks like (the hub's revisions resolve to one)."""


class HubError(Exception):
    """A hub repo or revision cannot be reached or resolved; one line naming the cause."""


def offline_mode() -> bool:
    """``HF_HUB_OFFLINE`` is set: use cached copies only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def endpoint() -> str:
    """The hub this process talks to: ``HF_ENDPOINT`` when set, else huggingface.co."""
    import huggingface_hub.constants

    return huggingface_hub.constants.ENDPOINT.rstrip("/")


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    if offline_mode():
        return False
    url = urllib.parse.urlparse(endpoint())
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=CONNECT_TIMEOUT).close()
    except OSError:
        return False
    return True


def why_unreachable() -> str:
    if offline_mode():
        return f"cannot reach the hub at {endpoint()} (HF_HUB_OFFLINE is set)"
    return f"cannot reach the hub at {endpoint()} (no connection; checked once for this run)"


def cached(repo: str, revision: str) -> bool:
    """Whether the hub's copy of ``repo`` at ``revision`` is in the local cache (its config, at least)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str)


def _refs(repo: str, kind: str) -> Path:
    """The folder of ``repo``'s refs (branch -> commit) in the local hub cache (huggingface_hub's layout)."""
    import huggingface_hub.constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(huggingface_hub.constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type=kind) / "refs"


def _cached_commit(repo: str, revision: str, kind: str) -> str | None:
    """The commit the local cache knows ``revision`` of ``repo`` as: a sha whose snapshot is there,
    or what the cache's ``refs/<revision>`` file says."""
    if COMMIT.fullmatch(revision):
        return revision if (_refs(repo, kind).parent / "snapshots" / revision).is_dir() else None
    try:
        text = (_refs(repo, kind) / revision).read_text().strip()
    except OSError:
        return None
    return text if COMMIT.fullmatch(text) else None


def _remember(repo: str, revision: str, commit: str, kind: str) -> None:
    """Write ``refs/<revision>`` (a branch or tag resolved online) into the local cache, as
    huggingface_hub does when it downloads by branch: the files are then downloaded by commit, and
    an offline run resolves the branch from here. Atomic; a cache that cannot be written only means
    that offline runs cannot resolve the branch."""
    if COMMIT.fullmatch(revision):
        return
    remember_text(_refs(repo, kind) / revision, commit)


_RESOLVED: dict[tuple[str, str, str], str] = {}
"""(repo, revision, kind) -> commit: every revision resolved in this process (or handed over by the
process that planned the run, ``pin``)."""


def resolved_commit(repo: str, revision: str, kind: str = "model") -> str:
    """The commit sha ``revision`` of ``repo`` (``kind``: model or dataset) names, decided once per
    run: asked of the hub when it can be reached, else read from the local cache, then remembered
    (``pinned``). A ``HubError`` says why it cannot be resolved."""
    if (repo, revision, kind) not in _RESOLVED:
        _RESOLVED[(repo, revision, kind)] = _resolve(repo, revision, kind)
    return _RESOLVED[(repo, revision, kind)]


def pinned() -> dict[tuple[str, str, str], str]:
    """The revisions resolved so far, to hand to the workers of a run (``pin``)."""
    return dict(_RESOLVED)


def pin(resolved: dict[tuple[str, str, str], str]) -> None:
    """Take revisions resolved by the process that planned the run: a worker then reads the same
    commits, even when a branch moves while the run goes on."""
    _RESOLVED.update(resolved)


def _resolve(repo: str, revision: str, kind: str) -> str:
    if not hub_reachable():
        commit = _cached_commit(repo, revision, kind)
        if commit is None:
            raise HubError(f"{why_unreachable()}, and {repo}@{revision} is not in the local cache")
        return commit
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint()).repo_info(repo, revision=revision, repo_type=kind)
    except Exception as e:  # noqa: BLE001  (every cause is named in one line)
        raise HubError(failure_cause(e, repo, revision)) from None
    if not isinstance(info.sha, str) or not COMMIT.fullmatch(info.sha):
        raise HubError(f"{endpoint()} gave no commit for {repo}@{revision}")
    _remember(repo, revision, info.sha, kind)
    return info.sha


def _chain(e: BaseException) -> list[BaseException]:
    """``e`` and every exception it was raised from or during, outermost first."""
    out: list[BaseException] = []
    pending = [e]
    while pending:
        current = pending.pop(0)
        if current is None or any(current is seen for seen in out):
            continue
        out.append(current)
        pending += [current.__cause__, current.__context__]
    return out


def _named(chain: list[BaseException], *names: str) -> BaseException | None:
    """The first exception of ``chain`` of a class (or base class) named in ``names``."""
    for e in chain:
        if any(c.__name__ in names for c in type(e).__mro__):
            return e
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _host(e: BaseException, where: str) -> str:
    """Who did not answer: the configured endpoint, or the file host it sent the download to."""
    try:
        url = urllib.parse.urlparse(str(e.request.url))  # httpx's errors carry their request
    except (AttributeError, RuntimeError):
        return f"the hub at {where}"
    origin = f"{url.scheme}://{url.netloc}"
    return f"the hub at {where}" if origin == where else f"the file host {origin} (where {where} sends the download)"


def failure_cause(e: BaseException, repo: str, revision: str | None = None) -> str | None:
    """The root cause of a failed hub access, found in ``e``'s exception chain, as one line naming
    the configured endpoint and what to do; None when the chain holds no hub cause."""
    chain = _chain(e)
    where = endpoint()
    at = f"@{revision}" if revision else ""
    if _named(chain, "GatedRepoError"):
        return (f"{repo} is gated on {where}: accept its licence at {where}/{repo}, then log in (hf auth login) "
                "or set HF_TOKEN")
    if _named(chain, "RevisionNotFoundError"):
        return f"{repo} has no revision {revision!r} on {where}"
    if _named(chain, "RepositoryNotFoundError"):
        return f"{repo} does not exist on {where} (or is private: log in or set HF_TOKEN)"
    if found := _named(chain, "RemoteEntryNotFoundError"):
        name = urllib.parse.unquote(str(getattr(getattr(found, "response", None), "url", "")).rsplit("/", 1)[-1])
        return f"{repo}{at} on {where} has no file {name!r}" if name else f"{repo}{at}: a file is missing on {where}"
    if _named(chain, "OfflineModeIsEnabled", "LocalEntryNotFoundError") and not hub_reachable():
        return f"{why_unreachable()}, and {repo}{at} is not (wholly) in the local cache"
    if found := _named(chain, "RemoteProtocolError"):  # httpx: the connection closed before the body's end
        return f"the download of {repo}{at} from {where} was cut off mid-file ({_first_line(found)[:120]})"
    for e_ in chain:
        if isinstance(e_, OSError) and "Consistency check failed" in str(e_):
            return f"the download of {repo}{at} from {where} was cut off mid-file ({_first_line(e_)[:120]})"
    if found := _named(chain, "TimeoutException", "TimeoutError"):
        return f"{_host(found, where)} did not answer in time for {repo}{at} ({_first_line(found)[:120]})"
    if found := _named(chain, "ConnectError", "ConnectionError"):
        refused = any(isinstance(x, ConnectionRefusedError) or "refused" in str(x).lower() for x in chain)
        return f"cannot connect to {_host(found, where)} for {repo}{at}: " + ("connection refused" if refused
                                                                             else _first_line(found)[:120])
    if any("trust_remote_code" in str(x) for x in chain):
        return (f"{repo} runs its own code, which is refused: set 'trust_remote_code: true' in its zoo entry "
                "to allow it")
    return None
