"""What a rider taps: products (a card, a ring) paired to a rider, their records (one NFC chip
or code each), and the named tag keys the SUN verifier uses. Keys go in, and come out only
through ``Records.key`` and ``TagKeys.get`` (for the verifier), never in a row."""

from __future__ import annotations

from collections.abc import Callable

from dockgate.gateway.store._db import Database, NotFound, StoreError
from dockgate.gateway.store._rows import Product, Record, TagKeyInfo, columns
from dockgate.gateway.store._sql import every, exists, fetch_one, last_id, must, one, require

TECHNOLOGIES = ("nfc", "qrcode", "data_matrix", "aztec", "pdf417")
TOKEN_ENCRYPTIONS = ("static", "aes-128")
_PRODUCT = f"SELECT {columns(Product)} FROM products"
_RECORD = f"SELECT {columns(Record)} FROM records"


class Products:
    """Products and their pairing to a rider (which pairs all of their records)."""

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    def create(self, name: str, kind: str = "card", *, id: int | None = None) -> int:
        with self.db.transaction() as c:
            cur = c.execute(
                "INSERT INTO products(id, name, kind, created_at) VALUES (?,?,?,?)",
                (id, name, kind, self.clock()),
            )
            return last_id(cur) if id is None else id

    def exists(self, id: int) -> bool:
        return exists(self.db, "products", id)

    def get(self, id: int) -> Product:
        return must(one(self.db, Product, f"{_PRODUCT} WHERE id=?", (id,)), f"product {id}")

    def all(self, *, rider_id: int | None = None) -> list[Product]:
        """Every product (of this rider), by id."""
        if rider_id is None:
            return every(self.db, Product, f"{_PRODUCT} ORDER BY id")
        return every(self.db, Product, f"{_PRODUCT} WHERE rider_id=? ORDER BY id", (rider_id,))

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


class Records:
    """A product's records: what a reader reads (a UID, a code) and the key that checks it."""

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

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
        """Add a record (one NFC chip or code) to a product; ``key`` is stored, never shown."""
        if technology not in TECHNOLOGIES:
            raise StoreError(f"technology must be one of {', '.join(TECHNOLOGIES)}")
        if token_encryption not in TOKEN_ENCRYPTIONS:
            raise StoreError(f"token_encryption must be one of {', '.join(TOKEN_ENCRYPTIONS)}")
        with self.db.transaction() as c:
            require(self.db, "products", product_id, "product")
            cur = c.execute(
                "INSERT INTO records(id, product_id, technology, token_encryption, key_secret,"
                " uid, created_at) VALUES (?,?,?,?,?,?,?)",
                (
                    id,
                    product_id,
                    technology,
                    token_encryption,
                    key,
                    uid.upper() if uid else None,
                    self.clock(),
                ),
            )
            return last_id(cur) if id is None else id

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

    def key(self, id: int) -> str | None:
        row = fetch_one(self.db, "SELECT key_secret FROM records WHERE id=?", (id,))
        if row is None:
            raise NotFound(f"record {id} not found")
        key: str | None = row["key_secret"]
        return key

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

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    def set(self, name: str, key: bytes) -> int:
        """Store (or rotate) a tag key; returns its new version."""
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO tag_keys(name, key, version, updated_at) VALUES (?,?,1,?)"
                " ON CONFLICT(name) DO UPDATE SET key=excluded.key, version=version+1,"
                " updated_at=excluded.updated_at",
                (name, key, self.clock()),
            )
            row = must(
                fetch_one(self.db, "SELECT version FROM tag_keys WHERE name=?", (name,)),
                f"tag key {name!r}",
            )
            return int(row["version"])

    def get(self, name: str) -> bytes | None:
        row = fetch_one(self.db, "SELECT key FROM tag_keys WHERE name=?", (name,))
        return bytes(row["key"]) if row else None

    def names(self) -> list[TagKeyInfo]:
        sql = f"SELECT {columns(TagKeyInfo)} FROM tag_keys ORDER BY name"
        return every(self.db, TagKeyInfo, sql)
