"""The part of JSON Schema that grammar-constrained sampling enforces: a schema is checked against it and turned
into a plain one (every $ref inlined, annotations dropped) before it is spelled out as a grammar.

Enforced: type (one or a list), properties, required, additionalProperties, items, prefixItems, minItems, maxItems,
enum, const, anyOf, minLength, maxLength, pattern (literal characters, positive classes, groups, alternation and
quantifiers), format (date, time, date-time, uuid), minimum, maximum, exclusiveMinimum, exclusiveMaximum, and $ref
to the schema's own definitions. Refused, because the output could not be guaranteed to validate: the keywords in
REFUSED_KEYWORDS, recursive $ref, and patterns outside that subset. Ignored, as JSON Schema itself ignores them:
annotations (title, description, default, examples...), other formats, and keywords JSON Schema does not define."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from warpcore.server.core.bounds import (
    GRAMMAR_MAX_OPTIONAL_PROPERTIES,
    GRAMMAR_MAX_REPEAT,
    GRAMMAR_MAX_SCHEMA_DEPTH,
    GRAMMAR_MAX_SCHEMA_NODES,
)
from warpcore.server.core.errors import InvalidArgumentError

KEPT_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "enum",
        "const",
        "anyOf",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
    }
)
REFUSED_KEYWORDS = frozenset(
    {
        "allOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "uniqueItems",
        "contains",
        "minContains",
        "maxContains",
        "multipleOf",
        "unevaluatedProperties",
        "unevaluatedItems",
        "additionalItems",
        "$dynamicRef",
        "$recursiveRef",
    }
)
_COUNTS = ("minItems", "maxItems", "minLength", "maxLength")
# Escapes a pattern may use: punctuation standing for itself, none of which needs escaping inside a JSON string.
_ESCAPABLE = frozenset(".-+*?()[]{}|^$/")
_QUANTIFIER = re.compile(r"\{(\d+)(,(\d*))?\}")


class SchemaInliner:
    """Checks the schemas of one generation, counting their subschemas together against GRAMMAR_MAX_SCHEMA_NODES."""

    def __init__(self) -> None:
        self.nodes = 0

    def inline(self, schema: Any, field: str) -> dict[str, Any]:
        """`schema` (found at request field `field`) as a plain schema, or an InvalidArgumentError naming `field`."""
        return _Walk(self, schema, field).schema(schema, "#", ())


class _Walk:
    def __init__(self, owner: SchemaInliner, root: Any, field: str) -> None:
        self._owner = owner
        self._root = root
        self._field = field

    def refuse(self, pointer: str, message: str, reason: str = "SCHEMA_UNSUPPORTED") -> InvalidArgumentError:
        return InvalidArgumentError(
            f"{self._field} at {pointer}: {message}",
            field=self._field,
            reason=reason,
            metadata={"schema_pointer": pointer},
        )

    def schema(self, node: Any, pointer: str, refs: tuple[str, ...], depth: int = 0) -> dict[str, Any]:
        if node is True:
            return {}
        if not isinstance(node, Mapping):
            raise self.refuse(pointer, "a schema that allows nothing (false, or not an object) cannot be generated")
        self._owner.nodes += 1
        if depth > GRAMMAR_MAX_SCHEMA_DEPTH:
            raise self.refuse(pointer, f"subschemas nest more than {GRAMMAR_MAX_SCHEMA_DEPTH} deep", "SCHEMA_TOO_LARGE")
        if self._owner.nodes > GRAMMAR_MAX_SCHEMA_NODES:
            raise self.refuse(
                pointer,
                f"the schemas of this request have more than {GRAMMAR_MAX_SCHEMA_NODES} subschemas (with every $ref"
                " inlined), too many for grammar-constrained sampling",
                "SCHEMA_TOO_LARGE",
            )
        if "$ref" in node:
            return self._ref(node, pointer, refs, depth)
        refused = sorted(REFUSED_KEYWORDS.intersection(node))
        if refused:
            raise self.refuse(pointer, f"{', '.join(refused)} cannot be enforced by grammar-constrained sampling")
        plain = {key: value for key, value in node.items() if key in KEPT_KEYWORDS}
        self._check_counts(plain, pointer)
        if "pattern" in plain:
            plain["pattern"] = self._pattern(plain["pattern"], f"{pointer}/pattern")
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if isinstance(plain.get(key), bool):
                raise self.refuse(pointer, f"boolean {key} (draft 4) is not supported; give the bound as a number")
        properties = plain.get("properties", {})
        if isinstance(properties, Mapping):
            missing = [name for name in plain.get("required", ()) if name not in properties]
            if missing:
                raise self.refuse(pointer, f"required names properties it does not define: {', '.join(missing)}")
            if len(set(properties) - set(plain.get("required", ()))) > GRAMMAR_MAX_OPTIONAL_PROPERTIES:
                raise self.refuse(
                    pointer,
                    f"more than {GRAMMAR_MAX_OPTIONAL_PROPERTIES} optional properties in one object; make some"
                    " required",
                    "SCHEMA_TOO_LARGE",
                )
            plain["properties"] = {
                name: self.schema(sub, f"{pointer}/properties/{name}", refs, depth + 1)
                for name, sub in properties.items()
            }
        if "prefixItems" in plain and "items" in plain:
            raise self.refuse(pointer, "prefixItems together with items is not supported")
        for key in ("items", "prefixItems", "anyOf"):
            value = plain.get(key)
            if isinstance(value, list):
                plain[key] = [
                    self.schema(sub, f"{pointer}/{key}/{index}", refs, depth + 1) for index, sub in enumerate(value)
                ]
            elif value is not None:
                plain[key] = self.schema(value, f"{pointer}/{key}", refs, depth + 1)
        extra = plain.get("additionalProperties")
        if isinstance(extra, Mapping):
            plain["additionalProperties"] = self.schema(extra, f"{pointer}/additionalProperties", refs, depth + 1)
        return plain

    def _ref(self, node: Mapping[str, Any], pointer: str, refs: tuple[str, ...], depth: int) -> dict[str, Any]:
        ref = node["$ref"]
        siblings = sorted((KEPT_KEYWORDS | REFUSED_KEYWORDS).intersection(node))
        if siblings:
            raise self.refuse(pointer, f"$ref beside {', '.join(siblings)} is not supported")
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise self.refuse(pointer, f"$ref {ref!r} is not supported: only references into this schema (#/...)")
        if ref in refs:
            raise self.refuse(pointer, f"$ref {ref!r} is recursive, which grammar-constrained sampling refuses")
        target: Any = self._root
        for part in ref[2:].split("/") if ref != "#" else ():
            key = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or key not in target:
                raise self.refuse(pointer, f"$ref {ref!r} points at nothing")
            target = target[key]
        return self.schema(target, ref, (*refs, ref), depth + 1)

    def _check_counts(self, plain: Mapping[str, Any], pointer: str) -> None:
        for key in _COUNTS:
            value = plain.get(key)
            if value is not None and (not isinstance(value, int) or not 0 <= value <= GRAMMAR_MAX_REPEAT):
                raise self.refuse(
                    pointer,
                    f"{key} must be between 0 and {GRAMMAR_MAX_REPEAT} for grammar-constrained sampling",
                    "SCHEMA_TOO_LARGE",
                )
        for low, high in (("minItems", "maxItems"), ("minLength", "maxLength")):
            if plain.get(high) is not None and plain.get(low, 0) > plain[high]:
                raise self.refuse(pointer, f"{low} is above {high}: no value can validate")

    def _pattern(self, pattern: Any, pointer: str) -> str:
        if not isinstance(pattern, str):
            raise self.refuse(pointer, "pattern must be a string")
        try:
            re.compile(pattern)
        except re.error as error:
            raise self.refuse(pointer, f"pattern is not a regular expression: {error}") from None
        body = pattern.removeprefix("^")
        body = body[:-1] if body.endswith("$") and not body.endswith("\\$") else body
        problem = _pattern_problem(body)
        if problem:
            raise self.refuse(pointer, f"pattern {pattern!r}: {problem}")
        # Whole-string match: what the grammar generates then also contains a match, as JSON Schema asks.
        return f"^{body}$"


def _pattern_problem(body: str) -> str | None:
    """Why the pattern body (without anchors) is outside the subset a grammar spells out safely, or None."""
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            escaped = body[index + 1 : index + 2]
            if escaped not in _ESCAPABLE or not escaped:
                return f"the escape \\{escaped} is not supported (use a class such as [0-9])"
            index += 2
            continue
        if char == "[":
            end = body.find("]", index + 1)
            problem = _class_problem(body[index + 1 : end]) if end > index + 1 else "unclosed or empty class"
            if problem:
                return problem
            index = end + 1
            continue
        if char == "{":
            match = _QUANTIFIER.match(body, index)
            if match is None:
                return "a { that is not a {m,n} quantifier"
            counts = [int(count) for count in (match.group(1), match.group(3)) if count]
            if max(counts) > GRAMMAR_MAX_REPEAT:
                return f"a quantifier above {GRAMMAR_MAX_REPEAT}"
            index = match.end()
            continue
        if body.startswith("(?", index):
            return "(? groups (lookaround, non-capturing, flags) are not supported"
        if char in '.^$"' or ord(char) < 0x20 or char == "\x7f":
            return f"{char!r} is not supported (only literal text, [classes], groups, | and quantifiers)"
        index += 1
    return None


def _class_problem(members: str) -> str | None:
    if members.startswith("^"):
        return "negated classes [^...] are not supported"
    if "\\" in members or "[" in members:
        return "escapes and nested brackets inside a class are not supported"
    index = 0
    while index < len(members):
        low = high = members[index]
        if members[index + 1 : index + 2] == "-" and index + 2 < len(members):
            high = members[index + 2]
            index += 3
        else:
            index += 1
        if ord(low) > ord(high):
            return f"the class range {low}-{high} is reversed"
        if (
            ord(low) <= 0x22 <= ord(high)
            or ord(low) <= 0x5C <= ord(high)
            or ord(low) < 0x20
            or ord(low) <= 0x7F <= ord(high)
        ):
            return "a class may not hold a quote, a backslash or control characters"
    return None
