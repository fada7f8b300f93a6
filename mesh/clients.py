"""Outgoing gRPC channels: default deadline, keepalive, retries for idempotent calls."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import grpc
from opentelemetry import trace

from mesh.interceptors import ClientInterceptor

# Transient codes worth a transparent retry of an *idempotent* method.
RETRYABLE_CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")


def retry_service_config(service: str, idempotent_methods: Sequence[str]) -> str:
    """A gRPC service config that retries the named methods with backoff.

    Only methods that are safe to repeat are listed (reads, and writes keyed by
    an idempotency key such as order_id): a retry of anything else could apply
    twice.
    """
    config = {
        "methodConfig": [
            {
                "name": [{"service": service, "method": m} for m in idempotent_methods],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": list(RETRYABLE_CODES),
                },
            }
        ]
    }
    return json.dumps(config)


def make_channel(
    target: str,
    *,
    tracer: trace.Tracer,
    default_timeout: float,
    service: str = "",
    idempotent_methods: Sequence[str] = (),
    max_message_bytes: int = 4 * 1024 * 1024,
) -> grpc.aio.Channel:
    """An insecure aio channel (mTLS is the mesh's job in Kubernetes)."""
    options: list[tuple[str, object]] = [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Spread calls over every address a headless Service resolves to.
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.enable_retries", 1),
        # Reconnect quickly after a peer restarts (the default backoff grows to 2 minutes).
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]
    if service and idempotent_methods:
        options.append(("grpc.service_config", retry_service_config(service, idempotent_methods)))
    return grpc.aio.insecure_channel(
        target, options=options, interceptors=[cast(Any, ClientInterceptor(tracer, default_timeout))]
    )


def dependency_channels(
    addresses: Mapping[str, str],
    idempotent: Mapping[str, Sequence[str]],
    *,
    tracer: trace.Tracer,
    default_timeout: float,
) -> dict[str, grpc.aio.Channel]:
    """One channel per dependency, keyed by its full service name, each with
    retries for the methods that are safe to repeat."""
    return {
        service: make_channel(
            address,
            tracer=tracer,
            default_timeout=default_timeout,
            service=service,
            idempotent_methods=idempotent.get(service, ()),
        )
        for service, address in addresses.items()
    }
