"""The daemon's state: a directory only the service can enter, and the store opened with the
KEK that seals its keys: an SQLite file in that directory, or the PostgreSQL database
``[store] url`` names (the KEK stays in the directory or ``[secrets]`` either way).

Why here and not in the store: the umask is the process's, and the KEK's sources (a systemd
credential, a file, the environment) are the daemon's configuration; the store only needs a
keyring.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from dockgate.gateway.daemon.settings import SecretsSettings, StoreSettings
from dockgate.gateway.sealing import Kek, Keyring, load_kek
from dockgate.gateway.store import Store, open_database

log = logging.getLogger("dockgate.daemon")

DATABASE = "dockgate.sqlite3"


def secure_data_dir(data_dir: Path) -> None:
    """Files the process creates from now on are its own (umask 077); the data directory is
    0700 and files an earlier version left in it lose their group and other bits (SQLite gives
    the -wal and -shm files the database file's mode)."""
    os.umask(0o077)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _restrict(data_dir)
    for child in data_dir.iterdir():
        if child.is_file() and not child.is_symlink():
            _restrict(child)


def _restrict(path: Path) -> None:
    """Take group and other bits off ``path``; a warning (naming it) if that is not allowed."""
    mode = stat.S_IMODE(path.lstat().st_mode)
    if not mode & 0o077:
        return
    try:
        path.chmod(mode & 0o700)
    except OSError as exc:
        log.warning(
            "cannot restrict the mode of a state file",
            extra={"path": str(path), "mode": f"{mode:04o}", "error": exc.strerror},
        )
        return
    log.info("restricted the mode of a state file", extra={"path": str(path)})


def daemon_kek(data_dir: Path, secrets: SecretsSettings) -> Kek:
    """The KEK from its configured source, logged by source and id (never the key)."""
    kek = load_kek(data_dir, kek_file=secrets.kek_file)
    if kek.generated:
        log.warning(
            "generated a new key-encryption key: keep a copy apart from the database backups,"
            " without it the stored keys cannot be read",
            extra={"kek_source": kek.source, "kek_id": kek.id},
        )
    else:
        log.info("key-encryption key loaded", extra={"kek_source": kek.source, "kek_id": kek.id})
    return kek


def open_store(data_dir: Path, kek: Kek, url: str | None = None) -> Store:
    """The store (the SQLite file in ``data_dir``, or the PostgreSQL database at ``url``),
    migrated, its keys sealed under ``kek`` and each checked to open (a wrong KEK stops here,
    not at the first tap)."""
    db = open_database(url or data_dir / DATABASE, data_dir=data_dir)
    log.info("store opened", extra={"store": db.path, "engine": db.dialect.name})
    store = Store(db, keyring=Keyring.of(kek))
    try:
        if store.sealed_at_open:
            log.warning(
                "sealed the stored keys that were in plain text",
                extra={"sealed": store.sealed_at_open, "kek_id": kek.id},
            )
        opened = store.sealed_keys.check()
    except BaseException:
        store.close()
        raise
    log.info("stored keys open under the KEK", extra={"keys": opened, "kek_id": kek.id})
    return store


def open_state(
    data_dir: Path, secrets: SecretsSettings, store: StoreSettings | None = None
) -> Store:
    """The daemon's store: the data directory secured, then :func:`open_store` with the KEK
    on the database ``store`` names (default: the SQLite file in ``data_dir``)."""
    secure_data_dir(data_dir)
    url = None if store is None else store.url
    return open_store(data_dir, daemon_kek(data_dir, secrets), url)
