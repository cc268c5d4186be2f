"""The demo's fleet backend in front of a cluster: reads from any node, writes to the leader.

A backend in front of a site of several nodes knows their addresses (or a load balancer's
that routes writes by ``/health/leader``). Reads go to the first node that answers; a write
that lands on a standby is answered 307 with the leader's address, and is sent there again
with the token (an HTTP client does not carry credentials to another origin by itself);
a 503 (no leader right now) moves on to the next node, and the feed's pull loop retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from dockgate.gateway.demo._backend import BackendClient


class ClusterBackendClient(BackendClient):
    """:class:`BackendClient` over every node ``urls()`` names, in order."""

    def __init__(self, urls: Callable[[], list[str]], token: str) -> None:
        super().__init__(urls()[0], token)
        self.urls = urls
        self.redirected = 0

    async def get(self, path: str, **params: Any) -> Any:
        error: Exception = httpx.TransportError("no node of the site answers")
        for base in self.urls():
            try:
                response = await self._http.get(base + path, params=params)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                error = exc
                continue
            return response.json()["data"]
        raise error

    async def send(self, method: str, path: str, body: dict[str, Any]) -> Any:
        last = "no node of the site answers"
        for base in self.urls():
            try:
                response = await self._http.request(method, base + path, json=body)
                if response.status_code == 307:
                    self.redirected += 1
                    location = response.headers["location"]
                    response = await self._http.request(method, location, json=body)
            except httpx.HTTPError as exc:
                last = f"{base}: {type(exc).__name__}"
                continue
            if response.status_code == 503:
                last = f"{base}: 503 (no leader yet)"
                continue
            if response.status_code >= 400:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:200]}")
            return response.json()["data"]
        raise RuntimeError(f"{method} {path}: {last}")
