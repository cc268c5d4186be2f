"""A faithful NTAG 424 DNA as a Type 4 tag: file system, ISO 7816-4 APDUs, faults, presets.

``Ntag424Tag(uid, source).transceive(apdu) -> response`` is the whole interface transports
need; ``reset()`` is the field going off and on. See ``dockgate.sim.ntag424.tag``.
"""

from dockgate.sim.ntag424.files import (
    CC_FILE_ID,
    NDEF_APP_DF_NAME,
    NDEF_FILE_ID,
    PROPRIETARY_FILE_ID,
    CapabilityContainer,
)
from dockgate.sim.ntag424.presets import CARD_UID, RING_UID, card, clone_of, ring
from dockgate.sim.ntag424.tag import (
    ATQA,
    ATR,
    ATS,
    SAK,
    Faults,
    NdefSource,
    Ntag424Tag,
    StaticNdef,
    TagRemovedError,
)

__all__ = [
    "ATQA",
    "ATR",
    "ATS",
    "CARD_UID",
    "CC_FILE_ID",
    "NDEF_APP_DF_NAME",
    "NDEF_FILE_ID",
    "PROPRIETARY_FILE_ID",
    "RING_UID",
    "SAK",
    "CapabilityContainer",
    "Faults",
    "NdefSource",
    "Ntag424Tag",
    "StaticNdef",
    "TagRemovedError",
    "card",
    "clone_of",
    "ring",
]
