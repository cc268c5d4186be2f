"""NFC reader drivers (PC/SC, nfcpy, PN532 over serial) behind the core's reader contract.

``make_reader(ReaderSpec("pn532", path="/dev/ttyUSB0"))`` builds the driver a reader is
configured with; only that driver's transport library is imported.
"""

from dockgate.drivers.readers.factory import DRIVERS, ReaderSpec, make_reader

__all__ = ["DRIVERS", "ReaderSpec", "make_reader"]
