"""An nfcpy ContactlessFrontend as a reader: a USB reader nfcpy drives itself, or ``udp:`` in tests.

nfcpy is blocking, so a worker thread owns the frontend: it senses 106 kbps type A targets,
activates them with nfcpy's own tag code (RATS, ISO-DEP), reads the NDEF file with the shared
Type 4 sequence of :mod:`drivers.readers.ndef_type4` over nfcpy's ISO-DEP ``transceive``, then
waits with nfcpy's presence check until the tag leaves, so one physical tap is one event.
Events reach the event loop with ``call_soon_threadsafe``. A frontend that fails (unplugged,
or the UDP peer gone) is closed and reopened with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from drivers.readers import ndef_type4
from drivers.readers.base import ReaderDriver, ReaderState, ReaderStatus, TapEvent


class NfcpyReader(ReaderDriver):
    """``async with NfcpyReader("usb") as r: async for tap in r.taps(): ...``.

    ``path`` is any nfcpy device path: ``usb``, ``usb:054c:06c3``, ``tty:USB0:pn532``,
    ``udp:127.0.0.1:54321``.
    """

    name = "nfcpy"

    def __init__(
        self,
        path: str = "usb",
        *,
        reader_id: str | None = None,
        poll_interval: float = 0.02,
        presence_interval: float = 0.02,
        reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 2.0,
        max_le: int = 256,
    ) -> None:
        self.path = path
        self.reader_id = reader_id or f"nfcpy:{path}"
        self.poll_interval = poll_interval
        self.presence_interval = presence_interval
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.max_le = max_le
        self.device_name: str | None = None
        self._status = ReaderStatus(reader=self.reader_id, driver=self.name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[TapEvent | None] = asyncio.Queue()
        self._opened = 0

    # -- ReaderDriver ---------------------------------------------------------------------
    async def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.reader_id, daemon=True)
        self._thread.start()

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        await asyncio.to_thread(thread.join, 10)
        self._status.state = "down"
        self._queue.put_nowait(None)

    async def taps(self) -> AsyncIterator[TapEvent]:
        while (event := await self._queue.get()) is not None:
            yield event

    def status(self) -> list[ReaderStatus]:
        return [replace(self._status, counters=dict(self._status.counters))]

    # -- worker thread --------------------------------------------------------------------
    def _count(self, key: str) -> None:
        self._status.counters[key] = self._status.counters.get(key, 0) + 1

    def _fail(self, state: ReaderState, reason: str) -> None:
        self._status.state = state
        self._status.errors += 1
        self._status.last_error = reason

    def _emit(self, event: TapEvent) -> None:
        if event.error is None:
            self._status.taps += 1
        else:
            self._count(f"read_{event.error}")
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    def _run(self) -> None:
        import nfc  # heavy: only in the worker

        delay = self.reconnect_delay
        while not self._stop.is_set():
            try:
                clf = nfc.ContactlessFrontend(self.path)
            except OSError as exc:
                self._fail("down", f"open failed: {type(exc).__name__}")
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_reconnect_delay)
                continue
            self.device_name = str(clf)
            if self._opened:
                self._status.reconnects += 1
            self._opened += 1
            self._status.state = "up"
            try:
                while not self._stop.is_set():
                    if self._poll(clf):
                        delay = self.reconnect_delay
            except OSError as exc:  # device unplugged, UDP peer gone (ECONNREFUSED), ...
                self._fail("down", f"reader lost: {type(exc).__name__}")
            except Exception as exc:  # nfcpy bugs on odd frames must not kill the watch
                self._fail("error", f"{type(exc).__name__}")
            finally:
                with contextlib.suppress(Exception):
                    clf.close()
            self._stop.wait(delay)
            delay = min(delay * 2, self.max_reconnect_delay)

    def _poll(self, clf: Any) -> bool:
        """One sense; read and report a tag if there is one. True when the radio answered."""
        import nfc
        import nfc.clf
        import nfc.tag.tt4

        target = clf.sense(nfc.clf.RemoteTarget("106A"), iterations=1)
        self._status.state = "up"
        if target is None:
            self._stop.wait(self.poll_interval)
            return True
        presented_at, wall = time.monotonic(), time.time()
        uid = bytes(target.sdd_res) if target.sdd_res else None
        try:
            tag = nfc.tag.activate(clf, target)
        except nfc.clf.CommunicationError:
            tag = None
        if tag is None:
            self._count("activation_failed")
            return True
        if not isinstance(tag, nfc.tag.tt4.Type4Tag):
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
            self._wait_removal(tag)
            return True
        read = ndef_type4.read_ndef_url(_transceiver(tag), max_le=self.max_le)
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
            self._wait_removal(tag)
        return True

    def _wait_removal(self, tag: Any) -> None:
        """nfcpy's presence check (R(NAK) for ISO-DEP) until the tag leaves the field."""
        while not self._stop.is_set() and tag.is_present:
            self._stop.wait(self.presence_interval)


def _transceiver(tag: Any) -> ndef_type4.Transceive:
    """nfcpy's ISO-DEP exchange as a ``transceive``; a silent tag becomes ``CardRemovedError``."""
    import nfc.clf
    import nfc.tag
    import nfc.tag.tt4

    lost = (nfc.tag.TIMEOUT_ERROR, nfc.tag.RECEIVE_ERROR, nfc.tag.PROTOCOL_ERROR)

    def transceive(apdu: bytes) -> bytes:
        try:
            response = tag.transceive(apdu)
        except nfc.tag.tt4.Type4TagCommandError as exc:
            if exc.errno in lost:
                raise ndef_type4.CardRemovedError("tag left the field") from None
            raise
        except nfc.clf.CommunicationError:
            raise ndef_type4.CardRemovedError("tag left the field") from None
        if response is None:
            raise ndef_type4.CardRemovedError("no response")
        return bytes(response)

    return transceive
