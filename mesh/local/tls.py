"""A private CA and one certificate for a local mesh (``make run TLS=1``, tests):
every process serves and calls with the same certificate, valid for localhost
and 127.0.0.1, for both server and client authentication. Made with openssl."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import grpc

from mesh.local.procs import require_binary
from mesh.tls import credentials_from_files


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path

    def credentials(self) -> grpc.ChannelCredentials:
        """A client's side of mutual TLS with this certificate."""
        return credentials_from_files(self.ca, self.cert, self.key)

    def env(self) -> dict[str, str]:
        """The settings every process reads (mesh.tls)."""
        return {"TLS_CA_FILE": str(self.ca), "TLS_CERT_FILE": str(self.cert), "TLS_KEY_FILE": str(self.key)}


def make_certificates(directory: Path, days: int = 30) -> Certificates:
    """Made once per directory; kept while they exist."""
    made = Certificates(directory / "ca.pem", directory / "mesh.pem", directory / "mesh-key.pem")
    if all(p.exists() for p in (made.ca, made.cert, made.key)):
        return made
    directory.mkdir(parents=True, exist_ok=True)
    openssl = require_binary("openssl", "apt-get install openssl")
    ca_key, csr, extensions = directory / "ca-key.pem", directory / "mesh.csr", directory / "mesh.ext"
    extensions.write_text(
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
        "extendedKeyUsage = serverAuth, clientAuth\n"
        "basicConstraints = critical, CA:FALSE\n"
    )
    steps = [
        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", ca_key, "-out", made.ca, "-days", str(days), "-subj", "/CN=ordermesh local CA"],
        ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", made.key, "-out", csr, "-subj", "/CN=ordermesh"],
        ["x509", "-req", "-in", csr, "-CA", made.ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", made.cert, "-days", str(days), "-extfile", extensions],
    ]  # fmt: skip
    for step in steps:
        subprocess.run([openssl, *map(str, step)], check=True, capture_output=True, timeout=30)
    made.key.chmod(0o600)
    return made
