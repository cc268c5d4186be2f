"""Per-tag key derivation: NXP AN10922 (AES-128) and the sdm-backend HMAC/CMAC scheme."""

from __future__ import annotations

import hashlib
import hmac

from dockgate.gateway.sun._aes import ecb_encryptor, subkeys

# sdm-backend (nfc-developer/sdm-backend, libsdm/derive.py, 2023-01-24 scheme) constants
_DIV_CONST1 = b"PICCDataKey"
_DIV_CONST2 = b"SlotMasterKey"
_DIV_CONST3 = b"DivBaseKey"


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


def _hmac16(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()[:16]


def sdm_backend_meta_key(master_key: bytes) -> bytes:
    """sdm-backend's undiversified key #1 (the SDM meta read key)."""
    if master_key == bytes(16):
        return bytes(16)
    return _hmac16(master_key, _DIV_CONST1)


def sdm_backend_tag_key(master_key: bytes, uid: bytes, key_no: int = 2) -> bytes:
    """sdm-backend's UID-diversified key ``key_no`` (#2 is the SDM file read key)."""
    if master_key == bytes(16):
        return bytes(16)
    from dockgate.gateway.sun._aes import aes_cmac

    slot_key = _hmac16(master_key, _DIV_CONST2 + bytes([key_no]))
    base = hmac.new(master_key, _DIV_CONST3, hashlib.sha256).digest()
    return aes_cmac(slot_key, b"\x01" + _hmac16(base, uid))
