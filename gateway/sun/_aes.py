"""AES-128 block operations and CMAC (RFC 4493) tuned for many short messages.

Only the public ``cryptography`` API is used. Building a cipher context costs about twenty
times one block operation, so what depends only on a fixed key is built once and reused:
an ECB context is stateless between ``update`` calls, the CMAC of one full block is one
ECB operation on ``M xor K1``, and a Rust ``CMAC`` object under a fixed key is ``copy()``-ed
per message (a copy of an un-updated context skips the key schedule). For a key used
once, the Rust ``CMAC`` object is the cheapest public way to MAC (about half the cost of
one ``Cipher(...).encryptor()``), so session keys MAC with it.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

_AES = algorithms.AES
_ECB = modes.ECB()  # one stateless mode object for every context
_CBC = modes.CBC
_MASK128 = (1 << 128) - 1
ZERO_BLOCK = bytes(16)


def ecb_encryptor(key: bytes) -> CipherContext:
    """An AES-ECB encryption context for ``key`` (reusable across ``update`` calls)."""
    return Cipher(_AES(key), _ECB).encryptor()


def ecb_decryptor(key: bytes) -> CipherContext:
    """An AES-ECB decryption context for ``key`` (reusable across ``update`` calls)."""
    return Cipher(_AES(key), _ECB).decryptor()


def encrypt_block(key: bytes, block: bytes) -> bytes:
    """One AES encryption under a key used once."""
    return Cipher(_AES(key), _ECB).encryptor().update(block)


def decrypt_block(key: bytes, block: bytes) -> bytes:
    """One AES decryption under a key used once."""
    return Cipher(_AES(key), _ECB).decryptor().update(block)


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CBC decryption without padding (``data`` is a multiple of 16 bytes)."""
    return Cipher(_AES(key), _CBC(iv)).decryptor().update(data)


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CBC encryption without padding (``data`` is a multiple of 16 bytes)."""
    return Cipher(_AES(key), _CBC(iv)).encryptor().update(data)


def dbl(value: int) -> int:
    """Doubling in GF(2^128) with the CMAC polynomial (x^128 + x^7 + x^2 + x + 1)."""
    value <<= 1
    if value >> 128:
        value = (value & _MASK128) ^ 0x87
    return value


def subkeys(l_block: bytes) -> tuple[int, int]:
    """CMAC subkeys K1, K2 (as integers) from L = E(K, 0^128)."""
    k1 = dbl(int.from_bytes(l_block, "big"))
    return k1, dbl(k1)


class FixedKeyCmac:
    """AES-CMAC under one key: the ECB context and K1 are built once.

    Messages of other lengths than one block use a Rust ``CMAC`` context under the key,
    built on first use and ``copy()``-ed per call.
    """

    __slots__ = ("_cmac", "_k1", "_key", "_update")

    def __init__(self, key: bytes) -> None:
        ctx = ecb_encryptor(key)
        self._update: Callable[[bytes], bytes] = ctx.update
        self._k1 = subkeys(ctx.update(ZERO_BLOCK))[0]
        self._key = key
        self._cmac: CMAC | None = None

    def mac(self, data: bytes) -> bytes:
        """The full 16-byte CMAC of ``data``."""
        if len(data) == 16:
            return self.mac_block(data)
        if self._cmac is None:
            self._cmac = CMAC(_AES(self._key))
        c = self._cmac.copy()
        c.update(data)
        return c.finalize()

    def mac_block(self, block: bytes) -> bytes:
        """CMAC of exactly one 16-byte block: a single AES operation, E_K(M xor K1)."""
        return self._update((int.from_bytes(block, "big") ^ self._k1).to_bytes(16, "big"))


def cmac_once(key: bytes, data: bytes) -> bytes:
    """AES-CMAC under a key used once (a session key): the Rust CMAC, nothing cached."""
    c = CMAC(_AES(key))
    if data:
        c.update(data)
    return c.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """Plain AES-CMAC (RFC 4493), for callers that do not care about speed."""
    return cmac_once(key, data)
