"""Numbers, lists and times in paths and query strings.

Python's ``int()`` and pydantic's lax parsing accept ``1_0``, ``+1``, `` 1`` and (``int()``)
Arabic-Indic digits: two spellings of one id would be two cache keys, two log lines and two
idempotency fingerprints for one row. Every id and count the API reads from text goes through
:func:`ascii_decimal` first, so the only spelling of ten is ``10``.

Lists are comma-separated, as the dashboard sends them (``networks=1,5,7``,
``state=running,on-hold``). Dates are UTC days; a date-time without an offset is UTC unless
the route takes a ``timezone``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, BeforeValidator

MAX_ID = 2**62
_DECIMAL = re.compile(r"[0-9]{1,19}")
_NUMBER = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")


def ascii_decimal(value: object) -> object:
    """Let ints through; a string must be 1..19 ASCII digits (pydantic converts it after)."""
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        raise ValueError("must be 1 to 19 ASCII decimal digits")
    return value


def ascii_number(value: object) -> object:
    """Let numbers through; a string must be ASCII digits with an optional decimal fraction."""
    if isinstance(value, str) and not _NUMBER.fullmatch(value):
        raise ValueError("must be ASCII decimal digits with an optional .fraction")
    return value


def parse_id_list(text: str) -> list[int]:
    """``1,5,7`` as ids; raises ``ValueError`` for anything but ASCII decimal ids."""
    parts = text.split(",")
    if not all(_DECIMAL.fullmatch(part) for part in parts):
        raise ValueError("not a comma-separated list of ASCII decimal ids")
    return [int(part) for part in parts]


def network_ids(text: str | None) -> list[int]:
    """``1,5,7`` as ids 1..MAX_ID (``None`` or empty: none, so every network)."""
    if not text:
        return []
    try:
        ids = parse_id_list(text)
    except ValueError:
        raise ValueError("comma-separated ids, e.g. 1,5,7") from None
    if any(not 1 <= i <= MAX_ID for i in ids):
        raise ValueError(f"ids are 1..{MAX_ID}")
    return ids


def _checked_ids(text: str | None) -> str | None:
    network_ids(text)
    return text


def one_of_each(allowed: Iterable[str]) -> Callable[[str | None], str | None]:
    """A check of a comma-separated list whose every item is one of ``allowed``."""
    choices = tuple(allowed)

    def check(text: str | None) -> str | None:
        if text is not None and not all(item in choices for item in text.split(",")):
            raise ValueError(f"comma-separated, each one of {', '.join(choices)}")
        return text

    return check


def items(text: str | None) -> tuple[str, ...]:
    """The items of a checked comma-separated list (``None``: none)."""
    return () if not text else tuple(text.split(","))


def day_start(day: date | None) -> float | None:
    """The Unix time a UTC day begins."""
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def day_end(day: date | None) -> float | None:
    """The Unix time the UTC day after ``day`` begins (an exclusive bound)."""
    return None if day is None else day_start(day + timedelta(days=1))


def unix(moment: datetime | None, zone: tzinfo = UTC) -> float | None:
    """A date-time as Unix time; one without an offset is read in ``zone``."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).timestamp()


Digits = BeforeValidator(ascii_decimal)
AsciiNumber = BeforeValidator(ascii_number)
Id = Annotated[int, Digits, Path(ge=1, le=MAX_ID)]
IdList = AfterValidator(_checked_ids)
