"""Circuit breakers over pybreaker, usable around awaited calls.

    with breaker.calling():
        reply = await stub.Charge(request)

pybreaker's own ``call_async`` needs tornado; its ``calling()`` context manager
is plain and works around an ``await``. Only failures that say the dependency is
unhealthy count (UNAVAILABLE, DEADLINE_EXCEEDED, ...); a NOT_FOUND or an
INVALID_ARGUMENT is the dependency working correctly. Cancellation of our own
task says nothing about the dependency and is excluded.

A CANCELLED *answer* is not our cancellation (that one is the task's
``asyncio.CancelledError``): gRPC core gives it to calls that reach a server
while it stops (grpc/grpc#41785), or that were still running when its grace
ran out. The dependency is going away and may or may not have done the work,
so it is UNAVAILABLE to our caller, who retries with the same key, and never
relayed as CANCELLED, which no client retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, TypeVar

import grpc
import pybreaker

from mesh.errors import Relayed, Unavailable
from mesh.metrics import BreakerMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")

UNHEALTHY_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,  # by a stopping server: see the module's docstring
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


def is_business_error(error: BaseException) -> bool:
    """True for an RPC error that does not indicate an unhealthy dependency."""
    return isinstance(error, grpc.aio.AioRpcError) and error.code() not in UNHEALTHY_CODES


class _StateListener(pybreaker.CircuitBreakerListener):
    def __init__(self, metrics: BreakerMetrics | None) -> None:
        self._metrics = metrics

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = old_state.name if old_state else "none"
        log.warning("breaker %s: %s -> %s", cb.name, old, new_state.name)
        if self._metrics is not None:
            self._metrics.record(str(cb.name), new_state.name)


class Breaker:
    """A named breaker; raises :class:`Unavailable` while open."""

    def __init__(
        self,
        name: str,
        *,
        fail_max: int,
        reset_timeout: float,
        metrics: BreakerMetrics | None = None,
        exclude: tuple[type[BaseException] | Callable[[Any], bool], ...] = (),
    ) -> None:
        self.name = name
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            name=name,
            exclude=[asyncio.CancelledError, is_business_error, *exclude],
            listeners=[_StateListener(metrics)],
        )
        if metrics is not None:
            metrics.state.labels(name).set(0)

    @property
    def state(self) -> str:
        return str(self._breaker.current_state)

    def calling(self) -> AbstractContextManager[Any]:
        """pybreaker's context manager, translated: open -> Unavailable."""
        return _Translated(self.name, self._breaker.calling())


class _Translated(AbstractContextManager[None]):
    def __init__(self, name: str, inner: AbstractContextManager[Any]) -> None:
        self._name = name
        self._inner = inner

    def __enter__(self) -> None:
        try:
            self._inner.__enter__()
        except pybreaker.CircuitBreakerError:
            raise Unavailable(f"{self._name} is unavailable (circuit open)") from None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            return self._inner.__exit__(exc_type, exc, tb)
        except pybreaker.CircuitBreakerError:
            # This failure tripped the breaker: report the original cause as unavailable.
            raise Unavailable(f"{self._name} is unavailable (circuit opened: {exc})") from exc


async def guarded(dependency: str, breaker: Breaker, call: Callable[[], Awaitable[T]]) -> T:
    """Call a dependency through its breaker: its expected errors are relayed
    unchanged; anything that says it is unhealthy is UNAVAILABLE."""
    try:
        with breaker.calling():
            return await call()
    except grpc.aio.AioRpcError as error:
        if is_business_error(error):
            raise Relayed.of(error) from None
        raise Unavailable(f"{dependency} is unavailable ({error.code().name})") from None


class Gateway:
    """A context's view of the services it calls: every call goes through its
    dependency's breaker (``guarded``). Subclasses add one method per remote
    operation, in the context's own terms."""

    def __init__(self, breakers: Mapping[str, Breaker]) -> None:
        self._breakers = breakers

    async def _call(self, dependency: str, call: Callable[[], Awaitable[T]]) -> T:
        return await guarded(dependency, self._breakers[dependency], call)


def breakers_for(
    names: Sequence[str], *, fail_max: int, reset_timeout: float, metrics: BreakerMetrics | None
) -> dict[str, Breaker]:
    return {name: Breaker(name, fail_max=fail_max, reset_timeout=reset_timeout, metrics=metrics) for name in names}
