"""Structured logs: one JSON object per line, with the current trace and span ids."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from mesh.logs import configure_logging


def test_json_lines_carry_trace_and_span_ids() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("ordermesh-test", "INFO", "json")
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("ordermesh.test").info("reserved %d units", 3)
    logging.getLogger("ordermesh.test").warning("outside any span")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    context = span.get_span_context()
    assert first["message"] == "reserved 3 units" and first["level"] == "INFO"
    assert first["service"] == "ordermesh-test"
    assert first["trace_id"] == format(context.trace_id, "032x")
    assert first["span_id"] == format(context.span_id, "016x")
    assert second["trace_id"] == "" and second["level"] == "WARNING"
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
