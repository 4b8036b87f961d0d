"""JSON text as the server reads it: the unpaired-surrogate check walks a request's every item in time that grows with
their number alone, however long the keys above them."""

from __future__ import annotations

import json
import time

from warpcore.server.core import json_text

WALK_SECONDS = 20
"""Far more than the walk takes; a walk that spelled each item's path from a megabyte-long key would copy terabytes."""


def test_a_long_key_over_many_items_is_walked_in_linear_time() -> None:
    """A tester's finding: a 3.9 MB body (an emoji's paired escape, and a long key over a long list) held every call
    of both doors for 40 s, each item's path spelled out from the key's whole text."""
    key = "k" * 1_000_000
    text = json.dumps({"emoji": "\U0001f600", key: [0] * 1_000_000})  # json.dumps escapes the emoji as a pair
    started = time.monotonic()
    assert json_text.unpaired_surrogate(text, json_text.loads(text)) is None
    assert time.monotonic() - started < WALK_SECONDS


def test_the_path_to_an_unpaired_surrogate_is_spelled_when_found() -> None:
    text = '{"messages": [{"content": "a"}, {"content": ["b", "\\ud800"]}], "\\udc00": 1}'
    assert json_text.unpaired_surrogate(text, json_text.loads(text)) == "messages[1].content[1]"
    keyed = '{"tools": [{"\\udc00x": 1}]}'
    assert json_text.unpaired_surrogate(keyed, json_text.loads(keyed)) == "tools[0].\\udc00x"
    whole = '"\\ud800"'
    assert json_text.unpaired_surrogate(whole, json_text.loads(whole)) == ""
