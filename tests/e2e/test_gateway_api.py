"""The gateway's JSON API against the whole local mesh: every endpoint,
problem documents naming fields, Idempotency-Key replay and conflict, the
console's files, and a card number that shows up in no answer, log or span.

The API is the same on both profiles (only the transport behind it differs),
so these run on the embedded one; the SSE tests (test_gateway_events.py)
run on both."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from launcher.mesh import LocalMesh
from mesh.local.jaeger import get_json
from tests.e2e.gateway_support import CARD_NUMBER, new_user, order_body, stored_order
from tests.support import eventually

PROBLEM = "application/problem+json"


# The same on both profiles (only the transport behind it differs): the embedded mesh only.
pytestmark = pytest.mark.parametrize("local_mesh", ["embedded"], indirect=True)


@pytest.fixture
async def http(local_mesh: LocalMesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=local_mesh.gateway_url, timeout=30) as client:
        yield client


async def test_products_are_listed_page_by_page_and_read_one_by_one(http: httpx.AsyncClient) -> None:
    first = (await http.get("/api/products", params={"page_size": 3})).json()
    second = (await http.get("/api/products", params={"page_size": 3, "page_token": first["next_page_token"]})).json()
    assert len(first["products"]) == len(second["products"]) == 3
    assert {p["id"] for p in first["products"]}.isdisjoint(p["id"] for p in second["products"])
    typewriter = (await http.get("/api/products/sku-1001")).json()
    assert typewriter["price"] == {"currency_code": "USD", "units": 67, "nanos": 990_000_000}
    missing = await http.get("/api/products/sku-nope")
    assert (missing.status_code, missing.headers["content-type"]) == (404, PROBLEM)
    assert missing.json()["grpc_status"] == "NOT_FOUND"


async def test_an_order_placed_replayed_and_conflicting_then_read_listed_and_searched(http: httpx.AsyncClient) -> None:
    user, key = new_user(), uuid.uuid4().hex
    body = order_body(user, ("sku-1004", 2))
    placed = await http.post("/api/orders", json=body, headers={"Idempotency-Key": key})
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order_id"]
    assert placed.headers["Location"] == f"/api/orders/{order_id}"
    assert placed.headers["Idempotency-Key"] == key
    assert placed.json()["status"] in ("PAID", "PENDING")

    replay = await http.post("/api/orders", json=body, headers={"Idempotency-Key": key})
    assert (replay.status_code, replay.json()) == (201, placed.json())
    other = await http.post("/api/orders", json=order_body(user, ("sku-1004", 3)), headers={"Idempotency-Key": key})
    assert other.status_code == 409
    assert other.json()["grpc_status"] == "ALREADY_EXISTS"
    assert [v["field"] for v in other.json()["violations"]] == ["Idempotency-Key"]

    order = await stored_order(http, order_id)
    assert order["user_id"] == user and order["items"][0]["unit_price"]["units"] == 24
    assert order["history"][0]["status"] == "PENDING"
    assert order["created_at"].endswith("Z")
    listed = (await http.get("/api/orders", params={"user_id": user})).json()
    assert [o["order_id"] for o in listed["orders"]] == [order_id]

    async def shipped() -> bool:
        return bool((await http.get(f"/api/orders/{order_id}")).json()["status"] == "SHIPPED")

    await eventually(shipped, within=20, what="the order to ship")
    refused = await http.post(f"/api/orders/{order_id}/cancel", json={"reason": "too late"})
    assert (refused.status_code, refused.json()["grpc_status"]) == (409, "FAILED_PRECONDITION")

    async def searchable() -> bool:  # the read model is fed by the events: eventually
        found = (await http.get("/api/analytics/orders", params={"user_id": user})).json()["orders"]
        return [o["order_id"] for o in found] == [order_id]

    await eventually(searchable, within=20, what="analytics to have the order")


async def test_analytics_reports_answer_for_today(http: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    top = await http.get("/api/analytics/top-products", params={"limit": 5})
    assert top.status_code == 200 and len(top.json()["products"]) <= 5
    sales = await http.get(
        "/api/analytics/sales",
        params={"from": (now - timedelta(hours=2)).isoformat(), "to": (now + timedelta(hours=1)).isoformat()},
    )
    assert sales.status_code == 200
    assert all(bucket["start"].endswith("Z") for bucket in sales.json()["buckets"])
    review = await http.get("/api/analytics/orders", params={"status": "AWAITING_REVIEW", "page_size": 5})
    assert review.status_code == 200


async def test_bad_input_is_a_problem_document_naming_the_fields(http: httpx.AsyncClient) -> None:
    user = new_user()
    cases = {
        "items[0].quantity": order_body(user, ("sku-1004", 0)),  # the mesh's rule
        "credit_card.number": order_body(user, ("sku-1004", 1), card_number="4532015112830367"),  # Luhn
        "email": {k: v for k, v in order_body(user, ("sku-1004", 1)).items() if k != "email"},  # the gateway's
    }
    for field, body in cases.items():
        answer = await http.post("/api/orders", json=body)
        assert (answer.status_code, answer.headers["content-type"]) == (400, PROBLEM), answer.text
        assert field in [v["field"] for v in answer.json()["violations"]], answer.json()
    malformed = await http.post("/api/orders", content=b"{", headers={"Content-Type": "application/json"})
    assert (malformed.status_code, malformed.json()["violations"][0]["field"]) == (400, "body")
    unknown = await http.get("/api/nothing-here")
    assert (unknown.status_code, unknown.headers["content-type"]) == (404, PROBLEM)
    no_user = await http.get("/api/orders")
    assert no_user.json()["violations"] == [{"field": "user_id", "description": "is required"}]


async def test_short_stock_is_409_with_the_product_as_a_violation(http: httpx.AsyncClient) -> None:
    answer = await http.post("/api/orders", json=order_body(new_user(), ("sku-1003", 13)))  # 12 city bikes
    assert answer.status_code == 409, answer.text
    assert answer.json()["grpc_status"] == "FAILED_PRECONDITION"
    (violation,) = answer.json()["violations"]
    assert violation["field"] == "products/sku-1003" and violation["description"].startswith("requested 13")


async def test_the_card_number_is_in_no_answer_log_or_span(http: httpx.AsyncClient, local_mesh: LocalMesh) -> None:
    user = new_user()
    answers = [
        await http.post("/api/orders", json=order_body(user, ("sku-1004", 1))),
        await http.post("/api/orders", json=order_body(user, ("sku-1004", 0))),
        await http.post("/api/orders", json=order_body(user, ("sku-nope", 1))),
    ]
    assert [a.status_code for a in answers] == [201, 400, 400]  # an unknown product is a bad items[0]
    await stored_order(http, answers[0].json()["order_id"])
    for answer in answers:
        assert CARD_NUMBER not in answer.text and CARD_NUMBER not in str(answer.headers)
    logs = sorted((local_mesh.var_dir / "logs").glob("*.log"))
    assert {log.stem for log in logs} >= {"gateway", "checkout", "payment"}
    for log in logs:
        assert CARD_NUMBER not in log.read_text(errors="replace"), f"{log.name} holds the card number"
    jaeger = local_mesh.jaeger
    assert jaeger is not None

    def traced() -> bool:  # spans leave the gateway in batches
        found = get_json(f"{jaeger.query_url}/api/traces?service=ordermesh-gateway&limit=200")
        return any(s["operationName"] == "POST /api/orders" for t in found["data"] for s in t["spans"])

    await eventually(traced, within=20, what="the gateway's spans in Jaeger")
    for service in ("ordermesh-gateway", "ordermesh-checkout", "ordermesh-payment"):
        spans = json.dumps(get_json(f"{jaeger.query_url}/api/traces?service={service}&limit=500"))
        assert CARD_NUMBER not in spans, f"a span of {service} holds the card number"


async def test_operations_endpoints_and_the_console_files(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json()["status"] == "ok"
    ready = await http.get("/readyz")
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    assert set(ready.json()["checks"]) == {"redis", "catalog", "checkout", "order", "analytics"}
    document = (await http.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    home = await http.get("/")
    assert (home.status_code, home.headers["Location"]) == (307, "/products")
    for path in ("/products", "/orders", "/orders/o0-anything", "/dashboard", "/review"):
        page = await http.get(path)
        assert (page.status_code, page.headers["content-type"]) == (200, "text/html; charset=utf-8"), path
        assert page.text.lstrip().lower().startswith("<!doctype html")
    css = await http.get("/static/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert (await http.get("/static/nothing.js")).status_code == 404
