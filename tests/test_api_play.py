"""The dynamic play check with every SUN form the verifier knows: AES and LRP PICC data, and
counter-only PICC data whose UID is the record's chip, on published scans of real tags.

The scans are held-out vectors (sources in tests/test_sun_heldout_vectors.py): johnnyb/
ntag424-java SdmTest.java (commit ccf47536bcc47f70968ba6923c6d98f479d408f0, factory keys) and
boltcard/boltcard docs/TEST_VECTORS.md (commit d56685d4bc4222b8ae49f8764b7e67aea598736f).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockgate.api import create_app
from dockgate.api.ports import SunPlayVerifier
from dockgate.gateway.outbox import Outbox
from dockgate.gateway.store import Store
from dockgate.gateway.sun import ReplayStore, SunSettings, SunVerifier
from tests.support.api import READ_TOKEN, SYNC_TOKEN
from tests.support.fleet import seed_fleet
from tests.support.stores import open_test_store

SYNC = {"Authorization": f"Bearer {SYNC_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
FACTORY = "00" * 16

# johnnyb/ntag424-java, real tags with factory keys (PICC data, CMAC over an empty window)
AES_SCAN = ("84DC15E87593037C7DDA281C2D55B8F2", "4BBC218E7B2B36AF")  # 049F50824F1390, 33
LRP_SCAN = ("B3373525DC0343DEDB5F8E89F5387402EDFB8C22186FC129", "A3773D237775F892")  # ..., 30
LRP_COUNTER_ONLY = ("D99C1B274606743ECE77E01D0D46CCE69F00C0C246363639", "15CA6F05740D1AE2")
LRP_UID = "04827F12647380"  # the LRP tag of that project (LRP_SCAN mirrors it)
# boltcard/boltcard: three reads of one card (counters 3, 5, 7)
BOLT_KEYS = {
    "meta_read_key": "0c3b25d92b38ae443229dd59ad34b85d",
    "file_read_key": "b45775776cb224c75bcde7ca3704e933",
}
BOLT_SCANS = [
    ("4E2E289D945A66BB13377A728884E867", "E19CCB1FED8892CE"),
    ("00F48C4F8E386DED06BCDC78FA92E2FE", "66B4826EA4C155B4"),
    ("0DBF3C59B59B0638D60B5842A997D4D1", "CC61660C020B4D96"),
]
BOLT_UID = "04996C6A926980"


@dataclass
class Gateway:
    client: httpx.AsyncClient
    store: Store
    replay: ReplayStore

    def record(self, uid: str | None = None) -> int:
        product = self.store.products.create("card")
        return self.store.records.create(product, token_encryption="aes-128", uid=uid)

    async def play(self, record: int, scan: tuple[str, str], token: dict[str, str]) -> Any:
        return await self.client.get(f"/api/v1/play/{record}@{scan[0]}:{scan[1]}", headers=token)


def _gateway(tmp_path: Path, keys: dict[str, str]) -> Gateway:
    store = open_test_store(tmp_path / "api.db")
    seed_fleet(store)
    replay = ReplayStore(tmp_path / "replay.db")
    verifier = SunVerifier(SunSettings(key_sets={"default": keys}), replay)
    app = create_app(
        store,
        Outbox(store.db),
        tokens={SYNC_TOKEN: ["sync"], READ_TOKEN: ["read"]},
        play_verifier=SunPlayVerifier(verifier),
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    return Gateway(client, store, replay)


@pytest.fixture
async def factory_gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    """No mode in the key set: AES or LRP by the PICC data's length."""
    gw = _gateway(tmp_path, {"meta_read_key": FACTORY, "file_read_key": FACTORY})
    async with gw.client:
        yield gw
    gw.replay.close()


@pytest.fixture
async def bolt_gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = _gateway(tmp_path, {"mode": "aes", **BOLT_KEYS})
    async with gw.client:
        yield gw
    gw.replay.close()


def _data(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text[:300]
    data: dict[str, Any] = response.json()["data"]
    return data


def _refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text[:300]
    message: str = response.json()["message"]
    return message


async def test_aes_and_lrp_plays_through_one_verifier(factory_gw: Gateway) -> None:
    gw = factory_gw
    aes, lrp = gw.record(), gw.record()
    used = _data(await gw.play(aes, AES_SCAN, SYNC))
    assert (used["read_ctr"], used["record"]["uid"]) == (33, "049F50824F1390")
    # the LRP tag's scan on the AES tag's record: the MAC holds, the chip does not
    assert "not this record's chip" in _refused(await gw.play(aes, LRP_SCAN, READ), 403)
    used = _data(await gw.play(lrp, LRP_SCAN, SYNC))
    assert (used["read_ctr"], used["scan_count"], used["dry_run"]) == (30, 1, False)
    assert used["record"]["uid"] == LRP_UID  # the first accepted scan binds the chip
    assert gw.replay.last(bytes.fromhex(LRP_UID)) == 30
    assert "replayed" in _refused(await gw.play(lrp, LRP_SCAN, SYNC), 403)


async def test_lrp_play_dry_check_then_pairing(factory_gw: Gateway) -> None:
    gw = factory_gw
    record = gw.record()
    for _ in range(2):
        dry = _data(await gw.play(record, LRP_SCAN, READ))
        assert (dry["dry_run"], dry["read_ctr"], dry["scan_count"]) == (True, 30, 0)
    assert gw.replay.last(bytes.fromhex(LRP_UID)) is None
    play = f"{record}@{LRP_SCAN[0]}:{LRP_SCAN[1]}"
    paired = await gw.client.post(
        "/api/v1/products/pair-dynamic", json={"user_id": 1, "play": play}, headers=SYNC
    )
    assert paired.status_code == 200, paired.text
    assert gw.store.records.get(record).scan_count == 1
    assert "replayed" in _refused(await gw.play(record, LRP_SCAN, READ), 403)


async def test_lrp_counter_only_play_takes_the_records_chip(factory_gw: Gateway) -> None:
    """PICC data tag 40h: the UID is not in the message, so the record must name its chip."""
    gw = factory_gw
    record = gw.record(uid=LRP_UID)
    dry = _data(await gw.play(record, LRP_COUNTER_ONLY, READ))
    assert (dry["dry_run"], dry["read_ctr"]) == (True, 0x1A)
    assert gw.replay.last(bytes.fromhex(LRP_UID)) is None
    used = _data(await gw.play(record, LRP_COUNTER_ONLY, SYNC))
    assert (used["dry_run"], used["read_ctr"], used["scan_count"]) == (False, 0x1A, 1)
    assert gw.replay.last(bytes.fromhex(LRP_UID)) == 0x1A
    assert "replayed" in _refused(await gw.play(record, LRP_COUNTER_ONLY, READ), 403)
    unbound = gw.record()
    assert "no_uid" in _refused(await gw.play(unbound, LRP_COUNTER_ONLY, SYNC), 403)
    assert "no_uid" in _refused(await gw.play(unbound, LRP_COUNTER_ONLY, READ), 403)
    forged = (LRP_COUNTER_ONLY[0], LRP_COUNTER_ONLY[1][:-1] + "3")
    assert "bad_mac" in _refused(await gw.play(gw.record(uid=LRP_UID), forged, READ), 403)


async def test_mirrored_uid_is_still_checked_against_the_record(factory_gw: Gateway) -> None:
    """A record's UID is used for counter-only PICC data only: a mirrored UID that differs is
    refused after the MAC, as before."""
    gw = factory_gw
    record = gw.record(uid="04000000000001")
    assert "not this record's chip" in _refused(await gw.play(record, LRP_SCAN, READ), 403)
    assert "not this record's chip" in _refused(await gw.play(record, AES_SCAN, SYNC), 403)
    assert gw.store.records.get(record).scan_count == 0


async def test_real_card_reads_in_order_dry_and_used(bolt_gw: Gateway) -> None:
    gw = bolt_gw
    record = gw.record(uid=BOLT_UID)
    first, second, third = BOLT_SCANS
    assert _data(await gw.play(record, second, READ))["read_ctr"] == 5  # dry: nothing stored
    assert _data(await gw.play(record, first, SYNC))["read_ctr"] == 3
    assert "replayed" in _refused(await gw.play(record, first, READ), 403)
    assert _data(await gw.play(record, third, SYNC))["read_ctr"] == 7
    assert "replayed" in _refused(await gw.play(record, second, SYNC), 403)  # an older read
    assert gw.store.records.get(record).scan_count == 2


async def test_play_lengths(factory_gw: Gateway) -> None:
    """Sized for an 18-digit record id and LRP PICC data (84 characters); longer is refused
    naming the field, and PICC data of another length is refused as not a play."""
    gw = factory_gw
    longest = f"{'9' * 18}@{LRP_SCAN[0]}:{LRP_SCAN[1]}"
    assert len(longest) == 84
    r = await gw.client.get(f"/api/v1/play/{longest}", headers=READ)
    assert r.status_code == 404  # the shape is a play; no such record
    r = await gw.client.get(f"/api/v1/play/{longest}0", headers=READ)
    assert r.status_code == 422 and [p["loc"][-1] for p in r.json()["problems"]] == ["play"]
    record = gw.record()
    for picc in (LRP_SCAN[0][:40], LRP_SCAN[0] + "00", "0" * 64):
        message = _refused(await gw.play(record, (picc, LRP_SCAN[1]), READ), 422)
        assert "32 or 48 hex" in message
    body = {"user_id": 1, "play": longest + "0"}
    r = await gw.client.post("/api/v1/products/pair-dynamic", json=body, headers=SYNC)
    assert r.status_code == 422 and [p["loc"][-1] for p in r.json()["problems"]] == ["play"]
