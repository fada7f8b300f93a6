"""A client process for the hot-product test: N concurrent ReserveStock calls.

python -m tests.load_reserve PORT PRODUCT COUNT PREFIX  -> prints {"ok": .., "short": .., <other status code>: ..}
"""

from __future__ import annotations

import asyncio
import json
import sys

import grpc

from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.common.v1 import common_pb2


async def main(port: int, product: str, count: int, prefix: str) -> dict[str, int]:
    results = {"ok": 0, "short": 0}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)

        async def one(index: int) -> None:
            request = catalog_pb2.ReserveStockRequest(
                order_id=f"{prefix}-{index}",
                items=[common_pb2.LineItem(product_id=product, quantity=1)],
                draft=common_pb2.OrderDraft(user_id=f"user-{index % 7}"),
            )
            try:
                await stub.ReserveStock(request, timeout=60)
                results["ok"] += 1
            except grpc.aio.AioRpcError as error:
                kind = "short" if error.code() == grpc.StatusCode.FAILED_PRECONDITION else error.code().name
                results[kind] = results.get(kind, 0) + 1

        await asyncio.gather(*(one(i) for i in range(count)))
    return results


if __name__ == "__main__":
    port, product, count, prefix = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    print(json.dumps(asyncio.run(main(port, product, count, prefix))))
