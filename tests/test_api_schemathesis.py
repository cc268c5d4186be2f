"""Schemathesis against the OpenAPI document: whatever it sends, no 5xx, and valid envelopes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from dockgate.api import create_app
from dockgate.gateway.outbox import Outbox, Priority
from dockgate.gateway.store import Store
from tests.test_api import READ_TOKEN, SYNC_TOKEN, AckingSender
from tests.test_store import seed_fleet

_store = Store.open(Path(tempfile.mkdtemp(prefix="dockgate-st-")) / "api.db")
seed_fleet(_store)
_outbox = Outbox(_store.db)
for _i in range(30):
    _outbox.append("e", {"i": _i}, idempotency_key=f"k{_i}", priority=Priority(_i % 4))
_store.raise_alert(1, "vehicle-fallen", "high", vehicle_id=1)
_product = _store.create_product("card")
_store.create_record(_product, token_encryption="aes-128")
app = create_app(
    _store,
    _outbox,
    tokens={SYNC_TOKEN: ["sync"], READ_TOKEN: ["read"]},
    command_sender=AckingSender(),
    command_timeout=0.2,
    max_long_poll=0.05,
    max_stream=0.1,
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case) -> None:
    for headers in ({"Authorization": f"Bearer {SYNC_TOKEN}"}, {}):
        response = case.call(headers=headers)
        assert response.status_code < 500, response.text
        body = response.json() if "json" in response.headers.get("content-type", "") else None
        if isinstance(body, dict) and "code" in body:
            assert (body["code"] == 0) == (response.status_code < 400)
            if response.status_code >= 400:
                assert body["message"]
        assert SYNC_TOKEN not in response.text
