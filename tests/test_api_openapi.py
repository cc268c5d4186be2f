"""The OpenAPI document tells a client what the API really does: who may call (security
schemes), every error it can get and that error's shape, and that /metrics is Prometheus text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from dockgate.api import API_PREFIX, create_app
from dockgate.api.status import status_router
from dockgate.gateway.outbox import Outbox
from tests.support.api import READ_TOKEN, SYNC_TOKEN
from tests.support.fleet import seed_fleet
from tests.support.stores import open_test_store

SYNC = {"Authorization": f"Bearer {SYNC_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
EITHER_TOKEN = [{"bearer": []}, {"private_token": []}]
PUBLIC = {"/health", "/health/leader", "/metrics", "/gbfs/{feed}.json", "/status/public/snapshot"}


async def empty_snapshot() -> dict[str, Any]:
    return {"vehicles": [], "alerts": [], "taps": []}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    store = open_test_store(tmp_path / "api.db")
    seed_fleet(store)
    app = create_app(
        store,
        Outbox(store.db),
        tokens={SYNC_TOKEN: ["sync"], READ_TOKEN: ["read"]},
        extra_routers=[status_router(empty_snapshot)],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        document = (await client.get("/openapi.json")).json()
        yield client, document


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()
    ]


def envelope_schema(document: dict[str, Any]) -> dict[str, Any]:
    return {"$ref": "#/components/schemas/ErrorBody", "components": document["components"]}


async def test_security_schemes_are_declared_and_applied(api) -> None:
    _, document = api
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["private_token"] == {
        **schemes["private_token"],
        "type": "apiKey",
        "in": "query",
        "name": "private_token",
    }
    for path, method, op in operations(document):
        if path in PUBLIC:
            assert "security" not in op, (method, path)
        else:
            assert op.get("security") == EITHER_TOKEN, (method, path)
    assert any(path.startswith(API_PREFIX) for path, _, _ in operations(document))
    assert "/status/snapshot" in document["paths"]


async def test_every_error_answer_is_declared_in_the_envelope(api) -> None:
    _, document = api
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ErrorBody"]["required"]) == {"code", "message"}
    for path, method, op in operations(document):
        responses = op["responses"]
        expected = {"503"}
        if "security" in op:
            expected |= {"401", "403"}
        if "requestBody" in op:
            expected |= {"400", "408", "413", "422"}
        if op.get("parameters"):
            expected.add("422")
        if path.startswith(API_PREFIX) and "{" in path:
            expected.add("404")
        if path.startswith(API_PREFIX) and method in ("post", "put"):
            expected |= {"404", "409"}
        assert expected <= set(responses), (method, path, sorted(responses))
        for code, answer in responses.items():
            if code.startswith("4"):
                content = answer["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/ErrorBody"}, (path, code)
        assert "text/plain" in responses["503"]["content"]
    play = document["paths"][f"{API_PREFIX}/play/{{play}}"]["get"]["responses"]
    assert "409" in play  # no verifier configured


ERRORS = [
    ("get", "/api/v1/vehicles", "/api/v1/vehicles", {}, 401),
    ("post", "/api/v1/events/ack", "/api/v1/events/ack", {"json": {"cursor": 1}, "r": 1}, 403),
    ("get", "/api/v1/vehicles/{id}", "/api/v1/vehicles/99", {"s": 1}, 404),
    ("get", "/api/v1/vehicles/{id}", "/api/v1/vehicles/1_0", {"s": 1}, 422),
    ("post", "/api/v1/products", "/api/v1/products", {"content": b"{", "s": 1}, 422),
    ("post", "/api/v1/products", "/api/v1/products", {"content": b"x" * 70_000, "s": 1}, 413),
    ("post", "/api/v1/products", "/api/v1/products", {"json": {"name": "a"}, "k": "\x01"}, 400),
    ("put", "/api/v1/tag-keys/{name}", "/api/v1/tag-keys/a", {"json": {"key": "zz"}, "s": 1}, 422),
    ("post", "/api/v1/config/bundles", "/api/v1/config/bundles", {"json": {}, "s": 1}, 422),
    ("get", "/api/v1/play/{play}", "/api/v1/play/1@" + "0" * 32 + ":" + "0" * 16, {"s": 1}, 409),
    ("get", "/status/snapshot", "/status/snapshot", {}, 401),
    ("get", "/gbfs/{feed}.json", "/gbfs/nope.json", {}, 422),
]


@pytest.mark.parametrize(("method", "template", "url", "how", "status"), ERRORS)
async def test_served_errors_are_declared_and_match_the_envelope(
    api, method: str, template: str, url: str, how: dict[str, Any], status: int
) -> None:
    client, document = api
    if status == 409:  # a dynamic record, and no verifier: the play cannot be checked
        store = client._transport.app.state.store  # type: ignore[attr-defined]
        store.records.create(store.products.create("card"), token_encryption="aes-128", id=1)
    headers = {**(SYNC if how.get("s") else {}), **(READ if how.get("r") else {})}
    if "k" in how:
        headers = {**SYNC, "Idempotency-Key": how["k"]}
    if "content" in how:
        headers["content-type"] = "application/json"
    body = {k: v for k, v in how.items() if k in ("json", "content")}
    response = await client.request(method.upper(), url, headers=headers, **body)
    assert response.status_code == status, response.text[:300]
    assert str(status) in document["paths"][template][method]["responses"]
    jsonschema.validate(response.json(), envelope_schema(document))
    assert response.json()["code"] == status


async def test_metrics_are_prometheus_text_and_declared_so(api) -> None:
    client, document = api
    answer = document["paths"]["/metrics"]["get"]["responses"]["200"]
    assert list(answer["content"]) == ["text/plain; version=0.0.4; charset=utf-8"]
    response = await client.get("/metrics")
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE dockgate_outbox_pending gauge" in response.text


async def test_posts_declare_the_idempotency_key(api) -> None:
    _, document = api
    for path, method, op in operations(document):
        names = [p["name"] for p in op.get("parameters", [])]
        if method == "post" and path.startswith(API_PREFIX):
            assert "Idempotency-Key" in names, path
        else:
            assert "Idempotency-Key" not in names, (method, path)
