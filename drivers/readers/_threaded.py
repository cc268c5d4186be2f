"""The plumbing of a reader driver whose library blocks: one worker thread per reader.

The worker (``_run`` in the subclass) owns the device; tap events reach the event loop with
``call_soon_threadsafe`` into an asyncio queue; ``close`` stops the worker and ends ``taps``.
A closed driver can be started again (the daemon restarts a failed reader part): a new worker,
a new queue, the counters kept. Status, error and per-reason counters are kept here, so every
threaded driver reports alike.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import replace

from dockgate.gateway.backoff import Backoff
from dockgate.gateway.readers import ReaderDriver, ReaderState, ReaderStatus, TapEvent

# Reopen after 0.1 s, then 0.2, 0.4 ... up to 2 s.
RECONNECT = Backoff(initial=0.1, cap=2.0)


class ThreadedReader(ReaderDriver):
    """A :class:`ReaderDriver` run by a worker thread; subclasses implement ``_run``.

    ``_run`` loops until ``self._stop`` is set; it reports with ``_emit`` (a tap), ``_fail``
    (reader down or in error), ``_count`` (a named counter), ``_up`` (reader connected) and
    waits between reconnects with ``_backoff``; ``_reconnects.reset()`` after a success.
    ``reconnect`` is the wait between reopening attempts (one local device: no jitter).
    """

    def __init__(self, reader_id: str, *, reconnect: Backoff = RECONNECT) -> None:
        self.reader_id = reader_id
        self._reconnects = reconnect.series()
        self._status = ReaderStatus(reader=reader_id, driver=self.name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_thread: threading.Thread | None = None  # the worker ``close`` stopped
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[TapEvent | None] = asyncio.Queue()
        self._opened = 0

    # -- ReaderDriver ---------------------------------------------------------------------
    async def start(self) -> None:
        if self._thread is not None:
            return
        if self._last_thread is not None and self._last_thread.is_alive():
            raise RuntimeError(f"{self.reader_id}: the last worker has not stopped yet")
        self._loop = asyncio.get_running_loop()
        # A fresh start after a close: the end-of-taps mark of the last run stays behind
        # in the old queue, and the next reconnect waits from the shortest delay again.
        self._queue = asyncio.Queue()
        self._reconnects.reset()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.reader_id, daemon=True)
        self._thread.start()

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._last_thread = thread
        self._stop.set()
        await asyncio.to_thread(thread.join, 10)
        self._status.state = "down"
        self._queue.put_nowait(None)

    async def taps(self) -> AsyncIterator[TapEvent]:
        queue = self._queue  # this run's: a start after a close makes a new one
        while (event := await queue.get()) is not None:
            yield event

    def status(self) -> list[ReaderStatus]:
        return [replace(self._status, counters=dict(self._status.counters))]

    # -- for the worker thread ------------------------------------------------------------
    @abc.abstractmethod
    def _run(self) -> None:
        """The worker: open, poll, reconnect, until ``self._stop`` is set."""

    def _count(self, key: str) -> None:
        self._status.counters[key] = self._status.counters.get(key, 0) + 1

    def _fail(self, state: ReaderState, reason: str) -> None:
        self._status.state = state
        self._status.errors += 1
        self._status.last_error = reason

    def _up(self) -> None:
        """The reader is (re)connected: counts a reconnect after the first time."""
        if self._opened:
            self._status.reconnects += 1
        self._opened += 1
        self._status.state = "up"

    def _backoff(self) -> None:
        """Wait the current reconnect delay (or until closed); the next wait is longer."""
        self._stop.wait(self._reconnects.next_delay())

    def _emit(self, event: TapEvent) -> None:
        if event.error is None:
            self._status.taps += 1
        else:
            self._count(f"read_{event.error}")
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
