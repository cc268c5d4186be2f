"""PC/SC reader driver on pyscard: every reader pcscd offers, watched from one thread.

pyscard is blocking, so one thread waits in SCardGetStatusChange (with a short timeout so it
notices new readers and a close), reads each newly presented card (FF CA for the UID, then
the Type 4 NDEF sequence) and hands the TapEvent to the event loop with
``call_soon_threadsafe``. When pcscd goes away the thread drops its context, marks the readers
down and keeps trying to establish a new one: the driver reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace

from dockgate.drivers.readers.ndef_type4 import CardRemovedError, Transceive, read_ndef_url
from dockgate.gateway.readers import ReaderDriver, ReaderState, ReaderStatus, TapEvent

PNP_READER = "\\\\?PnP?\\Notification"
_SCARD_PRESENT = 0x0004  # SCardStatus state bit (pcsclite.h), not exported by pyscard
GET_UID = bytes.fromhex("FFCA000000")


class PcscError(Exception):
    """A PC/SC call failed; ``code`` is the SCARD_* result."""

    def __init__(self, call: str, code: int) -> None:
        from smartcard import scard

        super().__init__(f"{call}: {scard.SCardGetErrorMessage(code)} (0x{code & 0xFFFFFFFF:08X})")
        self.code = code


class PcscDriver(ReaderDriver):
    """Watches PC/SC readers (all, or those whose name contains one of ``readers``)."""

    name = "pcsc"

    def __init__(
        self,
        readers: Iterable[str] | None = None,
        *,
        poll_ms: int = 250,
        retry_seconds: float = 0.3,
        rescan_seconds: float = 2.0,
    ) -> None:
        self._filters = tuple(readers or ())
        self._poll_ms = poll_ms
        self._retry = retry_seconds
        self._rescan = rescan_seconds
        self._status: dict[str, ReaderStatus] = {}
        self._queue: asyncio.Queue[TapEvent | None] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ctx: int | None = None
        self._ctx_lock = threading.Lock()
        self._closed = False

    # -- ReaderDriver ----------------------------------------------------------------------
    async def start(self) -> None:
        """Begin watching; after a ``close`` it starts afresh (the daemon restarts a failed
        reader part): a new watch thread and tap queue, the readers' counters kept."""
        if self._thread is not None and not self._closed:
            return
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the last PC/SC watch thread has not stopped yet")
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()  # the last run's end-of-taps mark stays in the old one
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="pcsc-watch", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._cancel_wait()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
        self._queue.put_nowait(None)

    async def taps(self) -> AsyncIterator[TapEvent]:
        queue = self._queue  # this run's: a start after a close makes a new one
        while True:
            event = await queue.get()
            if event is None:
                queue.put_nowait(None)  # later iterators end too
                return
            yield event

    def status(self) -> list[ReaderStatus]:
        return [replace(s, counters=dict(s.counters)) for s in list(self._status.values())]

    # -- watch thread ----------------------------------------------------------------------
    def _wanted(self, reader: str) -> bool:
        return not self._filters or any(f in reader for f in self._filters)

    def _cancel_wait(self) -> None:
        from smartcard import scard

        with self._ctx_lock:
            if self._ctx is not None:
                scard.SCardCancel(self._ctx)

    def _run(self) -> None:
        from smartcard import scard

        while not self._stop.is_set():
            hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if hresult != scard.SCARD_S_SUCCESS:
                self._all_down(f"no PC/SC service: {scard.SCardGetErrorMessage(hresult)}")
                self._stop.wait(self._retry)
                continue
            with self._ctx_lock:
                self._ctx = ctx
            self._watch(ctx)
        self._drop_context(None)

    def _watch(self, ctx: int) -> None:
        """Wait for reader events in ``ctx`` until the driver closes or the context dies
        (then it is dropped already, and :meth:`_run` establishes a new one)."""
        from smartcard import scard

        states: dict[str, int] = {}
        listed_at = 0.0
        while not self._stop.is_set():
            if time.monotonic() - listed_at > self._rescan or not states:
                if not self._relist(ctx, states):
                    return
                listed_at = time.monotonic()
            hresult, changes = scard.SCardGetStatusChange(ctx, self._poll_ms, list(states.items()))
            if hresult in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
                continue
            if hresult == scard.SCARD_E_UNKNOWN_READER:
                listed_at = 0.0
                continue
            if hresult != scard.SCARD_S_SUCCESS:
                self._drop_context(scard.SCardGetErrorMessage(hresult))
                return
            if self._on_changes(ctx, states, changes):
                listed_at = 0.0

    def _on_changes(
        self, ctx: int, states: dict[str, int], changes: list[tuple[str, int, list[int]]]
    ) -> bool:
        """Note each reader's new state and read newly presented cards; True when the
        reader list must be refreshed (a reader came, went or became unavailable)."""
        from smartcard import scard

        relist = False
        for reader, event, _atr in changes:
            before = states.get(reader, 0)
            states[reader] = event & ~scard.SCARD_STATE_CHANGED
            if reader == PNP_READER:
                relist = relist or bool(event & scard.SCARD_STATE_CHANGED)
                continue
            if event & (scard.SCARD_STATE_UNAVAILABLE | scard.SCARD_STATE_UNKNOWN):
                self._mark(reader, "down", "reader unavailable")
                relist = True
                continue
            if _new_card(before, event):
                self._read(ctx, reader, time.monotonic(), time.time())
        return relist

    def _relist(self, ctx: int, states: dict[str, int]) -> bool:
        """Refresh the watched readers; False when the context died (dropped already)."""
        from smartcard import scard

        hresult, names = scard.SCardListReaders(ctx, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            names = []
        elif hresult != scard.SCARD_S_SUCCESS:
            self._drop_context(scard.SCardGetErrorMessage(hresult))
            return False
        present = {n for n in names if self._wanted(n)}
        for gone in set(states) - present - {PNP_READER}:
            del states[gone]
            self._mark(gone, "down", "reader unplugged")
        for name in present - set(states):
            states[name] = scard.SCARD_STATE_UNAWARE
            self._mark(name, "up", None)
        states.setdefault(PNP_READER, scard.SCARD_STATE_UNAWARE)
        if not present:
            self._stop.wait(self._retry)  # nothing to watch: pcscd may be starting
        return True

    def _drop_context(self, reason: str | None) -> None:
        from smartcard import scard

        with self._ctx_lock:
            ctx, self._ctx = self._ctx, None
        if ctx is not None:
            scard.SCardReleaseContext(ctx)
        if reason is not None:
            self._all_down(reason)
            self._stop.wait(self._retry)

    def _all_down(self, reason: str) -> None:
        for name, status in self._status.items():
            if status.state == "up":
                self._mark(name, "down", reason)

    def _mark(self, reader: str, state: ReaderState, reason: str | None) -> None:
        status = self._status.get(reader)
        if status is None:
            status = self._status[reader] = ReaderStatus(reader=reader, driver=self.name)
        elif state == "up" and status.state != "up":
            status.reconnects += 1
        status.state = state
        if reason is not None:
            status.last_error = reason

    # -- one tap ---------------------------------------------------------------------------
    def _read(self, ctx: int, reader: str, presented_at: float, wall: float) -> None:
        from smartcard import scard

        status = self._status.setdefault(reader, ReaderStatus(reader=reader, driver=self.name))
        hresult, card, protocol = scard.SCardConnect(
            ctx,
            reader,
            scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        if hresult != scard.SCARD_S_SUCCESS:
            error = "removed" if hresult in _REMOVED_CODES() else "io"
            self._emit(
                status,
                TapEvent(reader, None, None, presented_at, time.monotonic(), wall, error=error),
            )
            return
        seconds, apdus = 0.0, 0

        def transceive(apdu: bytes) -> bytes:
            nonlocal seconds, apdus
            start = time.perf_counter()
            hres, response = scard.SCardTransmit(card, protocol, list(apdu))
            seconds += time.perf_counter() - start
            apdus += 1
            if hres != scard.SCARD_S_SUCCESS:
                if hres in _REMOVED_CODES() or _card_gone(card):
                    raise CardRemovedError(scard.SCardGetErrorMessage(hres))
                raise PcscError("SCardTransmit", hres)
            if len(response) < 2:
                # No status word: the contactless exchange failed, the tag left the field
                # (vpcd answers this way when the card's link dropped before pcscd polled).
                raise CardRemovedError("no response from the card")
            return bytes(response)

        try:
            uid = _read_uid(transceive)
            result = read_ndef_url(transceive)
        finally:
            scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
        event = TapEvent(
            reader=reader,
            uid=uid,
            url=result.url,
            presented_at=presented_at,
            read_at=time.monotonic(),
            wall_time=wall,
            stack_seconds=seconds,
            apdus=apdus,
            error=result.error,
        )
        self._emit(status, event)

    def _emit(self, status: ReaderStatus, event: TapEvent) -> None:
        status.taps += 1
        if event.error is not None:
            status.errors += 1
            status.last_error = event.error
            status.counters[event.error] = status.counters.get(event.error, 0) + 1
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                self._loop.call_soon_threadsafe(self._queue.put_nowait, event)


def _read_uid(transceive: Transceive) -> bytes | None:
    """The card's UID from the reader (FF CA), or None when the reader or card declines."""
    with contextlib.suppress(PcscError, CardRemovedError):
        answer = transceive(GET_UID)
        if answer[-2:] == b"\x90\x00" and 4 <= len(answer) - 2 <= 10:
            return answer[:-2]
    return None


def _new_card(before: int, event: int) -> bool:
    """A card arrived: present now, and absent before or a different card event count."""
    from smartcard import scard

    if not event & scard.SCARD_STATE_PRESENT or event & scard.SCARD_STATE_MUTE:
        return False
    return not before & scard.SCARD_STATE_PRESENT or (before >> 16) != (event >> 16)


def _card_gone(card: int) -> bool:
    """After a failed transmit: is the card still in the field? (vpcd reports a dropped
    link as a transmission error, a real reader as SCARD_W_REMOVED_CARD)."""
    from smartcard import scard

    hresult, _reader, state, _proto, _atr = scard.SCardStatus(card)
    if hresult != scard.SCARD_S_SUCCESS:
        return True
    return not state & _SCARD_PRESENT


def _REMOVED_CODES() -> tuple[int, ...]:
    from smartcard import scard

    # NOT_TRANSACTED: the reader could not complete the exchange with the card, which for a
    # contactless tag means it left the field (vpcd reports a dropped card link this way).
    return (
        scard.SCARD_W_REMOVED_CARD,
        scard.SCARD_E_NO_SMARTCARD,
        scard.SCARD_W_RESET_CARD,
        scard.SCARD_E_NOT_TRANSACTED,
    )


__all__ = ["PcscDriver", "PcscError", "pcsc_reader_names"]


def pcsc_reader_names() -> list[str]:
    """The readers pcscd offers now (for ``dockgate reader list``); raises PcscError."""
    from smartcard import scard

    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise PcscError("SCardEstablishContext", hresult)
    try:
        hresult, names = scard.SCardListReaders(ctx, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise PcscError("SCardListReaders", hresult)
        return list(names)
    finally:
        scard.SCardReleaseContext(ctx)
