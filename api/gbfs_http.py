"""GBFS feeds over HTTP: links from the address consumers use, ``ETag`` and ``304``.

GBFS (3.1-RC) asks publishers for an ``ETag`` and to answer ``If-None-Match`` with 304. The tag
is weak and covers the document's ``version`` and ``data``: ``last_updated`` (now) and ``ttl``
are stamps of the moment a document is served, so two documents with the same data are the
same to a consumer, and a client that kept one keeps it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from fastapi import Request, Response

from dockgate.api.gbfs import FeedName, GbfsFeeds

__all__ = ["GBFS_RESPONSES", "entity_tag", "gbfs_response", "matches"]

GBFS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The feed (GBFS 3.0), with a weak `ETag` over its data",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    304: {"description": "Not modified: `If-None-Match` names the current `ETag`"},
}


def entity_tag(document: dict[str, Any]) -> str:
    """A weak tag of the document's version and data."""
    body = orjson.dumps([document["version"], document["data"]], option=orjson.OPT_SORT_KEYS)
    return 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Does ``If-None-Match`` name ``tag``? (RFC 9110: ``*`` or a list; weak comparison.)"""
    if not if_none_match:
        return False
    wanted = tag.removeprefix("W/")
    for item in if_none_match.split(","):
        candidate = item.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


def feeds_url(request: Request) -> str:
    """Where this request found the feeds: its own scheme, host and mount point."""
    return str(request.base_url).rstrip("/") + "/gbfs"


def gbfs_response(request: Request, feed: FeedName) -> Response:
    """The feed, or 304 when the client already has its data."""
    feeds: GbfsFeeds = request.app.state.gbfs
    document = feeds.feed(feed, feeds_url(request))
    tag = entity_tag(document)
    ttl = int(document["ttl"])
    headers = {"ETag": tag, "Cache-Control": f"max-age={ttl}" if ttl else "no-cache"}
    if matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    return Response(orjson.dumps(document), media_type="application/json", headers=headers)
