"""Domain errors and their mapping to gRPC status codes with google.rpc details.

Domain code raises these; the server interceptor turns them into a status the
caller can act on. Anything else is unexpected: logged once with the trace id
and returned as INTERNAL without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from redis import exceptions as redis_errors
from sqlalchemy import exc as sql_errors


class DomainError(Exception):
    """An expected failure with a message a person can act on."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> list[any_pb2.Any]:
        return []


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class InvalidArgument(DomainError):
    """Bad input: names every offending field (google.rpc.BadRequest)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation]) -> None:
        if not violations:
            raise ValueError("InvalidArgument needs at least one violation")
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))

    @classmethod
    def one(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])

    def details(self) -> list[any_pb2.Any]:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in self.violations
            ]
        )
        return [_pack(bad)]


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key} not found")
        self.kind = kind
        self.key = key

    def details(self) -> list[any_pb2.Any]:
        return [_pack(error_details_pb2.ResourceInfo(resource_type=self.kind, resource_name=self.key))]


@dataclass(frozen=True)
class PreconditionViolation:
    type: str
    subject: str
    description: str


class FailedPrecondition(DomainError):
    """The request is valid but the system is not in a state to do it."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, violations: list[PreconditionViolation] | None = None) -> None:
        super().__init__(message)
        self.violations = violations or []

    def details(self) -> list[any_pb2.Any]:
        if not self.violations:
            return []
        failure = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=v.type, subject=v.subject, description=v.description
                )
                for v in self.violations
            ]
        )
        return [_pack(failure)]


class AlreadyExists(DomainError):
    """The key the caller chose is taken by something else (google.rpc.BadRequest names it)."""

    code = grpc.StatusCode.ALREADY_EXISTS

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.violation = FieldViolation(field, description)

    def details(self) -> list[any_pb2.Any]:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=self.violation.field, description=self.violation.description
                )
            ]
        )
        return [_pack(bad)]


class Unavailable(DomainError):
    """A dependency is down or behind an open breaker: the caller may retry."""

    code = grpc.StatusCode.UNAVAILABLE


class Relayed(DomainError):
    """A dependency's expected error, passed on to our caller unchanged
    (code, message and google.rpc details), e.g. catalog's FAILED_PRECONDITION
    naming the short products, relayed by checkout."""

    def __init__(self, code: grpc.StatusCode, message: str, details: list[any_pb2.Any]) -> None:
        super().__init__(message)
        self.code = code
        self._details = details

    @classmethod
    def of(cls, error: grpc.aio.AioRpcError) -> Relayed:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        details = list(status.details) if status is not None else []
        return cls(error.code(), error.details() or error.code().name, details)

    def details(self) -> list[any_pb2.Any]:
        return self._details


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status(error: DomainError) -> grpc.Status:
    """The gRPC status (code, message, google.rpc.Status details) for ``error``."""
    code_value: int = error.code.value[0]
    status = status_pb2.Status(code=code_value, message=error.message, details=error.details())
    return rpc_status.to_status(status)


def unavailable_cause(error: BaseException) -> str | None:
    """A short name for an infrastructure failure (Redis, SQL, network, timeout),
    which callers should see as UNAVAILABLE and may retry; None for a bug."""
    if isinstance(error, (redis_errors.ConnectionError, redis_errors.TimeoutError)) or redis_refused(error):
        return "redis"
    if isinstance(error, (sql_errors.OperationalError, sql_errors.TimeoutError)) or (
        isinstance(error, sql_errors.DBAPIError) and error.connection_invalidated
    ):
        return "database"
    if isinstance(error, (ConnectionError, TimeoutError)):
        return "network"
    return None


# Redis answers, but refuses writes: a replica after failover (READONLY), a
# failed snapshot with stop-writes-on-bgsave-error (MISCONF), maxmemory (OOM),
# a script stuck (BUSY). (LOADING is a ConnectionError in redis-py.)
# redis-py strips the code of the ones it has a class for; an error raised
# inside a script keeps its code in the message.
_REFUSED = (redis_errors.ReadOnlyError, redis_errors.OutOfMemoryError, redis_errors.MasterDownError)
_REFUSAL_CODES = ("READONLY", "MISCONF", "OOM", "BUSY", "MASTERDOWN")


def redis_refused(error: BaseException) -> bool:
    """True for a Redis that is up but refuses the command for a while: the
    caller should retry later; it is not a bug and not an outage of the link."""
    if isinstance(error, _REFUSED):
        return True
    return isinstance(error, redis_errors.ResponseError) and str(error).startswith(_REFUSAL_CODES)


def plain_status(code: grpc.StatusCode, message: str) -> grpc.Status:
    """A status with no details beyond its message."""
    code_value: int = code.value[0]
    return rpc_status.to_status(status_pb2.Status(code=code_value, message=message))


def internal_status(trace_id: str) -> grpc.Status:
    message = f"internal error (trace {trace_id})" if trace_id else "internal error"
    return plain_status(grpc.StatusCode.INTERNAL, message)


class StartupError(RuntimeError):
    """Something the process needs is missing (a RocketMQ topic, say): it exits
    with this message instead of serving half-wired."""
