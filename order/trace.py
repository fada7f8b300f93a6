"""``python -m order trace ORDER_ID`` (``make trace ORDER=…``): an order's trace
from Jaeger's query API as an indented tree.

The order carries the trace id of the PlaceOrder that made it. That trace
holds the synchronous path (checkout → catalog, payment, shipping) and the
producer spans of its events; the work done later, in batches and periodic
jobs, lives in traces of its own that *link* to it (a batch span has one link
per message). Jaeger cannot search by link, so those are found by reading the
traces recorded around the order's time and keeping the spans that link to
it, shown under "linked" with their own subtrees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from mesh.local.jaeger import get_json
from ordermesh.order.v1 import order_pb2, order_pb2_grpc

# Traces read per service when looking for linked spans around the order's time.
SEARCH_LIMIT = 1500
SEARCH_WINDOW_US = 15 * 60 * 1_000_000


@dataclass
class Span:
    trace_id: str
    span_id: str
    service: str
    name: str
    start_us: int
    duration_us: int
    error: bool
    parent: str | None
    links: list[tuple[str, str]]
    children: list[Span] = field(default_factory=list)

    def line(self) -> str:
        status = "ERROR" if self.error else "OK"
        service = self.service.removeprefix("ordermesh-")
        return f"{service:<9} {self.name}  {self.duration_us / 1000:.1f} ms  {status}"


def parse_trace(trace: dict[str, Any]) -> list[Span]:
    """Jaeger's JSON trace → spans with their parent (CHILD_OF in the same trace)
    and links (FOLLOWS_FROM, or CHILD_OF into another trace)."""
    processes = {key: value["serviceName"] for key, value in trace.get("processes", {}).items()}
    spans = []
    for raw in trace.get("spans", []):
        parent, links = None, []
        for reference in raw.get("references", []):
            same_trace = reference["traceID"] == raw["traceID"]
            if reference["refType"] == "CHILD_OF" and same_trace and parent is None:
                parent = reference["spanID"]
            else:
                links.append((reference["traceID"], reference["spanID"]))
        tags = {tag["key"]: tag.get("value") for tag in raw.get("tags", [])}
        spans.append(
            Span(
                trace_id=raw["traceID"],
                span_id=raw["spanID"],
                service=processes.get(raw.get("processID", ""), "?"),
                name=raw["operationName"],
                start_us=int(raw["startTime"]),
                duration_us=int(raw["duration"]),
                error=tags.get("otel.status_code") == "ERROR" or tags.get("error") is True,
                parent=parent,
                links=links,
            )
        )
    return spans


def tree(spans: Iterable[Span]) -> list[Span]:
    """Roots (spans whose parent is not among them), children sorted by start."""
    by_id = {span.span_id: span for span in spans}
    roots = []
    for span in sorted(by_id.values(), key=lambda s: s.start_us):
        parent = by_id.get(span.parent) if span.parent else None
        if parent is None:
            roots.append(span)
        else:
            parent.children.append(span)
    return roots


def render(roots: Iterable[Span], depth: int = 0) -> Iterator[str]:
    for span in roots:
        suffix = f"  (links to {len(span.links)} span{'s' if len(span.links) != 1 else ''})" if span.links else ""
        yield "  " * depth + span.line() + suffix
        yield from render(span.children, depth + 1)


def linked_spans(jaeger: str, trace_id: str, around_us: int) -> list[Span]:
    """Spans of other traces that link into ``trace_id`` (with their subtrees),
    from the traces every service recorded around the order's time."""
    services = get_json(f"{jaeger}/api/services").get("data") or []
    found: dict[str, list[Span]] = {}
    for service in services:
        if service == "jaeger":
            continue
        query = urllib.parse.urlencode(
            {
                "service": service,
                "start": around_us - 60_000_000,
                "end": around_us + SEARCH_WINDOW_US,
                "limit": SEARCH_LIMIT,
            }
        )
        for trace in get_json(f"{jaeger}/api/traces?{query}").get("data") or []:
            if trace["traceID"] != trace_id and trace["traceID"] not in found:
                found[trace["traceID"]] = parse_trace(trace)
    linked: list[Span] = []
    for spans in found.values():
        for root in tree(spans):
            linked.extend(_linking(root, trace_id))
    return sorted(linked, key=lambda s: s.start_us)


def _linking(span: Span, trace_id: str) -> Iterator[Span]:
    if any(t == trace_id for t, _ in span.links):
        yield span
        return
    for child in span.children:
        yield from _linking(child, trace_id)


async def order_trace_id(address: str, order_id: str) -> tuple[str, int]:
    """The order's trace id and creation time (µs since the epoch)."""
    async with grpc.aio.insecure_channel(address) as channel:
        order = await order_pb2_grpc.OrderServiceStub(channel).GetOrder(
            order_pb2.GetOrderRequest(order_id=order_id), timeout=10
        )
    created_us = order.created_at.seconds * 1_000_000 + order.created_at.nanos // 1000
    return order.trace_id, created_us


def report(jaeger: str, order_id: str, trace_id: str, created_us: int) -> str:
    answer = get_json(f"{jaeger}/api/traces/{trace_id}")
    traces = answer.get("data") or []
    if not traces:
        return f"order {order_id}: trace {trace_id} is not in Jaeger at {jaeger} (was tracing on when it was placed?)"
    spans = parse_trace(traces[0])
    services = sorted({s.service for s in spans})
    lines = [f"order {order_id}  trace {trace_id}  ({len(spans)} spans; {', '.join(services)})", ""]
    lines += render(tree(spans))
    linked = linked_spans(jaeger, trace_id, created_us)
    if linked:
        lines += ["", "linked (work done later, in batches and periodic jobs):"]
        lines += render(linked, 1)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m order trace", description=__doc__.split("\n\n")[0])
    parser.add_argument("order_id")
    parser.add_argument("--order", default=os.environ.get("ORDER_ADDRESS", "127.0.0.1:50053"), help="order gRPC")
    parser.add_argument(
        "--jaeger", default=os.environ.get("JAEGER_QUERY_URL", "http://127.0.0.1:16686"), help="Jaeger query URL"
    )
    parser.add_argument("--json", action="store_true", help="print Jaeger's trace JSON instead")
    args = parser.parse_args(argv)
    try:
        trace_id, created_us = asyncio.run(order_trace_id(args.order, args.order_id))
    except grpc.aio.AioRpcError as error:
        print(f"order {args.order_id}: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    if not trace_id:
        print(f"order {args.order_id} has no trace id (placed with tracing off)", file=sys.stderr)
        return 1
    try:
        if args.json:
            print(json.dumps(get_json(f"{args.jaeger}/api/traces/{trace_id}"), indent=1))
        else:
            print(report(args.jaeger, args.order_id, trace_id, created_us))
    except OSError as error:
        print(f"Jaeger at {args.jaeger} does not answer ({error}): start the mesh with `make run TRACING=1`")
        return 1
    return 0
