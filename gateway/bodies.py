"""Request bodies: JSON read strictly (no coercion of "5" to 5), every bad
field named in one 400 problem, never echoing what was sent (a card number
must not come back in an error).

The JSON parser refuses lone surrogate escapes and invalid UTF-8 as
invalid JSON, so every string read is one a protobuf string can hold.

The gateway checks only what the JSON must be to become the mesh's request
(types, required keys, 32-bit integers); the rules of the domain (lines,
quantities, Luhn, expiry) are the mesh's, which answers with the same
field names.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request

from gateway import schemas
from gateway.problems import Problem

M = TypeVar("M", bound=BaseModel)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


Int32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX)]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class LineItemBody(_Body):
    product_id: str
    quantity: Int32


class AddressBody(_Body):
    street_address: str = ""
    city: str = ""
    state: str = ""
    country: str
    zip_code: str


class CreditCardBody(_Body):
    number: str = Field(description="Never returned, logged or put on a span.")
    cvv: Int32
    expiration_year: Int32
    expiration_month: Int32


class PlaceOrderBody(_Body):
    user_id: str
    items: list[LineItemBody]
    address: AddressBody
    email: str
    credit_card: CreditCardBody


class CancelBody(_Body):
    reason: str = ""


class ReviewBody(_Body):
    approve: bool
    reviewer: str
    note: str = ""


async def read_body(request: Request, model: type[M], max_bytes: int) -> M:
    """The request's JSON body as ``model``; an empty body is ``{}`` (all defaults)."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            raise Problem.invalid([{"field": "body", "description": f"must be at most {max_bytes} bytes"}])
    try:
        data: Any = model.model_validate_json(bytes(raw) or b"{}", strict=True)
    except ValidationError as error:
        raise Problem.invalid([_violation(e) for e in error.errors(include_input=False, include_url=False)]) from None
    return data  # type: ignore[no-any-return]


DESCRIPTIONS = {
    "missing": "is required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "list_type": "must be an array",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "json_invalid": "is not valid JSON",
    "json_type": "is not valid JSON",
}


def _violation(error: ErrorDetails) -> schemas.Violation:
    kind = error["type"]
    if kind in ("greater_than_equal", "less_than_equal"):
        ctx = error.get("ctx", {})
        bound = ctx.get("ge", ctx.get("le"))
        description = f"must be {'at least' if kind == 'greater_than_equal' else 'at most'} {bound}"
    else:
        description = DESCRIPTIONS.get(kind, "is invalid")
    return {"field": field_path(error["loc"]) or "body", "description": description}


def field_path(loc: tuple[int | str, ...]) -> str:
    """('items', 0, 'quantity') -> 'items[0].quantity', the mesh's way of naming it."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path
