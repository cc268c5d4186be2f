"""IANA time zones looked up by name, safely: a name is hostile input until checked.

``zoneinfo.ZoneInfo`` reads a file named after the zone, so an odd name does not only fail to
match, it raises ``OSError`` (a name too long for the filesystem) besides the documented
``ZoneInfoNotFoundError`` and ``ValueError``. Every lookup of a name that came from outside
goes through :func:`time_zone`.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["time_zone"]

# IANA names: "UTC", "Europe/Rome", "America/Argentina/Buenos_Aires", "Etc/GMT+1"
_NAME = re.compile(r"[A-Za-z0-9_+-]{1,30}(?:/[A-Za-z0-9_+-]{1,30}){0,2}")


def time_zone(name: str) -> ZoneInfo | None:
    """The IANA zone called ``name``, or None if there is none; never raises."""
    if not _NAME.fullmatch(name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
