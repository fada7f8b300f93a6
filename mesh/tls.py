"""Mutual TLS between the mesh's processes, from files named in settings.

With TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE set, a server accepts only
clients whose certificate the CA signed, and a client verifies the server's.
Unset (the default), everything is plaintext: in Kubernetes a service mesh
may do this job instead.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from mesh.settings import ServiceSettings


def credentials_from_files(ca: str | Path, cert: str | Path, key: str | Path) -> grpc.ChannelCredentials:
    """A client's side of mutual TLS: its certificate and key, and the CA that signs servers'."""
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes(),
        private_key=Path(key).read_bytes(),
        certificate_chain=Path(cert).read_bytes(),
    )


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    """None: plaintext. Otherwise clients must present a certificate the CA signed."""
    if not settings.tls_enabled:
        return None
    cert, key, ca = (
        Path(f).read_bytes() for f in (settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file)
    )
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(settings: ServiceSettings) -> grpc.ChannelCredentials | None:
    """None: plaintext. Otherwise this process's certificate, and the CA that signs servers'."""
    if not settings.tls_enabled:
        return None
    return credentials_from_files(settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file)
