"""Mosquitto's password file, read and written in its own format without `mosquitto_passwd`.

An entry is ``username:$7$<iterations>$<salt, base64>$<hash, base64>``: PBKDF2-HMAC-SHA512
of the password over a 12-byte salt, a 64-byte hash, exactly what `mosquitto_passwd` writes
(Mosquitto 2.0, ``-H sha512-pbkdf2``). Editing the file keeps every line it does not touch
byte for byte: entries `mosquitto_passwd` wrote, other accounts, comments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

#: `mosquitto_passwd`'s own count. The broker derives the hash on every CONNECT, on its one
#: thread: a fleet reconnecting after a restart must not stall it. Guessing is no threat at
#: any count, because every password this module makes is 192 random bits.
ITERATIONS = 101
_SALT_BYTES = 12
_PBKDF2_ID = "7"


class PasswordFileError(ValueError):
    """A username that cannot be stored, or an entry that is not Mosquitto's."""


def new_password() -> str:
    """A fresh random password: 192 bits, URL-safe, no `:` (safe in every file it goes to)."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """The `$7$...` hash Mosquitto checks ``password`` against."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return "$".join(("", _PBKDF2_ID, str(iterations), _b64(salt), _b64(digest)))


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a `$7$` entry (Mosquitto's own check, for tests/tools)."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != _PBKDF2_ID or not parts[2].isdigit():
        raise PasswordFileError("not a sha512-pbkdf2 ($7$) password hash")
    salt, expected = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[2]))
    return hmac.compare_digest(digest, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_username(name: str) -> str:
    """``name`` if Mosquitto's password and ACL files can hold it, else PasswordFileError."""
    if not name or ":" in name or "#" in name or any(c.isspace() for c in name):
        raise PasswordFileError(f"invalid broker username {name!r}")
    return name


@dataclass(slots=True)
class PasswordFile:
    """The lines of a password file; edits replace or drop only the named account's lines."""

    lines: list[str]

    @classmethod
    def parse(cls, text: str) -> PasswordFile:
        return cls(text.splitlines())

    def render(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)

    def usernames(self) -> list[str]:
        """Accounts in file order, each once (comments and blank lines are not accounts)."""
        seen: dict[str, None] = {}
        for line in self.lines:
            name = _username_of(line)
            if name is not None:
                seen.setdefault(name)
        return list(seen)

    def __contains__(self, name: object) -> bool:
        return any(_username_of(line) == name for line in self.lines)

    def set(self, name: str, encoded_hash: str) -> None:
        """Replace ``name``'s entry in place (every duplicate goes), or append it."""
        entry = f"{check_username(name)}:{encoded_hash}"
        at = next((i for i, line in enumerate(self.lines) if _username_of(line) == name), None)
        self.remove(name)
        if at is None:
            self.lines.append(entry)
        else:
            self.lines.insert(at, entry)

    def remove(self, name: str) -> bool:
        """Drop every entry of ``name``; whether there was one."""
        kept = [line for line in self.lines if _username_of(line) != name]
        removed = len(kept) != len(self.lines)
        self.lines = kept
        return removed


def _username_of(line: str) -> str | None:
    """The account a line belongs to (Mosquitto: the text before the first `:`)."""
    if not line.strip() or line.lstrip().startswith("#") or ":" not in line:
        return None
    return line.split(":", 1)[0]
