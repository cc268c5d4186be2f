"""An nfcpy ContactlessFrontend as a reader: a USB reader nfcpy drives itself, or ``udp:`` in tests.

nfcpy is blocking, so a worker thread owns the frontend: it senses 106 kbps type A targets,
activates them with nfcpy's own tag code (RATS, ISO-DEP), reads the NDEF file with the shared
Type 4 sequence of :mod:`dockgate.drivers.readers.ndef_type4` over nfcpy's ISO-DEP
``transceive``, then
waits with nfcpy's presence check until the tag leaves, so one physical tap is one event.
Events reach the event loop through :mod:`dockgate.drivers.readers._threaded`. A frontend that fails
(unplugged, or the UDP peer gone) is closed and reopened with backoff.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from dockgate.drivers.readers import ndef_type4
from dockgate.drivers.readers._threaded import RECONNECT, ThreadedReader
from dockgate.gateway.backoff import Backoff
from dockgate.gateway.readers import TapEvent

if TYPE_CHECKING:
    import nfc
    import nfc.tag
    import nfc.tag.tt4


class NfcpyReader(ThreadedReader):
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
        reconnect: Backoff = RECONNECT,
        max_le: int = 256,
    ) -> None:
        super().__init__(reader_id or f"nfcpy:{path}", reconnect=reconnect)
        self.path = path
        self.poll_interval = poll_interval
        self.presence_interval = presence_interval
        self.max_le = max_le
        self.device_name: str | None = None

    # -- worker thread --------------------------------------------------------------------
    def _run(self) -> None:
        import nfc  # heavy: only in the worker

        while not self._stop.is_set():
            try:
                clf = nfc.ContactlessFrontend(self.path)
            except OSError as exc:
                self._fail("down", f"open failed: {type(exc).__name__}")
                self._backoff()
                continue
            self.device_name = str(clf)
            self._up()
            try:
                while not self._stop.is_set():
                    if self._poll(clf):
                        self._reconnects.reset()
            except OSError as exc:  # device unplugged, UDP peer gone (ECONNREFUSED), ...
                self._fail("down", f"reader lost: {type(exc).__name__}")
            except Exception as exc:  # nfcpy bugs on odd frames must not kill the watch
                self._fail("error", f"{type(exc).__name__}")
            finally:
                with contextlib.suppress(Exception):
                    clf.close()
            self._backoff()

    def _poll(self, clf: nfc.ContactlessFrontend) -> bool:
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

    def _wait_removal(self, tag: nfc.tag.Tag) -> None:
        """nfcpy's presence check (R(NAK) for ISO-DEP) until the tag leaves the field."""
        while not self._stop.is_set() and tag.is_present:
            self._stop.wait(self.presence_interval)


def _transceiver(tag: nfc.tag.tt4.Type4Tag) -> ndef_type4.Transceive:
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
