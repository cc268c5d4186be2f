"""What a rider taps: products (a card, a ring) paired to a rider, their records (one NFC chip
or code each), and the named tag keys the SUN verifier uses. Keys go in, and come out only
through ``Records.key`` and ``TagKeys.get`` (for the verifier), never in a row.

Keys are stored sealed under the store's KEK (``dockgate.gateway.sealing``), each bound to its
row: the database alone holds no key. :class:`SealedKeys` handles all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dockgate.gateway.sealing import Kek, Keyring, Place, is_sealed
from dockgate.gateway.store._db import BaseDatabase, Connection, NotFound, StoreError
from dockgate.gateway.store._keyset import Filters, Keyset, Listing, Page
from dockgate.gateway.store._rows import Product, Record, TagKeyInfo, columns
from dockgate.gateway.store._sql import (
    every,
    exists,
    fetch_one,
    last_id,
    must,
    next_id,
    one,
    require,
)

TECHNOLOGIES = ("nfc", "qrcode", "data_matrix", "aztec", "pdf417")
TOKEN_ENCRYPTIONS = ("static", "aes-128")
_PRODUCT = f"SELECT {columns(Product)} FROM products"
_RECORD = f"SELECT {columns(Record)} FROM records"
_NEXT_PRODUCT, _NEXT_RECORD = next_id("products"), next_id("records")
_PRODUCTS = Listing(Product, columns(Product, "p."), "products p", "p.id")
_RECORDS = Listing(
    Record, columns(Record, "c."), "records c JOIN products p ON p.id = c.product_id", "c.id"
)


class Products:
    """Products and their pairing to a rider (which pairs all of their records)."""

    def __init__(self, db: BaseDatabase, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    def create(self, name: str, kind: str = "card", *, id: int | None = None) -> int:
        with self.db.transaction() as c:
            cur = c.execute(
                f"INSERT INTO products(id, name, kind, created_at) VALUES ({_NEXT_PRODUCT},?,?,?)"
                " RETURNING id",
                (id, name, kind, self.clock()),
            )
            return last_id(cur)

    def exists(self, id: int) -> bool:
        return exists(self.db, "products", id)

    def get(self, id: int) -> Product:
        return must(one(self.db, Product, f"{_PRODUCT} WHERE id=?", (id,)), f"product {id}")

    def all(self, *, rider_id: int | None = None) -> list[Product]:
        """Every product (of this rider), by id."""
        if rider_id is None:
            return every(self.db, Product, f"{_PRODUCT} ORDER BY id")
        return every(self.db, Product, f"{_PRODUCT} WHERE rider_id=? ORDER BY id", (rider_id,))

    def page(self, keyset: Keyset) -> Page[Product]:
        """A page of products, by id."""
        return _PRODUCTS.page(self.db, Filters(), keyset)

    def pair(self, product_id: int, rider_id: int | None) -> None:
        """Pair a product (and so all its records) to a rider, or unpair it with ``None``."""
        with self.db.transaction() as c:
            require(self.db, "products", product_id, "product")
            if rider_id is not None:
                require(self.db, "riders", rider_id, "rider")
            c.execute(
                "UPDATE products SET rider_id=?, paired_at=? WHERE id=?",
                (rider_id, self.clock() if rider_id is not None else None, product_id),
            )


@dataclass(frozen=True, slots=True)
class _KeyColumn:
    """A column that holds sealed keys, and how its rows are named in their place."""

    table: str
    row: str  # the column that names the row (its id, its name)
    column: str

    def place(self, row: object) -> Place:
        return (self.table, str(row), self.column)


_RECORD_KEY = _KeyColumn("records", "id", "key_secret")
_TAG_KEY = _KeyColumn("tag_keys", "name", "key")
_KEY_COLUMNS = (_RECORD_KEY, _TAG_KEY)


def _as_bytes(value: object) -> bytes:
    """A plain-text key as stored before sealing: bytes (a tag key's) or text (a record's)."""
    return value if isinstance(value, bytes) else str(value).encode()


class Records:
    """A product's records: what a reader reads (a UID, a code) and the key that checks it."""

    def __init__(self, db: BaseDatabase, clock: Callable[[], float], keyring: Keyring) -> None:
        self.db = db
        self.clock = clock
        self.keyring = keyring

    def create(
        self,
        product_id: int,
        *,
        technology: str = "nfc",
        token_encryption: str = "static",
        key: str | None = None,
        uid: str | None = None,
        id: int | None = None,
    ) -> int:
        """Add a record (one NFC chip or code) to a product; ``key`` is stored sealed to the
        record's row, never shown (the row is written first: its id is part of the seal)."""
        if technology not in TECHNOLOGIES:
            raise StoreError(f"technology must be one of {', '.join(TECHNOLOGIES)}")
        if token_encryption not in TOKEN_ENCRYPTIONS:
            raise StoreError(f"token_encryption must be one of {', '.join(TOKEN_ENCRYPTIONS)}")
        with self.db.transaction() as c:
            require(self.db, "products", product_id, "product")
            cur = c.execute(
                "INSERT INTO records(id, product_id, technology, token_encryption, key_secret,"
                f" uid, created_at) VALUES ({_NEXT_RECORD},?,?,?,NULL,?,?) RETURNING id",
                (
                    id,
                    product_id,
                    technology,
                    token_encryption,
                    uid.upper() if uid else None,
                    self.clock(),
                ),
            )
            new_id = last_id(cur)
            if key is not None:
                sealed = self.keyring.seal(key.encode(), _RECORD_KEY.place(new_id))
                c.execute("UPDATE records SET key_secret=? WHERE id=?", (sealed, new_id))
            return new_id

    def exists(self, id: int) -> bool:
        return exists(self.db, "records", id)

    def get(self, id: int) -> Record:
        """A record without its key (use ``key`` where the key is really needed)."""
        return must(one(self.db, Record, f"{_RECORD} WHERE id=?", (id,)), f"record {id}")

    def all(self, product_id: int | None = None) -> list[Record]:
        """Every record (of this product), by id."""
        if product_id is None:
            return every(self.db, Record, f"{_RECORD} ORDER BY id")
        return every(self.db, Record, f"{_RECORD} WHERE product_id=? ORDER BY id", (product_id,))

    def page(
        self, keyset: Keyset, *, product_id: int | None = None, rider_id: int | None = None
    ) -> Page[Record]:
        """A page of the records (of this product, of the products paired to this rider), by
        id; never their keys."""
        filters = Filters()
        filters.compare("c.product_id", "=", product_id)
        filters.compare("p.rider_id", "=", rider_id)
        return _RECORDS.page(self.db, filters, keyset)

    def key(self, id: int) -> str | None:
        """The record's key, opened (``KekError`` if it does not open under the KEK in use)."""
        row = fetch_one(self.db, "SELECT key_secret FROM records WHERE id=?", (id,))
        if row is None:
            raise NotFound(f"record {id} not found")
        sealed: str | None = row["key_secret"]
        if sealed is None:
            return None
        return self.keyring.open(sealed, _RECORD_KEY.place(id)).decode()

    def by_uid(self, uid: str) -> Record | None:
        """The enabled record with this UID (any case), or None."""
        sql = f"{_RECORD} WHERE uid=? AND is_enabled=1"
        return one(self.db, Record, sql, (uid.upper(),))

    def count_scan(self, record_id: int, *, uid: str | None = None) -> int:
        """Count one scan of a record (and learn its UID on first dynamic scan)."""
        with self.db.transaction() as c:
            cur = c.execute(
                "UPDATE records SET scan_count=scan_count+1, last_scan_at=?,"
                " uid=COALESCE(uid, ?) WHERE id=?",
                (self.clock(), uid.upper() if uid else None, record_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"record {record_id} not found")
            return self.get(record_id).scan_count


class TagKeys:
    """Named AES keys (``set`` rotates: a new version); only the verifier reads the bytes."""

    def __init__(self, db: BaseDatabase, clock: Callable[[], float], keyring: Keyring) -> None:
        self.db = db
        self.clock = clock
        self.keyring = keyring

    def set(self, name: str, key: bytes) -> int:
        """Store (or rotate) a tag key, sealed to its name; returns its new version."""
        sealed = self.keyring.seal(key, _TAG_KEY.place(name))
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO tag_keys(name, key, version, updated_at) VALUES (?,?,1,?)"
                " ON CONFLICT(name) DO UPDATE SET key=excluded.key, version=tag_keys.version+1,"
                " updated_at=excluded.updated_at",
                (name, sealed, self.clock()),
            )
            row = must(
                fetch_one(self.db, "SELECT version FROM tag_keys WHERE name=?", (name,)),
                f"tag key {name!r}",
            )
            return int(row["version"])

    def get(self, name: str) -> bytes | None:
        """The tag key, opened (``KekError`` if it does not open under the KEK in use)."""
        row = fetch_one(self.db, "SELECT key FROM tag_keys WHERE name=?", (name,))
        return self.keyring.open(row["key"], _TAG_KEY.place(name)) if row else None

    def names(self) -> list[TagKeyInfo]:
        sql = f"SELECT {columns(TagKeyInfo)} FROM tag_keys ORDER BY name"
        return every(self.db, TagKeyInfo, sql)


class SealedKeys:
    """Every stored key at once (records' and tag keys'): seal the plain-text keys of a
    database from before sealing, check that all open under the KEK in use, re-seal them all
    under a new KEK. The store's aggregates seal and open one key at a time."""

    def __init__(self, db: BaseDatabase, keyring: Keyring) -> None:
        self.db = db
        self.keyring = keyring

    def seal_plaintext(self) -> int:
        """Seal every key stored in plain text (in practice once: on the first open of a
        database from before sealing); returns how many. The old bytes are overwritten, not
        freed. A database with none is only read (no write lock taken)."""
        with self.db.lock:
            if not self._plaintext(self.db.conn):
                return 0
        with self.db.transaction() as c:
            plain = self._plaintext(c)
            with _scrubbing(self.db):
                for col, row, value in plain:
                    sealed = self.keyring.seal(_as_bytes(value), col.place(row))
                    c.execute(
                        f"UPDATE {col.table} SET {col.column}=? WHERE {col.row}=?", (sealed, row)
                    )
        _checkpoint(self.db)
        return len(plain)

    def check(self) -> int:
        """Open every stored key (``KekError`` on the first that does not); how many opened."""
        with self.db.lock:
            stored = list(self._stored(self.db.conn))
        for col, row, value in stored:
            self.keyring.open(value, col.place(row))
        return len(stored)

    def reseal(self, new: Kek) -> int:
        """Re-seal every stored key under ``new`` in one transaction, then use it: the old KEK
        is no longer needed (the values it sealed are overwritten). Returns how many."""
        with self.db.transaction() as c, _scrubbing(self.db):
            stored = list(self._stored(c))
            for col, row, value in stored:
                place = col.place(row)
                resealed = new.seal(self.keyring.open(value, place), place)
                c.execute(
                    f"UPDATE {col.table} SET {col.column}=? WHERE {col.row}=?", (resealed, row)
                )
        self.keyring.use(new)
        _checkpoint(self.db)
        return len(stored)

    @classmethod
    def _plaintext(cls, conn: Connection) -> list[tuple[_KeyColumn, object, object]]:
        return [(col, row, value) for col, row, value in cls._stored(conn) if not is_sealed(value)]

    @staticmethod
    def _stored(conn: Connection) -> Iterator[tuple[_KeyColumn, object, object]]:
        for col in _KEY_COLUMNS:
            sql = (
                f"SELECT {col.row}, {col.column} FROM {col.table}"
                f" WHERE {col.column} IS NOT NULL ORDER BY {col.row}"
            )
            for row, value in conn.execute(sql).fetchall():
                yield col, row, value


@contextmanager
def _scrubbing(db: BaseDatabase) -> Iterator[None]:
    """Writes that overwrite the bytes they free (``secure_delete``): a replaced key leaves
    no copy in a free page. Only for these writes: it costs I/O on the hot path.

    SQLite only: a PostgreSQL server keeps a replaced row's old version until it vacuums
    the table (the old value was sealed too, or was the plain text an SQLite file had).
    """
    if db.dialect.name != "sqlite":
        yield
        return
    before = int(db.conn.execute("PRAGMA secure_delete").fetchone()[0])
    db.conn.execute("PRAGMA secure_delete=ON")
    try:
        yield
    finally:
        db.conn.execute(f"PRAGMA secure_delete={before}")


def _checkpoint(db: BaseDatabase) -> None:
    """Copy the WAL into the database and empty it: the old pages, which held the replaced
    keys, are overwritten in the file and gone from the WAL (SQLite only)."""
    if db.dialect.name != "sqlite":
        return
    with db.lock:
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
