"""PlaceOrder: quote, reserve (the catalog prices the order and decides
whether it waits for review), then charge.

Every step is idempotent by the order id minted into the request's claim, so
a retry or a takeover re-runs the saga without doing anything twice.
Outcomes: PAID (captured), CANCELLED (declined: stock released first),
PENDING (payment outcome unknown; the order context reconciles it with
payment.GetPayment), AWAITING_REVIEW (total at or above the threshold). A
review order is charged too (the card is never kept for later): approval lets
the captured order proceed, rejection or expiry refunds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from checkout.events import payment_captured, payment_declined
from checkout.idempotency import fingerprint
from checkout.ports import ClaimStore, Gateway, Publisher
from checkout.remote import ChargeOutcome
from common.order_ids import mint
from mesh.clock import Clock
from mesh.errors import InvalidArgument, Relayed
from mesh.money import Money
from ordermesh.catalog.v1 import catalog_pb2
from ordermesh.checkout.v1 import checkout_pb2
from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SagaConfig:
    review_at: Money
    order_shards: int
    updates_stream: str


class PlaceOrder:
    def __init__(
        self, remote: Gateway, claims: ClaimStore, publisher: Publisher, config: SagaConfig, clock: Clock
    ) -> None:
        self._remote = remote
        self._claims = claims
        self._publisher = publisher
        self._config = config
        self._clock = clock

    async def __call__(self, request: checkout_pb2.PlaceOrderRequest) -> checkout_pb2.PlaceOrderResponse:
        same = fingerprint(request)
        claim = await self._claims.claim(request.request_id, mint(request.user_id, self._config.order_shards), same)
        if claim.answer is not None:
            return checkout_pb2.PlaceOrderResponse.FromString(claim.answer)
        try:
            response = await self._run(claim.order_id, request)
        except BaseException:
            await self._claims.abandon(request.request_id)
            raise
        await self._claims.answer(request.request_id, claim.order_id, response.SerializeToString(), same)
        return response

    async def _run(self, order_id: str, request: checkout_pb2.PlaceOrderRequest) -> checkout_pb2.PlaceOrderResponse:
        items = list(request.items)
        shipping = await self._remote.quote(request.address, items)
        draft = common_pb2.OrderDraft(
            request_id=request.request_id,
            user_id=request.user_id,
            address=request.address,
            email=request.email,
            shipping_cost=shipping.to_proto(),
            review_at=self._config.review_at.to_proto(),
        )
        reservation = await self._reserve(order_id, items, draft)
        review = reservation.initial_status == common_pb2.AWAITING_REVIEW
        total = Money.from_proto(reservation.total)
        answer = checkout_pb2.PlaceOrderResponse(
            order_id=order_id, total=total.to_proto(), shipping_cost=shipping.to_proto()
        )
        if reservation.already_reserved and reservation.released:
            # A retry (or a takeover) of an attempt that died after reserving: the
            # order expired or was cancelled meanwhile, and its stock went back.
            # Charging now would keep money for an order that no longer exists.
            log.warning("order %s: its reservation was released before it was paid; not charging", order_id)
            answer.status = common_pb2.CANCELLED
            answer.failure_reason = "the order was cancelled before it was paid"
            return answer
        charge = await self._remote.charge(order_id, total, request.credit_card)
        if charge.outcome is ChargeOutcome.CAPTURED:
            await self._publish(lambda: payment_captured(order_id, charge.transaction_id, total, self._clock()))
            answer.status = common_pb2.AWAITING_REVIEW if review else common_pb2.PAID
        elif charge.outcome is ChargeOutcome.DECLINED:
            await self._remote.release(order_id)
            await self._publish(lambda: payment_declined(order_id, charge.decline_reason, self._clock()))
            answer.status = common_pb2.CANCELLED
            answer.failure_reason = charge.decline_reason
        else:
            log.warning("order %s: payment outcome unknown; left for reconciliation", order_id)
            answer.status = common_pb2.AWAITING_REVIEW if review else common_pb2.PENDING
        return answer

    async def _reserve(
        self, order_id: str, items: list[common_pb2.LineItem], draft: common_pb2.OrderDraft
    ) -> catalog_pb2.Reservation:
        """The reservation; an unknown product is bad input of this request, named by field."""
        try:
            return await self._remote.reserve(order_id, items, draft)
        except Relayed as error:
            if error.code is not grpc.StatusCode.NOT_FOUND:
                raise
            index = next((n for n, i in enumerate(items) if i.product_id in error.message), 0)
            raise InvalidArgument.one(f"items[{index}].product_id", f"unknown product ({error.message})") from None

    async def _publish(self, make: Callable[[], events_pb2.Envelope]) -> None:
        await self._publisher.publish_envelope(self._config.updates_stream, make)
