"""Typed settings built from the environment, validated once at start-up.

Every process has one settings class (a subclass of :class:`ServiceSettings`)
and builds it with :func:`load_settings`, which turns a pydantic validation
error into a :class:`SettingsError` that names the environment variable, so a
typo in a deployment fails loudly with something a person can fix.
"""

from __future__ import annotations

from typing import ClassVar, Literal, TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogFormat = Literal["json", "text"]
# "embedded": events travel on Redis Streams only. "rocketmq": each producing
# process forwards its outbox streams to RocketMQ 5 topics and the order
# context consumes the topics (see mesh.bus.transport).
EventTransport = Literal["embedded", "rocketmq"]
# The most messages a forwarder puts in one SendMessage call (FORWARDER_SEND_BATCH):
# bench-forwarder measured no gain past 32 to 128, and a larger call only makes
# a fallback (its messages sent again one per call) larger.
SEND_BATCH_MAX = 256


class SettingsError(Exception):
    """A setting from the environment is missing or invalid."""


class ServiceSettings(BaseSettings):
    """What every ordermesh process shares. Subclasses add their own fields."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    service_name: ClassVar[str] = "ordermesh"

    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(50051, ge=0, le=65535)
    metrics_port: int = Field(9464, ge=0, le=65535, description="0 disables /metrics")
    # Worker processes serving the one gRPC port together (SO_REUSEPORT: the
    # kernel spreads connections over them), so one machine or pod uses all its
    # cores. A supervisor starts them (mesh.workers); worker i serves /metrics on
    # METRICS_PORT + i. WORKER_INDEX is set by the supervisor, not by hand.
    workers: int = Field(1, ge=1, le=64)
    worker_index: int = Field(0, ge=0, le=63)
    # Above this many RPCs in flight the server answers RESOURCE_EXHAUSTED at once
    # instead of queueing without bound.
    max_concurrent_rpcs: int = Field(1000, ge=1)
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # Clients balance over the addresses DNS gave them when they connected: a
    # connection closed (gracefully) at this age makes them resolve again, so new
    # pods behind a headless Service get calls too. 0 keeps connections forever.
    max_connection_age_seconds: float = Field(120.0, ge=0)
    # Wait this long after flipping health to NOT_SERVING, still serving, before
    # the server stops accepting: load balancers drop the endpoint, and clients
    # health-checking this address (CLIENT_HEALTH_CHECK) stop sending to it. A
    # call reaching a stopping server is answered CANCELLED, which no client
    # retries (mesh.server). 0 for in-process servers (tests); the local mesh
    # sets 0.5, the chart and compose 1.
    shutdown_delay_seconds: float = Field(0.0, ge=0)
    shutdown_grace_seconds: float = Field(10.0, ge=0)
    readiness_interval_seconds: float = Field(2.0, gt=0)

    log_level: str = "INFO"
    log_format: LogFormat = "json"

    otel_exporter_otlp_endpoint: str = ""
    otel_sampling_ratio: float = Field(1.0, ge=0, le=1)
    # CLIENT spans for SQL statements and Redis commands (mesh.storage_spans).
    otel_storage_spans: bool = True
    deployment_environment: str = "local"

    # Defaults for outgoing calls (see mesh.clients).
    client_deadline_seconds: float = Field(5.0, gt=0)
    # The health service clients watch on every address of a dependency, sending
    # calls only to those SERVING ("" = none). The chart sets "readiness": its
    # headless Services list pods before they are ready (see mesh.clients).
    client_health_check: str = ""
    breaker_fail_max: int = Field(5, ge=1)
    breaker_reset_seconds: float = Field(10.0, gt=0)
    # The event transport, the same for every process of a mesh.
    event_transport: EventTransport = "embedded"
    # The RocketMQ 5 proxy's gRPC endpoint (host:port).
    rocketmq_endpoint: str = "127.0.0.1:8081"
    # Forwarder: stream entries read per batch, and messages per SendMessage call
    # (a batch's calls go out concurrently). 1 sends one message per call: for a
    # proxy older than RocketMQ 5.5.0, which stores every message of a call of
    # several with the first one's id and properties (apache/rocketmq#9416).
    forwarder_batch_size: int = Field(200, ge=1, le=2000)
    forwarder_send_batch: int = Field(32, ge=1, le=SEND_BATCH_MAX)
    # Consumers: messages per receive, and how long a received message stays
    # invisible to others (the longest a batch may take before redelivery).
    rocketmq_batch_size: int = Field(32, ge=1, le=32)
    rocketmq_invisible_seconds: int = Field(30, ge=10, le=43200)
    # Mutual TLS between processes (mesh.tls): all three files, or none.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""

    @model_validator(mode="after")
    def _workers_share_a_fixed_port(self) -> ServiceSettings:
        if self.workers > 1 and self.grpc_port == 0:
            raise ValueError("WORKERS above 1 needs a fixed GRPC_PORT (the workers share it), not 0")
        return self

    @model_validator(mode="after")
    def _tls_files_together(self) -> ServiceSettings:
        given = [bool(self.tls_cert_file), bool(self.tls_key_file), bool(self.tls_ca_file)]
        if any(given) and not all(given):
            raise ValueError("TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE go together: set all three or none")
        return self

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert_file)


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S]) -> S:
    """Build ``cls`` from the environment; raise SettingsError naming each bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", "") or "")
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "?"
            variable = (prefix + field).upper()
            problems.append(f"{variable}: {error['msg']} (got {error.get('input')!r})")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


class RedisServiceSettings(ServiceSettings):
    """A process with a Redis client (catalog, checkout, order). Its pool waits
    for a free connection (mesh.redis_pool): under load a full pool queues calls
    instead of failing them as if Redis were down."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    # A Redis call slower than this fails (socket and connect timeout).
    redis_timeout_seconds: float = Field(2.0, gt=0)
    # Redis connections per process; a call waits up to the pool timeout for a
    # free one (then UNAVAILABLE), and a busy pool never counts as Redis down.
    redis_pool_size: int = Field(256, ge=1)
    redis_pool_timeout_seconds: float = Field(5.0, gt=0)
    # The per-request commands (the catalog's reservations and releases,
    # checkout's claims, answers and event appends) on one pipelined connection
    # (mesh/redis_pipe.py); false: through the pool like every other command.
    redis_pipe: bool = True


class ConsumerServiceSettings(RedisServiceSettings):
    """A process that consumes the event streams (order, analytics): its batches."""

    # Above the consumers' XREADGROUP BLOCK (200 ms), with room for a slow Redis.
    redis_timeout_seconds: float = Field(5.0, gt=0)
    consumer_batch_size: int = Field(100, ge=1, le=1000)
    # Wait after a short batch so the next one is fuller (see ConsumerConfig.linger_ms).
    consumer_linger_ms: int = Field(50, ge=0, le=1000)
    consumer_max_attempts: int = Field(5, ge=1)
    consumer_claim_idle_ms: int = Field(30_000, ge=100)
    # How long the record of an applied event is kept (mesh/retention.py): longer
    # than the bus could deliver it again (RocketMQ keeps messages 72 h by default).
    applied_events_retention_hours: float = Field(7 * 24, ge=1)
    # RocketMQ: the group reading this context's dead letters (its groups' DLQs)
    # into its dead_letters table; one per context (see mesh.bus.topology).
    dead_letter_group: str = "dead-letters"
