"""The web console (gateway/console/) in a real headless Chromium against a
local mesh and its gateway: a shopper's purchase followed live, a declined
card, a retry after a lost answer, an operator's review, a cancellation, the
dashboard under a k6 run, and a screenshot of every page
(var/reports/console/). Every wait is bounded (Playwright's expect and
wait_for_function time out); none polls by sleeping."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, expect

from launcher.mesh import PROFILES, LocalMesh, free_offset
from mesh.local.jaeger import JaegerServer
from mesh.local.procs import RedisServer
from tests.e2e.browser_support import (
    DECLINED_CARD_NUMBER,
    PAGES,
    ROOT,
    SCREENSHOTS,
    Console,
    accessibility_gaps,
    chromium,
    place_order,
    png_size,
    screenshot,
)

# Shipping answers this late, so an order stays SHIPPING long enough for a page
# opened after the purchase to see its status change.
SHIPPING_LATENCY_SECONDS = 3
# A Redis database no other mesh of the suite uses (the e2e meshes take 0 and 1).
REDIS_DATABASE = 7
PIANO = "sku-1012"  # a Grand Piano, 12,500 USD: one is over the review threshold


@pytest.fixture(scope="module")
def console_mesh(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, jaeger: JaegerServer
) -> Iterator[LocalMesh]:
    """A mesh of its own (embedded profile: the console does not depend on the
    transport), so its slow shipping and its stock are nobody else's."""
    mesh = LocalMesh(
        tmp_path_factory.mktemp("console-mesh"),
        offset=free_offset(),
        redis_url=redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DATABASE}",
        profile=PROFILES["embedded"],
        jaeger=jaeger,
        # With a Jaeger, the gateway links every order to its trace (`trace_url`).
        env={"SHIPPING_LATENCY_SECONDS": str(SHIPPING_LATENCY_SECONDS)},
    )
    try:
        mesh.start(timeout=120)
        yield mesh
    finally:
        mesh.stop()


@pytest.fixture(scope="module")
def base_url(console_mesh: LocalMesh) -> str:
    return console_mesh.gateway_url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def console(browser: Browser, base_url: str) -> Iterator[Console]:
    console = Console(browser, base_url)
    try:
        yield console
    finally:
        console.close()
    assert console.errors == [], "the pages raised script errors"


def test_a_shopper_buys_and_sees_the_order_ship_without_reloading(console: Console) -> None:
    page = console.open("/products")
    page.get_by_label("Shopping as").fill(f"shopper-{uuid.uuid4().hex[:8]}")
    cups = page.locator("#products tbody tr", has_text="Espresso Cups")
    cups.get_by_label("Quantity of Espresso Cups").fill("2")
    cups.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#cart tbody tr")).to_have_count(1)
    expect(page.locator("#cart-total")).to_have_text("$48.00")

    page.get_by_role("button", name="Place order").click()
    placed = page.locator("#placed")
    expect(placed).to_contain_text(re.compile("PENDING|PAID"))
    order_id = placed.locator("a.order-link").inner_text()
    expect(page.locator("#cart-empty")).to_be_visible()

    page.get_by_role("link", name="My orders").click()
    expect(page).to_have_url(re.compile(r"/orders$"))
    status = page.locator(f'#orders tr[data-order-id="{order_id}"] td.status')
    expect(status).to_have_text(re.compile(r"^(PENDING|PAID|SHIPPING)$"))
    # A reload or a navigation would drop this mark: the change below is live.
    page.evaluate("window.consoleTestMark = true")
    expect(status).to_have_text("SHIPPED", timeout=(SHIPPING_LATENCY_SECONDS + 12) * 1000)
    assert page.evaluate("window.consoleTestMark === true"), "the page was reloaded"
    expect(page).to_have_url(re.compile(r"/orders$"))


def test_a_declined_card_shows_cancelled_with_its_reason(console: Console, jaeger: JaegerServer) -> None:
    page = console.open("/products")
    page.get_by_label("Shopping as").fill(f"shopper-{uuid.uuid4().hex[:8]}")
    notebook = page.locator("#products tbody tr", has_text="Notebook")
    quantity = notebook.get_by_label("Quantity of Notebook")

    # A refused request first: the gateway's problem document, its field named.
    quantity.fill("0")
    notebook.get_by_role("button", name="Buy Notebook now").click()
    problem = page.locator("#checkout-problem")
    expect(problem).to_contain_text("(400)")
    expect(problem.locator("code.field")).to_have_text(["items[0].quantity"])
    expect(quantity).to_have_attribute("aria-invalid", "true")

    quantity.fill("1")
    page.get_by_label("Number", exact=True).fill(DECLINED_CARD_NUMBER)
    notebook.get_by_role("button", name="Buy Notebook now").click()
    placed = page.locator("#placed")
    expect(placed).to_contain_text("CANCELLED")
    expect(placed).to_contain_text("card declined")
    expect(problem).to_be_hidden()

    placed.locator("a.order-link").click()
    expect(page).to_have_url(re.compile(r"/orders/o\d+-[0-9a-f]+$"))
    expect(page.locator("#status")).to_have_text("CANCELLED")
    expect(page.locator("#failure")).to_have_text("Failure reason: card declined")
    expect(page.locator("#timeline li").last).to_contain_text("CANCELLED")
    expect(page.locator("#timeline li").last).to_contain_text("card declined")
    expect(page.locator("#total")).to_have_text(re.compile(r"^\$\d+\.\d\d$"))
    expect(page.get_by_role("button", name="Cancel order")).to_be_hidden()
    expect(page.get_by_role("link", name="View trace")).to_have_attribute(
        "href", re.compile(re.escape(jaeger.query_url) + r"/.*[0-9a-f]{32}")
    )


def test_a_retry_after_a_lost_answer_places_the_order_once(console: Console, base_url: str) -> None:
    page = console.open("/products")
    user = f"shopper-{uuid.uuid4().hex[:8]}"
    page.get_by_label("Shopping as").fill(user)
    keys: list[str] = []

    def lose_the_first_answer(route: Route) -> None:
        keys.append(route.request.headers["idempotency-key"])
        if len(keys) == 1:
            route.fetch()  # the gateway places the order; its answer never reaches the page
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/orders", lose_the_first_answer)
    buy = page.get_by_role("button", name="Buy Fountain Pen now")
    buy.click()
    problem = page.locator("#checkout-problem")
    expect(problem).to_contain_text("Network error")
    expect(problem).to_contain_text("trying again is safe")
    buy.click()
    expect(page.locator("#placed")).to_contain_text("PAID")
    assert len(keys) == 2 and keys[0] == keys[1], keys

    page.goto(f"/orders?user={user}")
    expect(page.locator("#orders tbody tr")).to_have_count(1)
    expect(page.locator("#summary")).to_have_text(f"1 order of {user}, newest first.")


def test_an_operator_approves_a_high_value_order_and_sees_it_ship(console: Console, base_url: str) -> None:
    page = console.open("/review")
    expect(page.locator("#live")).to_have_text("Live")
    placed = place_order(base_url, f"buyer-{uuid.uuid4().hex[:8]}", [(PIANO, 1)])
    assert placed["status"] == "AWAITING_REVIEW", placed

    row = page.locator(f'#queue tr[data-order-id="{placed["order_id"]}"]')
    expect(row.locator("td.status")).to_have_text("AWAITING REVIEW")
    expect(row).to_contain_text("$12,5")
    page.get_by_label("Reviewer").fill("olga")
    row.get_by_label(f"Note for order {placed['order_id']}").fill("known customer")
    row.get_by_role("button", name="Approve").click()
    expect(row).to_contain_text("Approved by olga")
    expect(row.locator("td.status")).to_have_text("SHIPPED", timeout=(SHIPPING_LATENCY_SECONDS + 12) * 1000)


def test_a_shopper_cancels_an_order_while_it_waits_for_review(console: Console, base_url: str) -> None:
    placed = place_order(base_url, f"buyer-{uuid.uuid4().hex[:8]}", [(PIANO, 1)])
    page = console.open(f"/orders/{placed['order_id']}")
    expect(page.locator("#status")).to_have_text("AWAITING REVIEW")
    page.get_by_label("Reason").fill("changed my mind")
    page.get_by_role("button", name="Cancel order").click()
    expect(page.locator("#status")).to_have_text("CANCELLED")
    expect(page.locator("#failure")).to_contain_text("changed my mind")
    expect(page.locator("#timeline li").last).to_contain_text("changed my mind")
    expect(page.get_by_role("button", name="Cancel order")).to_be_hidden()


def test_the_dashboard_counts_rise_while_k6_places_orders(
    console: Console, console_mesh: LocalMesh, tmp_path: Path
) -> None:
    page = console.open("/dashboard")
    expect(page.locator("#live")).to_have_text("Live")
    expect(page.locator("#refreshed time")).to_have_count(1)
    orders_before = int(page.locator("#orders-today").get_attribute("data-value") or 0)
    env = {
        **os.environ,
        "CHECKOUT": console_mesh.address("checkout"),
        "CATALOG": console_mesh.address("catalog"),
        "ORDER": console_mesh.address("order"),
        "DURATION": "8s",
    }
    answered = tmp_path / "answered.txt"
    k6 = subprocess.Popen(
        [sys.executable, "-m", "loadtest", "smoke", "--reports", str(tmp_path), "--order-ids", str(answered),
         "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        # Live from the stream while k6 runs, then from analytics.
        page.wait_for_function("Number(document.getElementById('seen').dataset.value) >= 10", timeout=20_000)
        page.wait_for_function("Number(document.getElementById('per-minute').dataset.value) >= 10", timeout=5_000)
        output = k6.communicate(timeout=60)[0]
    finally:
        if k6.poll() is None:
            k6.kill()
            k6.wait()
    assert k6.returncode == 0, output
    placed = len(answered.read_text().split())
    assert placed >= 10, output
    page.wait_for_function(
        f"Number(document.getElementById('orders-today').dataset.value) >= {orders_before + placed}", timeout=20_000
    )
    expect(page.locator("#stream li")).to_have_count(50)
    expect(page.locator('#top tbody tr[data-product-id="sku-1004"]')).to_have_count(1)
    expect(page.locator('#funnel tr[data-status="SHIPPED"] td.num')).not_to_have_text("0")


def test_every_page_is_accessible_and_saved_as_a_screenshot(console: Console, base_url: str) -> None:
    started = time.time()
    user = f"shopper-{uuid.uuid4().hex[:8]}"
    shipped = place_order(base_url, user, [("sku-1006", 1), ("sku-1009", 2)])
    place_order(base_url, user, [("sku-1008", 3)], card_number=DECLINED_CARD_NUMBER)
    waiting = place_order(base_url, f"buyer-{uuid.uuid4().hex[:8]}", [(PIANO, 1)])

    page = console.open("/products")
    expect(page.locator("#products tbody tr")).to_have_count(12)
    assert accessibility_gaps(page) == []
    screenshot(page, "products")

    page.goto(f"/orders?user={user}")
    expect(page.locator("#orders tbody tr")).to_have_count(2)
    assert accessibility_gaps(page) == []
    screenshot(page, "orders")

    page.goto(f"/orders/{shipped['order_id']}")
    expect(page.locator("#status")).to_have_text("SHIPPED", timeout=(SHIPPING_LATENCY_SECONDS + 12) * 1000)
    expect(page.locator("#tracking")).not_to_have_text("not shipped yet")
    expect(page.locator("#items tbody tr")).to_have_count(2)
    assert accessibility_gaps(page) == []
    screenshot(page, "order")

    page.goto("/review")
    expect(page.locator(f'#queue tr[data-order-id="{waiting["order_id"]}"]')).to_be_visible()
    assert accessibility_gaps(page) == []
    screenshot(page, "review")

    page.goto("/dashboard")
    expect(page.locator("#live")).to_have_text("Live")
    fresh = place_order(base_url, user, [("sku-1004", 1)])
    expect(page.locator(f'#stream li[data-order-id="{fresh["order_id"]}"]').first).to_be_visible()
    expect(page.locator("#top tbody tr").first).to_have_attribute("data-product-id", re.compile(r"sku-\d+"))
    assert accessibility_gaps(page) == []
    screenshot(page, "dashboard")

    for name in PAGES:
        path = SCREENSHOTS / f"{name}.png"
        assert path.stat().st_mtime >= started - 1, f"{path} was not written by this run"
        width, height = png_size(path)
        assert width == 1280 and height >= 600, (path, width, height)
        assert path.stat().st_size > 20_000, f"{path} is nearly empty ({path.stat().st_size} bytes)"
