"""Request validation: collect every violation, then raise one INVALID_ARGUMENT
that names each field.

    check = Checker()
    check.require(request.page_size >= 0, "page_size", "must not be negative")
    check.raise_if_any()

Only the mechanics live here; the rules of the types contexts share (ids,
money, addresses, lines, cards) are in ``common.checks``.
"""

from __future__ import annotations

import unicodedata

from google.protobuf.timestamp_pb2 import Timestamp

from mesh.errors import FieldViolation, InvalidArgument

# The range protobuf's Timestamp allows: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
MIN_SECONDS, MAX_SECONDS = -62_135_596_800, 253_402_300_799


class Checker:
    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def fail(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def require(self, condition: bool, field: str, description: str) -> bool:
        if not condition:
            self.fail(field, description)
        return condition

    def identifier(self, value: str, field: str, max_length: int = 128) -> None:
        if not value:
            self.fail(field, "is required")
        elif len(value) > max_length:
            self.fail(field, f"must be at most {max_length} characters")

    def text(self, value: str, field: str, max_length: int) -> None:
        """Free text the order database stores: within its column (characters, as
        VARCHAR counts them) and printable. Any script: the order tables are full
        Unicode (utf8mb4 on MariaDB)."""
        if len(value) > max_length:
            self.fail(field, f"must be at most {max_length} characters, got {len(value)}")
        elif any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
            self.fail(field, "must not contain control characters")

    def timestamp(self, value: Timestamp, field: str) -> None:
        """Within what a Timestamp may hold (years 1 to 9999, nanos 0 to 999,999,999):
        anything else cannot be turned into a time, and would fail the call later."""
        if not MIN_SECONDS <= value.seconds <= MAX_SECONDS:
            self.fail(f"{field}.seconds", f"must be from {MIN_SECONDS} to {MAX_SECONDS} (years 1 to 9999)")
        if not 0 <= value.nanos <= 999_999_999:
            self.fail(f"{field}.nanos", "must be from 0 to 999999999")

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument(self.violations)
