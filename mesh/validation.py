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

from mesh.errors import FieldViolation, InvalidArgument


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

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument(self.violations)
