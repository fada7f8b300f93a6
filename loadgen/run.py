"""PlaceOrder at a steady rate for a while, then one JSON summary on stdout.

Each order is one logical call: the channel retries UNAVAILABLE transparently
(PlaceOrder is IDEMPOTENT in its proto), and beyond that the client does what
the API asks of every client: call again with the same ``request_id``, a few
times, when the answer was UNAVAILABLE or DEADLINE_EXCEEDED. The summary says
how many needed that, and the final code of every call; ``order_ids`` is every
id PlaceOrder answered, for the global auditor's "every acknowledged order is
stored".

The channel health-checks checkout's readiness like the mesh's own clients: a
checkout shutting down turns NOT_SERVING first, and calls then fail here at
once with UNAVAILABLE (retried) instead of reaching a server that answers
CANCELLED once it has stopped accepting (see mesh.server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import grpc
from opentelemetry import trace

from mesh.clients import make_channel, retry_safe_methods
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.common.v1 import common_pb2

# Codes a client may retry with the same request_id (the call may or may not
# have happened: the key makes the second one the same order).
AGAIN = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
CARD = common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2039, expiration_month=1)
HOME = common_pb2.Address(street_address="1 Main St", city="Springfield", state="IL", country="US", zip_code="62701")


@dataclass
class Tally:
    codes: Counter[str] = field(default_factory=Counter)
    order_ids: list[str] = field(default_factory=list)
    retried: int = 0
    latencies: list[float] = field(default_factory=list)

    def summary(self, seconds: float) -> dict[str, object]:
        ordered = sorted(self.latencies)

        def quantile(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1) if ordered else 0.0

        attempted = sum(self.codes.values())
        return {
            "attempted": attempted,
            "codes": dict(self.codes),
            # Short stock is an answer (FAILED_PRECONDITION naming the product), not a failure.
            "failed": attempted - self.codes["OK"] - self.codes["FAILED_PRECONDITION"],
            "retried": self.retried,
            "seconds": round(seconds, 1),
            "p50_ms": quantile(0.5),
            "p99_ms": quantile(0.99),
            "order_ids": self.order_ids,
        }


def request(products: list[str], number: int, prefix: str) -> checkout_pb2.PlaceOrderRequest:
    return checkout_pb2.PlaceOrderRequest(
        request_id=uuid.uuid4().hex,
        user_id=f"{prefix}-user-{number % 50}",
        items=[common_pb2.LineItem(product_id=products[number % len(products)], quantity=1)],
        address=HOME,
        email=f"{prefix}-{number % 50}@example.com",
        credit_card=CARD,
    )


async def place(
    stub: checkout_pb2_grpc.CheckoutServiceAsyncStub,
    call: checkout_pb2.PlaceOrderRequest,
    tally: Tally,
    *,
    attempts: int,
    deadline: float,
) -> None:
    started = time.monotonic()
    for attempt in range(attempts):
        try:
            answer = await stub.PlaceOrder(call, timeout=deadline)
        except grpc.aio.AioRpcError as error:
            if error.code() in AGAIN and attempt + 1 < attempts:
                tally.retried += 1
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            tally.codes[error.code().name] += 1
            return
        tally.codes["OK"] += 1
        tally.order_ids.append(answer.order_id)
        tally.latencies.append(time.monotonic() - started)
        return


async def run(args: argparse.Namespace) -> dict[str, object]:
    service = checkout_pb2.DESCRIPTOR.services_by_name["CheckoutService"]
    channel = make_channel(
        args.target,
        tracer=trace.get_tracer("loadgen"),
        default_timeout=args.timeout,
        service=service.full_name,
        idempotent_methods=retry_safe_methods(service),
        health_check=args.health_check,
    )
    stub = checkout_pb2_grpc.CheckoutServiceStub(channel)
    products = [p for p in args.products.split(",") if p]
    tally, calls = Tally(), set[asyncio.Task[None]]()
    started = time.monotonic()
    async with channel:
        number = 0
        while (elapsed := time.monotonic() - started) < args.seconds:
            # Open loop: calls start on schedule whether or not earlier ones answered.
            due = int(elapsed * args.rate) + 1
            while number < due:
                call = request(products, number, args.prefix)
                task = asyncio.create_task(place(stub, call, tally, attempts=args.attempts, deadline=args.timeout))
                calls.add(task)
                task.add_done_callback(calls.discard)
                number += 1
            await asyncio.sleep(min(0.05, 1 / args.rate))
        await asyncio.gather(*calls)
    return tally.summary(time.monotonic() - started)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="dns:///checkout-headless:50051", help="checkout's gRPC address")
    parser.add_argument("--rate", type=float, default=10.0, help="orders started per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to keep starting orders")
    parser.add_argument("--products", default="sku-1004,sku-1005,sku-1008,sku-1009", help="comma-separated ids")
    parser.add_argument("--attempts", type=int, default=4, help="calls per order (same request_id)")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline per call, seconds")
    parser.add_argument("--prefix", default="load", help="user and email prefix")
    parser.add_argument("--health-check", default="readiness", help="health service to watch on checkout ('' for none)")
    parsed = parser.parse_args(argv)
    if parsed.rate <= 0 or parsed.seconds <= 0 or parsed.attempts < 1:
        parser.error("--rate and --seconds must be positive, --attempts at least 1")
    return parsed


async def main(argv: list[str] | None = None) -> None:
    print(json.dumps(await run(parse(argv))), flush=True)
