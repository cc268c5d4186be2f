"""Numbers in paths and query strings: ASCII decimal digits only, of bounded length.

Python's ``int()`` and pydantic's lax parsing accept ``1_0``, ``+1``, `` 1`` and (``int()``)
Arabic-Indic digits: two spellings of one id would be two cache keys, two log lines and two
idempotency fingerprints for one row. Every id and count the API reads from text goes through
:func:`ascii_decimal` first, so the only spelling of ten is ``10``.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path
from pydantic import BeforeValidator

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


Digits = BeforeValidator(ascii_decimal)
AsciiNumber = BeforeValidator(ascii_number)
Id = Annotated[int, Digits, Path(ge=1, le=MAX_ID)]
