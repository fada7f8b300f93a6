"""Shipping's recent quotes, for when shipping is down.

A quote is the answer to one GetQuote request (an address and items). While
shipping answers, each answer is remembered; when it does not (down, breaker
open), the same request answered within ``max_age`` is answered again, so
orders keep being placed and only their fulfilment waits for shipping (the
dispatcher retries ShipOrder with backoff). A request never answered before
is still UNAVAILABLE: checkout does not price shipping itself.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from mesh.money import Money
from ordermesh.shipping.v1 import shipping_pb2


class RecentQuotes:
    def __init__(self, max_age: float, size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age = max_age
        self._size = size
        self._clock = clock
        self._quotes: OrderedDict[bytes, tuple[float, Money]] = OrderedDict()

    @staticmethod
    def _key(request: shipping_pb2.GetQuoteRequest) -> bytes:
        return request.SerializeToString(deterministic=True)

    def remember(self, request: shipping_pb2.GetQuoteRequest, cost: Money) -> None:
        if not self._max_age:
            return
        key = self._key(request)
        self._quotes[key] = (self._clock(), cost)
        self._quotes.move_to_end(key)
        if len(self._quotes) > self._size:
            self._quotes.popitem(last=False)  # the least recently answered

    def recall(self, request: shipping_pb2.GetQuoteRequest) -> Money | None:
        """The quote shipping gave this request within ``max_age``, or None."""
        entry = self._quotes.get(self._key(request))
        if entry is None or self._clock() - entry[0] > self._max_age:
            return None
        return entry[1]
