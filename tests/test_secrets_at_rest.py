"""Tag and record keys at rest: sealed under a KEK kept outside the database, bound to their
row, re-sealed by rotation; the state directory and its files closed to other users.

The keys go in through the real API (in-process over ASGI) or the store, and the test reads the
database file's raw bytes (and its WAL) for them: hex, upper-case hex, raw bytes; on
PostgreSQL (the tests marked ``engines``) every row of every table, as text.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dockgate.api import create_app
from dockgate.gateway.daemon.settings import SecretsSettings, load_settings
from dockgate.gateway.daemon.state import DATABASE, open_state, open_store
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.sealing import (
    CREDENTIAL,
    ENV_VAR,
    Kek,
    KekError,
    Keyring,
    generate_kek_file,
    load_kek,
    parse_kek,
    read_kek_file,
)
from dockgate.gateway.store import Database, Store, migrate, open_database
from tests.support.api import READ_TOKEN, SYNC_TOKEN
from tests.support.stores import database_target, engine, open_test_store

SYNC = {"Authorization": f"Bearer {SYNC_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


def forms(key: bytes) -> list[bytes]:
    """Every way a key could sit in the file: raw, hex, upper-case hex."""
    return [key, key.hex().encode(), key.hex().upper().encode()]


def raw_state(db_path: Path) -> bytes:
    """The database file's bytes and its WAL's (if any): everything SQLite wrote."""
    wal = db_path.with_name(db_path.name + "-wal")
    return db_path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def held(db_path: Path) -> bytes:
    """Everything the test's database holds: the SQLite file's bytes (and its WAL's), or
    every row of every table of the PostgreSQL database standing for ``db_path``, as text."""
    if engine() == "sqlite":
        return raw_state(db_path)
    db = open_database(database_target(db_path))
    try:
        tables = db.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        rows = [
            row[0]
            for (table,) in tables
            for row in db.conn.execute(f"SELECT CAST(t AS TEXT) FROM {table} t").fetchall()
        ]
    finally:
        db.close()
    assert any("sealed1:" in row for row in rows) or not rows  # it does read the rows
    return "\n".join(rows).encode()


def assert_absent(keys: list[bytes], haystack: bytes | str) -> None:
    data = haystack.encode() if isinstance(haystack, str) else haystack
    for key in keys:
        for form in forms(key):
            assert form not in data


@pytest.fixture
def restore_umask() -> Iterator[None]:
    """``open_state`` sets the process's umask (the daemon's): put the test process's back."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


def new_kek(source: str = "test KEK") -> Kek:
    return Kek(os.urandom(32), source)


def make_old_database(
    path: Path, record_key: bytes, tag_key: bytes, *, others: int = 0
) -> list[bytes]:
    """A database as an earlier version left it: record and tag keys in plain text (record 7
    with ``record_key``, and ``others`` more records with keys of their own); every key."""
    keys = [record_key, tag_key] + [os.urandom(16) for _ in range(others)]
    db = Database(path)
    migrate(db)
    with db.transaction() as c:
        c.execute("INSERT INTO products(id, name, created_at) VALUES (1, 'card', 0)")
        c.execute(
            "INSERT INTO records(id, product_id, token_encryption, key_secret, created_at)"
            " VALUES (7, 1, 'aes-128', ?, 0)",
            (record_key.hex(),),
        )
        c.execute(
            "INSERT INTO tag_keys(name, key, version, updated_at) VALUES ('default', ?, 1, 0)",
            (tag_key,),
        )
        for n, key in enumerate(keys[2:]):
            c.execute(
                "INSERT INTO records(id, product_id, key_secret, created_at) VALUES (?, 1, ?, 0)",
                (100 + n, key.hex()),
            )
    db.close()
    return keys


# -- through the API ----------------------------------------------------------------------------
@pytest.mark.engines("sqlite", "postgresql")
async def test_keys_pushed_through_the_api_never_reach_the_database_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record_key, tag_key = os.urandom(16), os.urandom(16)
    store = open_test_store(tmp_path / "api.db")
    app = create_app(store, Outbox(store.db), tokens={SYNC_TOKEN: ["sync"], READ_TOKEN: ["read"]})
    caplog.set_level(logging.DEBUG)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        product = (
            await client.post("/api/v1/products", json={"name": "card"}, headers=SYNC)
        ).json()
        created = await client.post(
            f"/api/v1/products/{product['data']['id']}/records",
            json={"token_encryption": "aes-128", "key": record_key.hex()},
            headers={**SYNC, "Idempotency-Key": "record-1"},
        )
        put = await client.put(
            "/api/v1/tag-keys/default", json={"key": tag_key.hex().upper()}, headers=SYNC
        )
        listing = await client.get("/api/v1/tag-keys", headers=READ)
    assert created.status_code == 200 and put.status_code == 200
    record_id = created.json()["data"]["id"]
    for response in (created, put, listing):
        assert_absent([record_key, tag_key], response.text)

    db_path = tmp_path / "api.db"
    assert_absent([record_key, tag_key], held(db_path))  # the WAL still holds the writes
    stored = store.db.conn.execute("SELECT key_secret FROM records").fetchone()[0]
    assert stored.startswith("sealed1:")
    assert store.records.key(record_id) == record_key.hex()
    assert store.tag_keys.get("default") == tag_key
    store.close()
    assert_absent([record_key, tag_key], held(db_path))
    assert_absent([record_key, tag_key], caplog.text)
    # the store's default KEK: generated beside the database, for its owner only
    kek_file = tmp_path / "kek"
    assert stat.S_IMODE(kek_file.stat().st_mode) == 0o600
    assert open_test_store(db_path).tag_keys.get("default") == tag_key  # the same KEK, again


# -- sealing --------------------------------------------------------------------------------------
@pytest.mark.engines("sqlite", "postgresql")
def test_a_sealed_key_opens_only_in_its_own_row(tmp_path: Path) -> None:
    key_a, key_b = os.urandom(16), os.urandom(16)
    store = open_test_store(tmp_path / "s.db", keyring=Keyring.of(new_kek()))
    product = store.products.create("card")
    first = store.records.create(product, token_encryption="aes-128", key=key_a.hex())
    second = store.records.create(product, token_encryption="aes-128", key=key_b.hex())
    store.tag_keys.set("a", key_a)
    store.tag_keys.set("b", key_b)
    with store.transaction() as c:  # someone with write access moves the sealed values
        c.execute(
            "UPDATE records SET key_secret=(SELECT key_secret FROM records WHERE id=?) WHERE id=?",
            (first, second),
        )
        c.execute(
            "UPDATE tag_keys SET key=(SELECT key FROM tag_keys WHERE name='a') WHERE name='b'"
        )
    assert store.records.key(first) == key_a.hex() and store.tag_keys.get("a") == key_a
    with pytest.raises(KekError, match=f"records/{second}/key_secret .* copied from another row"):
        store.records.key(second)
    with pytest.raises(KekError, match="tag_keys/b/key") as caught:
        store.tag_keys.get("b")
    assert_absent([key_a, key_b], str(caught.value))
    with pytest.raises(KekError, match="records/"):
        store.sealed_keys.check()


@pytest.mark.engines("sqlite", "postgresql")
def test_each_seal_is_fresh_and_a_rotated_tag_key_keeps_its_version(tmp_path: Path) -> None:
    store = open_test_store(tmp_path / "v.db", keyring=Keyring.of(new_kek()))
    key = os.urandom(16)
    assert store.tag_keys.set("default", key) == 1
    first = store.db.conn.execute("SELECT key FROM tag_keys").fetchone()[0]
    assert store.tag_keys.set("default", key) == 2
    second = store.db.conn.execute("SELECT key FROM tag_keys").fetchone()[0]
    assert first != second  # a random nonce per seal: equal keys do not look equal
    assert store.tag_keys.get("default") == key and store.tag_keys.get("none") is None


@pytest.mark.engines("sqlite", "postgresql")
def test_a_wrong_kek_is_named_and_never_shown(tmp_path: Path, restore_umask: None) -> None:
    data_dir = tmp_path / "state"
    secret = os.urandom(32)
    right, wrong = Kek(secret, "KEK file right"), new_kek("KEK file wrong")
    key = os.urandom(16)
    secure = open_store_in(data_dir, right)
    secure.tag_keys.set("default", key)
    secure.close()
    with pytest.raises(KekError) as caught:
        open_store(data_dir, wrong, url(data_dir))
    message = str(caught.value)
    assert f"sealed under KEK {right.id}" in message and f"is {wrong.id}" in message
    assert "KEK file wrong" in message and "dockgate keys rotate" in message
    assert_absent([key], message)
    assert right.id in repr(right) and secret.hex() not in repr(right) + message
    assert open_store(data_dir, right, url(data_dir)).tag_keys.get("default") == key


def url(data_dir: Path) -> str | None:
    """The daemon's ``[store] url`` for the test's engine (None: the file in ``data_dir``)."""
    return None if engine() == "sqlite" else database_target(data_dir / DATABASE)


def open_store_in(data_dir: Path, kek: Kek) -> Store:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return open_store(data_dir, kek, url(data_dir))


# -- an older database ----------------------------------------------------------------------------
def test_an_old_plaintext_database_is_sealed_on_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, restore_umask: None
) -> None:
    data_dir = tmp_path / "state"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    record_key, tag_key = os.urandom(16), os.urandom(16)
    db_path = data_dir / DATABASE
    make_old_database(db_path, record_key, tag_key)
    db_path.chmod(0o644)
    assert record_key.hex().encode() in raw_state(db_path)  # the test can see a key in the file

    caplog.set_level(logging.INFO, logger="dockgate.daemon")
    store = open_state(data_dir, SecretsSettings())
    assert store.sealed_at_open == 2
    sealed_logs = [r for r in caplog.records if r.getMessage().startswith("sealed the stored")]
    assert [getattr(r, "sealed", None) for r in sealed_logs] == [2]
    assert any(r.getMessage().startswith("generated a new key-encryption") for r in caplog.records)
    assert store.records.key(7) == record_key.hex() and store.tag_keys.get("default") == tag_key
    assert_absent([record_key, tag_key], raw_state(db_path))  # overwritten, not just freed
    kek_hex = (data_dir / "kek").read_text().strip()
    assert kek_hex not in caplog.text and record_key.hex() not in caplog.text
    store.close()

    again = open_state(data_dir, SecretsSettings())  # a one-off: nothing left to seal
    assert again.sealed_at_open == 0 and again.sealed_keys.check() == 2
    again.close()


def test_sealing_overwrites_the_plaintext_where_sqlite_would_keep_it(tmp_path: Path) -> None:
    """Some SQLite builds leave freed bytes in the file (``secure_delete`` off by default):
    sealing turns it on for its own writes, and only for them."""
    record_key, tag_key = os.urandom(16), os.urandom(16)
    path = tmp_path / "old.db"
    # with one more record, the rewritten page keeps freed cells (found by trying: SQLite
    # 3.40 with secure_delete off leaves both record keys in the file)
    keys = make_old_database(path, record_key, tag_key, others=1)
    assert record_key.hex().encode() in raw_state(path)
    db = Database(path)
    db.conn.execute("PRAGMA secure_delete=OFF")
    store = Store(db, keyring=Keyring.of(new_kek()))
    assert store.sealed_at_open == 3
    assert_absent(keys, raw_state(path))
    assert db.conn.execute("PRAGMA secure_delete").fetchone()[0] == 0
    store.close()


@pytest.mark.engines("sqlite", "postgresql")
def test_plaintext_that_appears_later_is_refused_not_used(tmp_path: Path) -> None:
    store = open_test_store(tmp_path / "p.db", keyring=Keyring.of(new_kek()))
    product = store.products.create("card")
    record = store.records.create(product, key="00" * 16)
    store.db.conn.execute("UPDATE records SET key_secret=? WHERE id=?", ("11" * 16, record))
    with pytest.raises(KekError, match="not sealed"):
        store.records.key(record)


# -- rotation -------------------------------------------------------------------------------------
def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "CREDENTIALS_DIRECTORY")}
    return subprocess.run(
        [sys.executable, "-m", "dockgate.gateway.cli", "keys", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.engines("sqlite", "postgresql")
def test_rotation_reseals_every_key_and_retires_the_old_kek(
    tmp_path: Path, restore_umask: None
) -> None:
    config = tmp_path / "dockgate.toml"
    store_url = url(tmp_path / "state")
    config.write_text(
        '[site]\ndata_dir = "state"\n[secrets]\nkek_file = "old.kek"\n'
        + (f'[store]\nurl = "{store_url}"\n' if store_url else "")
    )
    made = run_cli("generate", "old.kek", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    old = read_kek_file(tmp_path / "old.kek")
    assert stat.S_IMODE((tmp_path / "old.kek").stat().st_mode) == 0o600
    keys = [os.urandom(16) for _ in range(3)]
    settings = load_settings(config)
    store = open_state(tmp_path / "state", settings.secrets, settings.store)
    product = store.products.create("card")
    records = [store.records.create(product, key=k.hex()) for k in keys]
    store.tag_keys.set("default", keys[0])
    store.close()

    assert run_cli("generate", "new.kek", cwd=tmp_path).returncode == 0
    assert run_cli("generate", "new.kek", cwd=tmp_path).returncode == 1  # never replaced
    rotated = run_cli(
        "rotate", "--config", "dockgate.toml", "--new-kek-file", "new.kek", cwd=tmp_path
    )
    assert rotated.returncode == 0, rotated.stderr
    new = read_kek_file(tmp_path / "new.kek")
    assert f"re-sealed 4 stored key(s) under KEK {new.id} (was {old.id})" in rotated.stdout
    assert_absent(keys, rotated.stdout + rotated.stderr)

    with pytest.raises(KekError, match=f"sealed under KEK {new.id}"):
        open_store(tmp_path / "state", old, store_url)  # the old KEK opens nothing any more
    store = open_store(tmp_path / "state", new, store_url)
    assert [store.records.key(r) for r in records] == [k.hex() for k in keys]
    assert store.tag_keys.get("default") == keys[0]
    store.close()
    assert_absent(keys, held(tmp_path / "state" / DATABASE))

    # the config still names the old KEK: rotating again from it is refused, nothing changes
    again = run_cli("rotate", "-c", "dockgate.toml", "--new-kek-file", "new.kek", cwd=tmp_path)
    assert again.returncode == 1 and f"sealed under KEK {new.id}" in again.stderr
    back = run_cli(
        "rotate",
        "-c",
        "dockgate.toml",
        "--kek-file",
        "new.kek",
        "--new-kek-file",
        "old.kek",
        cwd=tmp_path,
    )
    assert back.returncode == 0, back.stderr
    assert open_store(tmp_path / "state", old, store_url).sealed_keys.check() == 4


@pytest.mark.engines("sqlite", "postgresql")
def test_rotation_is_one_transaction(tmp_path: Path) -> None:
    old, new = new_kek(), new_kek()
    store = open_test_store(tmp_path / "r.db", keyring=Keyring.of(old))
    product = store.products.create("card")
    good = store.records.create(product, key="aa" * 16)
    damaged = store.records.create(product, key="bb" * 16)
    store.tag_keys.set("default", b"\x02" * 16)

    def stored() -> list[str]:
        rows = store.db.conn.execute("SELECT key_secret FROM records ORDER BY id").fetchall()
        return [r[0] for r in rows] + [
            store.db.conn.execute("SELECT key FROM tag_keys").fetchone()[0]
        ]

    sealed = stored()
    damaged_value = sealed[1][:-4] + ("AAAA" if not sealed[1].endswith("AAAA") else "BBBB")
    store.db.conn.execute("UPDATE records SET key_secret=? WHERE id=?", (damaged_value, damaged))
    before = stored()
    with pytest.raises(KekError, match=f"records/{damaged}/key_secret"):
        store.sealed_keys.reseal(new)  # the first record was re-sealed before this one failed
    assert stored() == before  # ... and rolled back with it: nothing is half re-sealed
    assert store.records.key(good) == "aa" * 16 and store.tag_keys.get("default") == b"\x02" * 16


# -- where the KEK comes from ---------------------------------------------------------------------
def write_kek(path: Path, kek_hex: str, mode: int = 0o600) -> Path:
    path.write_text(kek_hex + "\n")
    path.chmod(mode)
    return path


def test_the_kek_comes_from_the_first_source_that_has_one(tmp_path: Path) -> None:
    creds, config_file = tmp_path / "creds", tmp_path / "config.kek"
    creds.mkdir()
    a, b, c = (os.urandom(32) for _ in range(3))
    write_kek(creds / CREDENTIAL, a.hex(), 0o400)
    write_kek(config_file, b.hex())
    env = {"CREDENTIALS_DIRECTORY": str(creds), ENV_VAR: c.hex()}
    data_dir = tmp_path / "state"

    def kek_id(secret: bytes) -> str:
        return Kek(secret, "").id

    got = load_kek(data_dir, kek_file=config_file, environ=env)
    assert (got.id, got.source) == (kek_id(a), f"systemd credential {CREDENTIAL}")
    (creds / CREDENTIAL).unlink()
    assert load_kek(data_dir, kek_file=config_file, environ=env).id == kek_id(b)
    got = load_kek(data_dir, environ=env)
    assert (got.id, got.source) == (kek_id(c), f"environment variable {ENV_VAR}")
    import base64

    assert load_kek(data_dir, environ={ENV_VAR: base64.b64encode(c).decode()}).id == kek_id(c)
    with pytest.raises(KekError, match="no KEK"):
        load_kek(data_dir, environ={}, generate=False)
    assert not data_dir.exists()
    made = load_kek(data_dir, environ={})
    assert made.generated and stat.S_IMODE((data_dir / "kek").stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    found = load_kek(data_dir, environ={})
    assert (found.id, found.generated) == (made.id, False)


def test_a_bad_kek_is_refused_without_showing_it(tmp_path: Path) -> None:
    secret = os.urandom(32).hex()
    with pytest.raises(KekError, match="open to other users") as caught:
        read_kek_file(write_kek(tmp_path / "open.kek", secret, 0o644))
    assert secret not in str(caught.value)
    short = secret[:40]
    with pytest.raises(KekError, match="does not hold a KEK") as caught:
        parse_kek(short, f"environment variable {ENV_VAR}")
    assert short not in str(caught.value)
    with pytest.raises(KekError, match="cannot read"):
        read_kek_file(tmp_path / "missing.kek")
    with pytest.raises(FileExistsError):
        generate_kek_file(write_kek(tmp_path / "there.kek", secret))
    assert (tmp_path / "there.kek").read_text().strip() == secret


def test_the_kek_file_setting_is_relative_to_the_config(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('[secrets]\nkek_file = "keys/dockgate.kek"\n')
    assert load_settings(config).secrets.kek_file == tmp_path / "keys" / "dockgate.kek"
    assert load_settings().secrets.kek_file is None


# -- file modes -----------------------------------------------------------------------------------
def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_directory_and_its_files_are_the_services_alone(
    tmp_path: Path, restore_umask: None
) -> None:
    data_dir = tmp_path / "state"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    leftover = data_dir / "sun-replay.sqlite3"
    leftover.write_bytes(b"")
    leftover.chmod(0o644)
    store = open_state(data_dir, SecretsSettings())
    store.tag_keys.set("default", os.urandom(16))  # a write: the WAL exists
    db_path = data_dir / DATABASE
    assert mode(data_dir) == 0o700
    assert mode(leftover) == 0o600
    for name in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", "kek"):
        assert mode(data_dir / name) == 0o600, name
    assert os.umask(0o077) == 0o077  # the daemon's files from now on: 0600
    store.close()
    assert mode(db_path) == 0o600


def test_a_database_left_open_to_others_is_closed_on_start(
    tmp_path: Path, restore_umask: None
) -> None:
    data_dir = tmp_path / "state"
    data_dir.mkdir()
    make_old_database(data_dir / DATABASE, os.urandom(16), os.urandom(16))
    for path in (data_dir, data_dir / DATABASE):
        path.chmod(0o755 if path.is_dir() else 0o644)
    open_state(data_dir, SecretsSettings()).close()
    assert mode(data_dir) == 0o700 and mode(data_dir / DATABASE) == 0o600


def test_another_local_user_cannot_read_the_database(restore_umask: None) -> None:
    runuser = shutil.which("runuser")
    if os.geteuid() != 0 or runuser is None:
        pytest.skip("needs root and runuser to act as another user")
    base = Path(tempfile.mkdtemp(prefix="dockgate-modes-"))
    try:
        base.chmod(0o755)  # everyone may enter the parent, as /var/lib
        control = base / "open.txt"
        control.write_text("readable")
        control.chmod(0o644)

        def cat_as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
            argv = [runuser, "-u", "nobody", "--", "cat", str(path)]
            return subprocess.run(argv, capture_output=True, text=True, timeout=30)

        assert cat_as_nobody(control).returncode == 0  # the check can tell readable apart
        data_dir = base / "state"
        open_state(data_dir, SecretsSettings()).close()
        assert cat_as_nobody(data_dir / DATABASE).returncode != 0
        data_dir.chmod(0o755)  # even with the directory open, the file's own mode holds
        for name in (DATABASE, "kek"):
            denied = cat_as_nobody(data_dir / name)
            assert denied.returncode != 0 and "Permission denied" in denied.stderr
    finally:
        shutil.rmtree(base)


def test_an_in_memory_store_seals_under_a_kek_of_its_own() -> None:
    store = Store(Database(":memory:"))
    store.tag_keys.set("default", b"\x01" * 16)
    assert store.tag_keys.get("default") == b"\x01" * 16
    sealed = store.db.conn.execute("SELECT key FROM tag_keys").fetchone()[0]
    assert isinstance(sealed, str) and sealed.startswith("sealed1:")


@pytest.mark.engines("postgresql")
def test_a_postgresql_store_keeps_its_kek_beside_it_never_in_it(tmp_path: Path) -> None:
    """The KEK of a store on a server comes from the data directory it was opened with (or
    the daemon's ``[secrets]``); without one, a key is refused rather than sealed under a KEK
    kept in the very database it protects."""
    target = database_target(tmp_path / "pg.db")
    keyless = Store(open_database(target))
    with pytest.raises(KekError, match="never kept in the database"):
        keyless.tag_keys.set("default", os.urandom(16))
    keyless.close()
    key = os.urandom(16)
    store = Store(open_database(target, data_dir=tmp_path / "local"))
    store.tag_keys.set("default", key)
    kek_hex = (tmp_path / "local" / "kek").read_text().strip()
    assert mode(tmp_path / "local" / "kek") == 0o600
    store.close()
    assert_absent([key, bytes.fromhex(kek_hex)], held(tmp_path / "pg.db"))
    again = Store(open_database(target, data_dir=tmp_path / "local"))
    assert again.tag_keys.get("default") == key
    again.close()
