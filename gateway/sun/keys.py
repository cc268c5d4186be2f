"""Key sets: how the SDM meta read key and the per-tag file read key are obtained."""

from __future__ import annotations

from dockgate.gateway.sun.cache import BoundedCache
from dockgate.gateway.sun.kdf import SdmBackendTagKeys, an10922_aes128, sdm_backend_meta_key

KDFS = ("an10922", "sdm-backend")


class TagKeys:
    """Fixed keys: the same meta and file read key for every tag."""

    __slots__ = ("_file", "meta_read_key", "needs_uid")

    def __init__(self, meta_read_key: bytes | None, file_read_key: bytes | None) -> None:
        for key in (meta_read_key, file_read_key):
            if key is not None and len(key) != 16:
                raise ValueError("keys must be 16 bytes")
        self.meta_read_key = meta_read_key
        self._file = file_read_key
        self.needs_uid = False

    def file_key(self, uid: bytes | None) -> bytes | None:
        """The SDM file read key for the tag ``uid``."""
        return self._file

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<keys hidden>)"


class An10922Keys(TagKeys):
    """File read key diversified per tag with AN10922 over UID || suffix (bounded cache).

    The meta read key cannot depend on the UID (it is needed to learn the UID), so it is
    the given one, or the master key itself when none is given.
    """

    __slots__ = ("_cache",)

    def __init__(
        self,
        master_key: bytes,
        suffix: bytes = b"",
        meta_read_key: bytes | None = None,
        cache_size: int = 65536,
    ) -> None:
        if len(master_key) != 16:
            raise ValueError("keys must be 16 bytes")
        if len(suffix) > 24:
            raise ValueError("kdf_suffix is at most 24 bytes (UID || suffix <= 31 bytes)")
        super().__init__(meta_read_key if meta_read_key is not None else master_key, None)
        self.needs_uid = True
        self._cache: BoundedCache[bytes, bytes] = BoundedCache(
            lambda uid: an10922_aes128(master_key, uid + suffix), cache_size
        )

    def file_key(self, uid: bytes | None) -> bytes | None:
        return None if uid is None else self._cache.get(uid)


class SdmBackendKeys(TagKeys):
    """Keys as the public sdm-backend derives them from one master key (bounded cache).

    The master key is any length from 16 bytes (sdm-backend derives with HMAC-SHA256, so
    a 32-byte key, for one, is common); it is not kept once the derivation state is built.
    """

    __slots__ = ("_cache",)

    def __init__(self, master_key: bytes, cache_size: int = 65536) -> None:
        derive = SdmBackendTagKeys(master_key, 2).derive  # refuses a master key too short
        super().__init__(sdm_backend_meta_key(master_key), None)
        self.needs_uid = True
        self._cache: BoundedCache[bytes, bytes] = BoundedCache(derive, cache_size)

    def file_key(self, uid: bytes | None) -> bytes | None:
        return None if uid is None else self._cache.get(uid)


def make_keys(
    *,
    meta_read_key: bytes | None = None,
    file_read_key: bytes | None = None,
    master_key: bytes | None = None,
    kdf: str | None = None,
    kdf_suffix: bytes = b"",
) -> TagKeys:
    """The key set for these settings (``master_key`` with ``kdf`` wins over fixed keys)."""
    if master_key is not None:
        if kdf == "an10922":
            return An10922Keys(master_key, kdf_suffix, meta_read_key)
        if kdf == "sdm-backend":
            return SdmBackendKeys(master_key)
        raise ValueError(f"unknown kdf {kdf!r}")
    return TagKeys(meta_read_key, file_read_key)
