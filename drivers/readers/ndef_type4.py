"""The NFC Forum Type 4 NDEF read sequence over any ``transceive(apdu) -> response`` link.

SELECT the NDEF application, SELECT and READ the capability container, SELECT the NDEF file,
READ its length, READ the message in chunks no larger than the CC's MLe, then parse it with
ndeflib. Transport-neutral: the PC/SC driver passes pyscard's transmit, the PN532 driver its
InDataExchange. Never raises for tag behaviour: every failure is a reason in the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import ndef

NDEF_APP_DF_NAME = bytes.fromhex("D2760000850101")
CC_FILE_ID = bytes.fromhex("E103")
SW_OK = b"\x90\x00"
SW_EOF = b"\x62\x82"
MAX_READS = 512  # a 64 KiB file read one byte at a time would still be bounded

# Failure reasons (``NdefRead.error``); drivers copy them into ``TapEvent.error``.
REMOVED = "removed"  # the link dropped or the tag left the field mid-read
IO = "io"  # the transport failed otherwise
NO_NDEF = "no_ndef"  # no NDEF application or file, or an empty message
BAD_CC = "bad_cc"  # capability container unreadable or inconsistent
BAD_NDEF = "bad_ndef"  # the message does not decode, or a read was refused mid-way
NO_URL = "no_url"  # a valid message without a URI record

Transceive = Callable[[bytes], bytes]


class CardRemovedError(Exception):
    """Raised by a transceive callable when the tag left the field (reason ``removed``)."""


@dataclass(frozen=True, slots=True)
class NdefRead:
    """Outcome of one NDEF read: the URL or the reason there is none, and what it cost."""

    url: str | None
    error: str | None
    apdus: int
    stack_seconds: float
    message: bytes = b""
    detail: str = ""


class _Failed(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


class _Link:
    """Counts APDUs and the time spent inside transceive."""

    def __init__(self, transceive: Transceive) -> None:
        self._transceive = transceive
        self.apdus = 0
        self.seconds = 0.0

    def send(self, apdu: bytes) -> tuple[bytes, bytes]:
        self.apdus += 1
        start = time.perf_counter()
        try:
            response = bytes(self._transceive(apdu))
        except CardRemovedError as exc:
            raise _Failed(REMOVED, str(exc)) from exc
        except Exception as exc:  # any transport failure is a reason, never a crash
            raise _Failed(IO, f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.seconds += time.perf_counter() - start
        if len(response) < 2:
            raise _Failed(IO, f"response of {len(response)} bytes to {apdu[:2].hex()}")
        return response[:-2], response[-2:]


def _select(link: _Link, apdu: bytes, reason: str, what: str) -> None:
    _, sw = link.send(apdu)
    if sw != SW_OK:
        raise _Failed(reason, f"SELECT {what}: SW {sw.hex()}")


def _read(link: _Link, offset: int, length: int, reason: str) -> bytes:
    if offset > 0x7FFF:
        raise _Failed(reason, f"offset {offset} beyond READ BINARY range")
    apdu = bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, length & 0xFF])
    data, sw = link.send(apdu)
    if sw not in (SW_OK, SW_EOF) or not data or len(data) > length:
        raise _Failed(reason, f"READ BINARY {offset}+{length}: SW {sw.hex()}, {len(data)} bytes")
    return data


def _read_cc(link: _Link) -> tuple[bytes, int, int, int]:
    """NDEF file id, its size, MLe and the length-field size, from the CC file."""
    cc = _read(link, 0, 15, BAD_CC)
    if len(cc) < 15:
        raise _Failed(BAD_CC, f"CC of {len(cc)} bytes")
    version, mle = cc[2] >> 4, int.from_bytes(cc[3:5], "big")
    if version == 3:  # mapping 3.0: extended NDEF TLV (T=06, 4-byte size), 4-byte ENLEN
        cc += _read(link, 15, 2, BAD_CC)
        tlv_ok = len(cc) >= 17 and cc[7] == 0x06 and cc[8] == 0x08
        file_id, size, nlen_size = cc[9:11], int.from_bytes(cc[11:15], "big"), 4
    else:
        tlv_ok = version == 2 and cc[7] == 0x04 and cc[8] == 0x06
        file_id, size, nlen_size = cc[9:11], int.from_bytes(cc[11:13], "big"), 2
    if not tlv_ok or mle < 1 or size <= nlen_size:
        raise _Failed(BAD_CC, f"CC {cc.hex()}")
    return file_id, size, mle, nlen_size


def _sequence(link: _Link, max_le: int) -> bytes:
    _select(link, b"\x00\xa4\x04\x00\x07" + NDEF_APP_DF_NAME + b"\x00", NO_NDEF, "NDEF app")
    _select(link, b"\x00\xa4\x00\x0c\x02" + CC_FILE_ID, NO_NDEF, "CC")
    file_id, size, mle, nlen_size = _read_cc(link)
    _select(link, b"\x00\xa4\x00\x0c\x02" + file_id, NO_NDEF, "NDEF file")
    nlen = int.from_bytes(_read(link, 0, nlen_size, BAD_NDEF), "big")
    if nlen == 0:
        raise _Failed(NO_NDEF, "empty NDEF file")
    if nlen > size - nlen_size:
        raise _Failed(BAD_NDEF, f"NLEN {nlen} exceeds file size {size}")
    chunk = max(1, min(mle, max_le, 256))
    message = bytearray()
    for _ in range(MAX_READS):
        if len(message) >= nlen:
            return bytes(message[:nlen])
        want = min(chunk, nlen - len(message))
        message += _read(link, nlen_size + len(message), want, BAD_NDEF)
    raise _Failed(BAD_NDEF, "too many reads")


def url_from_message(message: bytes) -> str:
    """The first URI record's IRI, as written on the tag; raises ``_Failed`` otherwise."""
    try:
        records = list(ndef.message_decoder(message, errors="strict"))
    except Exception as exc:  # ndeflib raises DecodeError and, on odd input, others
        raise _Failed(BAD_NDEF, f"{type(exc).__name__}: {exc}") from exc
    for record in records:
        if isinstance(record, ndef.UriRecord):
            return record.iri
    raise _Failed(NO_URL, f"{len(records)} records, none a URI")


def read_ndef_url(transceive: Transceive, *, max_le: int = 256) -> NdefRead:
    """Run the whole read sequence over ``transceive``; ``max_le`` caps the chunk size."""
    link = _Link(transceive)
    message = b""
    try:
        message = _sequence(link, max_le)
        url = url_from_message(message)
    except _Failed as failed:
        return NdefRead(None, failed.reason, link.apdus, link.seconds, message, failed.detail)
    return NdefRead(url, None, link.apdus, link.seconds, message)
