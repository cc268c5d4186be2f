"""The gateway's state: one database, one schema history, one small class per aggregate.

Why a thin ``Store`` holding the aggregates as attributes (``store.trips.start(...)``,
``store.commands.journal(...)``) rather than free-standing aggregates: the gateway opens its
state once and hands it to the flow, the API and the daemon as one object; writes that belong
together span aggregates (a trip, its journal entry and its outbox event) and so need one
``transaction()`` on one connection; and a test or the API may swap the one ``clock``
(``store.clock = ...``) for every aggregate at once. The aggregates themselves stay small
and know nothing of each other beyond what a write must keep consistent (a trip moves its
vehicle). The ``Store`` adds nothing else: no method of an aggregate is repeated on it.

Every write commits on its own unless it runs inside ``store.transaction()``, where it joins
the caller's transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from dockgate.gateway.sealing import Kek, KekError, Keyring, load_kek
from dockgate.gateway.store._alerts import Alerts, Energy, Outages
from dockgate.gateway.store._bundles import Bundles
from dockgate.gateway.store._commands import CommandJournal
from dockgate.gateway.store._db import BaseDatabase, Connection
from dockgate.gateway.store._engines import open_database
from dockgate.gateway.store._idempotency import IdempotencyKeys
from dockgate.gateway.store._inbox import Inbox
from dockgate.gateway.store._products import Products, Records, SealedKeys, TagKeys
from dockgate.gateway.store._rentals import PendingRentals
from dockgate.gateway.store._replay import ReplayStore
from dockgate.gateway.store._riders import Riders
from dockgate.gateway.store._schema import migrate
from dockgate.gateway.store._topology import Topology
from dockgate.gateway.store._trips import Trips
from dockgate.gateway.store._vehicles import Vehicles


class Store:
    """The aggregates of one ``Database`` (migrated on construction).

    ``topology`` (networks, clusters, stations, spots), ``vehicles``, ``riders``,
    ``products``, ``records``, ``tag_keys``, ``trips``, ``commands`` (the command journal),
    ``alerts``, ``outages``, ``energy``, ``bundles``, ``idempotency`` (the API's keys),
    ``rentals`` (the flow's pending rentals), ``replay`` (SUN read counters) and ``inbox``
    (identities of device messages applied, station status clocks). The outbox
    (``dockgate.gateway.outbox.Outbox``) is built on the same ``db``.

    Keys are sealed under ``keyring`` (by default the KEK ``dockgate.gateway.sealing.load_kek``
    finds for the database's ``data_dir``: an SQLite file's directory; never the database
    itself); ``sealed_keys`` handles them all at once, and ``sealed_at_open`` counts the
    plain-text keys of an older database this open sealed.
    """

    def __init__(
        self,
        db: BaseDatabase,
        *,
        clock: Callable[[], float] = time.time,
        idempotency_ttl: float = 24 * 3600.0,
        idempotency_max: int = 100_000,
        keyring: Keyring | None = None,
    ) -> None:
        migrate(db)
        keyring = keyring or default_keyring(db)
        self.db = db
        self.clock = clock
        now = self._now
        self.topology = Topology(db, now)
        self.vehicles = Vehicles(db, now)
        self.riders = Riders(db, now)
        self.products = Products(db, now)
        self.records = Records(db, now, keyring)
        self.tag_keys = TagKeys(db, now, keyring)
        self.sealed_keys = SealedKeys(db, keyring)
        self.sealed_at_open = self.sealed_keys.seal_plaintext()
        self.trips = Trips(db, now, self.vehicles)
        self.commands = CommandJournal(db, now)
        self.alerts = Alerts(db, now)
        self.outages = Outages(db, now)
        self.energy = Energy(db)
        self.bundles = Bundles(db, now)
        self.idempotency = IdempotencyKeys(db, now, ttl=idempotency_ttl, max_keys=idempotency_max)
        self.rentals = PendingRentals(db)
        self.replay = ReplayStore(db)
        self.inbox = Inbox(db, now)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        idempotency_ttl: float = 24 * 3600.0,
        idempotency_max: int = 100_000,
        keyring: Keyring | None = None,
    ) -> Store:
        """Open (and migrate) the store in the SQLite file at ``path`` (or the PostgreSQL
        database a ``postgresql://`` URL names: see ``open_database``)."""
        return cls(
            open_database(path),
            clock=clock,
            idempotency_ttl=idempotency_ttl,
            idempotency_max=idempotency_max,
            keyring=keyring,
        )

    def _now(self) -> float:
        return self.clock()

    def transaction(self) -> AbstractContextManager[Connection]:
        """Group writes (of any aggregate, and the outbox's) into one atomic commit."""
        return self.db.transaction()

    def close(self) -> None:
        self.db.close()


def default_keyring(db: BaseDatabase) -> Keyring:
    """The KEK :func:`load_kek` finds for ``db.data_dir`` (an SQLite file's directory, or
    the data directory a PostgreSQL database was opened with), loaded when first needed.

    An SQLite database in memory gets a random KEK that lives as long as the keyring; a
    PostgreSQL database opened without a data directory has none (a key write or read then
    fails): the KEK is never kept in the database it protects.
    """
    if db.dialect.name == "sqlite":
        return Keyring.beside(db.path)
    data_dir = db.data_dir
    if data_dir is None:
        return Keyring(_no_kek)
    return Keyring(lambda: load_kek(data_dir))


def _no_kek() -> Kek:
    raise KekError(
        "no KEK: a PostgreSQL store needs the daemon's [secrets] or a data directory for its"
        " key-encryption key (it is never kept in the database)"
    )
