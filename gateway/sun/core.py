"""The SUN verification core: bytes and keys in, (reason, uid, counter, file data) out.

Pure apart from bounded caches of contexts derived from fixed keys. AES mode follows
AN12196 (SV1/SV2 session keys, CMAC truncated to the odd bytes); LRP mode follows AN12304
and the NT4H2421Gx datasheet (PICCRand || LRICB PICC data, CMAC_LRP session key).
"""

from __future__ import annotations

from hmac import compare_digest

from dockgate.gateway.sun import reasons as R
from dockgate.gateway.sun._aes import (
    FixedKeyCmac,
    cbc_decrypt,
    cmac_once,
    ecb_decryptor,
    ecb_encryptor,
)
from dockgate.gateway.sun.cache import BoundedCache
from dockgate.gateway.sun.keys import TagKeys
from dockgate.gateway.sun.lrp import LrpCipher

_SV1 = b"\xc3\x3c\x00\x01\x00\x80"
_SV2 = b"\x3c\xc3\x00\x01\x00\x80"
_LRP_SV = b"\x00\x01\x00\x80"
_LRP_PICC_MEMO = 3  # nibbles of PICCRand remembered per fixed key (16^3 entries at most)
_LRP_SV_MEMO = 22  # nibbles of the SV block: fixed prefix and UID, per fixed file key
_LRP_MEMO_SIZE = 8192  # memo entries per fixed LRP key (an ECB context each, about 1 KiB)

_meta_dec: BoundedCache[bytes, object] = BoundedCache(ecb_decryptor, 4096)
_file_cmac: BoundedCache[bytes, FixedKeyCmac] = BoundedCache(FixedKeyCmac, 65536)
_lrp: BoundedCache[bytes, LrpCipher] = BoundedCache(
    lambda k: LrpCipher(k, 0, memo_size=_LRP_MEMO_SIZE), 256
)

Outcome = tuple[str | None, bytes | None, int | None, bytes | None]


class SunError(Exception):
    """Carries a reason out of the parsing helpers."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def unhex(text: object, size: int | None = None, *, multiple: int = 1) -> bytes:
    """Hex text to bytes with a reason on failure (no spaces, even length, exact size)."""
    if not isinstance(text, str):
        raise SunError(R.BAD_INPUT)
    n = len(text)
    if size is not None and n != 2 * size:
        raise SunError(R.BAD_LENGTH)
    if n % (2 * multiple) or (size is None and n == 0):
        raise SunError(R.BAD_LENGTH)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise SunError(R.BAD_HEX) from None
    if 2 * len(raw) != n:  # fromhex skips whitespace
        raise SunError(R.BAD_HEX)
    return raw


def _sv_aes(prefix: bytes, mirrored: bytes) -> bytes:
    sv = prefix + mirrored
    return sv + bytes(-len(sv) % 16)


def _sv_lrp(mirrored: bytes) -> bytes:
    sv = _LRP_SV + mirrored
    return sv + bytes(-(len(sv) + 2) % 16) + b"\x1e\xe1"


def _session_mac(
    mode: str, file_key: bytes, mirrored: bytes, mac_input: bytes
) -> tuple[bytes, bytes | None]:
    """The full 16-byte SDMMAC of ``mac_input`` and, in LRP mode, the session MAC key."""
    if mode == "aes":
        k_mac = _file_cmac.get(file_key).mac(_sv_aes(_SV2, mirrored))
        return cmac_once(k_mac, mac_input), None
    session = _lrp.get(file_key).cmac(_sv_lrp(mirrored), memo=_LRP_SV_MEMO)
    return LrpCipher(session, 0).cmac(mac_input), session


_DECOY_UID = bytes(7)
_DECOY_MIRRORED = bytes(10)  # UID and counter mirrored, as in a valid message


def _decoy(keys: TagKeys, mode: str, cmac: bytes, mac_input: bytes) -> Outcome:
    """Reject undecryptable PICC data after the same MAC work as a valid message.

    As the public sdm-backend does: the SDMMAC is still computed and compared (with a
    zero UID and counter) so that the response time does not tell a wrong meta read key
    or forged PICC data from a message that decrypted but failed the MAC.
    """
    file_key = keys.file_key(_DECOY_UID)
    if file_key is not None:
        full = _session_mac(mode, file_key, _DECOY_MIRRORED, mac_input)[0]
        compare_digest(full[1::2], cmac)
    return R.UID_LENGTH, None, None, None


def verify_message(
    keys: TagKeys,
    *,
    mode: str | None,
    picc: bytes | None,
    cmac: bytes,
    mac_input: bytes = b"",
    enc: bytes | None = None,
    plain_uid: bytes | None = None,
    plain_ctr: int | None = None,
    reader_uid: bytes | None = None,
) -> Outcome:
    """Verify one SUN message. ``picc`` None means plain mirroring (``plain_uid``/``ctr``)."""
    if mode is not None and mode not in ("aes", "lrp"):
        return R.UNKNOWN_MODE, None, None, None
    if len(cmac) != 8:
        return R.BAD_LENGTH, None, None, None
    if enc is not None and (not enc or len(enc) % 16):
        return R.BAD_LENGTH, None, None, None
    if reader_uid is not None and len(reader_uid) != 7:
        return R.UID_LENGTH, None, None, None

    ctr_le: bytes | None
    if picc is not None:
        n = len(picc)
        if mode is None:
            mode = "aes" if n == 16 else "lrp" if n == 24 else None
            if mode is None:
                return R.BAD_LENGTH, None, None, None
        elif n != (16 if mode == "aes" else 24):
            return R.BAD_LENGTH, None, None, None
        meta = keys.meta_read_key
        if meta is None:
            return R.NO_KEY, None, None, None
        if mode == "aes":
            plain = _meta_dec.get(meta).update(picc)  # type: ignore[attr-defined]
        else:
            plain = _lrp.get(meta).decrypt(picc[:8], picc[8:], memo=_LRP_PICC_MEMO)
        tag = plain[0]
        if tag & 0x0F != 7:
            return _decoy(keys, mode, cmac, mac_input)
        pos = 1
        if tag & 0x80:
            uid: bytes | None = plain[1:8]
            pos = 8
            if reader_uid is not None and not compare_digest(uid, reader_uid):  # type: ignore[arg-type]
                return R.UID_MISMATCH, uid, None, None
            mirrored = uid
        else:
            uid = reader_uid if reader_uid is not None else plain_uid
            mirrored = b""
        if tag & 0x40:
            ctr_le = plain[pos : pos + 3]
            mirrored += ctr_le
        else:
            ctr_le = None
        if not mirrored:
            return _decoy(keys, mode, cmac, mac_input)
    else:
        if plain_uid is None:
            return R.MISSING_FIELD, None, None, None
        if len(plain_uid) != 7:
            return R.UID_LENGTH, None, None, None
        if plain_ctr is None:
            return R.MISSING_FIELD, None, None, None
        if not 0 <= plain_ctr <= 0xFFFFFF:
            return R.BAD_LENGTH, None, None, None
        mode = mode or "aes"
        uid = plain_uid
        if reader_uid is not None and not compare_digest(uid, reader_uid):
            return R.UID_MISMATCH, uid, None, None
        ctr_le = plain_ctr.to_bytes(3, "little")
        mirrored = uid + ctr_le

    if uid is None and keys.needs_uid:
        return R.NO_UID, None, None, None
    file_key = keys.file_key(uid)
    if file_key is None:
        return R.NO_KEY, uid, None, None
    ctr = int.from_bytes(ctr_le, "little") if ctr_le is not None else None
    if enc is not None and ctr_le is None:
        return R.NO_COUNTER, uid, None, None

    full, session = _session_mac(mode, file_key, mirrored, mac_input)
    if not compare_digest(full[1::2], cmac):
        return R.BAD_MAC, uid, ctr, None

    file_data = None
    if enc is not None:
        assert ctr_le is not None
        if mode == "aes":
            k_enc = _file_cmac.get(file_key).mac(_sv_aes(_SV1, mirrored))
            iv = ecb_encryptor(k_enc).update(ctr_le + bytes(13))
            file_data = cbc_decrypt(k_enc, iv, enc)
        else:
            assert session is not None
            file_data = LrpCipher(session, 1).decrypt(ctr_le + bytes(3), enc)
    return None, uid, ctr, file_data
