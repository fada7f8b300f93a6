"""The JSON API over fake stubs: each endpoint's request to the mesh and its
JSON answer, problem documents (field violations, precondition failures,
status mapping), Idempotency-Key handling, and no card number anywhere."""

from __future__ import annotations

import json
import logging

import grpc
import pytest

from mesh.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PreconditionViolation,
)
from ordermesh.common.v1 import common_pb2
from tests.unit.gateway_fakes import CARD_NUMBER, gateway, order_body

PROBLEM = "application/problem+json"


async def test_products_are_listed_and_read_with_money_as_integer_units_and_nanos() -> None:
    gw = gateway()
    async with gw.client() as client:
        page = await client.get("/api/products", params={"page_size": "5", "page_token": "t"})
        one = await client.get("/api/products/sku-1001")
    assert page.status_code == 200
    assert page.json()["next_page_token"] == "next"
    assert page.json()["products"][0]["price"] == {"currency_code": "USD", "units": 67, "nanos": 990_000_000}
    assert one.json()["id"] == "sku-1001"
    (_, listed), (_, got) = gw.mesh.catalog.calls
    assert (listed.page_size, listed.page_token, got.id) == (5, "t", "sku-1001")


async def test_an_order_is_placed_with_the_idempotency_key_as_request_id() -> None:
    gw = gateway()
    async with gw.client() as client:
        answer = await client.post("/api/orders", json=order_body(), headers={"Idempotency-Key": "key-1"})
    assert answer.status_code == 201
    assert answer.headers["Location"] == "/api/orders/o0-abc"
    assert answer.headers["Idempotency-Key"] == "key-1"
    assert answer.json() == {
        "order_id": "o0-abc",
        "status": "PAID",
        "total": {"currency_code": "USD", "units": 141, "nanos": 970_000_000},
        "shipping_cost": {"currency_code": "USD", "units": 5, "nanos": 990_000_000},
        "failure_reason": "",
    }
    ((_, request),) = gw.mesh.checkout.calls
    assert request.request_id == "key-1"
    assert request.credit_card.number == CARD_NUMBER
    assert [(i.product_id, i.quantity) for i in request.items] == [("sku-1001", 2)]


async def test_a_missing_key_is_generated_and_echoed_and_a_bad_one_is_refused() -> None:
    gw = gateway()
    async with gw.client() as client:
        generated = await client.post("/api/orders", json=order_body())
        refused = await client.post("/api/orders", json=order_body(), headers={"Idempotency-Key": "no spaces"})
    key = generated.headers["Idempotency-Key"]
    assert gw.mesh.checkout.calls[0][1].request_id == key and len(key) == 32
    assert refused.status_code == 400
    assert refused.json()["violations"][0]["field"] == "Idempotency-Key"
    assert len(gw.mesh.checkout.calls) == 1


async def test_a_key_reused_with_another_order_is_409_naming_the_key() -> None:
    gw = gateway()
    gw.mesh.checkout.answers["PlaceOrder"] = AlreadyExists("request_id", "was used with another request")
    async with gw.client() as client:
        answer = await client.post("/api/orders", json=order_body(), headers={"Idempotency-Key": "key-1"})
    assert answer.status_code == 409
    assert answer.headers["Idempotency-Key"] == "key-1"
    assert answer.json()["grpc_status"] == "ALREADY_EXISTS"
    assert answer.json()["violations"] == [{"field": "Idempotency-Key", "description": "was used with another request"}]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ("{not json", ["body"]),
        ("[]", ["body"]),
        (json.dumps(order_body(user_id=5)), ["user_id"]),
        (json.dumps(order_body(items=[{"product_id": "sku-1", "quantity": "2"}])), ["items[0].quantity"]),
        (json.dumps(order_body(items=[{"product_id": "sku-1", "quantity": 2**40}])), ["items[0].quantity"]),
        (json.dumps({k: v for k, v in order_body().items() if k != "address"}), ["address"]),
        (json.dumps(order_body(address={"country": "US"})), ["address.zip_code"]),
        (json.dumps(order_body(email="\ud800")), ["body"]),  # a lone surrogate: no string holds it
        (
            json.dumps(order_body(credit_card={"number": CARD_NUMBER, "cvv": 1.5})),
            ["credit_card.cvv", "credit_card.expiration_year", "credit_card.expiration_month"],
        ),
    ],
)
async def test_a_bad_body_is_a_400_naming_every_field_and_never_reaches_the_mesh(body: str, fields: list[str]) -> None:
    gw = gateway()
    async with gw.client() as client:
        answer = await client.post("/api/orders", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.headers["content-type"] == PROBLEM
    assert [v["field"] for v in answer.json()["violations"]] == fields
    assert CARD_NUMBER not in answer.text
    assert gw.mesh.checkout.calls == []


async def test_the_mesh_field_violations_and_precondition_failures_become_violations() -> None:
    gw = gateway()
    gw.mesh.checkout.answers["PlaceOrder"] = InvalidArgument(
        [FieldViolation("items[0].quantity", "must be at least 1"), FieldViolation("credit_card.number", "bad")]
    )
    async with gw.client() as client:
        invalid = await client.post("/api/orders", json=order_body())
        gw.mesh.checkout.answers["PlaceOrder"] = FailedPrecondition(
            "product sku-1001: requested 5, available 2",
            [PreconditionViolation("STOCK", "sku-1001", "requested 5, available 2")],
        )
        short = await client.post("/api/orders", json=order_body())
    assert invalid.status_code == 400
    assert invalid.json() == {
        "type": "/problems/invalid-argument",
        "title": "Invalid argument",
        "status": 400,
        "detail": "items[0].quantity: must be at least 1; credit_card.number: bad",
        "grpc_status": "INVALID_ARGUMENT",
        "violations": [
            {"field": "items[0].quantity", "description": "must be at least 1"},
            {"field": "credit_card.number", "description": "bad"},
        ],
    }
    assert short.status_code == 409
    assert short.json()["violations"] == [{"field": "sku-1001", "description": "requested 5, available 2"}]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.CANCELLED, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNIMPLEMENTED, 500),
    ],
)
async def test_grpc_codes_map_to_http_statuses(code: grpc.StatusCode, status: int) -> None:
    gw = gateway()
    gw.mesh.order.answers["GetOrder"] = code
    async with gw.client() as client:
        answer = await client.get("/api/orders/o0-abc")
    assert answer.status_code == status
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["status"] == status
    assert (answer.headers.get("Retry-After") == "1") == (status == 503)
    if status == 500:
        assert answer.json()["detail"].startswith("internal error (trace ")
        assert answer.json()["grpc_status"] == "INTERNAL"


async def test_orders_carry_rfc3339_times_status_names_and_a_trace_link() -> None:
    gw = gateway(jaeger_ui_url="http://127.0.0.1:16686/")
    async with gw.client() as client:
        answer = await client.get("/api/orders/o0-abc")
        listed = await client.get("/api/orders", params={"user_id": "ada"})
        no_user = await client.get("/api/orders")
    body = answer.json()
    assert body["status"] == "PENDING"
    assert body["created_at"] == "2030-01-02T03:04:05.678Z"
    assert body["history"] == [{"status": "PENDING", "at": "2030-01-02T03:04:05.678Z", "reason": "pending"}]
    assert body["trace_url"] == "http://127.0.0.1:16686/trace/0af7651916cd43dd8448eb211c80319c"
    assert listed.json()["orders"][0]["order_id"] == "o0-abc"
    assert no_user.status_code == 400
    assert no_user.json()["violations"] == [{"field": "user_id", "description": "is required"}]


async def test_a_gateway_without_a_jaeger_ui_gives_no_trace_link() -> None:
    async with gateway().client() as client:
        assert (await client.get("/api/orders/o0-abc")).json()["trace_url"] is None


async def test_cancel_and_review_send_their_bodies_and_answer_the_order() -> None:
    gw = gateway()
    gw.mesh.order.answers["ReviewOrder"] = FailedPrecondition("order o0-abc is PAID, not AWAITING_REVIEW")
    async with gw.client() as client:
        cancelled = await client.post("/api/orders/o0-abc/cancel", json={"reason": "changed my mind"})
        empty = await client.post("/api/orders/o0-abc/cancel")
        refused = await client.post("/api/orders/o0-abc/review", json={"approve": True, "reviewer": "bob"})
        bad = await client.post("/api/orders/o0-abc/review", json={"approve": "yes"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    assert empty.status_code == 200
    assert refused.status_code == 409
    assert bad.status_code == 400
    assert [v["field"] for v in bad.json()["violations"]] == ["approve", "reviewer"]
    calls = [(name, request.order_id) for name, request in gw.mesh.order.calls]
    assert calls == [("CancelOrder", "o0-abc"), ("CancelOrder", "o0-abc"), ("ReviewOrder", "o0-abc")]
    assert gw.mesh.order.calls[0][1].reason == "changed my mind"


async def test_analytics_queries_read_their_parameters() -> None:
    gw = gateway()
    async with gw.client() as client:
        top = await client.get("/api/analytics/top-products")
        sales = await client.get(
            "/api/analytics/sales",
            params={"from": "2030-01-01T00:00:00Z", "to": "2030-01-02T00:00:00+01:00", "bucket": "DAY"},
        )
        search = await client.get("/api/analytics/orders", params={"status": "AWAITING_REVIEW", "page_size": "3"})
    assert top.json()["products"][0]["revenue"]["units"] == 203
    assert sales.json()["buckets"][0]["by_status"] == {"PAID": 2}
    assert sales.json()["buckets"][0]["start"] == "2030-01-02T03:04:05.678Z"
    assert search.json()["orders"][0]["status"] == "PAID"
    (_, top_request), (_, sales_request), (_, search_request) = gw.mesh.analytics.calls
    assert (top_request.day, top_request.limit) == ("2030-01-02", 10)
    assert sales_request.bucket == 2
    assert sales_request.to.ToJsonString() == "2030-01-01T23:00:00Z"
    assert (search_request.status, search_request.page_size) == (common_pb2.AWAITING_REVIEW, 3)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/analytics/top-products?day=2030-02-30", "day"),
        ("/api/analytics/top-products?limit=0", "limit"),
        ("/api/analytics/sales?from=yesterday&to=2030-01-01T00:00:00Z", "from"),
        ("/api/analytics/sales?from=2030-01-01T00:00:00&to=2030-01-01T00:00:00Z", "from"),
        ("/api/analytics/sales?from=2030-01-01T00:00:00Z", "to"),
        ("/api/analytics/sales?from=0001-01-01T00:00:00%2B01:00&to=2030-01-01T00:00:00Z", "from"),
        ("/api/analytics/orders?status=LOST", "status"),
        ("/api/products?page_size=abc", "page_size"),
        ("/api/products?page_size=99999999999", "page_size"),
    ],
)
async def test_bad_query_parameters_are_400_naming_them(path: str, field: str) -> None:
    gw = gateway()
    async with gw.client() as client:
        answer = await client.get(path)
    assert answer.status_code == 400, answer.text
    assert [v["field"] for v in answer.json()["violations"]] == [field]
    assert gw.mesh.analytics.calls == [] and gw.mesh.catalog.calls == []


async def test_unknown_paths_and_methods_are_problems() -> None:
    async with gateway().client() as client:
        missing = await client.get("/api/nothing")
        slash = await client.get("/api/products/")
        method = await client.delete("/api/orders/o0-abc")
    assert (missing.status_code, missing.headers["content-type"]) == (404, PROBLEM)
    assert slash.status_code == 404
    assert (method.status_code, method.json()["status"]) == (405, 405)


async def test_an_unexpected_error_is_a_500_with_the_trace_id_only(caplog: pytest.LogCaptureFixture) -> None:
    gw = gateway()
    gw.mesh.checkout.answers["PlaceOrder"] = lambda request: 1 / 0
    with caplog.at_level(logging.DEBUG):
        async with gw.client() as client:
            answer = await client.post("/api/orders", json=order_body())
    assert answer.status_code == 500
    assert answer.json()["detail"].startswith("internal error")
    assert "ZeroDivisionError" not in answer.text
    assert "ZeroDivisionError" in caplog.text  # logged once, with its traceback


async def test_the_card_number_is_never_answered_or_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Whatever the outcome: placed, refused by the mesh naming the card, refused here, failed."""
    gw = gateway()
    outcomes = [
        gw.mesh.checkout.answers["PlaceOrder"],
        InvalidArgument.one("credit_card.number", "fails the Luhn check"),
        NotFound("product", "sku-nope"),
        grpc.StatusCode.UNAVAILABLE,
        lambda request: 1 / 0,
    ]
    answers = []
    with caplog.at_level(logging.DEBUG):
        async with gw.client() as client:
            for outcome in outcomes:
                gw.mesh.checkout.answers["PlaceOrder"] = outcome
                answers.append(await client.post("/api/orders", json=order_body()))
            answers.append(await client.post("/api/orders", json=order_body(user_id=[CARD_NUMBER])))
            answers.append(await client.post("/api/orders", content=f'{{"credit_card": {CARD_NUMBER}'))
    assert [a.status_code for a in answers] == [201, 400, 404, 503, 500, 400, 400]
    for answer in answers:
        assert CARD_NUMBER not in answer.text
        assert CARD_NUMBER not in str(answer.headers)
    assert CARD_NUMBER not in caplog.text
