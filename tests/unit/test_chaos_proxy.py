"""The chaos proxy against a real echo server on loopback: it passes bytes, holds
them while partitioned, answers late with latency, and resets calls with drop_rate."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from chaos.proxy import Proxy


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    echoes: list[asyncio.Task[None]] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        echoes.append(asyncio.current_task())  # type: ignore[arg-type]
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = await Proxy("echo", f"127.0.0.1:{port}").start()
    yield proxy
    await proxy.stop()  # resets every link: each echo ends
    await asyncio.wait_for(asyncio.gather(*echoes), 5)
    server.close()


async def _call(proxy: Proxy, data: bytes, wait: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(data)), wait)
    finally:
        writer.close()


async def test_bytes_cross_both_ways(proxy: Proxy) -> None:
    assert await _call(proxy, b"hello" * 10_000) == b"hello" * 10_000


async def test_a_partition_holds_bytes_until_it_heals(proxy: Proxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    proxy.partition()
    writer.write(b"ping")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.5)
    proxy.heal()
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"  # held, not lost
    writer.close()


async def test_a_partition_hangs_new_connections(proxy: Proxy) -> None:
    proxy.partition()
    with pytest.raises(TimeoutError):
        await _call(proxy, b"x", wait=0.5)


async def test_latency_delays_the_answer_not_the_request(proxy: Proxy) -> None:
    proxy.latency = 0.4
    started = time.monotonic()
    answers = await asyncio.gather(*(_call(proxy, b"%d" % n) for n in range(5)))
    elapsed = time.monotonic() - started
    assert answers == [b"%d" % n for n in range(5)]
    assert 0.4 <= elapsed < 2.0  # concurrent calls wait together, not one after another


async def test_drop_rate_resets_calls_mid_way(proxy: Proxy) -> None:
    proxy.drop_rate = 1.0
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await _call(proxy, b"doomed")
    assert proxy.dropped == 1
    proxy.drop_rate = 0.0
    assert await _call(proxy, b"fine") == b"fine"
