"""A TCP proxy on loopback that breaks the link it stands on, on demand.

The chaos scenarios put one between two parts of the mesh (the load and
checkout, checkout and payment, one catalog replica and Redis) and, while the
load runs:

- ``partition()`` / ``heal()``: nothing crosses, in either direction, and new
  connections hang too; bytes already sent are held, not lost, and cross when
  the link heals (TCP retransmits them), unless an end gave up first;
- ``latency``: everything coming back from upstream arrives that many seconds
  late (answers after the caller's deadline, while the work itself is done);
- ``drop_rate``: each chunk of a call is, with that probability, the last:
  both connections are reset mid-call (RST), as a flaky network drops them.

It runs in the caller's event loop: at the rates a chaos run uses (tens of
calls a second) that costs nothing worth a process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time

from mesh.local.procs import free_port

_CHUNK = 64 * 1024


class Proxy:
    def __init__(self, name: str, upstream: str, *, seed: int = 0) -> None:
        host, _, port = upstream.rpartition(":")
        self.name = name
        self.upstream = (host or "127.0.0.1", int(port))
        self.port = free_port()
        self.latency = 0.0
        self.drop_rate = 0.0
        self.dropped = 0  # connections reset by drop_rate
        self._open = asyncio.Event()
        self._open.set()
        self._random = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    def partition(self) -> None:
        self._open.clear()

    def heal(self) -> None:
        self._open.set()

    def reset_all(self) -> None:
        for link in list(self._links):
            link.reset()

    async def stop(self) -> None:
        self.heal()
        if self._server is not None:
            self._server.close()
        self.reset_all()
        for handler in list(self._handlers):  # connections still opening upstream
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await self._serve(client_reader, client_writer)
        except asyncio.CancelledError:
            _reset(client_writer)  # stopped: not an error of the connection's
        finally:
            self._handlers.discard(handler)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        await self._open.wait()  # a partitioned link does not connect either
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(client_writer)  # upstream down: the caller sees its connection refused, as without us
            return
        link = _Link(self, client_writer, upstream_writer)
        self._links.add(link)
        try:
            await link.run(client_reader, upstream_reader)
        finally:
            self._links.discard(link)


class _Link:
    """One proxied connection: two pumps, each a reader feeding a timed queue and a writer."""

    def __init__(self, proxy: Proxy, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream

    async def run(self, client_reader: asyncio.StreamReader, upstream_reader: asyncio.StreamReader) -> None:
        pumps = [
            asyncio.create_task(self._pump(client_reader, self.upstream, delayed=False)),
            asyncio.create_task(self._pump(upstream_reader, self.client, delayed=True)),
        ]
        # Either end closing (or a reset) ends the link: close the other end too.
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for writer in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                writer.close()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await asyncio.gather(*pumps, return_exceptions=True)

    def reset(self) -> None:
        _reset(self.client)
        _reset(self.upstream)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delayed: bool) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, writer))
        try:
            while data := await reader.read(_CHUNK):
                proxy = self.proxy
                if proxy.drop_rate and proxy._random.random() < proxy.drop_rate:
                    proxy.dropped += 1
                    self.reset()
                    return
                queue.put_nowait((time.monotonic() + (proxy.latency if delayed else 0.0), data))
            await queue.join()  # what was read reaches the other end before the close
        except (OSError, asyncio.IncompleteReadError):
            return
        finally:
            sender.cancel()

    async def _send(self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        """In order, each chunk once it is due and the link is not partitioned."""
        while True:
            due, data = await queue.get()
            try:
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                await self.proxy._open.wait()
                writer.write(data)
                await writer.drain()
            except OSError:
                return
            finally:
                queue.task_done()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, not FIN: linger on, timeout zero."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
