"""One load-generating process for the benchmarks: ReserveStock for a fixed time.

python scripts/bench_client.py PORT SECONDS CONCURRENCY PRODUCTS PREFIX
prints {"count": n, "errors": e, "latencies_ms": [...sampled...]}
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

import grpc

from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.common.v1 import common_pb2


async def run(port: int, seconds: float, concurrency: int, products: list[str], prefix: str) -> dict[str, object]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)

        async def worker(w: int) -> None:
            nonlocal errors
            i = 0
            while time.perf_counter() < deadline:
                request = catalog_pb2.ReserveStockRequest(
                    order_id=f"{prefix}-{w}-{i}",
                    items=[common_pb2.LineItem(product_id=random.choice(products), quantity=1)],
                    draft=common_pb2.OrderDraft(user_id=f"u{w}"),
                )
                started = time.perf_counter()
                try:
                    await stub.ReserveStock(request, timeout=30)
                    latencies.append((time.perf_counter() - started) * 1000)
                except grpc.aio.AioRpcError:
                    errors += 1
                i += 1

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return {"count": len(latencies), "errors": errors, "latencies_ms": latencies}


if __name__ == "__main__":
    port, seconds, concurrency, count, prefix = sys.argv[1:6]
    products = [f"bench-{i:04d}" for i in range(int(count))]
    print(json.dumps(asyncio.run(run(int(port), float(seconds), int(concurrency), products, prefix))))
