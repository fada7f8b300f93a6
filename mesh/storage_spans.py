"""CLIENT spans for SQL statements and Redis commands, from the process's own
tracer provider.

OpenTelemetry's SQLAlchemy and Redis instrumentations are attached to each
engine and client a bootstrap made (``trace_storage``), never through their
``instrument()``: that patches every engine and client in the process, for
good, with the first provider it was given, and a test process runs several
contexts, each with its own provider.

Two rules are added to theirs:

- **Only inside a sampled trace.** A statement or command outside any span (a
  consumer's idle XREADGROUP, a lease renewal, a readiness ping, the forwarder
  lag probe) makes no span: background loops would otherwise start a one-span
  trace every few milliseconds. Inside an unsampled trace no span object is made
  at all, so at a low sampling ratio the reservation hot path (one EVALSHA)
  pays a wrapper and a context lookup, nothing more (``make bench-stock``).
- **No values.** SQL spans carry the statement text with its placeholders, never
  the parameters (the instrumentation reads only the statement; SQLCommenter is
  off); Redis spans carry the command name and a ``?`` per argument (the
  instrumentation's own sanitising: an OrderPlaced envelope holds an address
  and an email). Engines are made with ``hide_parameters`` (mesh.db), so a SQL
  error recorded on any span or log carries no values either.

``OTEL_STORAGE_SPANS=false`` turns both off for a process.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import redis.asyncio as redis
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.instrumentation.sqlalchemy.version import __version__ as sqlalchemy_instrumentation_version
from opentelemetry.metrics import NoOpMeter
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.redis_pipe import RedisPipe
from mesh.server import App

# Engines already traced: a second EngineTracer would write every span twice.
_traced_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def trace_storage(
    app: App,
    *,
    engines: Iterable[AsyncEngine] = (),
    clients: Iterable[redis.Redis] = (),
    pipes: Iterable[RedisPipe | None] = (),
) -> None:
    """Spans for the statements of ``engines`` and the commands of ``clients``
    and ``pipes``, from ``app``'s provider (unless the process's settings turn
    them off)."""
    if not app.settings.otel_storage_spans:
        return
    provider = InTraceOnly(app.tracer_provider)
    for engine in engines:
        trace_engine(engine, provider)
    for client in clients:
        RedisInstrumentor.instrument_client(client, tracer_provider=provider)
    for pipe in pipes:
        if pipe is not None:
            pipe.tracer = provider.get_tracer("ordermesh.redis_pipe")


def trace_engine(engine: AsyncEngine, provider: trace.TracerProvider) -> None:
    sync_engine = engine.sync_engine
    if sync_engine in _traced_engines:
        return
    _traced_engines.add(sync_engine)
    tracer = provider.get_tracer("opentelemetry.instrumentation.sqlalchemy", sqlalchemy_instrumentation_version)
    # Its pool-usage metric goes nowhere: the processes export Prometheus metrics, not OTel ones.
    usage = NoOpMeter("ordermesh").create_up_down_counter("db.client.connections.usage")
    EngineTracer(tracer, sync_engine, usage, enable_commenter=False)  # type: ignore[no-untyped-call]


class InTraceOnly(trace.TracerProvider):
    """Tracers that make a span only as the child of a sampled span (see the module docstring)."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self._provider = provider

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes | None = None,
    ) -> trace.Tracer:
        inner = self._provider.get_tracer(instrumenting_module_name, instrumenting_library_version, schema_url)
        return _InTraceOnlyTracer(inner)


class _InTraceOnlyTracer(trace.Tracer):
    def __init__(self, inner: trace.Tracer) -> None:
        self._inner = inner

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent = trace.get_current_span(context)
        if not parent.is_recording():
            # No parent (INVALID_SPAN) or an unsampled one: the parent itself stands
            # in, a non-recording span whose end() does nothing.
            return parent
        return self._inner.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )

    # The API decorates this with a private context-manager type; the protocol is the same.
    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        if not span.is_recording():
            yield span  # nothing to make current: no child of it will record either
            return
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ):
            yield span
