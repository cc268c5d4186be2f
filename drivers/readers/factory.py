"""The one place a reader's configuration becomes its driver.

The daemon (one ``[[readers]]`` table each) and ``dockgate reader watch`` (its ``--driver``,
``--path`` and ``--reader`` options) both describe a reader as a :class:`ReaderSpec` and get
the driver from :func:`make_reader`, so a new transport is added here once. Each driver
module is imported only when chosen: pyscard, nfcpy and pyserial load only for the reader
that needs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockgate.gateway.readers import ReaderDriver

DRIVERS = ("pcsc", "nfcpy", "pn532")


@dataclass(frozen=True, slots=True)
class ReaderSpec:
    """Which driver and where its reader is.

    ``path`` is an nfcpy device path (``usb`` when None: ``usb:054c:06c3``,
    ``tty:USB0:pn532``, ``udp:HOST:PORT``) or the PN532's serial port (required); PC/SC
    ignores it. ``pcsc_readers`` keeps a PC/SC driver to the readers whose name contains one
    of them (empty: every reader pcscd offers). ``reader_id`` names the reader in tap events
    (None: the driver's own, e.g. ``pn532:/dev/ttyUSB0``); a PC/SC driver names each reader
    by its PC/SC name.
    """

    driver: str
    path: str | None = None
    reader_id: str | None = None
    pcsc_readers: tuple[str, ...] = ()


def make_reader(spec: ReaderSpec) -> ReaderDriver:
    """The driver for ``spec``, not started yet.

    Raises ``ValueError`` for a driver not in :data:`DRIVERS` or a PN532 without its port.
    """
    if spec.driver == "pcsc":
        from dockgate.drivers.readers.pcsc import PcscDriver

        return PcscDriver(spec.pcsc_readers or None)
    if spec.driver == "nfcpy":
        from dockgate.drivers.readers.nfcpy_reader import NfcpyReader

        return NfcpyReader(spec.path or "usb", reader_id=spec.reader_id)
    if spec.driver == "pn532":
        if not spec.path:
            raise ValueError("a pn532 reader needs a path: its serial port (e.g. /dev/ttyUSB0)")
        from dockgate.drivers.readers.pn532 import Pn532Reader

        return Pn532Reader(spec.path, reader_id=spec.reader_id)
    raise ValueError(f"unknown driver {spec.driver!r}: choose pcsc, nfcpy or pn532")
