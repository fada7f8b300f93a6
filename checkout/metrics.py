"""Checkout's business metric: PlaceOrder answers, by what the client was told."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from prometheus_client import CollectorRegistry, Counter

from mesh.errors import DomainError, Relayed, unavailable_cause
from ordermesh.checkout.v1 import checkout_pb2
from ordermesh.common.v1 import common_pb2

# The order status answered, or the class of the error.
ANSWERS = {
    common_pb2.PAID: "paid",
    common_pb2.AWAITING_REVIEW: "awaiting_review",
    common_pb2.PENDING: "pending",
    common_pb2.CANCELLED: "cancelled",
}
OUTCOMES = (*ANSWERS.values(), "invalid", "short", "unavailable", "error")
INVALID = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.NOT_FOUND})
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


class CheckoutMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.place_order = Counter(
            "ordermesh_checkout_place_order",
            "PlaceOrder answers (a retried request_id answered again counts again), by the order status "
            "answered (paid, awaiting_review, pending, cancelled) or the error: invalid (bad request, unknown "
            "product, request_id reused), short (not enough stock), unavailable (a dependency down or too "
            "slow: retry), error (anything else).",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.place_order.labels(outcome)

    def answered(self, response: checkout_pb2.PlaceOrderResponse) -> None:
        self.place_order.labels(ANSWERS.get(response.status, "error")).inc()

    def failed(self, error: Exception) -> None:
        self.place_order.labels(error_outcome(error)).inc()


def error_outcome(error: Exception) -> str:
    """The class of a PlaceOrder that raised: its gRPC code, and for
    FAILED_PRECONDITION, whether catalog named short products."""
    if not isinstance(error, DomainError):
        return "unavailable" if unavailable_cause(error) is not None else "error"
    if error.code in INVALID:
        return "invalid"
    if error.code in RETRYABLE:
        return "unavailable"
    if error.code is grpc.StatusCode.FAILED_PRECONDITION and _short_stock(error):
        return "short"
    return "error"


def _short_stock(error: DomainError) -> bool:
    """Catalog's answer to a ReserveStock it cannot fill names each short product
    with an INSUFFICIENT_STOCK violation (catalog/stock.py)."""
    if not isinstance(error, Relayed):
        return False
    for detail in error.details():
        failure = error_details_pb2.PreconditionFailure()
        if detail.Unpack(failure) and any(v.type == "INSUFFICIENT_STOCK" for v in failure.violations):
            return True
    return False
