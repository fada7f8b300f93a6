"""The gateway's Server-Sent Events against the whole local mesh, on both
profiles (Redis Streams; RocketMQ, where the same streams are the outbox the
forwarders relay from): an order's statuses arriving live, and both streams
resumed after a disconnect with Last-Event-ID."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from launcher.mesh import LocalMesh
from tests.e2e.gateway_support import BOOTS, PENS, Message, events, new_user, order_body, stored_order
from tests.support import eventually


@pytest.fixture
async def http(local_mesh: LocalMesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=local_mesh.gateway_url, timeout=30) as client:
        yield client


def statuses(messages: list[Message]) -> list[tuple[str, str]]:
    return [(m.id, m.data["status"]) for m in messages if m.event == "status"]


async def test_an_approved_order_s_statuses_arrive_live_until_shipped(http: httpx.AsyncClient) -> None:
    placed = await http.post("/api/orders", json=order_body(new_user(), (PENS, 173)))  # 10,034 USD: review
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order_id"]
    assert placed.json()["status"] == "AWAITING_REVIEW"
    async with events(http, f"/orders/{order_id}/events") as stream:
        # Opened before the order is stored, most likely: the stream waits for it.
        first = await stream.next()
        assert first is not None and (first.event, first.id, first.data["status"]) == ("status", "1", "AWAITING_REVIEW")
        assert first.data["order_id"] == order_id
        review = await http.post(f"/api/orders/{order_id}/review", json={"approve": True, "reviewer": "e2e"})
        assert review.status_code == 200, review.text  # answered once charged: PENDING or PAID
        live = await stream.until(lambda m: m.data.get("status") == "SHIPPED")
    assert statuses(live) == [("2", "PENDING"), ("3", "PAID"), ("4", "SHIPPING"), ("5", "SHIPPED")]
    assert live[-1].data["tracking_id"].startswith("TRK-")


async def test_an_order_stream_resumes_after_a_disconnect_from_its_last_event_id(http: httpx.AsyncClient) -> None:
    placed = await http.post("/api/orders", json=order_body(new_user(), (BOOTS, 56)))  # 10,024 USD: review
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order_id"]
    async with events(http, f"/orders/{order_id}/events") as stream:
        first = await stream.next()
        assert first is not None and first.id == "1"
    # While disconnected: cancelled (an order waiting for review may be), and no longer reviewable.
    cancelled = await http.post(f"/api/orders/{order_id}/cancel", json={"reason": "changed my mind"})
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "CANCELLED"), cancelled.text
    late = await http.post(f"/api/orders/{order_id}/review", json={"approve": True, "reviewer": "e2e"})
    assert (late.status_code, late.json()["grpc_status"]) == (409, "FAILED_PRECONDITION")
    async with events(http, f"/orders/{order_id}/events", last_event_id=first.id) as stream:
        resumed = await stream.next()
    assert resumed is not None and (resumed.id, resumed.data["status"]) == ("2", "CANCELLED")
    assert resumed.data["reason"]


async def test_the_operator_stream_resumes_after_a_disconnect_from_its_cursor(http: httpx.AsyncClient) -> None:
    user = new_user()

    def placed_event(order_id: str) -> object:
        return lambda m: m.event == "order" and m.data["type"] == "placed" and m.data["order_id"] == order_id

    async with events(http, "/events") as stream:
        first = await http.post("/api/orders", json=order_body(user, ("sku-1004", 1)))
        first_id = first.json()["order_id"]
        seen = await stream.until(placed_event(first_id))
    cursor = seen[-1].id
    assert seen[-1].data["user_id"] == user and seen[-1].data["total"]["currency_code"] == "USD"
    second = await http.post("/api/orders", json=order_body(user, ("sku-1004", 2)))
    second_id = second.json()["order_id"]
    await stored_order(http, second_id)
    async with events(http, "/events", last_event_id=cursor) as stream:
        missed = await stream.until(placed_event(second_id))
    assert not any(m.data["type"] == "placed" and m.data["order_id"] == first_id for m in missed)
    assert all(m.event == "order" and m.id for m in missed)
    async with events(http, "/events", last_event_id="not-a-cursor") as stream:
        reset = await stream.next()
    assert reset is not None and reset.event == "reset"


async def test_the_gateway_counts_requests_and_open_streams(http: httpx.AsyncClient, local_mesh: LocalMesh) -> None:
    metrics_url = f"http://127.0.0.1:{local_mesh.gateway_metrics_port}/metrics"
    async with events(http, "/events"), httpx.AsyncClient() as scraper:

        async def counted() -> bool:
            text = (await scraper.get(metrics_url)).text
            found = re.search(r'ordermesh_gateway_sse_streams\{stream="operator"\} (\S+)', text)
            return found is not None and float(found[1]) >= 1

        await eventually(counted, within=10, what="the open stream to be counted")
        text = (await scraper.get(metrics_url)).text
    assert 'ordermesh_gateway_requests_total{method="POST",route="/api/orders",status="201"}' in text
    assert "ordermesh_gateway_request_duration_seconds_bucket" in text
