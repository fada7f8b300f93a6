"""Hypothesis strategies for any request message, derived from its descriptor.

Every field may be set or left out; numbers span their type's whole range,
strings run from empty to long and non-ASCII (NUL and right-to-left marks
included), enums take values the schema does not name, repeated fields hold a
few items, nested messages go three levels deep. The encoded request is then
sent as it is, or spoiled: cut short, replaced by random bytes, followed by an
unknown field, or followed by a known field with the wrong wire type (which a
proto3 parser keeps as an unknown field).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

F = FieldDescriptor
_INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}
MAX_DEPTH = 3
SPOILS = ("as is", "as is", "truncated", "random bytes", "unknown field", "wrong wire type")


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    # The edges and small values are where bugs live; the rest of the range too.
    edges = st.sampled_from(sorted({low, high, 0, 1, -1 if low < 0 else 2, low + 1, high - 1}))
    return st.one_of(edges, st.integers(-1000, 1000).filter(lambda n: low <= n <= high), st.integers(low, high))


def _texts() -> st.SearchStrategy[str]:
    odd = st.sampled_from(["", " ", "\x00", "é", "日本語", "\u202e", "😀", "a" * 300, "x" * 10_000, "-1", "sku-1004"])
    return st.one_of(odd, st.text(max_size=20), st.text(max_size=300))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type in _INT_RANGES:
        return _integers(*_INT_RANGES[field.type])
    if field.type == F.TYPE_ENUM:
        assert field.enum_type is not None
        named = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(named), _integers(-(2**31), 2**31 - 1))
    if field.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=64 if field.type == F.TYPE_DOUBLE else 32)
    if field.type == F.TYPE_BOOL:
        return st.booleans()
    if field.type == F.TYPE_STRING:
        return _texts()
    if field.type == F.TYPE_BYTES:
        return st.binary(max_size=300)
    raise ValueError(f"no strategy for field {field.full_name}")


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0) -> Message:
    message = message_factory.GetMessageClass(descriptor)()
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.type == F.TYPE_MESSAGE:
            nested = field.message_type
            assert nested is not None
            if depth >= MAX_DEPTH or nested.GetOptions().map_entry:
                continue  # no request has a map; deeper nesting adds nothing
            if field.is_repeated:
                for item in draw(st.lists(messages(nested, depth + 1), max_size=3)):
                    getattr(message, field.name).add().CopyFrom(item)
            else:
                getattr(message, field.name).CopyFrom(draw(messages(nested, depth + 1)))
        elif field.is_repeated:
            getattr(message, field.name).extend(draw(st.lists(_scalar(field), max_size=4)))
        else:
            setattr(message, field.name, draw(_scalar(field)))
    return message


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    """One encoded field: its tag, then a varint (0), 8 bytes (1), a length and bytes (2) or 4 bytes (5)."""
    tag = _varint(number << 3 | wire_type)
    if wire_type == 2:
        return tag + _varint(len(payload)) + payload
    if wire_type == 0:
        return tag + _varint(int.from_bytes(payload[:8] or b"\x00", "little"))
    return tag + (payload + bytes(8))[: 8 if wire_type == 1 else 4]


def _wire_type(field: FieldDescriptor) -> int:
    if field.type in (F.TYPE_MESSAGE, F.TYPE_STRING, F.TYPE_BYTES) or field.is_repeated:
        return 2
    if field.type in (F.TYPE_DOUBLE, F.TYPE_FIXED64, F.TYPE_SFIXED64):
        return 1
    if field.type in (F.TYPE_FLOAT, F.TYPE_FIXED32, F.TYPE_SFIXED32):
        return 5
    return 0


@st.composite
def requests(draw: st.DrawFn, descriptor: Descriptor) -> tuple[str, bytes]:
    """(how it was made, the bytes on the wire) for a request of ``descriptor``."""
    encoded = draw(messages(descriptor)).SerializeToString()
    spoil = draw(st.sampled_from(SPOILS))
    if spoil == "truncated" and encoded:
        return spoil, encoded[: draw(st.integers(0, len(encoded) - 1))]
    if spoil == "random bytes":
        return spoil, draw(st.binary(min_size=1, max_size=200))
    payload = draw(st.binary(max_size=16))
    if spoil == "unknown field":
        number = draw(st.integers(len(descriptor.fields) + 50, 2**29 - 1))
        return spoil, encoded + _field(number, draw(st.sampled_from([0, 1, 2, 5])), payload)
    if spoil == "wrong wire type" and descriptor.fields:
        field = draw(st.sampled_from(list(descriptor.fields)))
        wrong = draw(st.sampled_from([t for t in (0, 1, 2, 5) if t != _wire_type(field)]))
        return spoil, encoded + _field(field.number, wrong, payload)
    return "as is", encoded
