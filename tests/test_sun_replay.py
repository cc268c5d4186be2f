"""Replay protection: strictly greater counters, per UID, persistent, atomic; on both engines
(a replay file of an earlier version is an SQLite file)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from dockgate.gateway.sun import ReplayStore, SunSettings, SunVerifier
from dockgate.sim.sdm import SdmTag
from tests.support.stores import database_target, engine, open_test_store

pytestmark = pytest.mark.engines("sqlite", "postgresql")

KEYS = {"default": {"meta_read_key": "00" * 16, "file_read_key": "11" * 16}}


def make_tag(uid_byte: int) -> SdmTag:
    return SdmTag(uid=bytes([4, uid_byte, 0, 0, 0, 0, 1]), file_read_key=b"\x11" * 16)


def test_replay_sequence(tmp_path) -> None:
    with ReplayStore(database_target(tmp_path / "sun.db")) as store:
        v = SunVerifier(SunSettings(key_sets=KEYS), store=store)
        t = make_tag(1)
        first, second = t.next_url(), t.next_url()
        assert v.verify_url(second).valid
        r = v.verify_url(second)
        assert (r.valid, r.reason, r.read_ctr) == (False, "replayed", 2)
        assert v.verify_url(first).reason == "replayed"  # older counter
        assert v.verify_url(t.next_url()).valid
        other = make_tag(2)  # counters are per UID
        assert v.verify_url(other.next_url()).valid
        forged = second[:-1] + ("0" if second[-1] != "0" else "1")
        assert v.verify_url(forged).reason == "bad_mac"
        assert store.last(t.uid) == 3


def test_dedupe_on_uid_and_counter_not_hex(tmp_path) -> None:
    """Two different URLs (fresh random padding) with the same (UID, counter): one wins."""
    with ReplayStore(database_target(tmp_path / "sun.db")) as store:
        v = SunVerifier(SunSettings(key_sets=KEYS), store=store)
        t = make_tag(3)
        a = t.url_for(7)
        b = t.url_for(7)
        assert a != b
        assert v.verify_url(a).valid
        assert v.verify_url(b).reason == "replayed"


def test_restart_keeps_counters(tmp_path) -> None:
    path = tmp_path / "sun.db"
    t = make_tag(4)
    old = t.next_url()
    with ReplayStore(database_target(path)) as store:
        assert SunVerifier(SunSettings(key_sets=KEYS), store=store).verify_url(old).valid
    with ReplayStore(database_target(path)) as store:
        v = SunVerifier(SunSettings(key_sets=KEYS), store=store)
        assert v.verify_url(old).reason == "replayed"
        assert v.verify_url(t.next_url()).valid
    if engine() == "sqlite":
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_concurrent_accepts_only_one(tmp_path) -> None:
    path = tmp_path / "sun.db"
    stores = [ReplayStore(database_target(path)) for _ in range(4)]
    uid = bytes(7)
    wins: list[bool] = []
    barrier = threading.Barrier(4)

    def run(store: ReplayStore) -> None:
        barrier.wait()
        wins.extend(store.accept(uid, ctr) for ctr in range(1, 200))

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(wins) <= 199 and stores[0].last(uid) == 199
    for s in stores:
        s.close()


def test_store_needs_counter(tmp_path) -> None:
    with ReplayStore(database_target(tmp_path / "sun.db")) as store:
        v = SunVerifier(SunSettings(key_sets=KEYS), store=store)
        t = SdmTag(uid=bytes(7), file_read_key=b"\x11" * 16, mirror_ctr=False)
        assert v.verify_url(t.next_url()).reason == "no_counter"


def _legacy_replay_file(path, counters: dict[bytes, int]) -> None:
    """A replay file as the gateway wrote it before the counters joined its database."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS sun_counters (uid TEXT PRIMARY KEY,"
        " read_ctr INTEGER NOT NULL) WITHOUT ROWID"
    )
    conn.executemany(
        "INSERT INTO sun_counters VALUES (?, ?)", [(u.hex(), c) for u, c in counters.items()]
    )
    conn.commit()
    conn.close()


@pytest.mark.engines("sqlite")  # a replay file is an SQLite file
def test_a_replay_file_of_an_earlier_version_still_opens(tmp_path) -> None:
    """``dockgate tag verify --state FILE`` on an old replay file: its counters hold."""
    path = tmp_path / "sun-replay.sqlite3"
    t = make_tag(5)
    old = [t.next_url() for _ in range(3)]
    _legacy_replay_file(path, {t.uid: 2})
    with ReplayStore(path) as store:
        v = SunVerifier(SunSettings(key_sets=KEYS), store=store)
        assert [v.verify_url(u).reason for u in old[:2]] == ["replayed", "replayed"]
        assert v.verify_url(old[2]).valid and store.last(t.uid) == 3
    with ReplayStore(path) as store:
        assert store.last(t.uid) == 3


def test_the_gateway_takes_over_a_separate_replay_file(tmp_path) -> None:
    """The daemon's counters live in its database; an old separate file is read once at
    start-up: the higher counter wins, so nothing the file accepted is accepted again."""
    legacy = tmp_path / "sun-replay.sqlite3"
    a, b = bytes([4, 1, 2, 3, 4, 5, 6]), bytes([4, 9, 9, 9, 9, 9, 9])
    _legacy_replay_file(legacy, {a: 7, b: 3})
    store = open_test_store(tmp_path / "dockgate.sqlite3")
    assert store.replay.accept(b, 5)  # already further than the file for this one
    assert store.replay.import_file(legacy) == 2
    assert (store.replay.last(a), store.replay.last(b)) == (7, 5)
    assert not store.replay.accept(a, 7) and store.replay.accept(a, 8)
    assert store.replay.import_file(legacy) == 2 and store.replay.last(a) == 8  # idempotent
    assert store.replay.import_file(tmp_path / "missing.sqlite3") == 0
    assert store.replay.import_file(store.db.path) == 0  # its own file: nothing to take
    store.replay.close()  # joined, not owned: the store's database stays open
    assert store.replay.last(a) == 8
    store.close()
