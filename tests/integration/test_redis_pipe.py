"""The pipelined Redis connection (mesh/redis_pipe.py) on a real redis-server,
under the faults its callers classify: a killed, a paused and a restarted Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from redis.exceptions import AuthenticationError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mesh.local.procs import RedisServer, free_port
from mesh.redis_pipe import RedisPipe, pipe_for
from tests.support import eventually


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    redis_server = RedisServer(tmp_path / "redis", appendonly=True).start()
    yield redis_server
    redis_server.stop()


async def blocked_in_redis(server: RedisServer) -> None:
    """Until Redis holds one client blocked (the pipe's BLPOP arrived)."""
    observer = redis.Redis.from_url(server.url)
    try:

        async def blocked() -> bool:
            return int((await observer.info("clients"))["blocked_clients"]) == 1

        await eventually(blocked, within=5, what="the BLPOP to reach Redis")
    finally:
        await observer.aclose()


def pid(server: RedisServer) -> int:
    assert server.process is not None and server.process.proc is not None
    return server.process.proc.pid


async def test_concurrent_commands_share_one_connection_and_get_their_own_replies(server: RedisServer) -> None:
    pipe = pipe_for(redis.Redis.from_url(server.url.replace("/0", "/3")), timeout=2.0)
    assert pipe is not None
    try:
        # 500 commands in flight at once, in three kinds, each answered its own reply.
        replies = await asyncio.gather(
            *(pipe.call("INCRBY", f"k{n % 7}", n) for n in range(300)),
            *(pipe.call("ECHO", f"echo-{n}") for n in range(100)),
            *(pipe.call("SET", f"s{n}", "é" * n) for n in range(100)),
        )
        assert replies[300:400] == [f"echo-{n}".encode() for n in range(100)]
        assert replies[400:] == [b"OK"] * 100
        totals = {k: int(await pipe.call("GET", f"k{k}")) for k in range(7)}
        assert totals == {k: sum(n for n in range(300) if n % 7 == k) for k in range(7)}
        assert await pipe.call("GET", "s3") == "ééé".encode()
        # The URL's database was selected: database 0 holds none of it.
        plain = redis.Redis.from_url(server.url)
        assert await plain.dbsize() == 0
        await plain.aclose()
        clients = (await pipe.call("CLIENT", "LIST")).decode().strip().splitlines()
        assert len([c for c in clients if " db=3 " in c]) == 1  # one connection served them all
    finally:
        await pipe.close()


async def test_error_replies_raise_what_redis_py_raises_and_the_connection_goes_on(server: RedisServer) -> None:
    pipe = RedisPipe("127.0.0.1", server.port, timeout=2.0)
    try:
        with pytest.raises(NoScriptError):
            await pipe.call("EVALSHA", "0" * 40, 0)
        await pipe.call("SET", "text", "x")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await pipe.call("LPUSH", "text", "y")
        # An error inside a script's reply table stays an element of the table.
        nested = await pipe.call("EVAL", "return {1, redis.error_reply('no')}", 0)
        assert nested[0] == 1 and isinstance(nested[1], ResponseError)
        assert await pipe.call("GET", "text") == b"x"
    finally:
        await pipe.close()


async def test_a_caller_that_gives_up_leaves_the_replies_of_the_others_in_order(server: RedisServer) -> None:
    pipe = RedisPipe("127.0.0.1", server.port, timeout=5.0)
    try:
        slow = asyncio.create_task(pipe.call("BLPOP", "nothing-here", "0.3"))
        after = asyncio.create_task(pipe.call("ECHO", "after"))  # queued behind the blocking one
        await blocked_in_redis(server)
        slow.cancel()
        assert await after == b"after"
        assert await pipe.call("ECHO", "next") == b"next"
    finally:
        await pipe.close()


async def test_a_killed_redis_fails_what_is_in_flight_and_the_next_call_reconnects(server: RedisServer) -> None:
    pipe = RedisPipe("127.0.0.1", server.port, timeout=2.0)
    try:
        await pipe.call("SET", "kept", "1")
        blocked = asyncio.create_task(pipe.call("BLPOP", "never", "0"))
        await blocked_in_redis(server)
        server.kill()
        with pytest.raises(RedisConnectionError):
            await blocked
        with pytest.raises(RedisConnectionError):
            await pipe.call("GET", "kept")  # nothing listens: refused, at once
        server.start()
        assert await pipe.call("GET", "kept") == b"1"  # the append-only file kept it
    finally:
        await pipe.close()


async def test_a_paused_redis_is_a_timeout_within_the_limit_then_works_again(server: RedisServer) -> None:
    pipe = RedisPipe("127.0.0.1", server.port, timeout=0.5)
    try:
        await pipe.call("PING")
        os.kill(pid(server), signal.SIGSTOP)
        try:
            began = time.monotonic()
            calls = [asyncio.create_task(pipe.call("INCR", "n")) for _ in range(20)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(r, RedisTimeoutError) for r in results), results
            assert 0.4 < time.monotonic() - began < 2.0
        finally:
            os.kill(pid(server), signal.SIGCONT)
        assert await pipe.call("PING") == b"PONG"
        # The commands written before the timeout may have run once Redis woke: at most 20.
        assert int(await pipe.call("GET", "n") or 0) <= 20
    finally:
        await pipe.close()


async def test_password_and_refused_connections(tmp_path: Path) -> None:
    secured = RedisServer(tmp_path / "secured", extra_args=["--requirepass", "s3cret"]).start()
    try:
        pipe = pipe_for(redis.Redis.from_url(f"redis://:s3cret@127.0.0.1:{secured.port}/1"), timeout=2.0)
        assert pipe is not None
        assert await pipe.call("SET", "a", "1") == b"OK"
        await pipe.close()
        wrong = RedisPipe("127.0.0.1", secured.port, password="wrong", timeout=2.0)
        with pytest.raises(AuthenticationError):
            await wrong.call("PING")
        await wrong.close()
    finally:
        secured.stop()
    nobody = RedisPipe("127.0.0.1", free_port(), timeout=2.0)
    with pytest.raises(RedisConnectionError):
        await nobody.call("PING")


def test_only_plain_tcp_urls_get_a_pipe() -> None:
    assert pipe_for(redis.Redis.from_url("unix:///tmp/redis.sock"), timeout=1.0) is None
    assert pipe_for(redis.Redis.from_url("rediss://127.0.0.1:6380/0"), timeout=1.0) is None
