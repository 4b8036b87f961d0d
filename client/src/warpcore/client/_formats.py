"""Pure translation of structured output formats, shared by both clients: the SDK's shorthands and either vendor's
format object as a ResponseFormat, with the parser of the answer's text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from warpcore.v1 import tools_pb2

Parse = Callable[[str], Any]
_VENDOR_FORMATS = {
    "text": tools_pb2.RESPONSE_FORMAT_TYPE_TEXT,
    "json_object": tools_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
    "json_schema": tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
}
_JSON_FORMATS = (tools_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT, tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA)
_NOT_A_NAME = re.compile(r"[^a-zA-Z0-9_-]")


def response_format_message(response_format: Any) -> tuple[tools_pb2.ResponseFormat, Parse | None]:
    """The ResponseFormat for "json_object", a JSON Schema dict, a pydantic model class, or either vendor's format
    object; and the function that parses the answer's text: into the model, or for any other JSON format, as JSON."""
    message, parse = _format_message(response_format)
    if parse is None and message.type in _JSON_FORMATS:
        parse = json.loads
    return message, parse


def _format_message(response_format: Any) -> tuple[tools_pb2.ResponseFormat, Parse | None]:
    if isinstance(response_format, tools_pb2.ResponseFormat):
        return response_format, None
    if isinstance(response_format, Mapping) and response_format.get("type") in _VENDOR_FORMATS:
        return _vendor_format(response_format), None
    if response_format == "json_object":
        return tools_pb2.ResponseFormat(type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT), None
    parse: Parse | None = None
    if isinstance(response_format, Mapping):
        schema = dict(response_format)
    elif hasattr(response_format, "model_json_schema"):
        schema, parse = response_format.model_json_schema(), response_format.model_validate_json
    else:
        raise TypeError('response_format is "json_object", a JSON Schema dict or a pydantic model class')
    return _schema_format(schema, str(schema.get("title") or "response")), parse


def _schema_format(schema: Any, name: str, *, strict: bool = False) -> tools_pb2.ResponseFormat:
    return tools_pb2.ResponseFormat(
        type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        name=_NOT_A_NAME.sub("_", name)[:64],
        schema_json=json.dumps(schema),
        strict=strict,
    )


def _vendor_format(response_format: Mapping[str, Any]) -> tools_pb2.ResponseFormat:
    """OpenAI's {"type": "text" | "json_object" | "json_schema", "json_schema": {...}}, or Anthropic's output format
    {"type": "json_schema", "schema": ...} (always enforced exactly, so strict). A JSON Schema cannot be mistaken for
    one: no schema's type is text, json_object or json_schema."""
    fields = dict(response_format)
    kind = fields.pop("type")
    if kind != "json_schema":
        if fields:
            raise ValueError(f"a response_format of type {kind!r} holds nothing else")
        return tools_pb2.ResponseFormat(type=_VENDOR_FORMATS[kind])
    if fields.keys() == {"schema"}:
        return _schema_format(fields["schema"], "response", strict=True)
    spec = fields.pop("json_schema", None)
    if fields or not isinstance(spec, Mapping) or not spec.keys() <= {"name", "schema", "strict", "description"}:
        raise ValueError(
            "a json_schema response_format holds json_schema: {name, schema, strict, description} (OpenAI) or schema"
            " (Anthropic)"
        )
    schema = dict(spec.get("schema", {}))
    # What the format is for: the schema's own description says it to every backend.
    description = spec.get("description")
    if description is not None and schema.setdefault("description", description) != description:
        raise ValueError("the json_schema's description differs from its schema's own; give one of them")
    name = str(spec.get("name") or "response")
    return _schema_format(schema, name, strict=spec.get("strict") is True)
