"""Spans for the work done on one order after it was placed: a periodic job's
step for that order, the dispatcher's shipment of it.

That work runs in traces of its own (a job's tick, a consumer's batch), so
each such span carries a link to the span that produced the order's
OrderPlaced, in the trace of the PlaceOrder that made it: its traceparent is
kept in ``order_traces`` (OrderStore.trace_parents). An order without one
(stored before that table, or placed with no trace context) gets no link.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from mesh.telemetry import span_link
from order.shards import Shards
from order.store import OrderStore

log = logging.getLogger(__name__)

JOB = "ordermesh.job"
ORDER_ID = "ordermesh.order.id"


class OrderSpans:
    def __init__(self, tracer: trace.Tracer, shards: Shards) -> None:
        self._tracer = tracer
        self._shards = shards

    @asynccontextmanager
    async def around(self, job: str, order_id: str, parent: str | None = None) -> AsyncIterator[trace.Span]:
        """A span ``order <job>`` linked to the order's trace. ``parent`` is the
        order's traceparent if the caller has it ("" if it has none); None: it is
        looked up, only when the span records. An exception is the span's status
        (its type only: the text may quote data)."""
        with self._tracer.start_as_current_span(
            f"order {job}",
            attributes={JOB: job, ORDER_ID: order_id},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            if span.is_recording():
                if parent is None:
                    parent = await self._lookup(order_id)
                if parent and (link := span_link({"traceparent": parent})) is not None:
                    span.add_link(link.context, {"ordermesh.link": "order placed"})
            try:
                yield span
            except Exception as error:
                if span.is_recording():
                    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise

    async def parents(self, store: OrderStore, order_ids: Sequence[str]) -> dict[str, str]:
        """The traceparents of orders about to get spans under the current one:
        one read for them all, and none when the current span is not recorded."""
        if not order_ids or not trace.get_current_span().is_recording():
            return {}
        try:
            return await store.trace_parents(order_ids)
        except Exception as error:  # noqa: BLE001 - a missing link must not stop the work; logged
            log.debug("no trace links for %d orders: %s", len(order_ids), error)
            return {}

    async def _lookup(self, order_id: str) -> str:
        store = self._shards.for_order(order_id)
        if store is None:
            return ""
        try:
            return (await store.trace_parents([order_id])).get(order_id, "")
        except Exception as error:  # noqa: BLE001 - a missing link must not stop the work; logged
            log.debug("no trace link for %s: %s", order_id, error)
            return ""
