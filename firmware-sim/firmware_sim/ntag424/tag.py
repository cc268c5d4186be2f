"""An NTAG 424 DNA as a Type 4 tag: the ISO 7816-4 commands a reader sends, answered in bytes.

``Ntag424Tag.transceive`` takes one command APDU and returns the response APDU (data, SW1,
SW2), exactly what vpcd, an ISO-DEP link or a PN532 relays. The NDEF file content comes from
an :class:`NdefSource` (the SDM model in ``dockgate.sim.sdm`` for SUN tags, or a static
message); like the real chip, the SUN data is produced once per read session (the first READ
BINARY of the NDEF file after it is selected), so chunked reads see one consistent message and
the read counter goes up by one per session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import ndef

from dockgate.sim.ntag424 import files, status

# NFC-A activation data as the real chip reports it (NT4H2421Gx data sheet, section 8.4).
ATQA = bytes.fromhex("4403")  # SENS_RES 0x0344, in the order sent on the air (LSB first)
SAK = bytes.fromhex("20")  # ISO/IEC 14443-4 compliant
ATS = bytes.fromhex("067777710280")  # FSCI 7 (128 bytes), TA/TB/TC, historical byte 0x80
# PC/SC ATR built from the ATS historical bytes (PC/SC part 3, 3.1.3.2.3.2).
ATR = bytes.fromhex("3B8180018080")

HW_VERSION = bytes.fromhex("04040230001105")
SW_VERSION = bytes.fromhex("04040201021105")


class TagRemovedError(Exception):
    """The tag left the field: the transport must drop the link (vpcd: close the socket)."""


class NdefSource(Protocol):
    """Produces the NDEF file image (NLEN + NDEF message) for one read session."""

    def next_ndef_file(self) -> bytes: ...


class StaticNdef:
    """A plain NFC Forum tag: the same URI record at every read (no SUN)."""

    def __init__(self, url: str) -> None:
        message = b"".join(ndef.message_encoder([ndef.UriRecord(url)]))
        self._image = len(message).to_bytes(2, "big") + message

    def next_ndef_file(self) -> bytes:
        return self._image


@dataclass(slots=True)
class Faults:
    """Faults on demand, checked at every command.

    ``remove_after``: answer this many more commands, then leave the field (one shot).
    ``corrupt_at``: flip every bit of this byte of the NDEF file image in each session.
    ``replay``: serve the previous NDEF image again instead of a fresh SUN message.
    """

    remove_after: int | None = None
    corrupt_at: int | None = None
    replay: bool = False


def _parse(apdu: bytes) -> tuple[int, int, int, int, bytes, int | None] | None:
    """Split a short APDU into CLA, INS, P1, P2, data, Le; None when the length is wrong."""
    n = len(apdu)
    cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
    if n == 4:
        return cla, ins, p1, p2, b"", None
    if n == 5:
        return cla, ins, p1, p2, b"", apdu[4] or 256
    lc = apdu[4]
    if lc == 0:  # extended length: not supported by this chip's ISO layer
        return None
    if n == 5 + lc:
        return cla, ins, p1, p2, apdu[5:], None
    if n == 6 + lc:
        return cla, ins, p1, p2, apdu[5:-1], apdu[-1] or 256
    return None


class Ntag424Tag:
    """One simulated NTAG 424 DNA. Not thread-safe: one reader talks to it at a time."""

    atqa = ATQA
    sak = SAK
    ats = ATS
    atr = ATR

    def __init__(
        self,
        uid: bytes,
        source: NdefSource,
        *,
        name: str = "tag",
        cc: files.CapabilityContainer | None = None,
        faults: Faults | None = None,
        batch: bytes = bytes.fromhex("CAFE0000"),
    ) -> None:
        if len(uid) != 7:
            raise ValueError("an NTAG 424 DNA UID has 7 bytes")
        self.uid = bytes(uid)
        self.name = name
        self.source = source
        self.cc = cc or files.CapabilityContainer()
        self.faults = faults or Faults()
        self._cc_bytes = self.cc.to_bytes()
        self._batch = batch
        self.commands = 0  # answered since the last reset (field on)
        self.read_sessions = 0
        self._last_image: bytes | None = None
        self.reset()

    # -- field -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Field off and on: nothing selected, the read session and any chained command end."""
        self._app_selected = False
        self._ef: int | None = None
        self._session: bytes | None = None
        self._pending: list[bytes] = []
        self.present = True
        self.commands = 0

    # -- commands --------------------------------------------------------------------------
    def transceive(self, apdu: bytes) -> bytes:
        """Answer one command APDU (or a native 1-byte frame) with data + status."""
        self._take_command()
        if len(apdu) == 1 and apdu[0] in (0x60, 0xAF):
            code, data = self._native(apdu[0])
            return bytes([code]) + data
        parsed = _parse(apdu) if len(apdu) >= 4 else None
        if parsed is None:
            return status.WRONG_LENGTH
        cla, ins, p1, p2, data, le = parsed
        if cla != 0x90:
            self._pending = []
        if cla == 0x00:
            return self._iso(ins, p1, p2, data, le)
        if cla == 0x90:
            if p1 or p2:
                return bytes([0x91, status.NATIVE_LENGTH_ERROR])
            code, out = self._native(ins)
            return out + bytes([0x91, code])
        if cla == 0xFF:
            return self._pcsc_get_data(ins, p1, p2)
        if cla in (0x01, 0x02, 0x03):
            return status.LOGICAL_CHANNEL_NOT_SUPPORTED
        return status.CLA_NOT_SUPPORTED

    def _take_command(self) -> None:
        """Count a command, or raise ``TagRemovedError`` if the tag has left the field (now,
        when the ``remove_after`` fault's budget of commands is spent)."""
        if not self.present:
            raise TagRemovedError(self.name)
        budget = self.faults.remove_after
        if budget is not None:
            if budget <= 0:
                self.faults.remove_after = None
                self.present = False
                raise TagRemovedError(self.name)
            self.faults.remove_after = budget - 1
        self.commands += 1

    def _iso(self, ins: int, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        """An ISO/IEC 7816-4 command (CLA 00)."""
        if ins == 0xA4:
            return self._select(p1, p2, data)
        if ins == 0xB0:
            return self._read_binary(p1, p2, data, le)
        if ins == 0xD6:  # UPDATE BINARY: the model's files are write-protected
            return status.SECURITY_NOT_SATISFIED
        return status.INS_NOT_SUPPORTED

    def _select(self, p1: int, p2: int, data: bytes) -> bytes:
        if p2 not in (0x00, 0x0C):
            return status.WRONG_P1P2
        self._session = None
        if p1 == 0x04:
            return self._select_application(data)
        if p1 not in (0x00, 0x02):
            return status.WRONG_P1P2
        if len(data) != 2:
            return status.WRONG_LENGTH
        return self._select_file(p1, int.from_bytes(data, "big"))

    def _select_application(self, name: bytes) -> bytes:
        """SELECT by DF name: only the NDEF application is there."""
        if not name:
            return status.WRONG_LENGTH
        if name != files.NDEF_APP_DF_NAME:
            return status.FILE_NOT_FOUND
        self._app_selected, self._ef = True, None
        return status.OK

    def _select_file(self, p1: int, fid: int) -> bytes:
        """SELECT by file id: the master file, the NDEF application, or one of its files."""
        if p1 == 0x00 and fid == files.MASTER_FILE_ID:
            self._app_selected, self._ef = False, None
            return status.OK
        if p1 == 0x00 and fid == files.NDEF_APP_FILE_ID:
            self._app_selected, self._ef = True, None
            return status.OK
        if self._app_selected and fid in files.SHORT_FILE_IDS.values():
            self._ef = fid
            return status.OK
        return status.FILE_NOT_FOUND

    def _read_binary(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if data or le is None:
            return status.WRONG_LENGTH
        if p1 & 0x80:
            if p1 & 0x60:
                return status.WRONG_P1P2
            fid = files.SHORT_FILE_IDS.get(p1 & 0x1F)
            if fid is None or not self._app_selected:
                return status.FILE_NOT_FOUND
            if fid != self._ef:
                self._session = None
            self._ef, offset = fid, p2
        else:
            if self._ef is None:
                return status.NO_CURRENT_EF
            offset = (p1 << 8) | p2
        if self._ef == files.PROPRIETARY_FILE_ID:
            return status.SECURITY_NOT_SATISFIED
        content = self._cc_bytes if self._ef == files.CC_FILE_ID else self._ndef_image()
        if offset >= len(content):
            return status.WRONG_OFFSET
        chunk = content[offset : offset + le]
        return chunk + (status.OK if len(chunk) == le else status.EOF_BEFORE_LE)

    def _ndef_image(self) -> bytes:
        """The NDEF file for this session: a fresh SUN message on its first read."""
        if self._session is None:
            if self.faults.replay and self._last_image is not None:
                image = self._last_image
            else:
                image = bytes(self.source.next_ndef_file())
                self._last_image = image
            self.read_sessions += 1
            at = self.faults.corrupt_at
            if at is not None and 0 <= at < len(image):
                image = image[:at] + bytes([image[at] ^ 0xFF]) + image[at + 1 :]
            self._session = image[: self.cc.ndef_size].ljust(self.cc.ndef_size, b"\x00")
        return self._session

    def _native(self, ins: int) -> tuple[int, bytes]:
        """GetVersion (60) and its continuation (AF): three frames, as on the chip."""
        if ins == 0x60:
            prod = self.uid + self._batch + bytes([0x00, 0x15, 0x24])  # batch, week 21, 2024
            self._pending = [SW_VERSION, prod]
            return status.NATIVE_ADDITIONAL_FRAME, HW_VERSION
        if ins == 0xAF and self._pending:
            frame = self._pending.pop(0)
            more = status.NATIVE_ADDITIONAL_FRAME if self._pending else status.NATIVE_OK
            return more, frame
        self._pending = []
        return status.NATIVE_ILLEGAL_COMMAND, b""

    def _pcsc_get_data(self, ins: int, p1: int, p2: int) -> bytes:
        """PC/SC part 3 GET DATA: the reader asks the card's UID (P1=00) or ATS bytes (01)."""
        if ins != 0xCA:
            return status.INS_NOT_SUPPORTED
        if p2 != 0x00:
            return status.WRONG_P1P2
        if p1 == 0x00:
            return self.uid + status.OK
        if p1 == 0x01:
            return ATS[5:] + status.OK
        return status.FUNCTION_NOT_SUPPORTED
