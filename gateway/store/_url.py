"""Database URLs: which engine a target names, and the URL with its password taken out.

A PostgreSQL URL may carry a password (``postgresql://user:secret@host/db`` or
``?password=secret``); whatever shows a URL (a log line, an error, ``/health``) shows
``redact_url(url)``, never the URL itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

POSTGRES_SCHEMES = ("postgresql", "postgres")
_SECRET_PARAM = re.compile(r"(?i)((?:^|&)(?:ssl)?password=)[^&]*")


def is_postgres_url(target: str | Path) -> bool:
    """Does ``target`` name a PostgreSQL database (``postgresql://...``) rather than a file?"""
    return isinstance(target, str) and target.split("://", 1)[0].lower() in POSTGRES_SCHEMES


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (fit for logs and errors)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a database URL that does not parse>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"{user}@{host}"
    query = _SECRET_PARAM.sub(r"\1***", parts.query)
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    return shown + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")
