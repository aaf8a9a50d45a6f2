"""Fail at once when the Hugging Face hub cannot be reached, instead of retrying for half a minute.

``datasets.load_dataset`` on a hub id retries an unreachable hub five times (about 25 s) before it gives
up. ee-bench asks once, with a short TCP connect to the hub's host (:func:`hub_reachable`); when it
fails, data sets are loaded in the hub libraries' offline mode (:func:`offline_unless_reachable`):
what is in the local cache loads, anything else fails at once, and the caller's error message names the
local layout to use instead.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from functools import lru_cache
from urllib.parse import urlparse

CONNECT_TIMEOUT_S = 3.0


@lru_cache(maxsize=4)
def hub_reachable(endpoint: str | None = None, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub's host opens within ``timeout_s`` seconds (asked once per process).

    Args:
        endpoint: the hub's URL (default: ``huggingface_hub.constants.ENDPOINT``, which follows ``HF_ENDPOINT``).
    """
    if endpoint is None:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)),
                                 timeout=timeout_s).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def offline_unless_reachable() -> Iterator[bool]:
    """Meanwhile, ``datasets`` and ``huggingface_hub`` run offline (cache only, no retries) if the hub is
    unreachable or already declared offline. Yields whether the hub is used."""
    import datasets.config
    from huggingface_hub import constants

    online = not (constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE) and hub_reachable()
    saved = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    if not online:
        datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield online
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved
