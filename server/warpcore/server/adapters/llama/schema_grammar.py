"""JSON Schemas spelled out as llama.cpp grammars (GBNF), through llama-cpp-python's schema converter: every text
a grammar accepts in full is JSON that validates against its schema (within what schema_check.py enforces)."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from llama_cpp import llama_grammar

from warpcore.server.core.bounds import GRAMMAR_MAX_BYTES
from warpcore.server.core.errors import InvalidArgumentError

# The converter's string character allows raw control characters, which JSON strings may not hold.
_JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'
# Between tokens: nothing, a space or a line break, one character at most, so that a weak model cannot spend its
# max_tokens on padding (models that indent lose a resample at most).
_SPACE = '| " " | "\\n"'
# Bounds stand-in for "unbounded": the converter's own integers have at most 16 digits.
_LARGEST = 10**15 - 1
_FRACTION = '"." [0-9] ([0-9] ([0-9] ([0-9] ([0-9] ([0-9])?)?)?)?)?'
_FRACTIONS = 10**6
"""Six-digit fractions, as _FRACTION's longest."""
_CUT_UNITS_BELOW = 10**8
"""The units a bound cuts are spelled out below this magnitude only: above it, a double (what a validator reads a
number into) cannot tell a six-digit fraction from its neighbours, and a value one step inside an exclusive bound
would read as the bound itself. The stand-in for no bound is above it too."""
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
# A grammar literal's escapes (llama.cpp's grammar parser): the converter's own escape only quotes and line breaks,
# so the backslash of a constant's JSON escape (C:\\temp, \n, \") was read as an escape of the grammar's.
_LITERAL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\r": "\\r", "\n": "\\n", "\t": "\\t"}
# The converter's date takes the 31st of every month and year 0000, which no JSON Schema validator accepts: here each
# month has the days it always has (February 28), in years 1000 to 9999.
_DAYS_28 = '"0" [1-9] | "1" [0-9] | "2" [0-8]'
_DAYS_30 = f'{_DAYS_28} | "29" | "30"'
_DATE = (
    '[1-9] [0-9] [0-9] [0-9] "-" ( ( "0" [13578] | "1" [02] ) "-" ( ' + _DAYS_30 + ' | "31" )'
    ' | ( "0" [469] | "11" ) "-" ( ' + _DAYS_30 + ' ) | "02" "-" ( ' + _DAYS_28 + " ) )"
)


# The name every rule of a response format's schema begins with. The converter names a member's rules after the member
# (the characters a rule name cannot hold turned into dashes) under the name of the value holding it: unprefixed, a
# member named "" would name its value's rule `root`, the grammar's start, and one named "decimal part" would take the
# name of the number's own rule `decimal-part`. No rule of the grammar's own begins with this prefix, as none begins
# with a tool's `tool<i>-arguments`.
_VALUE = "json"


class _Converter(llama_grammar.SchemaConverter):
    """llama-cpp-python's converter, plus numeric bounds, constraints kept on every member of a type list, and
    JSON-safe string characters."""

    def __init__(self) -> None:
        super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)  # type: ignore[no-untyped-call]
        self._rules["space"] = _SPACE

    # Typed entries into the untyped converter.

    def rule(self, name: str, body: str) -> str:
        return str(self._add_rule(name, body))  # type: ignore[no-untyped-call]

    def grammar(self) -> str:
        return str(self.format_grammar())  # type: ignore[no-untyped-call]

    def visit(self, schema: dict[str, Any], name: str) -> str:
        rule_name = name + "-" if name in llama_grammar.RESERVED_NAMES else name or "root"
        kind = schema.get("type")
        literal = "const" in schema or "enum" in schema
        if isinstance(kind, list) and "anyOf" not in schema:
            if literal:
                return self.visit({key: value for key, value in schema.items() if key != "type"}, name)
            members = [self.visit({**schema, "type": member}, f"{name}-{member}") for member in kind]
            return self.rule(rule_name, " | ".join(members))
        if kind in ("integer", "number") and not literal and any(key in schema for key in _BOUNDS):
            return self.rule(rule_name, f"{_number_rule(schema, integer=kind == 'integer')} space")
        return str(super().visit(schema, name))  # type: ignore[no-untyped-call]

    def _format_literal(self, literal: str) -> str:
        """`literal` as a grammar literal that matches exactly its characters."""
        escaped = (
            _LITERAL_ESCAPES.get(character) or (f"\\x{ord(character):02X}" if ord(character) < 0x20 else character)
            for character in literal
        )
        return '"' + "".join(escaped) + '"'

    def _add_primitive(self, name: str, rule: Any) -> str:
        if name == "char":
            rule = llama_grammar.BuiltinRule(_JSON_CHAR, [])
        elif name == "date":
            rule = llama_grammar.BuiltinRule(_DATE, [])
        return str(super()._add_primitive(name, rule))


def json_grammar(schema: Mapping[str, Any] | None, field: str) -> str:
    """The grammar of JSON valid against `schema` (an inlined schema from schema_check), or of any JSON object."""
    converter = _Converter()
    with _refused_as(field):
        value = converter.visit(dict(schema) if schema is not None else {"type": "object"}, _VALUE)
    converter.rule("root", value)
    return checked_size(converter.grammar(), field)


def tool_calls_grammar(tools: Sequence[tuple[str, Mapping[str, Any]]], *, several: bool, field: str) -> str:
    """The grammar of one (or, with `several`, one or more) tool calls in the Hermes format, `<tool_call>`, a JSON
    object {"name": ..., "arguments": ...} and `</tool_call>`, each line apart, for the (name, inlined schema)
    tools; arguments validate against their tool's schema."""
    converter = _Converter()
    alternatives = []
    for index, (name, schema) in enumerate(tools):
        with _refused_as(f"tools[{index}].parameters"):
            arguments = converter.visit(dict(schema), f"tool{index}-arguments")
        header = json.dumps(f'{json.dumps(name)}, "arguments": ')
        alternatives.append(converter.rule(f"tool{index}", f"{header} {arguments}"))
    opening = json.dumps('<tool_call>\n{"name": ')
    closing = json.dumps("}\n</tool_call>")
    call = converter.rule("call", f"{opening} ({' | '.join(alternatives)}) {closing}")
    converter.rule("root", f'{call} ("\\n" {call})*' if several else call)
    return checked_size(converter.grammar(), field)


@contextlib.contextmanager
def _refused_as(field: str) -> Iterator[None]:
    """The converter's own refusals (asserts and ValueErrors on what it cannot spell out) as errors naming `field`."""
    try:
        yield
    except RecursionError:
        raise InvalidArgumentError(
            f"{field}: this schema is too deeply built for grammar-constrained sampling",
            field=field,
            reason="SCHEMA_TOO_LARGE",
        ) from None
    except (AssertionError, ValueError, KeyError, TypeError) as error:
        raise InvalidArgumentError(
            f"{field}: this schema cannot be enforced by grammar-constrained sampling ({error})",
            field=field,
            reason="SCHEMA_UNSUPPORTED",
        ) from None


def checked_size(grammar: str, field: str) -> str:
    if len(grammar) > GRAMMAR_MAX_BYTES:
        raise InvalidArgumentError(
            f"{field}: the grammar this schema needs is {len(grammar)} bytes, more than the {GRAMMAR_MAX_BYTES}"
            " grammar-constrained sampling accepts; simplify the schema",
            field=field,
            reason="SCHEMA_TOO_LARGE",
        )
    return grammar


def _number_rule(schema: Mapping[str, Any], *, integer: bool) -> str:
    """Integers (or decimals) within the schema's bounds: whole numbers and whole units of decimals within the bounds
    tightened to whole ones, and for decimals the units the bounds cut, in six fraction digits, so that the check is
    exact."""
    low, high = -_LARGEST, _LARGEST
    if isinstance(schema.get("minimum"), int | float):
        low = max(low, math.ceil(schema["minimum"]))
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = max(low, math.floor(schema["exclusiveMinimum"]) + 1)
    if isinstance(schema.get("maximum"), int | float):
        high = min(high, math.floor(schema["maximum"]))
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = min(high, math.ceil(schema["exclusiveMaximum"]) - 1)
    alternatives = [_integers(low, high)] if low <= high else []
    if not integer:
        # k.ddd lies in [k, k + 1) and -k.ddd in (-k - 1, -k]: both stay within [low, high] for these k.
        if max(low, 0) <= high - 1:
            alternatives.append(f"{_integers(max(low, 0), high - 1)} {_FRACTION}")
        if low + 1 <= min(high, -1):
            alternatives.append(f"{_integers(low + 1, min(high, -1))} {_FRACTION}")
        alternatives += _cut_units(_bound(schema, "minimum", -1), _bound(schema, "maximum", 1))
    if not alternatives:
        raise ValueError(
            "no number a grammar writes (a whole number, or one of at most six fraction digits) lies within the bounds"
        )
    return "(" + " | ".join(alternatives) + ")"


def _bound(schema: Mapping[str, Any], name: str, sign: int) -> tuple[Decimal, bool]:
    """The lower (`sign` -1) or upper bound, exact, and whether it is exclusive; unbounded, the largest magnitude."""
    bounds = [
        (Decimal(repr(value)), key.startswith("exclusive"))
        for key in (name, f"exclusive{name.title()}")
        if isinstance(value := schema.get(key), int | float) and not isinstance(value, bool)
    ]
    if not bounds:
        return Decimal(sign * _LARGEST), False
    return max(bounds, key=lambda bound: (-sign * bound[0], bound[1]))  # the tighter, and exclusive on a tie


def _cut_units(low: tuple[Decimal, bool], high: tuple[Decimal, bool]) -> list[str]:
    """Decimals of the units that hold a bound, between the bounds: k.dddddd for values >= 0, -k.dddddd below,
    whose magnitudes lie within the bounds mirrored."""
    (low_value, low_open), (high_value, high_open) = low, high
    positive = _cut_magnitudes((max(low_value, Decimal(0)), low_open and low_value >= 0), high)
    if low_value >= 0:
        return positive
    negative = _cut_magnitudes((max(-high_value, Decimal(0)), high_open and high_value <= 0), (-low_value, low_open))
    return positive + [f'"-" {alternative}' for alternative in negative]


def _cut_magnitudes(low: tuple[Decimal, bool], high: tuple[Decimal, bool]) -> list[str]:
    (low_value, low_open), (high_value, high_open) = low, high
    # A whole bound cuts no unit the whole units leave out, but an exclusive lower one: (k, k + 1).
    cut = {int(low_value)} if low_open or low_value != int(low_value) else set()
    cut |= {int(high_value)} if high_value != int(high_value) else set()
    alternatives = []
    for unit in sorted(cut):
        if not 0 <= unit < _CUT_UNITS_BELOW:
            continue
        first = _fraction_digits(low_value - unit, low_open, up=True) if low_value >= unit else 0
        last = _fraction_digits(high_value - unit, high_open, up=False) if high_value < unit + 1 else _FRACTIONS - 1
        if 0 <= first <= last <= _FRACTIONS - 1:
            digits = _same_length(f"{first:06d}", f"{last:06d}")
            alternatives.append(f'"{unit}" "." ({digits})')
    return alternatives


def _fraction_digits(fraction: Decimal, open_bound: bool, *, up: bool) -> int:
    """The first (`up`) or last six-digit fraction, as an integer, on the inner side of a bound at `fraction`."""
    scaled = fraction * _FRACTIONS
    whole = int(scaled.to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR))
    if open_bound and whole == scaled:
        whole += 1 if up else -1
    return whole


def _integers(low: int, high: int) -> str:
    """Decimal integers from `low` to `high` (low <= high), without leading zeros or -0."""
    alternatives = []
    if low < 0:
        alternatives += [f'"-" ({digits})' for digits in _naturals(max(-high, 1), -low)]
    if high >= 0:
        alternatives += _naturals(max(low, 0), high)
    return "(" + " | ".join(alternatives) + ")"


def _naturals(low: int, high: int) -> list[str]:
    alternatives = []
    for length in range(len(str(low)), len(str(high)) + 1):
        first, last = max(low, 10 ** (length - 1) if length > 1 else 0), min(high, 10**length - 1)
        if first <= last:
            alternatives.append(_same_length(str(first), str(last)))
    return alternatives


def _same_length(low: str, high: str) -> str:
    """Digit strings of one length from `low` to `high`; each level recurses into at most one partial range on
    either side, so the rule grows with the square of the length, not exponentially."""
    if low == high:
        return f'"{low}"'
    if len(low) == 1:
        return f"[{low}-{high}]"
    rest = len(low) - 1
    if low == "0" * len(low) and high == "9" * len(high):
        return " ".join(["[0-9]"] * len(low))
    if low[0] == high[0]:
        return f'"{low[0]}" ({_same_length(low[1:], high[1:])})'
    parts = [f'"{low[0]}" ({_same_length(low[1:], "9" * rest)})']
    if int(high[0]) - int(low[0]) > 1:
        parts.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}] " + " ".join(["[0-9]"] * rest))
    parts.append(f'"{high[0]}" ({_same_length("0" * rest, high[1:])})')
    return " | ".join(parts)
