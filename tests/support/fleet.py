"""A small fleet seeded into a real store, shared by the store, API and GBFS tests."""

from __future__ import annotations

from dockgate.gateway.store import Store

__all__ = ["seed_fleet"]


def seed_fleet(store: Store) -> None:
    """One network, one cluster, two stations with three spots each, four vehicles, riders."""
    store.topology.upsert_network(1, "Strasbourg")
    store.topology.upsert_cluster(10, 1, "Gare", 48.5846, 7.7355)
    for station in (100, 101):
        store.topology.upsert_station(
            station,
            10,
            f"Station {station}",
            48.58 + station / 1e4,
            7.73,
            badge_reader=station == 100,
            max_unlock_distance=50,
        )
        for n in range(3):
            store.topology.upsert_spot(station * 10 + n, station, n + 1)
    for v in range(1, 5):
        store.vehicles.upsert(v, 1, f"SN{v:06d}", battery=20 * v, lat=48.58, lon=7.73)
    store.vehicles.dock(1, 1000)
    store.vehicles.dock(2, 1001)
    store.riders.upsert(1, email="ada@example.org", credit=1000, first_purchase_done=True)
    store.riders.upsert(2, email="bob@example.org")
