"""The OpenAPI 3.1 document at /openapi.json, made from the route table.

Answers are described by the ``gateway.schemas`` types the handlers build
(mypy checks the handlers against them), request bodies by the models they
are read with, parameters by their declarations: the JSON Schemas come from
pydantic, and OpenAPI 3.1 takes JSON Schema 2020-12 as it is.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, TypeAdapter

from gateway import schemas
from gateway.problems import RETRY_AFTER_SECONDS
from gateway.routes import JSON, MESH_PROBLEMS, PROBLEM, Answer, Operation

REF = "#/components/schemas/{model}"
PROBLEM_DESCRIPTIONS = {
    400: "invalid input: `violations` names each field",
    404: "not found",
    409: "the request conflicts with the current state (or the Idempotency-Key was used with another body)",
    429: "the mesh is overloaded: try again later",
    500: "unexpected error (the detail carries only a trace id)",
    503: "the mesh (or a part of it) is unavailable: try again (Retry-After)",
    504: "the mesh did not answer in time: the outcome is unknown, retrying with the same key is safe",
}
# Tags whose operations call the mesh, and so may answer its transient problems.
MESH_TAGS = ("catalog", "orders", "analytics", "events")


class _Schemas:
    """components/schemas, filled as types are referred to."""

    def __init__(self) -> None:
        self.found: dict[str, Any] = {}

    def ref(self, kind: type) -> dict[str, str]:
        name = kind.__name__
        if name not in self.found:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                schema = kind.model_json_schema(ref_template=REF, mode="validation")
            else:
                schema = TypeAdapter(kind).json_schema(ref_template=REF, mode="serialization")
            self.found.update(schema.pop("$defs", {}))
            self.found[name] = schema
        return {"$ref": REF.format(model=name)}


def document(operations: list[Operation], version: str) -> dict[str, Any]:
    found = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, found)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ordermesh gateway",
            "version": version,
            "description": "The mesh's JSON API, its Server-Sent Events and its web console (docs/gateway.md). "
            "Every error is an RFC 9457 problem document (application/problem+json).",
        },
        "paths": paths,
        "components": {"schemas": dict(sorted(found.found.items()))},
    }


def _operation(op: Operation, found: _Schemas) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    parameters += [
        {"name": p.name, "in": "query", "required": p.required, "description": p.description, "schema": p.schema()}
        for p in op.params
    ]
    parameters += [
        {"name": p.name, "in": "header", "required": False, "description": p.description, "schema": p.schema()}
        for p in op.headers
    ]
    responses = {str(a.status): _answer(a, found) for a in (op.answer, *op.others)}
    problems = set(op.problems) | (set(MESH_PROBLEMS) if op.tag in MESH_TAGS else set())
    for status in sorted(problems):
        responses[str(status)] = _problem(PROBLEM_DESCRIPTIONS[status], found, retry=status == 503)
    responses["default"] = _problem("any other error (an unknown path is 404, a method not allowed 405)", found)
    described: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": parameters,
        "responses": responses,
    }
    if op.body is not None:
        # A body whose every field has a default may be left out (an empty body is {}).
        required = any(f.is_required() for f in op.body.model_fields.values())
        described["requestBody"] = {"required": required, "content": {JSON: {"schema": found.ref(op.body)}}}
    return described


def _answer(answer: Answer, found: _Schemas) -> dict[str, Any]:
    described: dict[str, Any] = {"description": answer.description}
    if answer.schema is not None:
        described["content"] = {answer.media_type: {"schema": found.ref(answer.schema)}}
    elif answer.media_type:
        described["content"] = {answer.media_type: {"schema": {"type": "string"}}}
    if answer.headers:
        described["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in answer.headers.items()
        }
    return described


def _problem(description: str, found: _Schemas, *, retry: bool = False) -> dict[str, Any]:
    described: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM: {"schema": found.ref(schemas.Problem)}},
    }
    if retry:
        described["headers"] = {
            "Retry-After": {
                "description": f"seconds to wait ({RETRY_AFTER_SECONDS})",
                "required": True,
                "schema": {"type": "string"},
            }
        }
    return described
