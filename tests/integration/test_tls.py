"""Mutual TLS between processes: a server takes only clients with a certificate
its CA signed; the settings take all three files or none."""

from __future__ import annotations

from pathlib import Path

import grpc

from mesh.local.tls import Certificates, make_certificates
from mesh.tls import credentials_from_files
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from payment.bootstrap import bootstrap
from payment.settings import PaymentSettings
from tests.support import serving


def settings(tmp_path: Path, certificates: Certificates) -> PaymentSettings:
    return PaymentSettings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        metrics_port=0,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'payment.db'}",
        tls_cert_file=str(certificates.cert),
        tls_key_file=str(certificates.key),
        tls_ca_file=str(certificates.ca),
    )


async def get_payment(channel: grpc.aio.Channel) -> grpc.StatusCode:
    try:
        await payment_pb2_grpc.PaymentServiceStub(channel).GetPayment(
            payment_pb2.GetPaymentRequest(order_id="o-tls"), timeout=3
        )
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_only_a_client_with_a_certificate_the_ca_signed_gets_in(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path / "tls")
    ca = certificates.ca.read_bytes()
    async with serving(await bootstrap(settings(tmp_path, certificates))) as (server, _):
        target = f"localhost:{server.port}"
        async with grpc.aio.secure_channel(target, certificates.credentials()) as channel:
            assert await get_payment(channel) == grpc.StatusCode.NOT_FOUND, "the call reached payment"
        async with grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca)) as channel:
            assert await get_payment(channel) == grpc.StatusCode.UNAVAILABLE, "no client certificate: refused"
        async with grpc.aio.insecure_channel(target) as channel:
            assert await get_payment(channel) == grpc.StatusCode.UNAVAILABLE, "plaintext: refused"
        stranger = make_certificates(tmp_path / "another-ca")
        other = credentials_from_files(certificates.ca, stranger.cert, stranger.key)  # trusts the server, not trusted
        async with grpc.aio.secure_channel(target, other) as channel:
            assert await get_payment(channel) == grpc.StatusCode.UNAVAILABLE, "a certificate of another CA: refused"
