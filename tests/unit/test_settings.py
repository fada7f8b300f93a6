"""Settings: a bad environment variable fails start-up with its name.

That the process itself exits naming it is tests/integration/test_settings_startup.py.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mesh.settings import SettingsError, load_settings
from payment.settings import PaymentSettings


def test_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_PORT", "not-a-port")
    monkeypatch.setenv("PAYMENT_FAILURE_RATE", "1.5")
    with pytest.raises(SettingsError) as caught:
        load_settings(PaymentSettings)
    assert "GRPC_PORT" in str(caught.value)
    assert "PAYMENT_FAILURE_RATE" in str(caught.value)


def test_defaults_are_the_local_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRPC_PORT", "METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(PaymentSettings)
    assert (settings.grpc_port, settings.metrics_port) == (50054, 9104)


def test_the_three_tls_files_go_together() -> None:
    with pytest.raises(ValidationError, match="TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE go together"):
        PaymentSettings(tls_cert_file="mesh.pem")
    assert not PaymentSettings().tls_enabled
    assert PaymentSettings(tls_cert_file="c.pem", tls_key_file="k.pem", tls_ca_file="ca.pem").tls_enabled
