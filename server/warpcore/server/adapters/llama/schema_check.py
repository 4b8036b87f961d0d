"""The part of JSON Schema that grammar-constrained sampling enforces: a schema is checked against it and turned
into a plain one (every $ref inlined, annotations dropped) before it is spelled out as a grammar.

Enforced: type (one or a list), properties, required, additionalProperties, items, prefixItems, minItems, maxItems,
enum, const, anyOf, minLength, maxLength, pattern (literal characters, positive classes, groups, alternation and
quantifiers), a string's format (date, time, date-time, uuid, email, ipv4) where no pattern or length bound shapes
it too, minimum, maximum, exclusiveMinimum, exclusiveMaximum, and $ref to the schema's own definitions. Refused,
because the output could not be guaranteed to validate: the keywords in REFUSED_KEYWORDS, recursive $ref, patterns
outside that subset, and an empty enum. Ignored, as JSON Schema itself ignores them: annotations (title,
description, default, examples...), other formats, and keywords JSON Schema does not define. Not enforced, as it
never was, so that a schema taken before is taken still: minLength and maxLength beside a pattern or an enforced
format, and minItems and maxItems beside prefixItems."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from warpcore.server.adapters.llama.schema_patterns import (
    FORMAT_PATTERNS,
    pattern_problem,
    spelled_for_grammar,
    with_classes_spelled,
)
from warpcore.server.core.bounds import (
    GRAMMAR_MAX_OPTIONAL_PROPERTIES,
    GRAMMAR_MAX_REPEAT,
    GRAMMAR_MAX_SCHEMA_DEPTH,
    GRAMMAR_MAX_SCHEMA_NODES,
    quoted,
    shortened,
)
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.json_schema import NOTHING, referenced

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
_LENGTHS = ("minLength", "maxLength")
_COUNTS = ("minItems", "maxItems", *_LENGTHS)


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
        self._uses: Counter[str] = Counter()
        """How many times each $ref has been inlined so far."""
        self._outer_use = "#"
        """Where the outermost $ref being inlined is used (the pointers within it are its definition's)."""

    def refuse(self, pointer: str, message: str, reason: str = "SCHEMA_UNSUPPORTED") -> InvalidArgumentError:
        return InvalidArgumentError(
            f"{self._field} at {shortened(pointer)}: {message}",
            field=self._field,
            reason=reason,
            metadata={"schema_pointer": shortened(pointer)},
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
            raise self._too_many(pointer, refs)
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
        if "prefixItems" in plain:
            self._tuple(plain, pointer)
        self._format(plain)
        if plain.get("enum") == []:
            raise self.refuse(pointer, "enum is empty: no value can validate")
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
            why = (
                "names an anchor, which is not supported: refer by a JSON pointer into this schema (#/$defs/...)"
                if isinstance(ref, str) and ref.startswith("#")
                else "is not supported: only references into this schema (#/...)"
            )
            raise self.refuse(pointer, f"$ref {quoted(ref)} {why}")
        if not refs:
            self._outer_use = pointer
        self._uses[ref] += 1
        if ref in refs:
            raise self.refuse(pointer, f"$ref {quoted(ref)} is recursive, which grammar-constrained sampling refuses")
        target = referenced(self._root, ref)
        if target is NOTHING:
            raise self.refuse(pointer, f"$ref {quoted(ref)} points at nothing")
        return self.schema(target, ref, (*refs, ref), depth + 1)

    def _too_many(self, pointer: str, refs: tuple[str, ...]) -> InvalidArgumentError:
        """Past the cap on subschemas: said of the $ref whose inlining passed it, where it is used, rather than of the
        subschema where the count happened to pass, deep in a definition, with the $ref inlined most often: each use
        of a definition counts it again, and a few small ones that refer to each other twice make thousands."""
        cap = f"{GRAMMAR_MAX_SCHEMA_NODES} subschemas, too many for grammar-constrained sampling"
        if refs:
            pointer = self._outer_use
            message = f"inlining $ref {quoted(refs[0])} here took the schemas of this request past {cap}"
        else:
            message = f"the schemas of this request have more than {cap}"
        if self._uses:
            ref, times = self._uses.most_common(1)[0]
            message += (
                f": every $ref is inlined, and each use of a $ref counts its definition's subschemas again"
                f" ({quoted(ref)} was inlined {'once' if times == 1 else f'{times} times'})"
            )
        return self.refuse(pointer, message, "SCHEMA_TOO_LARGE")

    def _tuple(self, plain: dict[str, Any], pointer: str) -> None:
        """prefixItems is generated as exactly its items, which validates closed (items false) or not (items true)."""
        if plain.pop("items", None) not in (None, True, False):
            raise self.refuse(pointer, "prefixItems together with an items schema is not supported")

    @staticmethod
    def _format(plain: dict[str, Any]) -> None:
        """A string's email or ipv4 format spelled out as a pattern, when nothing else shapes the string. Any other
        format stays for the converter, which enforces date, time, date-time and uuid and, as JSON Schema does by
        default, ignores the rest (and a format beside a pattern or length bounds), as requests always had it."""
        kind = plain.get("type", "string")
        name = plain.get("format")
        is_string = kind == "string" or (isinstance(kind, list) and "string" in kind)
        if is_string and name in FORMAT_PATTERNS and not any(key in plain for key in ("pattern", *_LENGTHS)):
            del plain["format"]
            plain["pattern"] = f"^{FORMAT_PATTERNS[name]}$"

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
        body = pattern.removeprefix("^")
        body = with_classes_spelled(body[:-1] if body.endswith("$") and not body.endswith("\\$") else body)
        problem = pattern_problem(body)
        if problem is None:
            # The door checked it as the ECMA-262 expression JSON Schema's patterns are: what Python's `re` cannot
            # read is syntax outside the subset, not an invalid pattern.
            try:
                re.compile(pattern)
            except re.error as error:
                problem = f"{error} (syntax grammar-constrained sampling does not support)"
        if problem:
            raise self.refuse(pointer, f"pattern {quoted(pattern)}: {problem}")
        # Whole-string match: what the grammar generates then also contains a match, as JSON Schema asks.
        return f"^{spelled_for_grammar(body)}$"
