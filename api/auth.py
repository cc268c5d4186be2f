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
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from dockgate.api.errors import ApiError

SYNC = "sync"  # the fleet backend: read and write
READ = "read"  # a technician: read only
SCOPES = frozenset({SYNC, READ})

bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="API token: `Authorization: Bearer <token>`"
)
query_scheme = APIKeyQuery(
    name="private_token",
    scheme_name="private_token",
    auto_error=False,
    description="API token in the query, for clients that cannot set headers (EventSource)",
)


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


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def presented_token(connection: HTTPConnection) -> str | None:
    """The bearer token, else the ``private_token`` query parameter (as ``require`` reads them)."""
    return bearer_token(connection.headers.get("authorization")) or connection.query_params.get(
        "private_token"
    )


def authorize(tokens: TokenRegistry | None, token: str | None, scope: str) -> Principal:
    """The caller's principal, or ``ApiError`` 401 (no valid token) / 403 (scope missing)."""
    principal = tokens.check(token) if tokens is not None else None
    if principal is None:
        raise ApiError(401, "missing or invalid token")
    if scope not in principal.scopes and SYNC not in principal.scopes:
        raise ApiError(403, f"this token lacks the {scope!r} scope")
    return principal


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a route asks of its caller: a token with ``scope`` (``sync`` implies ``read``).

    A FastAPI dependency (``Depends(require(READ))``) that also declares both security schemes
    in the OpenAPI document. The app's ``RequestGuard`` reads the same object before any body
    is received, so it is the one place a route's access and body size class are stated;
    ``large_body`` lets the route take ``ApiLimits.large_body_bytes`` (rule bundles).
    """

    scope: str
    large_body: bool = False

    async def __call__(
        self,
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        private_token: Annotated[str | None, Security(query_scheme)],
    ) -> Principal:
        tokens: TokenRegistry | None = getattr(request.app.state, "tokens", None)
        token = bearer.credentials if bearer is not None else private_token
        return authorize(tokens, token, self.scope)


def require(scope: str, *, large_body: bool = False) -> Requirement:
    """The dependency admitting a token that holds ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return Requirement(scope, large_body)


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
