"""SQL spans (mesh.storage_spans): only inside a sampled trace, and never a value."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.db import UnitOfWork, create_engine, create_schema, reading
from mesh.storage_spans import InTraceOnly, trace_engine

EMAIL = "ada.lovelace@example.org"
metadata = MetaData()
people = Table("people", metadata, Column("id", Integer, primary_key=True), Column("email", String(200)))


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
async def engine(tmp_path: Path, provider: TracerProvider) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'people.db'}")
    await create_schema(engine, metadata)
    trace_engine(engine, InTraceOnly(provider))
    trace_engine(engine, InTraceOnly(provider))  # a second time changes nothing (no span twice)
    yield engine
    await engine.dispose()


async def add(engine: AsyncEngine, person_id: int) -> None:
    async with UnitOfWork(engine) as uow:
        await uow.connection.execute(insert(people).values(id=person_id, email=EMAIL))
        await uow.commit()


async def test_statements_outside_a_trace_make_no_span(engine: AsyncEngine, exporter: InMemorySpanExporter) -> None:
    await add(engine, 1)
    assert exporter.get_finished_spans() == ()


async def test_a_statement_is_a_client_span_with_placeholders_never_values(
    engine: AsyncEngine, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    with provider.get_tracer("test").start_as_current_span("work") as work:
        await add(engine, 1)
        async with reading(engine) as connection:
            assert (await connection.execute(select(people.c.email).where(people.c.id == 1))).scalar() == EMAIL
    sql = [s for s in exporter.get_finished_spans() if s.name != "work"]
    assert [s.name.split()[0] for s in sql] == ["INSERT", "SELECT"]
    for span in sql:
        assert span.kind is trace.SpanKind.CLIENT
        assert span.parent is not None and span.parent.span_id == work.get_span_context().span_id
        statement = str((span.attributes or {})["db.statement"])
        assert "?" in statement and EMAIL not in statement
        assert all(EMAIL not in str(value) for value in (span.attributes or {}).values())


async def test_an_error_quotes_no_value(engine: AsyncEngine) -> None:
    await add(engine, 1)
    with pytest.raises(IntegrityError) as error:
        await add(engine, 1)
    assert "UNIQUE" in str(error.value) and EMAIL not in str(error.value)


async def test_an_unsampled_trace_makes_no_span_object(exporter: InMemorySpanExporter) -> None:
    sampled = TracerProvider()
    sampled.add_span_processor(SimpleSpanProcessor(exporter))
    unsampled = TracerProvider(sampler=ALWAYS_OFF)
    tracer = InTraceOnly(sampled).get_tracer("storage")
    assert tracer.start_span("GET") is trace.INVALID_SPAN, "no parent at all"
    with unsampled.get_tracer("test").start_as_current_span("request") as request:
        assert not request.is_recording()
        assert tracer.start_span("GET") is request, "the unsampled parent stands in"
        with tracer.start_as_current_span("GET") as span:
            assert span is request
    with (
        sampled.get_tracer("test").start_as_current_span("request") as recorded,
        tracer.start_as_current_span("GET") as child,
    ):
        assert child.is_recording() and trace.get_current_span() is child
    assert [s.name for s in exporter.get_finished_spans()] == ["GET", "request"]
    assert recorded.get_span_context().trace_id == child.get_span_context().trace_id
