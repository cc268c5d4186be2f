"""A PN532 NFC controller on a UART (HSU), driven with pyserial: one reader, one tag at a time.

A worker thread owns the serial port: it wakes the chip, configures it, lists a 106 kbps
type A target, reads the NDEF file through InDataExchange with the shared Type 4 sequence
(:mod:`dockgate.drivers.readers.ndef_type4`), then waits with the chip's presence test until the tag
leaves, so one physical tap is one event. Line noise and broken checksums are counted and
recovered from (NACK, resend); a line that goes away is reopened with backoff.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections import deque
from dataclasses import dataclass, replace

import serial

from dockgate.drivers.readers import ndef_type4
from dockgate.drivers.readers import pn532_frames as pf
from dockgate.drivers.readers._threaded import RECONNECT, ThreadedReader
from dockgate.gateway.backoff import Backoff
from dockgate.gateway.readers import ReaderError, ReaderStatus, TapEvent

LINE_ERRORS = (OSError, serial.SerialException, TypeError)  # pyserial raises TypeError on a
# port closed under it


class Pn532Error(ReaderError):
    """The chip or the line misbehaved beyond what resends recover from."""


class Pn532Timeout(Pn532Error):
    """No ACK or no answer in time."""


class Pn532Link:
    """Blocking command/answer exchanges with a PN532 over an open, non-blocking serial port.

    Every exchange: send the command frame, wait for the ACK (resend on timeout), wait for the
    answer (NACK to get it again when its checksum is broken). ``counters`` says what went
    wrong on the line; nothing here logs frame contents.
    """

    def __init__(
        self,
        port: serial.Serial,
        *,
        ack_timeout: float = 0.2,
        answer_timeout: float = 1.0,
        retries: int = 3,
    ) -> None:
        self.port = port
        self.ack_timeout = ack_timeout
        self.answer_timeout = answer_timeout
        self.retries = retries
        self.decoder = pf.FrameDecoder()
        self._items: deque[pf.Item] = deque()
        self.counters: dict[str, int] = {
            "frames": 0,
            "ack_timeouts": 0,
            "answer_timeouts": 0,
            "nacks_sent": 0,
            "error_frames": 0,
            "stale_frames": 0,
        }

    def snapshot(self) -> dict[str, int]:
        """Counters including the decoder's garbage and checksum counts."""
        return {
            **self.counters,
            "garbage_bytes": self.decoder.garbage_bytes,
            "bad_length": self.decoder.bad_length,
            "bad_checksum": self.decoder.bad_checksum,
        }

    def wake(self) -> None:
        """The HSU wake-up preamble; harmless to a chip that is awake."""
        self._write(pf.WAKEUP)

    def command(self, code: int, params: bytes = b"", timeout: float | None = None) -> bytes:
        """Send ``code`` with ``params``; return the answer's data after the answer code."""
        frame = pf.encode_frame(pf.TFI_HOST, bytes((code,)) + params)
        for _ in range(self.retries + 1):
            self._write(frame)
            if self._await_ack():
                return self._await_answer(code, self.answer_timeout if timeout is None else timeout)
            self.counters["ack_timeouts"] += 1
        raise Pn532Timeout(f"no ACK to command {code:#04x}")

    def _await_ack(self) -> bool:
        deadline = time.monotonic() + self.ack_timeout
        while (item := self._next_item(deadline)) is not None:
            match item:
                case pf.Ack():
                    return True
                case pf.ErrorFrame():
                    self.counters["error_frames"] += 1
                case pf.Frame():
                    self.counters["stale_frames"] += 1
        return False

    def _await_answer(self, code: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        nacks = 0
        while True:
            item = self._next_item(deadline)
            match item:
                case None:
                    self.counters["answer_timeouts"] += 1
                    self._write(pf.ACK)  # abort whatever the chip still does
                    raise Pn532Timeout(f"no answer to command {code:#04x}")
                case pf.Frame(tfi=pf.TFI_PN532, data=data) if data[:1] == bytes((code + 1,)):
                    self.counters["frames"] += 1
                    return data[1:]
                case pf.Frame():
                    self.counters["stale_frames"] += 1
                case pf.ErrorFrame():
                    self.counters["error_frames"] += 1
                    raise Pn532Error(f"command {code:#04x} refused (error frame)")
                case pf.BadFrame():
                    nacks += 1
                    if nacks > self.retries:
                        raise Pn532Error(f"answer to {code:#04x} corrupt {nacks} times")
                    self.counters["nacks_sent"] += 1
                    self._write(pf.NACK)
                    deadline = time.monotonic() + timeout

    def _write(self, data: bytes) -> None:
        self.port.write(data)

    def _next_item(self, deadline: float) -> pf.Item | None:
        while not self._items:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self.port.fileno()], [], [], remaining)
            if not ready:
                return None
            data = self.port.read(max(1, self.port.in_waiting))
            if not data:
                raise serial.SerialException("line closed (read returned no data)")
            self._items.extend(self.decoder.feed(data))
        return self._items.popleft()


def parse_target(answer: bytes) -> tuple[bytes, int, bytes, bytes]:
    """SENS_RES, SEL_RES, UID and ATS from an InListPassiveTarget (106A) answer with one target.

    Raises ``ValueError`` when the lengths inside do not add up (a hostile or broken line).
    """
    if len(answer) < 7 or answer[0] != 1:
        raise ValueError("answer holds no single target")
    sens_res, sel_res, uid_len = answer[2:4], answer[4], answer[5]
    if uid_len not in (4, 7, 10) or len(answer) < 6 + uid_len:
        raise ValueError(f"bad NFCID1 length {uid_len}")
    uid = answer[6 : 6 + uid_len]
    ats = answer[6 + uid_len :]
    if ats and ats[0] != len(ats):
        raise ValueError("ATS length byte does not match")
    return sens_res, sel_res, uid, ats


@dataclass(frozen=True, slots=True)
class LinkTimeouts:
    """How long a :class:`Pn532Link` waits for the chip's ACK and then for its answer."""

    ack: float = 0.2
    answer: float = 1.0


class Pn532Reader(ThreadedReader):
    """``async with Pn532Reader("/dev/ttyUSB0") as r: async for tap in r.taps(): ...``."""

    name = "pn532"

    def __init__(
        self,
        port: str,
        *,
        reader_id: str | None = None,
        baudrate: int = 115200,
        passive_retries: int = 0x20,
        presence_interval: float = 0.02,
        reconnect: Backoff = RECONNECT,
        timeouts: LinkTimeouts = LinkTimeouts(),
        max_le: int = 256,
    ) -> None:
        super().__init__(reader_id or f"pn532:{port}", reconnect=reconnect)
        self.port = port
        self.baudrate = baudrate
        self.passive_retries = passive_retries
        self.presence_interval = presence_interval
        self.timeouts = timeouts
        self.max_le = max_le
        self.firmware: bytes | None = None
        self._line_totals: dict[str, int] = {}  # from links closed by reconnects
        self._link: Pn532Link | None = None

    def status(self) -> list[ReaderStatus]:
        counters = {**self._status.counters, **self._line_totals}
        link = self._link
        if link is not None:
            for key, value in link.snapshot().items():
                counters[key] = counters.get(key, 0) + value
        return [replace(self._status, counters=counters)]

    # -- worker thread --------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                port = serial.Serial(self.port, self.baudrate, timeout=0, exclusive=True)
            except LINE_ERRORS as exc:
                self._fail("down", f"open failed: {type(exc).__name__}")
                self._backoff()
                continue
            link = Pn532Link(
                port, ack_timeout=self.timeouts.ack, answer_timeout=self.timeouts.answer
            )
            self._link = link
            try:
                self._setup(link)
                self._up()
                self._reconnects.reset()
                while not self._stop.is_set():
                    self._poll(link)
            except LINE_ERRORS as exc:
                self._fail("down", f"line lost: {type(exc).__name__}")
            except Pn532Error as exc:
                self._fail("error", str(exc))
            finally:
                self._link = None
                for key, value in link.snapshot().items():
                    self._line_totals[key] = self._line_totals.get(key, 0) + value
                with contextlib.suppress(*LINE_ERRORS):
                    port.close()
            self._stop.wait(self._reconnects.delay())  # a lost line: the current delay again

    def _setup(self, link: Pn532Link) -> None:
        link.wake()
        self.firmware = link.command(pf.CMD_GET_FIRMWARE_VERSION)
        link.command(pf.CMD_SAM_CONFIGURATION, b"\x01\x14\x01")  # normal mode, no IRQ wait
        # MxRtyATR, MxRtyPSL, MxRtyPassiveActivation: a bounded wait, so close() is prompt.
        link.command(pf.CMD_RF_CONFIGURATION, bytes((0x05, 0xFF, 0x01, self.passive_retries)))

    def _poll(self, link: Pn532Link) -> None:
        answer = link.command(pf.CMD_IN_LIST_PASSIVE_TARGET, b"\x01\x00")
        if not answer or answer[0] == 0:
            return
        presented_at, wall = time.monotonic(), time.time()
        try:
            _, sel_res, uid, _ = parse_target(answer)
        except ValueError as exc:
            self._count("bad_target")
            self._status.last_error = str(exc)
            return
        if not sel_res & 0x20:  # not ISO/IEC 14443-4: no Type 4 NDEF to read
            self._emit(
                TapEvent(
                    self.reader_id,
                    uid,
                    None,
                    presented_at,
                    time.monotonic(),
                    wall,
                    error="not_type4",
                )
            )
            self._wait_removal(link)
            return

        def transceive(apdu: bytes) -> bytes:
            status_and_data = link.command(pf.CMD_IN_DATA_EXCHANGE, b"\x01" + apdu)
            status = status_and_data[0] & 0x3F if status_and_data else pf.STATUS_BAD_FORMAT
            if status == pf.STATUS_TIMEOUT:
                raise ndef_type4.CardRemovedError("tag left the field")
            if status != pf.STATUS_OK:
                raise Pn532Error(f"InDataExchange status {status:#04x}")
            return status_and_data[1:]

        read = ndef_type4.read_ndef_url(transceive, max_le=self.max_le)
        self._emit(
            TapEvent(
                reader=self.reader_id,
                uid=uid,
                url=read.url,
                presented_at=presented_at,
                read_at=time.monotonic(),
                wall_time=wall,
                stack_seconds=read.stack_seconds,
                apdus=read.apdus,
                error=read.error,
            )
        )
        if read.error != ndef_type4.REMOVED:
            self._wait_removal(link)
        link.command(pf.CMD_IN_RELEASE, b"\x01")

    def _wait_removal(self, link: Pn532Link) -> None:
        """Diagnose 06 (presence test) until the tag leaves: one tap, one event."""
        while not self._stop.is_set():
            answer = link.command(pf.CMD_DIAGNOSE, b"\x06")
            if answer[:1] != bytes((pf.STATUS_OK,)):
                return
            self._stop.wait(self.presence_interval)
