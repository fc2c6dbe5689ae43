"""Whether the Hugging Face hub can be reached, decided once per process.

Without a network every hub download retries for tens of seconds; a run of many hub entries would
spend minutes failing. ``HF_HUB_OFFLINE=1`` says so up front; otherwise one connection attempt to
the hub's host (two seconds at most) decides, and hub entries that are not in the local cache then
fail at once with one line.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from functools import lru_cache

CONNECT_TIMEOUT = 2.0


def offline_mode() -> bool:
    """``HF_HUB_OFFLINE`` is set: use cached copies only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    if offline_mode():
        return False
    import huggingface_hub.constants

    url = urllib.parse.urlparse(huggingface_hub.constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=CONNECT_TIMEOUT).close()
    except OSError:
        return False
    return True


def why_unreachable() -> str:
    if offline_mode():
        return "cannot reach the Hugging Face hub (HF_HUB_OFFLINE is set)"
    return "cannot reach the Hugging Face hub (no connection; checked once for this run)"


def cached(repo: str, revision: str) -> bool:
    """Whether the hub's copy of ``repo`` at ``revision`` is in the local cache (its config, at least)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str)
