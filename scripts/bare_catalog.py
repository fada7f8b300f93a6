"""An empty CatalogService for make bench-stock: ReserveStock answers at once.

No middleware, no Redis, no validation: what one Python grpc.aio process can
answer on this machine at all, measured in the same run as the real catalog
so the two figures can be compared.
"""

from __future__ import annotations

import sys
from typing import Any

import grpc
import uvloop

from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc


class EmptyCatalog(catalog_pb2_grpc.CatalogServiceServicer):
    async def ReserveStock(
        self, request: catalog_pb2.ReserveStockRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> catalog_pb2.Reservation:
        return catalog_pb2.Reservation(order_id=request.order_id)


async def main(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    # Only ReserveStock is measured; the other methods answer UNIMPLEMENTED.
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(EmptyCatalog(), server)  # type: ignore[abstract]
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
