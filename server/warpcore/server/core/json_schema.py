"""JSON text from requests (schemas, tool arguments) parsed in time bounded by its size, and JSON Schemas checked
against their metaschema before anything is sent: by `jsonschema_rs` (Rust), for a dialect it knows, which checks a
schema of MAX_SCHEMA_BYTES in about a millisecond where the `jsonschema` library takes about a second (draft 2020-12's
dynamic references), on the event loop, stalling every other call."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable
from typing import Any

import jsonschema
import jsonschema_rs

from warpcore.server.core import json_text
from warpcore.server.core.bounds import MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH, quoted, shortened
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.tooling import (
    JsonSchema,
)


def parse_json(text: str, field: str, max_bytes: int, what: str, *, callers: bool = True) -> Any:
    """The value of JSON `text` of at most `max_bytes`, nested at most MAX_SCHEMA_DEPTH deep; parsing such text
    takes time bounded by its size. The error says what to send instead only when the text is the caller's
    (`callers`), not a backend's: a caller cannot mend what a model wrote."""
    if len(text.encode()) > max_bytes:
        raise InvalidArgumentError(f"{what} is longer than {max_bytes} bytes", field=field)
    if not text.strip():  # JSON's own error for it, "Expecting value: line 1 column 1", says nothing of what to send
        advice = ': send JSON text ("{}" for an empty object)' if callers else ""
        raise InvalidArgumentError(f"{what} is empty{advice}", field=field)
    try:
        value = json_text.loads(text)
    except RecursionError:
        raise InvalidArgumentError(f"{what} is nested deeper than {MAX_SCHEMA_DEPTH} levels", field=field) from None
    except json_text.JsonNumberError as error:
        raise InvalidArgumentError(f"{what} holds {error}", field=field) from None
    except ValueError as error:
        raise InvalidArgumentError(f"{what} is not valid JSON: {error}", field=field) from None
    if _nested_deeper(value, MAX_SCHEMA_DEPTH):
        raise InvalidArgumentError(f"{what} is nested deeper than {MAX_SCHEMA_DEPTH} levels", field=field)
    where = json_text.unpaired_surrogate(text, value)
    if where is not None:
        advice = "; send valid Unicode text" if callers else ""
        raise InvalidArgumentError(
            f"{what} holds an unpaired UTF-16 surrogate escape (\\ud800 to \\udfff without its other half)"
            f" at {where or 'the top level'}{advice}",
            field=field,
        )
    return value


def parse_schema(text: str, field: str) -> JsonSchema:
    """A JSON Schema from its JSON text (bounded as `parse_json` bounds it), checked as `_checked` checks one."""
    return _checked(parse_json(text, field, MAX_SCHEMA_BYTES, "the JSON Schema"), field)


def check_schema(schema: object, field: str) -> JsonSchema:
    """A JSON Schema given as a parsed value (the HTTP door's bodies): bounded as `parse_schema` bounds its text, at
    most MAX_SCHEMA_BYTES of JSON and MAX_SCHEMA_DEPTH deep, then checked as `_checked` checks one."""
    if isinstance(schema, dict):
        # Depth first: the length's measure, and the metaschema's check, recurse once per level.
        if _nested_deeper(schema, MAX_SCHEMA_DEPTH):
            raise InvalidArgumentError(f"the JSON Schema is nested deeper than {MAX_SCHEMA_DEPTH} levels", field=field)
        if len(json.dumps(schema, ensure_ascii=False).encode()) > MAX_SCHEMA_BYTES:
            raise InvalidArgumentError(f"the JSON Schema is longer than {MAX_SCHEMA_BYTES} bytes", field=field)
    return _checked(schema, field)


# The dialects whose metaschemas jsonschema_rs holds; for any other it would fetch the metaschema from the network.
_CHECKED_IN_RUST = frozenset(
    {
        jsonschema.Draft4Validator,
        jsonschema.Draft6Validator,
        jsonschema.Draft7Validator,
        jsonschema.Draft201909Validator,
        jsonschema.Draft202012Validator,
    }
)


def _checked(schema: object, field: str) -> JsonSchema:
    """`schema` if it is a JSON object valid against its dialect's metaschema (draft 2020-12 unless its "$schema"
    names another the library knows)."""
    if not isinstance(schema, dict):
        raise InvalidArgumentError("a JSON Schema must be a JSON object", field=field)
    validator: type[jsonschema.protocols.Validator] = jsonschema.Draft202012Validator
    if "$schema" in schema:
        dialect = schema["$schema"]
        # The stubs do not say that the default may be None, which the library returns for an unknown dialect.
        known = jsonschema.validators.validator_for(schema, default=None) if isinstance(dialect, str) else None  # type: ignore[arg-type]
        if known is None:
            raise InvalidArgumentError(f"unknown JSON Schema dialect {quoted(str(dialect))}", field=field)
        validator = known
    try:
        if validator in _CHECKED_IN_RUST:
            jsonschema_rs.meta.validate(schema)
        else:
            validator.check_schema(schema)
    except jsonschema_rs.ValidationError as error:
        shown = json.dumps(error.instance, ensure_ascii=False, separators=(",", ":"))  # as serde_json writes it
        raise _invalid(error.instance_path, _requoted(error.message, error.instance, shown), field) from None
    except jsonschema.SchemaError as error:
        raise _invalid(error.path, _requoted(error.message, error.instance, repr(error.instance)), field) from None
    _check_inner(schema, field)
    return schema


_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
"""Keywords whose values map names to schemas."""
_SCHEMA_VALUES = frozenset(
    {
        *("items", "prefixItems", "additionalItems", "additionalProperties", "unevaluatedItems"),
        *("unevaluatedProperties", "contains", "propertyNames", "not", "if", "then", "else", "allOf", "anyOf", "oneOf"),
    }
)
"""Keywords whose values are a schema or a list of schemas; any other keyword's value is no schema, and a "$ref" in
it is data."""


def _requoted(problem: str, instance: object, shown: str) -> str:
    """A library's words on a schema, which begin with the caller's value (`instance`) as the library wrote it
    (`shown`: whole, with invisible characters as themselves), quoted as the server quotes any; the rest cut where
    long, so that what is wrong survives a deep path."""
    if problem.startswith(shown):
        return quoted(instance) + shortened(problem[len(shown) :], 300)
    return shortened(problem, 300)


def _invalid(path: Iterable[object], problem: str, field: str) -> InvalidArgumentError:
    """A schema refused at `path`, cut where long."""
    where = shortened("/".join(str(part) for part in path)) or "the top level"
    return InvalidArgumentError(f"invalid JSON Schema at {where}: {problem}", field=field)


# JSON Schema's patterns are ECMA-262 regular expressions (what a hosted API compiles them as), which Python's `re`
# is not: the library's own "regex" format check reads them so.
_ECMA_REGEX = jsonschema_rs.validator_for({"format": "regex"}, validate_formats=True)


def _check_inner(schema: dict[str, Any], field: str) -> None:
    """Every pattern (`pattern`, a `patternProperties` name) is a regular expression, and every reference into this
    schema ("#" or "#/..." JSON pointers) points at something: no backend can use a schema whose pattern does not
    compile or whose reference dangles, and the same request gets the same answer whichever backend serves it. A
    schema with an "$id" below its root changes what such pointers mean there, and its references are left to its
    backend."""
    pending: list[tuple[Any, str]] = [(schema, "")]
    references: list[tuple[str, str]] = []
    local_references = True
    while pending:
        node, path = pending.pop()
        if not isinstance(node, dict):
            continue
        if path and "$id" in node:
            local_references = False
        reference = node.get("$ref")
        if isinstance(reference, str) and (reference == "#" or reference.startswith("#/")):
            references.append((path, reference))
        patterns = [(f"{path}/pattern", node["pattern"])] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            patterns += [(f"{path}/patternProperties", name) for name in node["patternProperties"]]
        for at, pattern in patterns:
            if not _ECMA_REGEX.is_valid(pattern):
                raise _invalid([at.lstrip("/")], f"{quoted(pattern)} is not a regular expression", field)
        for key, value in node.items():
            if key in _SCHEMA_MAPS and isinstance(value, dict):
                pending += [(inner, f"{path}/{key}/{name}") for name, inner in value.items()]
            elif key in _SCHEMA_VALUES:
                items = enumerate(value) if isinstance(value, list) else [(None, value)]
                pending += [(inner, f"{path}/{key}" + ("" if at is None else f"/{at}")) for at, inner in items]
    for path, reference in references if local_references else ():
        if referenced(schema, reference) is NOTHING:
            where = shortened(path.lstrip("/")) or "the top level"
            raise InvalidArgumentError(
                f"invalid JSON Schema at {where}: $ref {quoted(reference)} points at nothing in this schema",
                field=field,
            )


NOTHING = object()
"""What `referenced` gives for a reference that points at nothing."""


def referenced(schema: Any, reference: str) -> Any:
    """The part of `schema` a reference into it ("#" or "#/..." JSON pointer, in a URI fragment: percent-encoded)
    points at, or NOTHING."""
    target: Any = schema
    for part in reference[2:].split("/") if reference != "#" else ():
        key = urllib.parse.unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(target, list) and key.isdigit() and int(key) < len(target):
            target = target[int(key)]
        elif isinstance(target, dict) and key in target:
            target = target[key]
        else:
            return NOTHING
    return target


def _nested_deeper(value: object, most: int) -> bool:
    """Whether objects and arrays nest deeper than `most` levels in a parsed JSON value: walked level by level, with
    only the containers of each level kept (a request's megabytes of arguments are mostly scalars), and no further
    than `most` levels."""
    level: list[dict[object, object] | list[object]] = [value] if isinstance(value, dict | list) else []
    for _ in range(most):
        inner: list[dict[object, object] | list[object]] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            inner += [child for child in children if isinstance(child, dict | list)]
        if not inner:
            return False
        level = inner
    return True
