"""Keys at rest: tag and record keys are sealed (AES-256-GCM) under a key-encryption key (KEK)
that is kept outside the database.

Why: the database file is copied, backed up and opened by tools; a key in it must be useless
without the KEK. Each sealed value names the KEK that sealed it (its *id*, a fingerprint that
reveals nothing of the KEK), so a wrong KEK is told apart from a damaged value, and binds its
place (table, row, column) as associated data, so a value copied to another row does not open.

Where the KEK comes from, the first found wins (:func:`load_kek`):

1. ``$CREDENTIALS_DIRECTORY/dockgate-kek``: a systemd credential (``LoadCredential=``);
2. the configured KEK file (``[secrets] kek_file``);
3. the environment variable ``DOCKGATE_KEK``;
4. ``<data_dir>/kek``, generated (mode 0600) the first time it is needed.

A KEK is 32 bytes, written as hex (64 digits) or base64. No message of this module ever
carries key material: only where a KEK came from and its id.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import stat
import threading
from collections.abc import Callable, Mapping
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEK_BYTES = 32
CREDENTIAL = "dockgate-kek"
ENV_VAR = "DOCKGATE_KEK"
DEFAULT_FILE = "kek"
SEALED_PREFIX = "sealed1:"
_NONCE_BYTES = 12

#: Where a sealed value lives, e.g. ``("records", "5", "key_secret")``: its associated data.
Place = tuple[str, ...]


class KekError(RuntimeError):
    """No usable KEK, or a stored key that does not open under it (never with key material)."""


def is_sealed(value: object) -> bool:
    """Whether a stored value is sealed (anything else is a plain-text key from before)."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def _where(place: Place) -> str:
    return "/".join(place)


def _associated_data(kek_id: str, place: Place) -> bytes:
    """The KEK id and the place, each length-prefixed: no two places give the same bytes."""
    out = bytearray()
    for part in (SEALED_PREFIX, kek_id, *place):
        data = part.encode()
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


class Kek:
    """A key-encryption key: seals and opens stored keys. Its repr shows the id, not the key."""

    __slots__ = ("_aead", "generated", "id", "source")

    def __init__(self, secret: bytes, source: str, *, generated: bool = False) -> None:
        if len(secret) != KEK_BYTES:
            raise KekError(f"{source}: a KEK is {KEK_BYTES} bytes, not {len(secret)}")
        self._aead = AESGCM(secret)
        self.id = hmac.new(secret, b"dockgate kek id", sha256).hexdigest()[:16]
        self.source = source
        self.generated = generated

    def __repr__(self) -> str:
        return f"Kek(id={self.id!r}, source={self.source!r})"

    def seal(self, plaintext: bytes, place: Place) -> str:
        """``plaintext`` sealed for ``place`` (a fresh random nonce each time)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, _associated_data(self.id, place))
        body = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{SEALED_PREFIX}{self.id}:{body}"

    def open(self, sealed: object, place: Place) -> bytes:
        """The key sealed at ``place``; :class:`KekError` saying why if it does not open."""
        kek_id, body = _parse(sealed, place)
        if not hmac.compare_digest(kek_id, self.id):
            raise KekError(
                f"{_where(place)} is sealed under KEK {kek_id}, but the KEK in use"
                f" ({self.source}) is {self.id}: start with the KEK that sealed it"
                " (or re-seal with `dockgate keys rotate`)"
            )
        try:
            return self._aead.decrypt(
                body[:_NONCE_BYTES], body[_NONCE_BYTES:], _associated_data(kek_id, place)
            )
        except InvalidTag:
            raise KekError(
                f"{_where(place)} does not open under KEK {self.id}: the stored value was"
                " altered or copied from another row"
            ) from None


def _parse(sealed: object, place: Place) -> tuple[str, bytes]:
    """The KEK id and the nonce-and-ciphertext of a sealed value."""
    if not is_sealed(sealed):
        raise KekError(f"{_where(place)} holds a key that is not sealed")
    kek_id, _, body = str(sealed)[len(SEALED_PREFIX) :].partition(":")
    try:
        raw = base64.urlsafe_b64decode(body.encode())
    except (binascii.Error, ValueError):
        raw = b""
    if not kek_id or len(raw) <= _NONCE_BYTES + 16:
        raise KekError(f"{_where(place)} holds a damaged sealed value")
    return kek_id, raw


# -- where the KEK comes from ------------------------------------------------------------------
def parse_kek(text: str, source: str) -> Kek:
    """A KEK written as hex or base64 (surrounding white space ignored)."""
    value = text.strip()
    secret: bytes | None = None
    try:
        secret = bytes.fromhex(value) if len(value) == 2 * KEK_BYTES else None
    except ValueError:
        secret = None
    if secret is None:
        try:
            secret = base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            secret = None
    if secret is None or len(secret) != KEK_BYTES:
        raise KekError(
            f"{source} does not hold a KEK: expected {KEK_BYTES} bytes as hex"
            f" ({2 * KEK_BYTES} digits) or base64"
        )
    return Kek(secret, source)


def read_kek_file(path: Path, source: str | None = None) -> Kek:
    """The KEK in ``path``; refused if other users may read the file."""
    where = source or f"KEK file {path}"
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o007:
            raise KekError(f"{where} is open to other users (mode {mode:04o}): chmod 600 it")
        return parse_kek(path.read_text(encoding="ascii"), where)
    except UnicodeDecodeError:
        raise KekError(f"{where} does not hold a KEK: it is not hex or base64 text") from None
    except OSError as exc:
        raise KekError(f"cannot read {where}: {exc.strerror}") from None


def generate_kek_file(path: Path) -> Kek:
    """A new random KEK written to ``path`` (mode 0600, hex); refuses to replace a file."""
    secret = os.urandom(KEK_BYTES)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secret.hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.link(draft, path)  # atomic, and fails if another process got there first
    finally:
        draft.unlink(missing_ok=True)
    return Kek(secret, f"KEK file {path}", generated=True)


def _kek_file_or_new(path: Path) -> Kek:
    """The KEK in ``path``, generated there first if there is none yet."""
    if not path.exists():
        try:
            return generate_kek_file(path)
        except FileExistsError:
            pass  # another process generated it a moment ago: read that one
    return read_kek_file(path)


def load_kek(
    data_dir: Path,
    *,
    kek_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    generate: bool = True,
) -> Kek:
    """The KEK, from the first source that has one (see the module's docstring); with
    ``generate=False`` a missing ``<data_dir>/kek`` is an error, not made."""
    env = os.environ if environ is None else environ
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL).exists():
        return read_kek_file(Path(credentials) / CREDENTIAL, f"systemd credential {CREDENTIAL}")
    if kek_file is not None:
        return read_kek_file(kek_file)
    if ENV_VAR in env:
        return parse_kek(env[ENV_VAR], f"environment variable {ENV_VAR}")
    default = data_dir / DEFAULT_FILE
    if not generate and not default.exists():
        raise KekError(
            f"no KEK: no systemd credential {CREDENTIAL}, no kek_file, no {ENV_VAR}"
            f" and no {default}"
        )
    return _kek_file_or_new(default)


class Keyring:
    """The KEK a store seals with, loaded on first use: a store that never holds a key never
    needs one, and a KEK that cannot be loaded fails the write or read that needed it."""

    def __init__(self, load: Callable[[], Kek]) -> None:
        self._load = load
        self._kek: Kek | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, kek: Kek) -> Keyring:
        """A keyring of a KEK already loaded."""
        keyring = cls(lambda: kek)
        keyring.use(kek)
        return keyring

    @classmethod
    def beside(cls, database_path: str) -> Keyring:
        """The default of a store: :func:`load_kek` for a database in this file's directory
        (for a database in memory, a random KEK that lives as long as the keyring)."""
        if database_path in ("", ":memory:"):
            return cls(lambda: Kek(os.urandom(KEK_BYTES), "KEK in memory"))
        return cls(lambda: load_kek(Path(database_path).resolve().parent))

    @property
    def kek(self) -> Kek:
        with self._lock:
            if self._kek is None:
                self._kek = self._load()
            return self._kek

    def use(self, kek: Kek) -> None:
        """Seal and open with ``kek`` from now on (after every key was re-sealed under it)."""
        with self._lock:
            self._kek = kek

    def seal(self, plaintext: bytes, place: Place) -> str:
        return self.kek.seal(plaintext, place)

    def open(self, sealed: object, place: Place) -> bytes:
        return self.kek.open(sealed, place)
