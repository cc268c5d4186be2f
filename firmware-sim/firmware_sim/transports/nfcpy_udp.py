"""The tag side of nfcpy's ``udp:HOST:PORT`` radio link: a simulated tag nfcpy can sense and read.

nfcpy's UDP device (``nfc/clf/udp.py``) sends each radio frame as one datagram
``b"<bitrate> <hex>"`` (``b"106A 26"``) without CRC, and ``b"RFOFF"`` when it switches the field
off. This transport answers as an ISO/IEC 14443 type A PICC: REQA/WUPA, the anticollision
cascade for 4, 7 or 10 byte UIDs, SELECT, HLTA, RATS (with the tag's ATS), then the ISO-DEP
block protocol of ISO/IEC 14443-4: I-blocks with block numbers and chaining both ways,
R(ACK)/R(NAK) with the PICC rules for retransmission, S(DESELECT). APDUs inside I-blocks go to
the tag's ``transceive``. Without a tag on the "antenna" nothing answers, as on air.

A datagram from a new client address is a new field (nfcpy opens a fresh socket per sense),
so the tag starts from IDLE; RFOFF resets it too. A real reader polls continuously; nfcpy sends
one REQA and waits a second for it, so a tag presented while a REQA is pending answers that
REQA at once, as it would answer the reader's next poll.
"""

from __future__ import annotations

import binascii
import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from functools import reduce
from operator import xor

from dockgate.sim.ntag424 import TagRemovedError
from dockgate.sim.transports.pn532_serial import SimTag

BITRATE = b"106A"
POLL_WAIT = 0.9  # nfcpy waits 1.0 s for a SENS_RES
CASCADE_TAG = 0x88
SEL_CODES = (0x93, 0x95, 0x97)

IDLE, READY, ACTIVE, PROTOCOL, HALT = "idle", "ready", "active", "protocol", "halt"


@dataclass(slots=True)
class UdpTagStats:
    """What the simulated PICC saw, for tests and benchmarks."""

    datagrams: int = 0
    ignored: int = 0
    malformed: int = 0
    apdus: int = 0
    retransmits: int = 0
    rf_off: int = 0
    states: dict[str, int] = field(default_factory=dict)


def cascade_levels(uid: bytes) -> list[bytes]:
    """The UID split into anticollision answers (4 UID/CT bytes + BCC) per cascade level."""
    if len(uid) not in (4, 7, 10):
        raise ValueError("NFC-A UIDs have 4, 7 or 10 bytes")
    parts: list[bytes] = []
    rest = uid
    while len(rest) > 4:
        parts.append(bytes((CASCADE_TAG,)) + rest[:3])
        rest = rest[3:]
    parts.append(rest)
    return [p + bytes((reduce(xor, p),)) for p in parts]


class NfcpyUdpTag:
    """A UDP server at ``(host, port)`` playing the PICC for nfcpy's ``udp:`` device.

    ``present(tag)`` / ``remove()`` move the tag onto and off the antenna; ``path`` is the
    device path to give ``nfc.ContactlessFrontend``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.stats = UdpTagStats()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._tag: SimTag | None = None
        self._peer: tuple[str, int] | None = None
        self._state = IDLE
        self._level = 0
        self._block = 1  # PICC block number, 1 after activation (ISO/IEC 14443-4 7.5.3.1)
        self._last_block: bytes | None = None
        self._chain_in = bytearray()
        self._chain_out = b""
        self._fsd = 256
        self._pending_poll: tuple[float, bytes] | None = None  # a REQA/WUPA nobody answered
        self.presented_at: float | None = None

    @property
    def path(self) -> str:
        return f"udp:{self.host}:{self.port}"

    # -- the antenna ---------------------------------------------------------------------
    def present(self, tag: SimTag) -> float:
        """Put ``tag`` on the antenna, fresh from a field reset; returns the monotonic moment."""
        with self._lock:
            tag.reset()
            self._tag = tag
            self._reset_state()
            self.presented_at = time.monotonic()
            pending, self._pending_poll = self._pending_poll, None
            if pending is not None and self._peer is not None and self._sock is not None:
                received, frame = pending
                if self.presented_at - received < POLL_WAIT:
                    reply = self._frame(tag, frame)
                    if reply is not None:
                        self._send(reply, self._peer)
            return self.presented_at

    def remove(self) -> None:
        with self._lock:
            self._tag = None
            self._reset_state()

    @property
    def tag(self) -> SimTag | None:
        return self._tag

    @property
    def awaiting_tag(self) -> bool:
        """A reader's poll (REQA/WUPA) is pending with no tag to answer it."""
        pending = self._pending_poll
        return pending is not None and time.monotonic() - pending[0] < POLL_WAIT

    def _reset_state(self) -> None:
        self._state, self._level, self._block = IDLE, 0, 1
        self._last_block, self._chain_in, self._chain_out = None, bytearray(), b""

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> NfcpyUdpTag:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.host, self.port))
        sock.settimeout(0.05)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="nfcpy-udp-tag", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the socket: the "radio" is gone until ``start`` binds the same port again."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> NfcpyUdpTag:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- datagrams ------------------------------------------------------------------------
    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            try:
                datagram, addr = sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:  # ICMP errors from a peer that went away surface here
                continue
            with self._lock:
                reply = self._datagram(datagram, addr)
            if reply is not None:
                self._send(reply, addr)

    def _send(self, frame: bytes, addr: tuple[str, int]) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendto(BITRATE + b" " + binascii.hexlify(frame), addr)

    def _datagram(self, datagram: bytes, addr: tuple[str, int]) -> bytes | None:
        self.stats.datagrams += 1
        if addr != self._peer:  # a new nfcpy socket: a new field
            self._peer = addr
            if self._tag is not None:
                self._tag.reset()
            self._reset_state()
        if datagram.startswith(b"RFOFF"):
            self.stats.rf_off += 1
            if self._tag is not None:
                self._tag.reset()
            self._reset_state()
            return None
        try:
            brty, payload = datagram.split()
            frame = binascii.unhexlify(payload)
        except ValueError:  # binascii.Error is a ValueError
            self.stats.malformed += 1
            return None
        if brty != BITRATE or not frame or self._tag is None:
            if frame in (b"\x26", b"\x52") and brty == BITRATE:
                self._pending_poll = (time.monotonic(), frame)
            self.stats.ignored += 1
            return None
        self._pending_poll = None
        reply = self._frame(self._tag, frame)
        if reply is None:
            self.stats.ignored += 1
        self.stats.states[self._state] = self.stats.states.get(self._state, 0) + 1
        return reply

    # -- ISO/IEC 14443-3 -----------------------------------------------------------------
    def _frame(self, tag: SimTag, frame: bytes) -> bytes | None:
        if frame in (b"\x26", b"\x52"):
            return self._poll(tag, frame)
        if self._state == READY:
            return self._anticollision(tag, frame)
        if self._state == ACTIVE:
            return self._activated(tag, frame)
        if self._state == PROTOCOL:
            return self._iso_dep(tag, frame)
        return None

    def _poll(self, tag: SimTag, frame: bytes) -> bytes | None:
        """REQA answered from IDLE, WUPA from IDLE or HALT; either restarts an active tag."""
        if self._state in (IDLE, READY) or (frame == b"\x52" and self._state == HALT):
            self._reset_state()
            self._state, self._level = READY, 0
            return tag.atqa
        if self._state in (ACTIVE, PROTOCOL):  # a new poll: the reader restarted
            tag.reset()
            self._reset_state()
            self._state = READY
            return tag.atqa
        return None

    def _activated(self, tag: SimTag, frame: bytes) -> bytes | None:
        """A selected tag takes HLTA or RATS (then it speaks ISO-DEP)."""
        if frame[:2] == b"\x50\x00":  # HLTA
            self._state = HALT
            return None
        if frame[0] == 0xE0 and len(frame) == 2:  # RATS
            fsdi = frame[1] >> 4
            self._fsd = (16, 24, 32, 40, 48, 64, 96, 128, 256)[min(fsdi, 8)]
            self._state, self._block = PROTOCOL, 1
            return tag.ats
        return None

    def _anticollision(self, tag: SimTag, frame: bytes) -> bytes | None:
        levels = cascade_levels(tag.uid)
        if len(frame) < 2 or frame[0] not in SEL_CODES:
            self._state = IDLE
            return None
        level = SEL_CODES.index(frame[0])
        if level >= len(levels):
            return None
        if frame[1] == 0x20:  # SDD_REQ: the whole level, no collision possible with one tag
            return levels[level]
        if frame[1] == 0x70 and frame[2:] == levels[level]:  # SEL_REQ for our UID part
            if level + 1 < len(levels):
                return bytes((0x04,))  # SAK "UID not complete"
            self._state = ACTIVE
            return bytes((tag.sak[0] & ~0x04 & 0xFF,))
        return None

    # -- ISO/IEC 14443-4 -----------------------------------------------------------------
    def _send_block(self, block: bytes) -> bytes:
        self._last_block = block
        return block

    def _iso_dep(self, tag: SimTag, frame: bytes) -> bytes | None:
        pcb = frame[0]
        cid = b""
        header = 1
        if pcb & 0x08:  # CID follows: echo it
            cid, header = frame[1:2], 2
        if pcb & 0xC0 == 0x00 and pcb & 0x22 == 0x02:  # I-block
            return self._i_block(tag, pcb, cid, frame[header:])
        if pcb & 0xE6 == 0xA2:  # R-block
            return self._r_block(pcb, cid)
        if pcb & 0xF7 == 0xC2:  # S(DESELECT)
            self._state = HALT
            return bytes((pcb,)) + cid
        return None

    def _i_block(self, tag: SimTag, pcb: int, cid: bytes, inf: bytes) -> bytes | None:
        """An information block: a part of a chained command, or a command to answer."""
        if pcb & 0x04:  # NAD is not supported by this PICC
            return None
        self._block ^= 1
        self._chain_in += inf
        if pcb & 0x10:  # the reader chains: acknowledge this part
            return self._send_block(bytes((0xA2 | self._block | (pcb & 0x08),)) + cid)
        apdu, self._chain_in = bytes(self._chain_in), bytearray()
        self.stats.apdus += 1
        try:
            self._chain_out = tag.transceive(apdu)
        except TagRemovedError:
            self._tag = None
            self._reset_state()
            return None
        return self._next_chunk(pcb & 0x08, cid)

    def _r_block(self, pcb: int, cid: bytes) -> bytes | None:
        """A receive-ready block: resend the last block, or send the next part of ours."""
        number, nak = pcb & 0x01, bool(pcb & 0x10)
        if number == self._block:
            self.stats.retransmits += 1
            return self._last_block
        if nak:
            return self._send_block(bytes((0xA2 | self._block | (pcb & 0x08),)) + cid)
        if self._chain_out:  # ACK for our chained answer: send the next part
            self._block ^= 1
            return self._next_chunk(pcb & 0x08, cid)
        return None

    def _next_chunk(self, cid_bit: int, cid: bytes) -> bytes:
        room = max(1, self._fsd - 3 - len(cid))  # PCB and the two CRC bytes count
        chunk, self._chain_out = self._chain_out[:room], self._chain_out[room:]
        pcb = 0x02 | self._block | cid_bit | (0x10 if self._chain_out else 0x00)
        return self._send_block(bytes((pcb,)) + cid + chunk)
