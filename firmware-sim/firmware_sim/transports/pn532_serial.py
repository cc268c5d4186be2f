"""A PN532 NFC controller on a serial line (HSU), with a simulated tag on its antenna.

It opens the far end of a pty pair (``dockgate.sim.services.socat``) and speaks the PN532 host
interface (NXP UM0701-02): every well-formed command frame is acknowledged, then answered;
a NACK from the host gets the last answer again; frames with a bad length or data checksum
are dropped without an answer, as the chip does. Commands understood: Diagnose (presence
test 06), GetFirmwareVersion, GetGeneralStatus, SAMConfiguration, RFConfiguration,
InListPassiveTarget (106 kbps type A only), InDataExchange (APDUs to the tag), InDeselect and
InRelease; anything else gets the error frame.

Fault switches for tests: :meth:`send_garbage` (noise on the line), ``corrupt_next`` (answers
sent with a broken data checksum), ``silent_next`` (commands swallowed without an ACK).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import serial

from dockgate.drivers.readers import pn532_frames as pf
from dockgate.sim.ntag424 import TagRemovedError

FIRMWARE_VERSION = bytes((0x32, 0x01, 0x06, 0x07))  # PN532, v1.6, ISO A + B + 18092
RETRY_PERIOD = 0.002  # seconds one passive activation attempt takes in this model


class SimTag(Protocol):
    """What a transport needs from a simulated tag (``dockgate.sim.ntag424.Ntag424Tag``)."""

    uid: bytes
    atqa: bytes
    sak: bytes
    ats: bytes

    def transceive(self, apdu: bytes) -> bytes: ...

    def reset(self) -> None: ...


@dataclass(slots=True)
class Pn532Stats:
    """What the simulated chip saw: commands by code, and the line faults it dropped."""

    commands: dict[int, int] = field(default_factory=dict)
    acks_sent: int = 0
    nacks_received: int = 0
    bad_frames: int = 0
    garbage_bytes: int = 0
    error_frames: int = 0
    line_errors: int = 0


class Pn532Simulator:
    """A PN532 behind ``device_path``; ``present(tag)`` / ``remove()`` move tags on the antenna.

    Runs one daemon thread; reopens the serial device when the line goes away and comes back.
    """

    def __init__(self, device_path: str | Path, *, baudrate: int = 115200) -> None:
        self.device_path = str(device_path)
        self.baudrate = baudrate
        self.stats = Pn532Stats()
        self.corrupt_next = 0
        self.silent_next = 0
        self._decoder = pf.FrameDecoder()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._tag: SimTag | None = None
        self._generation = 0  # bumped at every presentation and removal
        self._active_generation: int | None = None  # the activation InListPassiveTarget made
        self._last_answer: bytes | None = None
        self._abort = False
        self._stop = threading.Event()
        self._serial: serial.Serial | None = None
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()  # set while the serial device is open
        self.awaiting_tag = threading.Event()  # set while InListPassiveTarget waits for a tag
        self._commands: queue.Queue[bytes | None] = queue.Queue()
        self.presented_at: float | None = None

    # -- the antenna ---------------------------------------------------------------------
    def present(self, tag: SimTag) -> float:
        """Put ``tag`` on the antenna (the field resets it); returns the monotonic moment."""
        with self._changed:
            tag.reset()
            self._tag = tag
            self._generation += 1
            self.presented_at = time.monotonic()
            self._changed.notify_all()
            return self.presented_at

    def remove(self) -> None:
        """Take the tag away: any activation it had is lost."""
        with self._changed:
            self._tag = None
            self._generation += 1
            self._changed.notify_all()

    @property
    def tag(self) -> SimTag | None:
        return self._tag

    # -- line faults ----------------------------------------------------------------------
    def send_garbage(self, data: bytes) -> None:
        """Write noise onto the line now, between frames."""
        self._write(data)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 5.0) -> Pn532Simulator:
        """Start serving; waits until the serial device is open (when it exists)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pn532-sim", daemon=True)
        self._thread.start()
        if Path(self.device_path).exists():
            self.ready.wait(timeout)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close_serial()

    def __enter__(self) -> Pn532Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serial loop ----------------------------------------------------------------------
    def _run(self) -> None:
        """Read the line; ACK commands at once and queue them for the command thread."""
        worker = threading.Thread(target=self._work, name="pn532-sim-cmd", daemon=True)
        worker.start()
        try:
            while not self._stop.is_set():
                try:
                    port = serial.Serial(self.device_path, self.baudrate, timeout=0.02)
                except (OSError, serial.SerialException):
                    self._stop.wait(0.05)
                    continue
                self._serial = port
                self._decoder.reset()
                self.ready.set()
                try:
                    while not self._stop.is_set():
                        data = port.read(max(1, port.in_waiting))
                        if data:
                            self._handle_bytes(data)
                except (OSError, serial.SerialException, TypeError):
                    # The pty went away (socat stopped): wait for the line to come back.
                    self.stats.line_errors += 1
                finally:
                    self._close_serial()
        finally:
            self._commands.put(None)
            worker.join(timeout=5)

    def _work(self) -> None:
        while (body := self._commands.get()) is not None:
            self._handle_command(body)

    def _close_serial(self) -> None:
        self.ready.clear()
        port, self._serial = self._serial, None
        if port is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                port.close()

    def _write(self, data: bytes) -> None:
        port = self._serial
        if port is None:
            return
        with self._write_lock:
            try:
                port.write(data)
                port.flush()
            except (OSError, serial.SerialException, TypeError):
                self.stats.line_errors += 1

    def _handle_bytes(self, data: bytes) -> None:
        for item in self._decoder.feed(data):
            match item:
                case pf.Frame(tfi=pf.TFI_HOST, data=body) if body:
                    if self.silent_next > 0:
                        self.silent_next -= 1
                        continue
                    self._write(pf.ACK)
                    self.stats.acks_sent += 1
                    self._commands.put(body)
                case pf.Nack():
                    self.stats.nacks_received += 1
                    if self._last_answer is not None:
                        self._transmit(self._last_answer)
                case pf.Ack():
                    with self._changed:  # the host aborts the pending command
                        self._abort = True
                        self._changed.notify_all()
                case _:
                    self.stats.bad_frames += 1
        self.stats.garbage_bytes = self._decoder.garbage_bytes

    def _handle_command(self, body: bytes) -> None:
        code, params = body[0], body[1:]
        self.stats.commands[code] = self.stats.commands.get(code, 0) + 1
        answer = self._answer(code, params)
        if answer is None:
            frame = pf.ERROR_FRAME
            self.stats.error_frames += 1
        else:
            frame = pf.encode_frame(pf.TFI_PN532, bytes((code + 1,)) + answer)
        self._last_answer = frame
        self._transmit(frame)

    def _transmit(self, frame: bytes) -> None:
        """Send an answer, spoiling its data checksum if a fault asks for it."""
        if self.corrupt_next > 0 and frame != pf.ERROR_FRAME:
            self.corrupt_next -= 1
            frame = frame[:-2] + bytes(((frame[-2] + 1) & 0xFF,)) + frame[-1:]
        self._write(frame)

    # -- commands -------------------------------------------------------------------------
    def _answer(self, code: int, params: bytes) -> bytes | None:
        """The answer's data after the response code, or None for the error frame."""
        handler = {
            pf.CMD_DIAGNOSE: self._diagnose,
            pf.CMD_GET_FIRMWARE_VERSION: lambda p: FIRMWARE_VERSION,
            pf.CMD_GET_GENERAL_STATUS: self._general_status,
            pf.CMD_SAM_CONFIGURATION: self._sam_configuration,
            pf.CMD_RF_CONFIGURATION: self._rf_configuration,
            pf.CMD_IN_LIST_PASSIVE_TARGET: self._in_list_passive_target,
            pf.CMD_IN_DATA_EXCHANGE: self._in_data_exchange,
            pf.CMD_IN_DESELECT: self._in_release,
            pf.CMD_IN_RELEASE: self._in_release,
        }.get(code)
        return None if handler is None else handler(params)

    max_retries_passive = 0xFF  # RFConfiguration item 5; 0xFF waits for ever

    def _active_tag(self) -> SimTag | None:
        if self._active_generation is None or self._active_generation != self._generation:
            return None
        return self._tag

    def _diagnose(self, params: bytes) -> bytes | None:
        if params[:1] != b"\x06":  # only the ISO/IEC 14443-4 presence test is modelled
            return None
        with self._lock:
            tag = self._active_tag()
        if tag is None:
            return bytes((pf.STATUS_TIMEOUT,))
        return bytes((pf.STATUS_OK,))

    def _general_status(self, params: bytes) -> bytes:
        with self._lock:
            tag = self._active_tag()
        if tag is None:
            return bytes((0x00, 0x00, 0x00, 0x00))
        return bytes((0x00, 0x01, 0x01, 0x01, 0x00, 0x00, 0x10, 0x00))

    def _sam_configuration(self, params: bytes) -> bytes | None:
        if not params or params[0] not in (0x01, 0x02, 0x03, 0x04):
            return None
        return b""

    def _rf_configuration(self, params: bytes) -> bytes | None:
        if not params:
            return None
        if params[0] == 0x05 and len(params) == 4:
            self.max_retries_passive = params[3]
        return b""

    def _in_list_passive_target(self, params: bytes) -> bytes | None:
        if len(params) < 2 or params[0] not in (1, 2) or params[1] > 0x04:
            return None
        if params[1] != 0x00:  # 212/424 FeliCa, 106 B, Jewel: nothing of that kind here
            return b"\x00"
        wanted_uid = params[2:] or None
        retries = self.max_retries_passive
        deadline = None if retries == 0xFF else time.monotonic() + (retries + 1) * RETRY_PERIOD
        with self._changed:
            self._abort = False
            self._active_generation = None
            self.awaiting_tag.set()
            while self._tag is None or (wanted_uid is not None and self._tag.uid != wanted_uid):
                remaining = None if deadline is None else deadline - time.monotonic()
                if self._abort or self._stop.is_set() or (remaining is not None and remaining <= 0):
                    self.awaiting_tag.clear()
                    return b"\x00"
                self._changed.wait(remaining)
            self.awaiting_tag.clear()
            tag = self._tag
            tag.reset()
            self._active_generation = self._generation
        sens_res = tag.atqa[::-1]  # the PN532 reports SENS_RES most significant byte first
        return (
            b"\x01\x01"
            + sens_res
            + tag.sak[:1]
            + bytes((len(tag.uid),))
            + tag.uid
            + tag.ats  # the ATS with its length byte TL first, as the chip passes it on
        )

    def _in_data_exchange(self, params: bytes) -> bytes | None:
        if len(params) < 2:
            return None
        target, apdu = params[0] & 0x0F, params[1:]
        with self._lock:
            tag = self._active_tag()
        if target != 1 or self._active_generation is None:
            return bytes((pf.STATUS_WRONG_CONTEXT,))
        if tag is None:
            return bytes((pf.STATUS_TIMEOUT,))
        try:
            response = tag.transceive(apdu)
        except TagRemovedError:  # the tag model left the field mid-exchange
            self.remove()
            return bytes((pf.STATUS_TIMEOUT,))
        return bytes((pf.STATUS_OK,)) + response

    def _in_release(self, params: bytes) -> bytes | None:
        if not params:
            return None
        if params[0] in (0x00, 0x01):
            self._active_generation = None
            return bytes((pf.STATUS_OK,))
        return bytes((pf.STATUS_WRONG_CONTEXT,))
