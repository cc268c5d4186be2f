"""API tokens with scopes, checked in constant time, from a header or a query parameter.

As in the operator API the backend knows: ``Authorization: Bearer <token>`` or
``?private_token=<token>``. Only SHA-256 digests of tokens are kept in memory; every presented
token is compared with every known digest, so timing reveals neither the token nor which one
matched.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fastapi import Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from dockgate.api.errors import ApiError

SYNC = "sync"  # the fleet backend: read and write
READ = "read"  # a technician: read only
SCOPES = frozenset({SYNC, READ})

bearer_scheme = HTTPBearer(auto_error=False, description="API token")
query_scheme = APIKeyQuery(name="private_token", auto_error=False, description="API token")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's name (never the token) and its scopes."""

    name: str
    scopes: frozenset[str]


class TokenRegistry:
    """Known tokens: ``{token: (name, scopes)}`` kept as digests."""

    def __init__(self) -> None:
        self._entries: list[tuple[bytes, Principal]] = []

    @classmethod
    def from_mapping(cls, tokens: Mapping[str, Iterable[str]]) -> TokenRegistry:
        """Build from ``{token: scopes}``; the principal is named by its position."""
        registry = cls()
        for number, (token, scopes) in enumerate(tokens.items(), start=1):
            registry.add(token, scopes, name=f"token-{number}")
        return registry

    def add(self, token: str, scopes: Iterable[str], *, name: str) -> None:
        wanted = frozenset(scopes)
        if not wanted or not wanted <= SCOPES:
            raise ValueError(f"token scopes must be a non-empty subset of {sorted(SCOPES)}")
        if len(token) < 16:
            raise ValueError("a token must have at least 16 characters")
        self._entries.append((hashlib.sha256(token.encode()).digest(), Principal(name, wanted)))

    def check(self, token: str | None) -> Principal | None:
        """The principal of ``token``, comparing against every entry without early exit."""
        if not token:
            return None
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        found: Principal | None = None
        for known, principal in self._entries:
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def require(scope: str):
    """A FastAPI dependency that admits a token holding ``scope`` (``sync`` implies ``read``)."""

    async def dependency(request: Request) -> Principal:
        credentials: HTTPAuthorizationCredentials | None = await bearer_scheme(request)
        token = credentials.credentials if credentials else await query_scheme(request)
        principal = request.app.state.tokens.check(token)
        if principal is None:
            raise ApiError(401, "missing or invalid token")
        if scope not in principal.scopes and SYNC not in principal.scopes:
            raise ApiError(403, f"this token lacks the {scope!r} scope")
        return principal

    return dependency


_TOKEN_IN_URL = re.compile(r"(private_token=)[^&\s\"]*", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """Remove ``private_token`` values from log records (uvicorn's access log prints URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_URL.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_URL.sub(r"\1***", record.msg)
        return True
