"""Read the app's server-side observations (``GET /_state``) from the tests."""

from __future__ import annotations

import json
import time
from typing import Any

from .clients import http1
from .servers import RunningServer


def server_state(server: RunningServer, probe_id: str | None = None) -> dict[str, Any]:
    """``GET /_state`` on a fresh connection, decoded."""
    path = "/_state" + (f"?id={probe_id}" if probe_id else "")
    response = http1(server.port, "GET", path, {"Connection": "close"}, timeout=5.0)
    assert response.status == 200, response.describe()
    state: dict[str, Any] = json.loads(response.body)
    return state


def wait_for_probe(server: RunningServer, probe_id: str, *keys: str, timeout: float = 2.0) -> dict[str, Any]:
    """Poll ``/_state`` until the probe has every key in ``keys`` (or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    while True:
        probe: dict[str, Any] = server_state(server, probe_id)["probe"] or {}
        if all(key in probe for key in keys) or time.monotonic() > deadline:
            return probe
        time.sleep(0.01)
