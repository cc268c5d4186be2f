"""Per-tag key derivation: NXP AN10922 (AES-128) and the sdm-backend HMAC/CMAC scheme."""

from __future__ import annotations

import hashlib
import hmac

from dockgate.gateway.sun._aes import FixedKeyCmac, ecb_encryptor, subkeys

# sdm-backend (nfc-developer/sdm-backend, libsdm/derive.py, 2023-01-24 scheme) constants
_DIV_CONST1 = b"PICCDataKey"
_DIV_CONST2 = b"SlotMasterKey"
_DIV_CONST3 = b"DivBaseKey"
_FACTORY_KEY = bytes(16)
# sdm-backend hands its master key to HMAC-SHA256, which takes a key of any length; shorter
# than an AES key is refused here: such a key would be the weakest link of a whole fleet.
SDM_BACKEND_MIN_MASTER = 16


def an10922_aes128(master_key: bytes, div_input: bytes) -> bytes:
    """AN10922 section 2.2 AES-128 diversification of ``master_key`` over ``div_input``.

    ``div_input`` (M) is typically UID || AID || system identifier, 1..31 bytes. The input
    0x01 || M is always processed as two blocks: padded with 80 00.. (and K2) when short.
    """
    if not 1 <= len(div_input) <= 31:
        raise ValueError("AN10922 diversification input must be 1..31 bytes")
    data = b"\x01" + div_input
    update = ecb_encryptor(master_key).update
    k1, k2 = subkeys(update(bytes(16)))
    if len(data) == 32:
        last_key = k1
    else:
        data = data + b"\x80" + bytes(31 - len(data))
        last_key = k2
    y = update(data[:16])
    last = int.from_bytes(data[16:], "big") ^ last_key ^ int.from_bytes(y, "big")
    return update(last.to_bytes(16, "big"))


def _hmac_sha256(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _is_factory_key(master_key: bytes) -> bool:
    """sdm-backend's demo mode: exactly 16 zero bytes give zero keys (compared in constant
    time; only the length, which is no secret, decides early)."""
    return hmac.compare_digest(master_key, _FACTORY_KEY)


def _check_master(master_key: bytes) -> None:
    if len(master_key) < SDM_BACKEND_MIN_MASTER:
        raise ValueError(f"an sdm-backend master key is at least {SDM_BACKEND_MIN_MASTER} bytes")


def sdm_backend_meta_key(master_key: bytes) -> bytes:
    """sdm-backend's undiversified key #1 (the SDM meta read key), from a master key of
    16 bytes or more."""
    _check_master(master_key)
    if _is_factory_key(master_key):
        return bytes(16)
    return _hmac_sha256(master_key, _DIV_CONST1)[:16]


class SdmBackendTagKeys:
    """sdm-backend's UID-diversified key ``key_no`` for any UID (#2 is the SDM file read key).

    What depends only on the master key (the slot key's CMAC context, the 32-byte
    diversification base) is computed once, so a new UID costs one HMAC and one CMAC and
    the master key itself is not kept.
    """

    __slots__ = ("_base", "_slot", "_zero")

    def __init__(self, master_key: bytes, key_no: int = 2) -> None:
        _check_master(master_key)
        self._zero = _is_factory_key(master_key)
        self._slot = FixedKeyCmac(_hmac_sha256(master_key, _DIV_CONST2 + bytes([key_no]))[:16])
        self._base = _hmac_sha256(master_key, _DIV_CONST3)

    def derive(self, uid: bytes) -> bytes:
        """The tag key of ``uid``."""
        if self._zero:
            return bytes(16)
        return self._slot.mac(b"\x01" + _hmac_sha256(self._base, uid)[:16])

    def __repr__(self) -> str:  # never show key material
        return "SdmBackendTagKeys(<keys hidden>)"


def sdm_backend_tag_key(master_key: bytes, uid: bytes, key_no: int = 2) -> bytes:
    """sdm-backend's UID-diversified key ``key_no`` (#2 is the SDM file read key)."""
    return SdmBackendTagKeys(master_key, key_no).derive(uid)
