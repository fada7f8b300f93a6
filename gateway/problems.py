"""RFC 9457 problem documents from the mesh's answers.

A failed call carries a gRPC code, a message a person can act on, and
``google.rpc.Status`` details (BadRequest field violations, PreconditionFailure)
that the server put in the trailing metadata (``grpc-status-details-bin``,
see mesh.errors); the gateway answers with the HTTP status the contract maps
the code to, the message as ``detail``, and the violations by field. Anything
unexpected is a 500 whose detail names only the trace id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from starlette.responses import JSONResponse

from gateway import schemas
from mesh.errors import DomainError
from mesh.telemetry import current_trace_id

PROBLEM_JSON = "application/problem+json"
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    # Answered by a dependency that is stopping (grpc/grpc#41785, see
    # mesh.breaker): it is going away, and a retry reaches another replica.
    grpc.StatusCode.CANCELLED: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# What a client should wait before trying again after a 503.
RETRY_AFTER_SECONDS = "1"


class Problem(Exception):
    """An HTTP answer that is an error; raised anywhere in a request, answered as is."""

    def __init__(
        self,
        status: int,
        code: grpc.StatusCode,
        detail: str,
        violations: Iterable[schemas.Violation] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.violations = list(violations)
        self.headers = dict(headers or {})
        if status == 503:
            self.headers.setdefault("Retry-After", RETRY_AFTER_SECONDS)

    @classmethod
    def invalid(cls, violations: Iterable[schemas.Violation]) -> Problem:
        listed = list(violations)
        detail = "; ".join(f"{v['field']}: {v['description']}" for v in listed)
        return cls(400, grpc.StatusCode.INVALID_ARGUMENT, detail, listed)

    @classmethod
    def of(cls, error: DomainError) -> Problem:
        """The answer to a failed call of the mesh (or a domain error raised here)."""
        status = HTTP_STATUS.get(error.code)
        if status is None:
            return cls.internal()
        code = grpc.StatusCode.UNAVAILABLE if error.code == grpc.StatusCode.CANCELLED else error.code
        return cls(status, code, error.message, violations_of(error.details()))

    @classmethod
    def internal(cls) -> Problem:
        trace_id = current_trace_id()
        detail = f"internal error (trace {trace_id})" if trace_id else "internal error"
        return cls(500, grpc.StatusCode.INTERNAL, detail)

    def document(self) -> schemas.Problem:
        name = self.code.name
        return {
            "type": "/problems/" + name.lower().replace("_", "-"),
            "title": name.replace("_", " ").capitalize(),
            "status": self.status,
            "detail": self.detail,
            "grpc_status": name,
            "violations": self.violations,
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.document(), self.status, headers=self.headers, media_type=PROBLEM_JSON)


def violations_of(details: Iterable[any_pb2.Any]) -> list[schemas.Violation]:
    """BadRequest field violations and PreconditionFailure violations (by subject)."""
    found: list[schemas.Violation] = []
    for detail in details:
        bad = error_details_pb2.BadRequest()
        failure = error_details_pb2.PreconditionFailure()
        if detail.Unpack(bad):
            found += [{"field": v.field, "description": v.description} for v in bad.field_violations]
        elif detail.Unpack(failure):
            found += [{"field": v.subject, "description": v.description} for v in failure.violations]
    return found


def not_found(what: str) -> Problem:
    return Problem(404, grpc.StatusCode.NOT_FOUND, f"{what} not found")
