"""Page tokens for lists kept in (time, key) order: opaque to clients, and a
token that is not one of ours is INVALID_ARGUMENT naming ``page_token``."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_

from mesh.errors import InvalidArgument


def encode_position(at: datetime, key: str) -> str:
    """The token of the page that starts after the row at (``at``, ``key``)."""
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{key}".encode()).decode()


def decode_position(token: str) -> tuple[datetime, str] | None:
    """(time, key) of the last row of the previous page; None for the first page."""
    if not token:
        return None
    try:
        at, _, key = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        return datetime.fromisoformat(at), key
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument.one("page_token", "is not a token from a previous page") from None


def after_position(
    at_column: ColumnElement[datetime], key_column: ColumnElement[str], position: tuple[datetime, str]
) -> ColumnElement[bool]:
    """Rows strictly after ``position`` in (time, key) order: the keyset that
    makes a page cost the same wherever it starts."""
    at, key = position
    return or_(at_column > at, and_(at_column == at, key_column > key))


def before_position(
    at_column: ColumnElement[datetime], key_column: ColumnElement[str], position: tuple[datetime, str]
) -> ColumnElement[bool]:
    """Rows strictly before ``position`` in (time, key) order: the same keyset for
    a list kept newest first."""
    at, key = position
    return or_(at_column < at, and_(at_column == at, key_column < key))
