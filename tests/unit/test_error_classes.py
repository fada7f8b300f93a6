"""Which failures callers see as UNAVAILABLE (retry) rather than INTERNAL (a bug)."""

from __future__ import annotations

import pytest
from redis import exceptions as redis_errors
from sqlalchemy import exc as sql_errors

from mesh.errors import Unavailable, redis_refused, unavailable_cause
from mesh.redis_pool import PoolExhausted


@pytest.mark.parametrize(
    "error",
    [
        redis_errors.ReadOnlyError("You can't write against a read only replica."),
        redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        redis_errors.ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable"),
        redis_errors.ResponseError("OOM command not allowed when used memory > 'maxmemory'. script: abc"),
        redis_errors.ResponseError("READONLY You can't write against a read only replica. script: abc"),
    ],
)
def test_a_redis_that_refuses_writes_is_unavailable(error: Exception) -> None:
    assert redis_refused(error)
    assert unavailable_cause(error) == "redis"


def test_a_script_error_is_a_bug_not_an_outage() -> None:
    error = redis_errors.ResponseError("bad quantity for sku-1")
    assert not redis_refused(error)
    assert unavailable_cause(error) is None


def test_an_sql_pool_timeout_is_unavailable() -> None:
    assert unavailable_cause(sql_errors.TimeoutError("QueuePool limit of size 10 overflow 10 reached")) == "database"


def test_a_busy_redis_pool_is_unavailable_and_not_a_connection_failure() -> None:
    error = PoolExhausted("no free Redis connection within 5s; retry")
    assert isinstance(error, Unavailable)
    assert not isinstance(error, redis_errors.ConnectionError)
