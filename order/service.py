"""OrderService servicer.

GetOrder, ListOrders, CancelOrder and ReviewOrder arrive with the order
pipeline; until then the generated base class answers UNIMPLEMENTED.
"""

from __future__ import annotations

from ordermesh.order.v1 import order_pb2_grpc


class OrderService(order_pb2_grpc.OrderServiceServicer):
    pass
