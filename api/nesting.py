"""How deeply a JSON text nests, found by a byte scan before anything parses it.

Parsers and serialisers recurse per level (orjson refuses past 254, the stdlib past the
interpreter's recursion limit), so a deep body must be refused before it reaches any of them.
The scan is linear and runs in C-level primitives: strings are cut out (an unterminated one
runs to the end, so no input makes the pattern backtrack), every byte but the four brackets is
dropped, and the deepest point is the running sum's maximum.
"""

from __future__ import annotations

import re
from itertools import accumulate

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def json_depth(text: bytes) -> int:
    """The deepest ``[``/``{`` nesting of ``text`` outside strings (0 for a bare scalar)."""
    steps = _STRING.sub(b"", text).translate(_STEP, _NOT_BRACKET)
    return max(accumulate(memoryview(steps).cast("b")), default=0)
