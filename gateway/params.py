"""Query parameters, declared once: the route table lists them, requests are
read through them, and the OpenAPI document describes them from the same
declaration. A bad value is a 400 problem naming the parameter."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from google.protobuf.timestamp_pb2 import Timestamp

from gateway import schemas
from gateway.bodies import INT32_MAX, INT32_MIN
from gateway.problems import Problem
from mesh.validation import MAX_SECONDS, MIN_SECONDS

Kind = Literal["string", "integer", "date", "date-time", "enum"]
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind
    description: str
    required: bool = False
    minimum: int = INT32_MIN
    maximum: int = INT32_MAX
    values: tuple[str, ...] = ()
    pattern: str = ""  # a string's, as a regular expression

    def schema(self) -> dict[str, Any]:
        if self.kind == "integer":
            return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}
        if self.kind == "enum":
            return {"type": "string", "enum": list(self.values)}
        if self.kind in ("date", "date-time"):
            return {"type": "string", "format": self.kind}
        return {"type": "string", "pattern": self.pattern} if self.pattern else {"type": "string"}

    def read(self, raw: str) -> str | int | date | Timestamp:
        """The value of ``raw``; ValueError with a description when it is not one."""
        if self.kind == "integer":
            return _integer(raw, self.minimum, self.maximum)
        if self.kind == "enum":
            if raw not in self.values:
                raise ValueError("must be one of " + ", ".join(self.values))
            return raw
        if self.kind == "date":
            return _day(raw)
        if self.kind == "date-time":
            return _timestamp(raw)
        if self.pattern and not re.search(self.pattern, raw):
            raise ValueError(f"must match {self.pattern}")
        return raw


def _integer(raw: str, minimum: int, maximum: int) -> int:
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise ValueError("must be an integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ValueError(f"must be from {minimum} to {maximum}")
    return value


def _day(raw: str) -> date:
    if DAY.match(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    raise ValueError("must be a date as YYYY-MM-DD")


def _timestamp(raw: str) -> Timestamp:
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError("must be an RFC 3339 time such as 2026-11-30T05:01:02Z") from None
    if at.tzinfo is None:
        raise ValueError("must carry a time zone (Z or an offset)")
    try:
        seconds = int((at - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    except OverflowError:
        seconds = MIN_SECONDS - 1
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise ValueError("must be from year 1 to year 9999 in UTC")
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


class Query:
    """A request's parameters, read and checked against their declarations."""

    def __init__(self, values: Mapping[str, str | int | date | Timestamp]) -> None:
        self._values = values

    @classmethod
    def read(cls, raw: Mapping[str, str], params: Sequence[Param]) -> Query:
        values: dict[str, str | int | date | Timestamp] = {}
        violations: list[schemas.Violation] = []
        for param in params:
            given = raw.get(param.name)
            if given is None or given == "":
                if param.required:
                    violations.append({"field": param.name, "description": "is required"})
                continue
            try:
                values[param.name] = param.read(given)
            except ValueError as error:
                violations.append({"field": param.name, "description": str(error)})
        if violations:
            raise Problem.invalid(violations)
        return cls(values)

    def text(self, name: str, default: str = "") -> str:
        value = self._values.get(name, default)
        assert isinstance(value, str)
        return value

    def integer(self, name: str, default: int = 0) -> int:
        value = self._values.get(name, default)
        assert isinstance(value, int)
        return value

    def day(self, name: str) -> date | None:
        value = self._values.get(name)
        assert value is None or isinstance(value, date)
        return value

    def time(self, name: str) -> Timestamp | None:
        value = self._values.get(name)
        assert value is None or isinstance(value, Timestamp)
        return value


def page(description: str) -> tuple[Param, Param]:
    """``page_size`` and ``page_token``, as every listing takes them."""
    return (
        Param("page_size", "integer", f"{description} per page (0: the server's default; it caps it)", minimum=0),
        Param("page_token", "string", "the previous answer's next_page_token"),
    )
