"""What the checkout saga needs from the outside, as Protocols. The adapters
are ``remote.Remote`` (catalog, shipping and payment over gRPC, behind
breakers), ``idempotency.Claims`` (Redis) and the bus publisher; unit tests
pass fakes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from checkout.idempotency import Claim
    from checkout.remote import Charge
    from mesh.money import Money
    from ordermesh.catalog.v1 import catalog_pb2
    from ordermesh.common.v1 import common_pb2
    from ordermesh.events.v1 import events_pb2


class Gateway(Protocol):
    """Catalog, shipping and payment, in the saga's terms."""

    async def quote(self, address: common_pb2.Address, items: list[common_pb2.LineItem]) -> Money: ...

    async def reserve(
        self, order_id: str, items: list[common_pb2.LineItem], draft: common_pb2.OrderDraft
    ) -> catalog_pb2.Reservation: ...

    async def release(self, order_id: str) -> None: ...

    async def charge(self, order_id: str, amount: Money, card: common_pb2.CreditCard) -> Charge:
        """Captured, declined, or unknown (deadline, payment down): never raises for those."""


class ClaimStore(Protocol):
    """One attempt at a time per ``request_id``, and its stored answer."""

    async def claim(self, request_id: str, new_order_id: str, fingerprint: str) -> Claim: ...

    async def answer(self, request_id: str, order_id: str, response: bytes, fingerprint: str) -> None: ...

    async def abandon(self, request_id: str) -> None: ...


class Publisher(Protocol):
    """Appends an event to a stream (the outbox); returns its id. ``make`` builds
    the event inside its PRODUCER span, so it carries that span's context and is
    serialised once."""

    async def publish_envelope(self, stream: str, make: Callable[[], events_pb2.Envelope]) -> str: ...
