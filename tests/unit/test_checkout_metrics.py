"""PlaceOrder answers by outcome (checkout/metrics.py): the error classes, and a
count per answer through the servicer."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from checkout.metrics import OUTCOMES, CheckoutMetrics, error_outcome
from mesh.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Relayed, Unavailable
from ordermesh.checkout.v1 import checkout_pb2
from ordermesh.common.v1 import common_pb2


def relayed_precondition(kind: str) -> Relayed:
    """Catalog's (or payment's) FAILED_PRECONDITION as checkout receives it."""
    failure = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(type=kind, subject="products/sku-1", description="")
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(failure)
    return Relayed(grpc.StatusCode.FAILED_PRECONDITION, "product sku-1: requested 31, available 30", [packed])


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (InvalidArgument.one("items[0].quantity", "must be positive"), "invalid"),
        (AlreadyExists("request_id", "used for a different order"), "invalid"),
        (Relayed(grpc.StatusCode.INVALID_ARGUMENT, "draft.email: too long", []), "invalid"),
        (relayed_precondition("INSUFFICIENT_STOCK"), "short"),
        (relayed_precondition("AMOUNT_MISMATCH"), "error"),  # FAILED_PRECONDITION, but not about stock
        (FailedPrecondition("not stock"), "error"),
        (Unavailable("catalog is unavailable (circuit open)"), "unavailable"),
        (Relayed(grpc.StatusCode.DEADLINE_EXCEEDED, "too slow", []), "unavailable"),
        (RedisConnectionError("refused"), "unavailable"),  # the claim store down
        (RuntimeError("a bug"), "error"),
    ],
)
def test_an_error_is_counted_in_its_class(error: Exception, outcome: str) -> None:
    assert error_outcome(error) == outcome


def test_answers_count_by_status_and_every_series_exists_from_the_start() -> None:
    registry = CollectorRegistry()
    metrics = CheckoutMetrics(registry)
    assert OUTCOMES == ("paid", "awaiting_review", "pending", "cancelled", "invalid", "short", "unavailable", "error")

    def value(outcome: str) -> float | None:
        return registry.get_sample_value("ordermesh_checkout_place_order_total", {"outcome": outcome})

    assert [value(o) for o in OUTCOMES] == [0] * len(OUTCOMES)
    for status in (common_pb2.PAID, common_pb2.PAID, common_pb2.CANCELLED, common_pb2.AWAITING_REVIEW):
        metrics.answered(checkout_pb2.PlaceOrderResponse(status=status))
    metrics.failed(relayed_precondition("INSUFFICIENT_STOCK"))
    assert {o: value(o) for o in OUTCOMES} == {
        "paid": 2,
        "awaiting_review": 1,
        "pending": 0,
        "cancelled": 1,
        "invalid": 0,
        "short": 1,
        "unavailable": 0,
        "error": 0,
    }
