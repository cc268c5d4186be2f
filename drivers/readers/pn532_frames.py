"""The PN532 host-interface frame format (NXP UM0701-02 §6.2), shared by driver and simulator.

A serial line carries frames ``00 00 FF LEN LCS TFI data... DCS 00`` (or the extended form
``00 00 FF FF FF LENM LENL LCS ...``), six-byte ACK and NACK frames and a fixed error frame,
possibly interleaved with wake-up bytes and line noise. :class:`FrameDecoder` is fed whatever
bytes arrived and hands back whole items; it never raises on bad input: it counts it and
resynchronises on the next start code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PREAMBLE = b"\x00\x00\xff"
START_CODE = b"\x00\xff"
ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
# HSU wake-up: a long preamble of 0x55 then zeros, ignored by a PN532 that is already awake.
WAKEUP = b"\x55\x55" + b"\x00" * 14

TFI_HOST = 0xD4  # host to PN532
TFI_PN532 = 0xD5  # PN532 to host
TFI_ERROR = 0x7F  # application-level error (the body of ERROR_FRAME)

MAX_BODY = 265  # TFI + command code + 262 data bytes + 1: the largest body a PN532 handles

# Command codes (UM0701-02 §7); the answer code is the command code + 1.
CMD_DIAGNOSE = 0x00
CMD_GET_FIRMWARE_VERSION = 0x02
CMD_GET_GENERAL_STATUS = 0x04
CMD_SAM_CONFIGURATION = 0x14
CMD_RF_CONFIGURATION = 0x32
CMD_IN_DATA_EXCHANGE = 0x40
CMD_IN_DESELECT = 0x44
CMD_IN_LIST_PASSIVE_TARGET = 0x4A
CMD_IN_RELEASE = 0x52

# InDataExchange / InRelease status codes (UM0701-02 table "Error code list").
STATUS_OK = 0x00
STATUS_TIMEOUT = 0x01
STATUS_CRC = 0x02
STATUS_INVALID_PARAMETER = 0x10
STATUS_BAD_FORMAT = 0x13
STATUS_WRONG_CONTEXT = 0x27

# Bytes a PN532 skips silently between frames (wake-up preamble and postambles).
_FILLER = frozenset((0x00, 0x55))


def checksum(data: bytes) -> int:
    """The byte that makes ``sum(data) + checksum`` zero modulo 256 (LCS and DCS)."""
    return -sum(data) & 0xFF


def encode_frame(tfi: int, data: bytes) -> bytes:
    """An information frame; the extended form is used only when the body needs it."""
    body = bytes((tfi,)) + bytes(data)
    size = len(body)
    if size <= 0xFF:
        header = bytes((size, checksum(bytes((size,)))))
    elif size <= 0xFFFF:
        length = size.to_bytes(2, "big")
        header = b"\xff\xff" + length + bytes((checksum(length),))
    else:
        raise ValueError(f"frame body of {size} bytes is too long")
    return PREAMBLE + header + body + bytes((checksum(body),)) + b"\x00"


@dataclass(frozen=True, slots=True)
class Ack:
    """The peer accepted our last frame."""


@dataclass(frozen=True, slots=True)
class Nack:
    """The peer asks for our last frame again."""


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """The PN532 refused the last command (syntax error, unknown command)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A well-formed information frame."""

    tfi: int
    data: bytes


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame whose length checksum (``bad_length``) or data checksum (``bad_checksum``) failed."""

    reason: str


Item = Ack | Nack | ErrorFrame | Frame | BadFrame


@dataclass(slots=True)
class FrameDecoder:
    """Incremental decoder: ``feed`` bytes, get whole items; bad input is counted, never raised."""

    max_body: int = MAX_BODY
    garbage_bytes: int = 0
    bad_length: int = 0
    bad_checksum: int = 0
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Item]:
        self._buf += data
        items: list[Item] = []
        while (item := self._next()) is not None:
            items.append(item)
        return items

    def reset(self) -> None:
        """Forget any partial frame (after a reconnect)."""
        self._buf.clear()

    @property
    def pending(self) -> int:
        """Bytes held back while waiting for the rest of a frame."""
        return len(self._buf)

    def _skip(self, count: int) -> None:
        self.garbage_bytes += sum(1 for b in self._buf[:count] if b not in _FILLER)
        del self._buf[:count]

    def _next(self) -> Item | None:
        buf = self._buf
        start = buf.find(START_CODE)
        if start < 0:
            # Keep a trailing 0x00: it may be the first half of a start code.
            self._skip(len(buf) - 1 if buf[-1:] == b"\x00" else len(buf))
            return None
        self._skip(start)
        if len(buf) < 4:
            return None
        length, lcs = buf[2], buf[3]
        if (length, lcs) == (0x00, 0xFF):
            del buf[:4]
            return Ack()
        if (length, lcs) == (0xFF, 0x00):
            del buf[:4]
            return Nack()
        return self._frame(length, lcs)

    def _frame(self, length: int, lcs: int) -> Item | None:
        """The information frame (normal or extended) whose start code leads the buffer:
        None while incomplete, ``BadFrame`` for a broken length or checksum."""
        buf = self._buf
        if (length, lcs) == (0xFF, 0xFF):
            if len(buf) < 7:
                return None
            size, header = int.from_bytes(buf[4:6], "big"), 7
            valid = checksum(bytes(buf[4:6])) == buf[6]
        else:
            size, header = length, 4
            valid = (length + lcs) & 0xFF == 0
        if not valid or size == 0 or size > self.max_body:
            self.bad_length += 1
            del buf[:2]  # drop the false start code and rescan
            return BadFrame("bad_length")
        end = header + size
        if len(buf) < end + 1:
            return None
        body, dcs = bytes(buf[header:end]), buf[end]
        del buf[: end + 1]
        if checksum(body) != dcs:
            self.bad_checksum += 1
            return BadFrame("bad_checksum")
        if body == bytes((TFI_ERROR,)):
            return ErrorFrame()
        return Frame(body[0], body[1:])
