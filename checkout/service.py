"""CheckoutService servicer.

PlaceOrder arrives with the saga; until then the generated base class answers
UNIMPLEMENTED, while the process already serves health, reflection and metrics.
"""

from __future__ import annotations

from ordermesh.checkout.v1 import checkout_pb2_grpc


class CheckoutService(checkout_pb2_grpc.CheckoutServiceServicer):
    pass
