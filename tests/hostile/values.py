"""Hypothesis strategies for the values of hostile requests' fields: numbers at and past each type's range, odd and huge
texts, hostile names, paths and ids, stop sequences, and JSON text."""

from __future__ import annotations

import json
import math

from hypothesis import strategies as st

from tests.conftest import TINY_MODEL
from tests.hostile import HEALTH_ID, ONE_MEGABYTE

UINT32 = st.integers(0, 2**32 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
ENUM = st.one_of(st.integers(-1, 6), INT32)  # the known values, their neighbours, and any int32
FLOAT32 = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 1e-45, 1.0, 1.0000001, 2.0, 2.0000002, -1.0, 3.4e38]),
    st.floats(width=32),
)
ODD_CHARS = "\x00\x01\x1b\x7f\u0085\u00a0\u0301\u200b\u200d\u2028\u202e\ufeff\ufffd\uffff\U0001f600\U0010ffff"
ODD_PIECES = ["{{", "}}", "{%", "<s>", "</s>", "<0x00>", "<user>", "\\", "%s", "%n", "\r\n", "..", "/", "hf:"]
SMALL_TEXT = st.lists(
    st.one_of(st.text(max_size=8), st.text(alphabet=ODD_CHARS, max_size=4), st.sampled_from(ODD_PIECES)),
    max_size=8,
).map("".join)


def _repeat(unit: str, size: int) -> str:
    """`unit` repeated to about `size` UTF-8 bytes (at least once)."""
    return unit * max(1, size // len(unit.encode()))


NONEMPTY_SMALL_TEXT = st.builds(str.__add__, st.characters(codec="utf-8"), SMALL_TEXT)
# Up to 1 MB of text llama.cpp tokenizes in linear time: the tiny model's vocabulary has pieces for these
# characters. Any other character goes through byte fallback, which llama.cpp tokenizes in quadratic time; the
# server tokenizes long prompts in pieces (tests/test_prompt_tokenizer.py).
IN_VOCABULARY = "abcdefghijklmnopqrstuvwxyz "
BIG_TEXT = st.builds(_repeat, st.text(alphabet=IN_VOCABULARY, min_size=1, max_size=8), st.integers(1, ONE_MEGABYTE))
# Any characters at all, up to 16 kB: byte fallback stays cheap at that size.
MEDIUM_TEXT = st.builds(_repeat, st.text(min_size=1, max_size=8), st.integers(1, 16_000))
NONEMPTY_TEXT = st.one_of(NONEMPTY_SMALL_TEXT, NONEMPTY_SMALL_TEXT, MEDIUM_TEXT, BIG_TEXT)
TEXT = st.one_of(st.just(""), NONEMPTY_TEXT)

HOSTILE_NAMES = [
    "",
    " ",
    ".",
    "..",
    "../",
    "../x.gguf",
    "../../../../../../etc/passwd",
    "/etc/passwd",
    "/etc/passwd.gguf",
    "/dev/zero.gguf",
    "/proc/self/environ.gguf",
    "~/.ssh/id_rsa.gguf",
    "./../x.gguf",
    "hf/../../x.gguf",
    "hf/warpcore/tiny/../../../../x.gguf",
    "..\\x.gguf",
    "%2e%2e/x.gguf",
    "..%2fx.gguf",
    "file:///etc/passwd.gguf",
    "x.gguf\x00",
    "\x00",
    "a\x00/../../x.gguf",
    "hf:",
    "hf:a",
    "hf:a/b",
    "hf:a/b:",
    "hf::",
    "hf:/:",
    "hf:a/:x.gguf",
    "hf:/b:x.gguf",
    "hf:a/b/c:x.gguf",
    "hf:../..:x.gguf",
    "hf:a/b:../../x.gguf",
    "hf:a/b:/etc/passwd.gguf",
    "hf:a/b:x.gguf\x00",
    "hf:warpcore/tiny:..",
    "hf:warpcore/tiny:tiny.gguf/..",
    "hf:warpcore/tiny:./tiny.gguf",
    "hf:warpcore/tiny:tiny.gguf:tiny.gguf",
    "HF:warpcore/tiny:tiny.gguf",
    " hf:warpcore/tiny:tiny.gguf",
    "hf:warpcore/tiny:tiny.gguf ",
    "hf/warpcore/tiny",
    "hf/warpcore/tiny/tiny.gguf",
    "hf/warpcore/tiny/./tiny.gguf",
    "hf//warpcore//tiny//tiny.gguf",
    "a" * 256,
    "a" * 257,
    "a" * 251 + ".gguf",
    "a" * 300 + ".gguf",
    "\u00e9" * 200 + ".gguf",
    "\U0001f600" * 80 + ".gguf",
    "/".join(["a"] * 120) + ".gguf",
    TINY_MODEL,
    HEALTH_ID,
]
PATH_SEGMENTS = ["", ".", "..", "...", "hf", "warpcore", "tiny", "tiny.gguf", "x.gguf", "etc", "\x00", "~", "a:b"]
PATH_LIKE = st.builds(
    lambda lead, parts: lead + "/".join(parts),
    st.sampled_from(["", "/", "hf:", "hf:warpcore/tiny:", "./"]),
    st.lists(st.sampled_from(PATH_SEGMENTS), max_size=8),
)
HF_LIKE = st.builds(
    lambda owner, repo, separator, file: f"hf:{owner}{separator}{repo}:{file}",
    st.sampled_from(["", "a", "..", ".", "-a", "warpcore", "a b", "\x00"]),
    st.sampled_from(["", "b", "..", "tiny", "b/c"]),
    st.sampled_from(["/", "", "//", ":"]),
    st.sampled_from(["", "tiny.gguf", "x", "../x.gguf", "/etc/passwd.gguf", "a\x00.gguf", "a/b.gguf"]),
)
IDS = st.one_of(st.sampled_from(HOSTILE_NAMES), SMALL_TEXT, st.text(min_size=250, max_size=300), PATH_LIKE, HF_LIKE)
STOPS = st.one_of(
    st.lists(SMALL_TEXT, max_size=20),
    st.builds(lambda base, count: [f"{base}{n}" for n in range(count)], SMALL_TEXT, st.integers(17, 5000)),
    st.builds(lambda unit, size: [_repeat(unit, size)], st.text(min_size=1, max_size=4), st.integers(1, ONE_MEGABYTE)),
)


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), SMALL_TEXT),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(SMALL_TEXT, children, max_size=4)),
    max_leaves=20,
)
SCHEMA_WORDS = st.sampled_from(["type", "properties", "items", "$ref", "$schema", "required", "enum", "object", "#"])
JSON_TEXT = st.one_of(
    st.just(""),
    SMALL_TEXT,
    JSON_VALUES.map(json.dumps),
    st.dictionaries(SCHEMA_WORDS, JSON_VALUES, max_size=4).map(json.dumps),
    st.builds(lambda depth: "[" * depth + "]" * depth, st.integers(1, 200_000)),
    st.builds(lambda depth: '{"a": ' * depth + "1" + "}" * depth, st.integers(1, 100_000)),
)
TOOL_NAMES = st.one_of(st.sampled_from(["get_weather", "get_time", "a" * 64, "a" * 65, "a b", ""]), SMALL_TEXT)
