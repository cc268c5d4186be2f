"""A model of the NTAG 424 DNA Secure Dynamic Messaging (SDM) feature.

It produces SUN messages exactly as the chip does on each read of the NDEF file: it
increments SDMReadCtr, encrypts the PICC data (PICCDataTag || UID || SDMReadCtr || random
padding) with the SDM meta read key, encrypts the file data with the session ENC key,
and MACs the configured ASCII window with the session MAC key (AES mode per AN12196,
LRP mode per AN12304 / the NT4H2421Gx datasheet).

The AES path is written independently of the verifier, with plain per-call
``cryptography`` objects, so that round trips check one implementation against the other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import ndef
from cryptography.hazmat.primitives import cmac as _cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from dockgate.gateway.sun.kdf import an10922_aes128, sdm_backend_meta_key, sdm_backend_tag_key
from dockgate.gateway.sun.lrp import LrpCipher
from dockgate.gateway.sun.profiles import SHIPPED_PROFILES, TagProfile, load_profiles

MAX_READ_CTR = 0xFFFFFF
UID_LEN = 7


class TagExhausted(RuntimeError):
    """SDMReadCtr reached its maximum: the chip no longer serves SUN messages."""


def _aes_cmac(key: bytes, data: bytes) -> bytes:
    c = _cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def _ecb(key: bytes, block: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(block)


def _cbc_enc(key: bytes, iv: bytes, data: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor().update(data)


def _truncate(mac: bytes) -> bytes:
    """SDMMAC: the odd-indexed bytes (1, 3, ..., 15) of the full CMAC."""
    return mac[1::2]


def diversify_an10922(master_key: bytes, uid: bytes, suffix: bytes = b"") -> bytes:
    """AN10922 AES-128 per-tag key: M = UID || suffix (e.g. AID || system identifier)."""
    return an10922_aes128(master_key, uid + suffix)


def sdm_backend_keys(master_key: bytes, uid: bytes) -> tuple[bytes, bytes]:
    """(meta_read_key, file_read_key) as the public sdm-backend provisions them."""
    return sdm_backend_meta_key(master_key), sdm_backend_tag_key(master_key, uid, 2)


_PROFILE_CACHE: dict[str, dict[str, TagProfile]] = {}


def _profile(name_or_profile: str | TagProfile) -> TagProfile:
    if isinstance(name_or_profile, TagProfile):
        return name_or_profile
    key = str(SHIPPED_PROFILES)
    if key not in _PROFILE_CACHE:
        _PROFILE_CACHE[key] = load_profiles(SHIPPED_PROFILES)
    try:
        return _PROFILE_CACHE[key][name_or_profile]
    except KeyError:
        raise ValueError(f"unknown tag profile {name_or_profile!r}") from None


@dataclass(repr=False, eq=False)
class SdmTag:
    """One tag's SDM configuration and state.

    ``profile`` (a shipped profile name or a :class:`TagProfile`) says where PICC data,
    file data and the MAC go and which window is MACed. ``base`` fills ``{base}``,
    ``record`` fills ``{record}``. ``file_data`` is the plaintext at the ENC placeholder
    (a multiple of 16 bytes, ASCII on real tags). ``mirror_uid=False`` gives counter-only
    PICC data (the verifier then takes the UID from the reader).
    """

    uid: bytes
    mode: str = "aes"
    meta_read_key: bytes = bytes(16)
    file_read_key: bytes = bytes(16)
    profile: str | TagProfile = "query-picc-cmac"
    base: str = "https://tap.dockgate.example/t"
    record: str | None = None
    file_data: bytes = b"0102030400000000"
    read_ctr: int = 0
    mirror_uid: bool = True
    mirror_ctr: bool = True
    random: Callable[[int], bytes] = field(default=os.urandom)

    def __post_init__(self) -> None:
        if len(self.uid) != UID_LEN:
            raise ValueError("uid must be 7 bytes")
        if self.mode not in ("aes", "lrp"):
            raise ValueError("mode must be 'aes' or 'lrp'")
        if len(self.meta_read_key) != 16 or len(self.file_read_key) != 16:
            raise ValueError("keys must be 16 bytes")
        if not 0 <= self.read_ctr <= MAX_READ_CTR:
            raise ValueError("read_ctr must fit in 24 bits")
        if len(self.file_data) % 16:
            raise ValueError("file_data must be a multiple of 16 bytes")
        if not (self.mirror_uid or self.mirror_ctr):
            raise ValueError("mirror the UID, the counter, or both")
        self._profile = _profile(self.profile)
        if "record" in self._profile.fields and self.record is None:
            raise ValueError(f"profile {self._profile.name!r} needs a record id")

    def __repr__(self) -> str:  # keys stay out of logs
        return (
            f"SdmTag(uid={self.uid.hex()}, mode={self.mode}, profile={self._profile.name}, "
            f"read_ctr={self.read_ctr})"
        )

    # --- public interface ----------------------------------------------------------------
    @property
    def tag_profile(self) -> TagProfile:
        """The profile itself (``profile`` may be only its name)."""
        return self._profile

    def clone(self, **changes: object) -> SdmTag:
        """A copy with the same UID and counter (e.g. a cloned chip with other keys)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def next_url(self) -> str:
        """Read the NDEF file once: increment SDMReadCtr and return the SUN URL."""
        if self.read_ctr >= MAX_READ_CTR:
            raise TagExhausted("SDMReadCtr is at its maximum (0xFFFFFF)")
        self.read_ctr += 1
        return self.url_for(self.read_ctr)

    def next_ndef_file(self) -> bytes:
        """Read the whole NDEF file (E104): 2-byte NLEN big-endian + one URI record."""
        message = b"".join(ndef.message_encoder([ndef.UriRecord(self.next_url())]))
        return len(message).to_bytes(2, "big") + message

    # --- the chip's computation ----------------------------------------------------------
    def url_for(self, ctr: int) -> str:
        """The URL the tag serves at read counter ``ctr`` (does not change state)."""
        uid, ctr_le = self.uid, ctr.to_bytes(3, "little")
        mirrored = (uid if self.mirror_uid else b"") + (ctr_le if self.mirror_ctr else b"")
        fields = self._profile.fields
        values: dict[str, str] = {"base": self.base, "record": self.record or ""}
        if "picc_data" in fields:
            values["picc_data"] = self._picc_data(uid, ctr_le).hex().upper()
        if "uid" in fields:
            values["uid"] = uid.hex().upper()
        if "ctr" in fields:
            values["ctr"] = ctr.to_bytes(3, "big").hex().upper()
        if "enc" in fields:
            values["enc"] = self._enc_file_data(mirrored, ctr_le).hex().upper()
        values["cmac"] = "0" * 16
        url, start, end = self._profile.render(values)
        mac = self._sdmmac(mirrored, url[start:end].encode("ascii"))
        return url[:end] + mac.hex().upper() + url[end + 16 :]

    def _picc_tag(self) -> int:
        return (0x80 if self.mirror_uid else 0) | (0x40 if self.mirror_ctr else 0) | UID_LEN

    def _picc_data(self, uid: bytes, ctr_le: bytes) -> bytes:
        plain = bytes([self._picc_tag()])
        if self.mirror_uid:
            plain += uid
        if self.mirror_ctr:
            plain += ctr_le
        plain += self.random(16 - len(plain))
        if self.mode == "aes":
            return _cbc_enc(self.meta_read_key, bytes(16), plain)
        picc_rand = self.random(8)
        return picc_rand + LrpCipher(self.meta_read_key, 0).encrypt(picc_rand, plain)

    def _sv_aes(self, prefix: bytes, mirrored: bytes) -> bytes:
        sv = prefix + mirrored
        return sv + bytes(-len(sv) % 16)

    def _sv_lrp(self, mirrored: bytes) -> bytes:
        sv = b"\x00\x01\x00\x80" + mirrored
        return sv + bytes(-(len(sv) + 2) % 16) + b"\x1e\xe1"

    def _sdmmac(self, mirrored: bytes, window: bytes) -> bytes:
        if self.mode == "aes":
            k_mac = _aes_cmac(
                self.file_read_key, self._sv_aes(b"\x3c\xc3\x00\x01\x00\x80", mirrored)
            )
            return _truncate(_aes_cmac(k_mac, window))
        session = LrpCipher(self.file_read_key, 0).cmac(self._sv_lrp(mirrored))
        return _truncate(LrpCipher(session, 0).cmac(window))

    def _enc_file_data(self, mirrored: bytes, ctr_le: bytes) -> bytes:
        if not self.mirror_ctr:
            raise ValueError("SDMENCFileData needs the read counter mirrored")
        if not self.file_data:
            raise ValueError("the profile has {enc} but file_data is empty")
        if self.mode == "aes":
            k_enc = _aes_cmac(
                self.file_read_key, self._sv_aes(b"\xc3\x3c\x00\x01\x00\x80", mirrored)
            )
            iv = _ecb(k_enc, ctr_le + bytes(13))
            return _cbc_enc(k_enc, iv, self.file_data)
        session = LrpCipher(self.file_read_key, 0).cmac(self._sv_lrp(mirrored))
        return LrpCipher(session, 1).encrypt(ctr_le + bytes(3), self.file_data)
