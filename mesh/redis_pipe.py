"""One pipelined Redis connection for a hot path's commands.

redis-py gives every command a pooled connection of its own, a retry wrapper,
a timeout context and a generic parser: on the catalog's reservation path that
was most of the Python work of the call (``make bench-stock``, py-spy). Here
commands are written to one TCP connection as they come, without waiting for
the replies of the ones before, and replies (parsed by hiredis) are handed
back in order. Concurrent callers share the connection, and a busy one sends
many commands per round trip with no batching step of its own.

Failures look like redis-py's, so callers classify them the same way: a
connection that cannot be made, is lost, or leaves a command unanswered for
``timeout`` seconds is a ``ConnectionError`` / ``TimeoutError`` for every
command in flight on it (the next command reconnects); an error reply is the
``ResponseError`` subclass redis-py would raise (``NoScriptError``,
``ReadOnlyError``...).

Only plain TCP URLs are served this way (``redis://``); ``pipe_for`` answers
None for the others, and callers keep using the redis-py client.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import hiredis
import redis.asyncio as redis
from opentelemetry import trace
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = bytes | str | int


def encode(args: tuple[Arg, ...]) -> bytes:
    """A command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Protocol(asyncio.Protocol):
    def __init__(self, pipe: RedisPipe) -> None:
        self._pipe = pipe
        self._reader = hiredis.Reader(replyError=ResponseError)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            self._pipe._answer(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._pipe._lost(self, exc)


class RedisPipe:
    def __init__(
        self, host: str, port: int, *, db: int = 0, username: str | None = None, password: str | None = None,
        timeout: float = 1.0,
    ) -> None:  # fmt: skip
        self._address = (host, port)
        self._hello: list[tuple[Arg, ...]] = []
        if password:
            self._hello.append(("AUTH", username, password) if username else ("AUTH", password))
        if db:
            self._hello.append(("SELECT", db))
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        # In order of sending: when it was sent, and who waits for the reply.
        self._waiting: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._outgoing: list[bytes] = []  # encoded, to be written at the end of this loop turn
        self.tracer: trace.Tracer | None = None
        self._span_attributes: dict[str, str | int] = {
            "db.system": "redis", "net.peer.name": host, "net.peer.port": port, "db.redis.database_index": db,
        }  # fmt: skip

    async def call(self, *args: Arg) -> Any:
        """Send one command; its reply, or the redis-py exception for it.

        Inside a sampled trace the command gets a CLIENT span like the ones of
        the Redis instrumentation (its name, a ``?`` per argument) when
        ``tracer`` is set (mesh.storage_spans.trace_storage sets it).
        """
        if self.tracer is not None and trace.get_current_span().is_recording():
            name = f"{args[0]!s} {args[1]!s}" if args[0] == "SCRIPT" else str(args[0])
            attributes = {**self._span_attributes, "db.statement": " ".join([name] + ["?"] * (len(args) - 1))}
            with self.tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes):
                return await self._call(args)
        return await self._call(args)

    async def _call(self, args: tuple[Arg, ...]) -> Any:
        if self._transport is None:
            await self._connect()
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((time.monotonic(), answer))
        # Commands of one turn of the event loop leave in one write (one system
        # call, which costs more than the encoding in this VM), at the end of it.
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(encode(args))
        if self._watchdog is None:
            self._arm()
        return await answer

    def _flush(self) -> None:
        # A connection lost meanwhile failed its commands and dropped their bytes
        # (_fail); whatever is here now belongs to the current one.
        if self._outgoing and self._transport is not None:
            self._transport.write(b"".join(self._outgoing))
        self._outgoing = []

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._fail(RedisConnectionError("the connection was closed"))

    # -- connection -------------------------------------------------------------

    async def _connect(self) -> asyncio.Transport:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._transport is not None:
                return self._transport
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self._timeout):
                    transport, protocol = await loop.create_connection(lambda: _Protocol(self), *self._address)
            except TimeoutError as error:
                raise RedisTimeoutError(f"connecting to {self._address[0]}:{self._address[1]} timed out") from error
            except OSError as error:
                raise RedisConnectionError(f"connecting to {self._address[0]}:{self._address[1]}: {error}") from error
            self._protocol = protocol
            try:
                for command in self._hello:
                    reply = await self._send_now(transport, command)
                    if isinstance(reply, ResponseError):
                        raise _error(reply)
            except BaseException:
                transport.close()
                raise
            # Only now may others write: AUTH and SELECT go first on the connection.
            self._transport = transport
            return transport

    async def _send_now(self, transport: asyncio.Transport, command: tuple[Arg, ...]) -> Any:
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((time.monotonic(), answer))
        transport.write(encode(command))
        self._arm()
        try:
            return await answer
        except ResponseError as error:
            return error

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if protocol is not self._protocol:
            return
        self._transport = self._protocol = None
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}"))

    def _fail(self, error: Exception) -> None:
        self._outgoing = []
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            _, answer = self._waiting.popleft()
            if not answer.done():
                answer.set_exception(error)

    # -- replies ----------------------------------------------------------------

    def _answer(self, reply: Any) -> None:
        if not self._waiting:
            return  # cannot happen on a healthy connection; nothing waits for it
        _, answer = self._waiting.popleft()
        if answer.done():  # its caller gave up (cancelled): the reply is dropped, in order
            return
        if isinstance(reply, ResponseError):
            answer.set_exception(_error(reply))
        else:
            answer.set_result(reply)

    def _arm(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self._timeout / 2, self._check)

    def _check(self) -> None:
        """A command unanswered for ``timeout``: Redis is stuck or unreachable; drop the connection."""
        self._watchdog = None
        if not self._waiting:
            return
        sent, _ = self._waiting[0]
        if time.monotonic() - sent < self._timeout:
            self._arm()
            return
        transport, self._transport, self._protocol = self._transport, None, None
        if transport is not None:
            transport.abort()
        self._fail(RedisTimeoutError(f"Redis did not answer within {self._timeout} s"))


def _error(reply: ResponseError) -> ResponseError:
    """The redis-py class of an error reply (NOSCRIPT -> NoScriptError, READONLY -> ReadOnlyError...)."""
    error: ResponseError = BaseParser.parse_error(str(reply))  # type: ignore[no-untyped-call]
    return error


def pipe_for(client: redis.Redis, timeout: float) -> RedisPipe | None:
    """A pipe to the server ``client`` talks to, or None where only redis-py can (TLS, Unix sockets)."""
    pool = client.connection_pool
    if pool.connection_class is not redis.Connection:
        return None
    kwargs = pool.connection_kwargs
    return RedisPipe(
        kwargs.get("host", "localhost"),
        int(kwargs.get("port", 6379)),
        db=int(kwargs.get("db", 0) or 0),
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        timeout=timeout,
    )
