"""gRPC without a server: errors as a dependency's stub raises them, and a servicer context.

The server interceptor turns a DomainError into a status with google.rpc details
in the trailing metadata; a fake stub raises the same AioRpcError so the code
under test (breakers, Relayed.of, rpc_status.from_call) sees what it would see
from a real dependency.
"""

from __future__ import annotations

from typing import Any, cast

import grpc

from mesh.errors import DomainError, to_status


def rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    """A bare status without rich details: a deadline, a dependency that is down."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details or code.name, None)


def rpc_error_of(error: DomainError) -> grpc.aio.AioRpcError:
    """What a caller receives when a dependency's servicer raises ``error``."""
    status = to_status(error)
    return grpc.aio.AioRpcError(
        status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), status.details, None
    )


# The servicers under test never touch their context (errors are raised as
# DomainError and mapped by the interceptor), so none is built.
NO_CONTEXT = cast("grpc.aio.ServicerContext[Any, Any]", None)
