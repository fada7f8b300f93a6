"""Reject known fields that arrived with the wrong wire type.

proto3 parsers keep such a field as an *unknown* field and leave the real one
empty, so a client that sends ``amount`` as a number instead of a Money would
be read as "no amount". Naming the field is kinder than guessing.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from mesh.errors import FieldViolation, InvalidArgument


def check_wire_types(message: Message) -> None:
    violations: list[FieldViolation] = []
    _collect(message, "", violations)
    if violations:
        raise InvalidArgument(violations)


def _collect(message: Message, prefix: str, violations: list[FieldViolation]) -> None:
    descriptor = message.DESCRIPTOR
    for unknown in iter(UnknownFieldSet(message)):  # the stubs miss __iter__; iter() uses __getitem__
        field = descriptor.fields_by_number.get(unknown.field_number)
        if field is not None:
            violations.append(FieldViolation(prefix + field.name, f"wrong type for a {_kind(field)} field"))
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type is None or field.message_type.GetOptions().map_entry:
            continue
        if field.is_repeated:
            for index, item in enumerate(value):
                _collect(item, f"{prefix}{field.name}[{index}].", violations)
        else:
            _collect(value, f"{prefix}{field.name}.", violations)


def _kind(field: Any) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return str(field.message_type.name)
    names = {
        FieldDescriptor.TYPE_STRING: "string",
        FieldDescriptor.TYPE_BOOL: "bool",
        FieldDescriptor.TYPE_ENUM: "enum",
        FieldDescriptor.TYPE_BYTES: "bytes",
    }
    return names.get(field.type, "number")
