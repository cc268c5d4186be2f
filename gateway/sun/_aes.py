"""AES-128 block operations and CMAC (RFC 4493) tuned for many short messages.

Building a ``Cipher`` object costs about twenty times one block operation, so contexts that
depend only on a fixed key are built once and reused (an ECB context is stateless between
``update`` calls), and the per-call path goes straight to the context factory that
``Cipher.encryptor()`` itself calls, skipping only the Python-level argument checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_AES = algorithms.AES
_ECB = modes.ECB()
_MASK128 = (1 << 128) - 1
ZERO_BLOCK = bytes(16)

try:  # the factory behind Cipher.encryptor(); fall back to the public API if it moves
    from cryptography.hazmat.bindings._rust import openssl as _rust_openssl

    _new_enc_ctx: Callable[[Any, Any], Any] = _rust_openssl.ciphers.create_encryption_ctx
    _new_dec_ctx: Callable[[Any, Any], Any] = _rust_openssl.ciphers.create_decryption_ctx
    _new_enc_ctx(_AES(ZERO_BLOCK), _ECB).update(ZERO_BLOCK)
except Exception:  # pragma: no cover - depends on the installed cryptography

    def _new_enc_ctx(alg: Any, mode: Any) -> Any:
        return Cipher(alg, mode).encryptor()

    def _new_dec_ctx(alg: Any, mode: Any) -> Any:
        return Cipher(alg, mode).decryptor()


def ecb_encryptor(key: bytes) -> Any:
    """An AES-ECB encryption context for ``key`` (reusable across ``update`` calls)."""
    return _new_enc_ctx(_AES(key), _ECB)


def ecb_decryptor(key: bytes) -> Any:
    """An AES-ECB decryption context for ``key`` (reusable across ``update`` calls)."""
    return _new_dec_ctx(_AES(key), _ECB)


def encrypt_block(key: bytes, block: bytes) -> bytes:
    """One AES encryption under a key used once."""
    return _new_enc_ctx(_AES(key), _ECB).update(block)


def decrypt_block(key: bytes, block: bytes) -> bytes:
    """One AES decryption under a key used once."""
    return _new_dec_ctx(_AES(key), _ECB).update(block)


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CBC decryption without padding (``data`` is a multiple of 16 bytes)."""
    return _new_dec_ctx(_AES(key), modes.CBC(iv)).update(data)


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CBC encryption without padding (``data`` is a multiple of 16 bytes)."""
    return _new_enc_ctx(_AES(key), modes.CBC(iv)).update(data)


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


def _cmac_with(update: Callable[[bytes], bytes], k1: int, k2: int, data: bytes) -> bytes:
    """CMAC core on an ECB ``update`` function and integer subkeys."""
    n = len(data)
    if n and n % 16 == 0:
        last = int.from_bytes(data[n - 16 :], "big") ^ k1
        head = n - 16
    else:
        tail = n - n % 16
        last = int.from_bytes(data[tail:] + b"\x80" + bytes(15 - n % 16), "big") ^ k2
        head = tail
    y = 0
    for off in range(0, head, 16):
        y = int.from_bytes(
            update((int.from_bytes(data[off : off + 16], "big") ^ y).to_bytes(16, "big")), "big"
        )
    return update((last ^ y).to_bytes(16, "big"))


class FixedKeyCmac:
    """AES-CMAC under one key: the context and subkeys are computed once."""

    __slots__ = ("_k1", "_k2", "_update")

    def __init__(self, key: bytes) -> None:
        ctx = ecb_encryptor(key)
        self._update = ctx.update
        self._k1, self._k2 = subkeys(ctx.update(ZERO_BLOCK))

    def mac(self, data: bytes) -> bytes:
        """The full 16-byte CMAC of ``data``."""
        return _cmac_with(self._update, self._k1, self._k2, data)

    def mac_block(self, block: bytes) -> bytes:
        """CMAC of exactly one 16-byte block: a single AES operation."""
        return self._update((int.from_bytes(block, "big") ^ self._k1).to_bytes(16, "big"))


def cmac_once(key: bytes, data: bytes) -> bytes:
    """AES-CMAC under a key used once (a session key): one context, no caching."""
    update = ecb_encryptor(key).update
    k1, k2 = subkeys(update(ZERO_BLOCK))
    return _cmac_with(update, k1, k2, data)


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """Plain AES-CMAC (RFC 4493), for callers that do not care about speed."""
    return cmac_once(key, data)
