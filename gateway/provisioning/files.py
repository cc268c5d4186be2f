"""Atomic, locked writes of the broker's account files.

A broker that re-reads its files on SIGHUP, or a power cut, must never see half a file: each
file is written whole to a temporary file in the same directory, fsynced, renamed over the
old one, and the directory fsynced. Written by root, the file goes to the broker's user:
Mosquitto 2.0 reads its password and ACL files after it dropped to that user, so a root-owned
0600 password file stops it from starting (and `mosquitto_passwd` leaves root-owned files).
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: The user Mosquitto drops to when started as root (Debian's and Mosquitto's default).
BROKER_USER = "mosquitto"
PASSWORD_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644


def read_text(path: Path) -> str:
    """The file's text, or "" if it does not exist yet (a site's first device)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def write_atomic(path: Path, data: bytes, mode: int, *, owner: str | None = BROKER_USER) -> None:
    """Replace ``path`` by ``data`` in one rename, with ``mode``.

    Ownership, as root: ``owner`` when that user exists, else the old file's owner; None
    keeps the writer's (a secret handed to the operator). Others cannot give files away.
    """
    uid_gid = _target_owner(path, owner)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)  # before any byte is written
            if uid_gid is not None:
                os.fchown(fh.fileno(), *uid_gid)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


def _target_owner(path: Path, owner: str | None) -> tuple[int, int] | None:
    """Who should own the new file (only root can give files away)."""
    if os.geteuid() != 0 or owner is None:
        return None
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(owner)
        return entry.pw_uid, entry.pw_gid
    with contextlib.suppress(FileNotFoundError):
        st = path.stat()
        return st.st_uid, st.st_gid
    return None


def readable_by(path: Path, user: str) -> bool:
    """Whether ``user`` may read ``path`` (True when there is no such user to check)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return True
    if entry.pw_uid == 0:
        return True
    st = path.stat()
    if st.st_uid == entry.pw_uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid == entry.pw_gid or user in _group_members(st.st_gid):
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def _group_members(gid: int) -> list[str]:
    try:
        return grp.getgrgid(gid).gr_mem
    except KeyError:
        return []


def fsync_dir(folder: Path) -> None:
    """Make a rename or a deletion in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` while reading, editing and writing its files.

    Two operators provisioning at once would otherwise each write the file they read, and
    the second rename would silently drop the first one's device. The lock is on the
    directory itself, so no lock file is left in /etc/mosquitto.
    """
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
