"""The faults: each breaks one thing under load and puts it back.

Each scenario runs on a mesh of its own: the embedded profile (Redis Streams,
SQLite), or the full one (RocketMQ, MariaDB) for the faults of those servers.
"""

from __future__ import annotations

import asyncio
import signal

import grpc
import redis.asyncio as redis

from chaos.run import PRODUCTS, Chaos, Scenario, finish_load, start_load, until_serving
from mesh.bus.redis_streams import parse_entry_id, text_of
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc

# Restarted after each SIGTERM: the order a deploy would roll them in.
ROLL = ["catalog", "payment", "shipping", "order", "checkout"]
STREAMS = ["events:order-placed", "events:order-updates", "events:order-status", "catalog:journal"]


async def _serving(chaos: Chaos, context: str, limit: float = 60) -> None:
    await until_serving(int(chaos.mesh.address(context).rsplit(":", 1)[1]), limit)


async def order_killed_twice(chaos: Chaos) -> None:
    """SIGKILL the order process, start it, and again: whatever it had read and
    not acknowledged is read again; what it committed is not applied twice."""
    for _ in range(2):
        chaos.kill("order", signal.SIGKILL)
        await asyncio.sleep(1.0)
        chaos.restart("order")
        await _serving(chaos, "order")
        await asyncio.sleep(1.0)


async def each_service_terminated(chaos: Chaos) -> None:
    """SIGTERM each service in turn and start it again (a rolling deploy): calls
    in flight finish within the grace period; new ones are retried by the client."""
    for context in ROLL:
        chaos.kill(context, signal.SIGTERM)
        chaos.restart(context)
        await _serving(chaos, context)


async def redis_killed(chaos: Chaos) -> None:
    """SIGKILL Redis and start it again from its append-only file: the catalog
    sells from SQL meanwhile, checkout answers UNAVAILABLE and is retried."""
    chaos.redis.kill()
    await asyncio.sleep(2.0)
    chaos.redis.start()


async def poison_in_every_stream(chaos: Chaos) -> None:
    """Entries no consumer can read, in every stream: each is dead-lettered
    after its attempts, and everything behind it flows. Done when every group
    of every stream has read past the poison and holds none of it pending
    (under a steady load a group is never "caught up": new entries keep coming)."""
    client = redis.Redis.from_url(chaos.redis.url)
    try:
        poison: dict[str, list[str]] = {}
        for stream in STREAMS:
            poison[stream] = [
                text_of(
                    await client.xadd(stream, {"type": "OrderPlaced", "order_id": "poison", "event": b"\xff\x00no"})
                ),
                text_of(await client.xadd(stream, {"garbage": "no type, no event"})),
            ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 180  # a group far behind (the soak's load, after a restart) first catches up
        while stuck := await _stuck_behind(client, poison):
            if loop.time() > deadline:
                raise TimeoutError(f"consumer groups stuck behind the poison: {', '.join(stuck)}")
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()


async def _stuck_behind(client: redis.Redis, poison: dict[str, list[str]]) -> list[str]:
    """The stream groups that have not yet read past, or still hold pending, an entry of ``poison``."""
    stuck = []
    for stream, entry_ids in poison.items():
        for group in await client.xinfo_groups(stream):
            name = group["name"]
            read_past = parse_entry_id(group["last-delivered-id"]) >= max(
                parse_entry_id(entry_id) for entry_id in entry_ids
            )
            pending = await client.xpending_range(stream, name, min=entry_ids[0], max=entry_ids[-1], count=10)
            if not read_past or pending:
                stuck.append(f"{stream}/{text_of(name)}")
    return stuck


# The processes with a forwarder (Redis stream -> RocketMQ topic) on the full profile.
FORWARDING = ["catalog", "checkout", "order"]


async def forwarder_killed(chaos: Chaos) -> None:
    """Arm the failpoint after a forwarder's send (SIGUSR1, see mesh.failpoints):
    each forwarding process SIGKILLs itself once RocketMQ has a batch and before
    the stream entries are acknowledged; started again, it reads them again and
    sends them twice, and the consumers apply each event once."""
    for context in FORWARDING:
        chaos.process(context).signal(signal.SIGUSR1)
    for context in FORWARDING:
        process = chaos.process(context)
        if await asyncio.to_thread(process.wait, 60) is None:
            chaos.problems.append(f"{context} never passed its armed failpoint")
            chaos.kill(context, signal.SIGKILL)
        process.stop()
        chaos.restart(context)
    for context in FORWARDING:
        await _serving(chaos, context)


async def mariadb_stopped(chaos: Chaos) -> None:
    """Stop MariaDB for 60 s: the SQL writers answer UNAVAILABLE and retry,
    consumers leave their batches unacknowledged, Redis keeps selling its quota."""
    await asyncio.to_thread(chaos.mariadb.stop)
    await asyncio.sleep(60)
    await asyncio.to_thread(chaos.mariadb.start)


async def rocketmq_stopped(chaos: Chaos) -> None:
    """Stop the RocketMQ proxy (and its name server) for 30 s: events wait in
    the Redis streams, the forwarders' breakers open, nothing is lost."""
    await asyncio.to_thread(chaos.rocketmq.stop)
    await asyncio.sleep(30)
    await asyncio.to_thread(chaos.rocketmq.start)


async def catalog_replica_killed(chaos: Chaos) -> None:
    """A burst of orders, and one catalog replica SIGKILLed in the middle of it:
    checkout's calls in flight to it fail UNAVAILABLE and go again to the other
    replica, which keeps selling from the same Redis."""
    burst = await start_load(chaos.mesh.address("checkout"), rate=60, seconds=5, products=PRODUCTS, prefix="burst")
    await asyncio.sleep(1.5)
    chaos.kill("catalog", signal.SIGKILL)
    summary = await finish_load(burst)
    chaos.loads.append(summary)
    if summary["failed"]:
        chaos.problems.append(f"the burst had {summary['failed']} orders not placed: {summary['codes']}")
    chaos.restart("catalog")
    await _serving(chaos, "catalog")


async def redis_partitioned(chaos: Chaos) -> None:
    """Cut catalog-2 from Redis for 15 s (its proxy holds every byte): its calls
    time out UNAVAILABLE, checkout goes again to the other replica; the link heals."""
    proxy = chaos.proxies["redis@catalog-2"]
    proxy.partition()
    await asyncio.sleep(15)
    proxy.heal()


async def payment_late(chaos: Chaos) -> None:
    """For 30 s every payment answer arrives 5 s late, past checkout's 3 s
    deadline: the charges are made and checkout does not hear of them; what it
    did not place an order for must be refunded."""
    proxy = chaos.proxies["payment"]
    proxy.latency = 5.0
    await asyncio.sleep(30)
    proxy.latency = 0.0


async def shipping_down(chaos: Chaos) -> None:
    """SIGKILL shipping and keep it down 60 s: orders wait PAID, the dispatcher's
    breaker opens; started again, every one of them ships once."""
    chaos.kill("shipping", signal.SIGKILL)
    await asyncio.sleep(60)
    chaos.restart("shipping")
    await _serving(chaos, "shipping")


HOT = "sku-1010"
STORM_STOCK = 100
STORM_LOADS = 3


async def hot_product_storm(chaos: Chaos) -> None:
    """One product with 100 units, and 10x as many buyers from three processes at
    once: exactly 100 orders placed, every other answered FAILED_PRECONDITION."""
    async with grpc.aio.insecure_channel(chaos.mesh.address("catalog")) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        await stub.SetStock(catalog_pb2.SetStockRequest(product_id=HOT, stock=STORM_STOCK))
    seconds, rate = 5.0, 10 * STORM_STOCK / STORM_LOADS / 5.0
    storm = [
        await start_load(chaos.mesh.address("checkout"), rate=rate, seconds=seconds, products=[HOT], prefix=f"storm{n}")
        for n in range(STORM_LOADS)
    ]
    summaries = [await finish_load(load) for load in storm]
    sold = sum(summary["codes"].get("OK", 0) for summary in summaries)
    refused = sum(summary["codes"].get("FAILED_PRECONDITION", 0) for summary in summaries)
    attempted = sum(summary["attempted"] for summary in summaries)
    chaos.loads += summaries
    if sold != STORM_STOCK or sold + refused != attempted:
        chaos.problems.append(f"storm: {sold} sold of {STORM_STOCK}, {refused} refused, {attempted} attempted")


async def connections_dropped(chaos: Chaos) -> None:
    """For 10 s every link (the load to checkout, everyone to catalog, payment and
    shipping) resets a connection mid-call now and then; every client calls
    again with the same request_id, and each order is placed once."""
    for proxy in chaos.proxies.values():
        proxy.drop_rate = 0.02
    await asyncio.sleep(10)
    for proxy in chaos.proxies.values():
        proxy.drop_rate = 0.0
    if not sum(proxy.dropped for proxy in chaos.proxies.values()):
        chaos.problems.append("no connection was dropped")


SCENARIOS = {
    "order-killed-twice": Scenario("order-killed-twice", "SIGKILL the order process, twice", order_killed_twice),
    "rolling-sigterm": Scenario("rolling-sigterm", "SIGTERM each service in turn", each_service_terminated),
    "redis-killed": Scenario("redis-killed", "SIGKILL Redis, restart from AOF", redis_killed),
    "poison": Scenario("poison", "undecodable entries in every stream", poison_in_every_stream),
    "forwarder-killed": Scenario(
        "forwarder-killed",
        "SIGKILL forwarders after send, before ack",
        forwarder_killed,
        profile="full",
        env={"FAILPOINTS": "forwarder.sent"},
    ),
    "mariadb-stopped": Scenario("mariadb-stopped", "MariaDB stopped for 60 s", mariadb_stopped, profile="full"),
    "rocketmq-stopped": Scenario("rocketmq-stopped", "RocketMQ stopped for 30 s", rocketmq_stopped, profile="full"),
    "catalog-replica-killed": Scenario(
        "catalog-replica-killed", "SIGKILL 1 of 2 catalogs mid-burst", catalog_replica_killed, catalog_replicas=2
    ),
    "redis-partitioned": Scenario(
        "redis-partitioned",
        "Redis cut from 1 of 2 catalogs, 15 s",
        redis_partitioned,
        catalog_replicas=2,
        proxied=("redis@catalog-2",),
    ),
    "payment-late": Scenario("payment-late", "payment answers 5 s late for 30 s", payment_late, proxied=("payment",)),
    "shipping-down": Scenario("shipping-down", "shipping SIGKILLed, down 60 s", shipping_down),
    "hot-product-storm": Scenario("hot-product-storm", "10x the stock, from 3 processes", hot_product_storm),
    "connections-dropped": Scenario(
        "connections-dropped",
        "links reset mid-call, 10 s",
        connections_dropped,
        proxied=("checkout", "catalog", "payment", "shipping"),
    ),
}
