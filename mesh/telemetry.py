"""Tracing setup and W3C context propagation into event payloads."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

# Links kept per span. A batch span has one link per message, and the SDK's
# default (OTEL_SPAN_LINK_COUNT_LIMIT, 128) would silently drop the rest of a
# batch; the largest batch any setting allows is FORWARDER_BATCH_SIZE (2000).
MAX_LINKS = 2048


def build_tracer_provider(
    service: str,
    *,
    environment: str,
    sampling_ratio: float,
    otlp_endpoint: str = "",
    extra_processors: tuple[SpanProcessor, ...] = (),
) -> TracerProvider:
    """A provider for one process. It is returned, not installed globally, so
    tests can build several; the process bootstrap installs its own."""
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": service,
                "service.namespace": "ordermesh",
                "deployment.environment": environment,
            }
        ),
        # Follow the caller's decision; sample roots by ratio.
        sampler=ParentBased(TraceIdRatioBased(sampling_ratio)),
        span_limits=SpanLimits(max_links=MAX_LINKS),
    )
    if otlp_endpoint:
        # Imported only when used: the exporter pulls in a gRPC client stack.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    return provider


def inject_context(carrier: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``, ``tracestate``)."""
    headers: dict[str, str] = dict(carrier or {})
    inject(headers)
    return headers


def extract_context(carrier: Mapping[str, str]) -> otel_context.Context:
    """A context whose parent is the span described by ``carrier``."""
    return extract(dict(carrier))


def span_link(carrier: Mapping[str, str]) -> trace.Link | None:
    """A link to the producer span in ``carrier`` (for batch consumers)."""
    span_context = trace.get_current_span(extract_context(carrier)).get_span_context()
    return trace.Link(span_context) if span_context.is_valid else None


def traceparent(carrier: Mapping[str, str]) -> str:
    """The W3C ``traceparent`` of the span ``carrier`` describes, rewritten from
    its parsed parts (so it is always 55 characters), or "" if it has none."""
    context = trace.get_current_span(extract_context(carrier)).get_span_context()
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
