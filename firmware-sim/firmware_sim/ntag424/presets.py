"""Cards and rings: NTAG 424 DNA configurations (UID, keys, URL template, SDM profile).

The SUN message comes from ``dockgate.sim.sdm.SdmTag``; keyword arguments beyond the UID and
the name go to it unchanged (``meta_read_key``, ``file_read_key``, ``mode``, ``profile``,
``base``, ``record``, ``read_ctr``, ...), so a preset is the tag model plus the chip around it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from dockgate.sim.ntag424.tag import Ntag424Tag

if TYPE_CHECKING:
    from dockgate.sim.sdm import SdmTag

CARD_UID = bytes.fromhex("04A1B2C3D4E580")
RING_UID = bytes.fromhex("04517E3A6B2C90")


def _sdm(uid: bytes, **sdm: Any) -> SdmTag:
    from dockgate.sim.sdm import SdmTag

    return SdmTag(uid=uid, **sdm)


def card(
    uid: bytes = CARD_UID, *, name: str = "card", profile: str = "query-picc-enc-cmac", **sdm: Any
) -> Ntag424Tag:
    """A rider's ISO card: SUN URL with encrypted PICC data, encrypted file data and a MAC."""
    return Ntag424Tag(uid, _sdm(uid, profile=profile, **sdm), name=name)


def ring(
    uid: bytes = RING_UID,
    *,
    name: str = "ring",
    profile: str = "senzu-play",
    base: str = "https://api.senzu.app",
    record: str = "1044",
    **sdm: Any,
) -> Ntag424Tag:
    """A ring from the NFC platform: ``<base>/play/<record>@<picc_data>:<cmac>``."""
    return Ntag424Tag(uid, _sdm(uid, profile=profile, base=base, record=record, **sdm), name=name)


def clone_of(genuine: Ntag424Tag, *, name: str = "clone") -> Ntag424Tag:
    """A clone: the genuine tag's UID, counter and URL layout, with keys the attacker made up."""
    source = genuine.source.clone(  # type: ignore[attr-defined]
        meta_read_key=os.urandom(16), file_read_key=os.urandom(16)
    )
    return Ntag424Tag(genuine.uid, source, name=name, cc=genuine.cc)
