"""NXP Leakage Resilient Primitive (AN12304) with m = 4 (nibbles) and q = 4 updated keys.

Every LRP step is one AES operation under a fresh key, so the cost is the number of AES
key set-ups. What depends only on a fixed key is computed once and kept: the plaintext
table, the updated keys, the CMAC subkeys, and memoised evaluation prefixes (the chain
state after the first nibbles of the input), which is what makes a verification cheap.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher

from dockgate.gateway.sun._aes import (
    _AES,
    _ECB,
    ZERO_BLOCK,
    decrypt_block,
    ecb_encryptor,
    encrypt_block,
)
from dockgate.gateway.sun._aes import dbl as _dbl

_AA = b"\xaa" * 16
_55 = b"\x55" * 16
_HEX = "0123456789abcdef"


def generate_plaintexts(key: bytes) -> list[bytes]:
    """Algorithm 1: the 16 plaintexts p_0..p_15 of ``key``."""
    h = encrypt_block(key, _55)
    out: list[bytes] = []
    for _ in range(16):
        both = ecb_encryptor(h).update(_AA + _55)
        out.append(both[:16])
        h = both[16:]
    return out


def generate_updated_keys(key: bytes, count: int = 4) -> list[bytes]:
    """Algorithm 2: the first ``count`` updated keys of ``key``."""
    h = encrypt_block(key, _AA)
    out: list[bytes] = []
    for _ in range(count):
        both = ecb_encryptor(h).update(_AA + _55)
        out.append(both[:16])
        h = both[16:]
    return out


def _plaintexts_and_keys(key: bytes, count: int) -> tuple[list[bytes], list[bytes]]:
    """Algorithms 1 and 2 together, sharing the first context under ``key``."""
    first = ecb_encryptor(key).update(_55 + _AA)
    h = first[:16]
    p: list[bytes] = []
    new, aes, ecb, aa55 = Cipher, _AES, _ECB, _AA + _55
    for _ in range(16):
        both = new(aes(h), ecb).encryptor().update(aa55)
        p.append(both[:16])
        h = both[16:]
    h = first[16:]
    uk: list[bytes] = []
    for i in range(count):
        ctx = ecb_encryptor(h)
        if i + 1 < count:
            both = ctx.update(_AA + _55)
            uk.append(both[:16])
            h = both[16:]
        else:
            uk.append(ctx.update(_AA))
    return p, uk


class LrpCipher:
    """LRP under one secret key and one updated key index (the object is reusable).

    ``memo_size`` bounds the prefix memo (one ECB context, about 1 KiB, per entry); a key
    used once (a session key) is built with ``memo_size=0``.
    """

    __slots__ = ("_k1", "_k2", "_kp", "_memo", "_memo_size", "_pmap")

    def __init__(self, key: bytes, u: int = 0, *, memo_size: int = 0) -> None:
        p, uk = _plaintexts_and_keys(key, u + 1)
        self._pmap = {c: p[i] for i, c in enumerate(_HEX)}
        self._kp = uk[u]
        self._memo: dict[str, Callable[[bytes], bytes]] = {}
        self._memo_size = memo_size
        self._k1 = -1
        self._k2 = -1

    # --- Algorithm 3 -------------------------------------------------------------------
    def _walk(self, y: bytes, nibbles: str) -> bytes:
        pmap, new, aes, ecb = self._pmap, Cipher, _AES, _ECB
        for c in nibbles:
            y = new(aes(y), ecb).encryptor().update(pmap[c])
        return y

    def eval_hex(self, x_hex: str, *, final: bool = True, memo: int = 0) -> bytes:
        """EvalLRP on the nibbles of lowercase hex ``x_hex``.

        With ``memo`` > 0 the chain state after the first ``memo`` nibbles is remembered
        as a ready ECB context under that state (bounded by ``memo_size``), so the next
        step costs one block operation instead of a key schedule; the result is identical.
        """
        if memo and self._memo_size and len(x_hex) > memo:
            prefix = x_hex[:memo]
            step = self._memo.get(prefix)
            if step is None:
                step = Cipher(_AES(self._walk(self._kp, prefix)), _ECB).encryptor().update
                if len(self._memo) >= self._memo_size:
                    self._memo.clear()
                self._memo[prefix] = step
            y = self._walk(step(self._pmap[x_hex[memo]]), x_hex[memo + 1 :])
        else:
            y = self._walk(self._kp, x_hex)
        if final:
            y = Cipher(_AES(y), _ECB).encryptor().update(ZERO_BLOCK)
        return y

    def eval(self, x: bytes, *, final: bool = True) -> bytes:
        """EvalLRP on the nibbles of ``x``."""
        return self.eval_hex(x.hex(), final=final)

    # --- LRICB ---------------------------------------------------------------------------
    def decrypt(self, counter: bytes, data: bytes, *, memo: int = 0) -> bytes:
        """LRICBDec without padding removal; ``counter`` is the big-endian block counter."""
        return self._lricb(counter, data, decrypt=True, memo=memo)

    def encrypt(self, counter: bytes, data: bytes) -> bytes:
        """LRICBEnc without padding (``data`` is a multiple of 16 bytes)."""
        return self._lricb(counter, data, decrypt=False, memo=0)

    def _lricb(self, counter: bytes, data: bytes, *, decrypt: bool, memo: int) -> bytes:
        if len(data) % 16:
            raise ValueError("LRICB data must be a multiple of 16 bytes")
        width = len(counter)
        ctr = int.from_bytes(counter, "big")
        mod = 1 << (8 * width)
        out = bytearray()
        op = decrypt_block if decrypt else encrypt_block
        for off in range(0, len(data), 16):
            y = self.eval_hex(ctr.to_bytes(width, "big").hex(), memo=memo)
            out += op(y, data[off : off + 16])
            ctr = (ctr + 1) % mod
        return bytes(out)

    # --- CMAC_LRP ------------------------------------------------------------------------
    def cmac(self, data: bytes, *, memo: int = 0) -> bytes:
        """CMAC with EvalLRP as the block function (AN12304 section 3)."""
        if self._k1 < 0:
            k0 = int.from_bytes(self.eval_hex("0" * 32), "big")
            self._k1 = _dbl(k0)
            self._k2 = _dbl(self._k1)
        n = len(data)
        if n and n % 16 == 0:
            last = int.from_bytes(data[n - 16 :], "big") ^ self._k1
            head = n - 16
        else:
            head = n - n % 16
            last = int.from_bytes(data[head:] + b"\x80" + bytes(15 - n % 16), "big") ^ self._k2
        y = 0
        for off in range(0, head, 16):
            block = int.from_bytes(data[off : off + 16], "big") ^ y
            y = int.from_bytes(self.eval_hex(block.to_bytes(16, "big").hex()), "big")
        return self.eval_hex((last ^ y).to_bytes(16, "big").hex(), memo=memo if not head else 0)
