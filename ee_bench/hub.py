"""Whether the Hugging Face hub can be reached, asked once and quickly, so that a run without network
says so at once instead of spending tens of seconds on the hub client's retries.

- :func:`hub_offline_reason`: None when the hub answers, else why not (``HF_HUB_OFFLINE`` /
  ``HF_DATASETS_OFFLINE`` set, or no TCP connection to ``HF_ENDPOINT`` within two seconds);
- :func:`offline_if_unreachable`: a context manager that, when the hub cannot be reached, switches
  ``huggingface_hub`` and ``datasets`` to their offline mode for its duration (cached copies still
  load; anything else fails at once, without retries).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

_TRUE = {"1", "ON", "YES", "TRUE"}
CONNECT_TIMEOUT_S = 2.0


@functools.cache
def hub_offline_reason() -> str | None:
    """Why the hub cannot be used now (a few words), or None when it can. Asked once per process."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").upper() in _TRUE:
            return f"{var} is set"
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{host} cannot be reached ({exc.strerror or type(exc).__name__})"


@contextlib.contextmanager
def offline_if_unreachable() -> Iterator[str | None]:
    """Run the body in the hub clients' offline mode when the hub cannot be reached.

    Yields:
        :func:`hub_offline_reason` (None: online, nothing changed).
    """
    reason = hub_offline_reason()
    if reason is None:
        yield None
        return
    import datasets.config  # optional heavy dependency (datasets); both read these flags at call time
    import huggingface_hub.constants

    saved = (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE,
             datasets.config.HF_DATASETS_OFFLINE)
    huggingface_hub.constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    datasets.config.HF_DATASETS_OFFLINE = True
    try:
        yield reason
    finally:
        (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE,
         datasets.config.HF_DATASETS_OFFLINE) = saved
