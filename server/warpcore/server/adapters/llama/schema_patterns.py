"""The regular expressions a grammar spells out safely (schema_check.py's pattern subset), and the string formats
enforced through them."""

from __future__ import annotations

import re

from warpcore.server.core.bounds import GRAMMAR_MAX_REPEAT

# Escapes a pattern may use: punctuation standing for itself, none of which needs escaping inside a JSON string.
_ESCAPABLE = frozenset(".-+*?()[]{}|$/")
# llama-cpp-python's converter copies these escapes into GBNF literals, whose parser knows none of them: each is
# spelled as its character, in a class where it would otherwise mean something.
_SPELLED_ESCAPES = {".": "[.]", "$": "[$]", "-": "-", "/": "/"}
_ESCAPE = re.compile(r"\\(.)")
_QUANTIFIER = re.compile(r"\{(\d+)(,(\d*))?\}")
_TOKEN = re.compile(r"\\.|\[[^\]]*\]|\{\d+(?:,\d*)?\}|.", re.DOTALL)
"""An escape, a class, a {m,n} quantifier or any other character, in a body `_token_problem` accepts."""
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
FORMAT_PATTERNS = {
    "email": r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}([.][A-Za-z0-9-]{1,63}){1,4}",
    "ipv4": rf"({_OCTET}[.]){{3}}{_OCTET}",
}
"""String formats enforced as a pattern of the subset `pattern_problem` accepts: an email address of the common
form, within RFC 5321's lengths (what JSON Schema's email allows is wider), an IPv4 address in dotted decimal."""


# The class escapes pydantic's and zod's patterns use, as the ranges they stand for; \s as the space alone, the only
# white space a JSON string holds unescaped (so a generated value matches, from a narrower choice).
_CLASS_ESCAPES = {"d": "0-9", "w": "0-9A-Za-z_", "s": " "}
_ESCAPE_OR_BRACKET = re.compile(r"\\.|[\[\]]")
_LITERAL_IN_CLASS = frozenset(".+*?(){}|$/")
"""Escaped punctuation that a class holds as itself (`]`, `[`, `^` and `\\` keep their escapes, which are refused)."""


def with_classes_spelled(body: str) -> str:
    """The pattern body with \\d, \\w and \\s spelled as classes (inside a class, as its ranges), and inside a class
    an escaped punctuation character as itself, a hyphen last (where it stands for itself); other escapes as they
    stand."""
    inside, hyphen = False, False

    def spelled(match: re.Match[str]) -> str:
        nonlocal inside, hyphen
        token = match.group(0)
        if token in "[]":
            inside, closing = token == "[", "-]" if hyphen and token == "]" else token
            hyphen = False
            return closing
        ranges = _CLASS_ESCAPES.get(token[1])
        if ranges is not None:
            return ranges if inside else f"[{ranges}]"
        if inside and token[1] == "-":
            hyphen = True
            return ""
        return token[1] if inside and token[1] in _LITERAL_IN_CLASS else token

    return _ESCAPE_OR_BRACKET.sub(spelled, body)


def spelled_for_grammar(body: str) -> str:
    """The pattern body (one `pattern_problem` accepts) with its escapes as the converter can pass them on."""
    return _ESCAPE.sub(lambda escape: _SPELLED_ESCAPES.get(escape.group(1), escape.group(0)), body)


def pattern_problem(body: str) -> str | None:
    """Why the pattern body (without anchors) is outside the subset a grammar spells out safely, or None."""
    problem = _token_problem(body)
    if problem is None and _nested_repeats(body) > GRAMMAR_MAX_REPEAT:
        # Each level is spelled out as copies of the level inside: a text such as "aaaa" then has a number of readings
        # that grows with the counts' product, and llama.cpp's grammar follows every one, for seconds per token.
        return f"quantifiers nested in groups whose counts multiply past {GRAMMAR_MAX_REPEAT}"
    return problem


def _nested_repeats(body: str) -> int:
    """The largest product of the counts of quantifiers nested in one another's groups (`*`, `+` and `?` count 1:
    a grammar spells them as a rule that recurs, not as copies)."""
    levels = [1]  # the largest product inside each open group, the pattern's own level first
    last = 1  # what the atom before a quantifier repeats
    for token in _TOKEN.findall(body):
        if token == "(":
            levels.append(1)
            continue
        if token == ")" and len(levels) > 1:  # a stray ")" is no group: re.compile refuses the pattern then
            last = levels.pop()
        elif match := _QUANTIFIER.fullmatch(token):
            last *= int(match.group(3) or match.group(1))
        elif token not in "?*+":
            last = 1
        levels[-1] = max(levels[-1], last)
    return levels[0]


def _token_problem(body: str) -> str | None:
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
