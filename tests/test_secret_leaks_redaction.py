"""The checks behind no API key leaving the server: the leak check finds a fragment of a key, and redaction scrubs a key
whole, in any letter case, masked or short, percent-encoded or JSON-escaped, without confirming a guess at a run of
it."""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest

from tests.key_leaks import ANTHROPIC_KEY, FRAGMENT, OPENAI_KEY, REQUEST_KEY, leaks
from warpcore.server.adapters.redaction import redact, redact_key_shapes


def test_the_leak_check_finds_a_fragment() -> None:
    assert leaks([("log", f"key ends in {OPENAI_KEY.value[-FRAGMENT:]}")], OPENAI_KEY) != []
    assert leaks([("log", f"key starts with {REQUEST_KEY.value[:FRAGMENT]}")], REQUEST_KEY) != []
    assert leaks([("log", f"vendor prefix only: {ANTHROPIC_KEY.prefix}")], ANTHROPIC_KEY) == []


def test_redact_scrubs_the_key_its_masked_quotes_and_key_shaped_words() -> None:
    key = REQUEST_KEY.value
    assert redact(f"Incorrect API key provided: {key}.", key) == "Incorrect API key provided: [redacted]."
    assert redact(f"invalid key {key[:10]}****{key[-8:]}", key) == "invalid key [redacted]"
    assert redact(f"no {key[:7]}... here", key) == f"no {key[:7]}... here"  # too little of it to recognise
    assert redact("see sk-abcdef1234567890ab and key-3ax6xnjp29jd6fds4gc373", key) == "see [redacted] and [redacted]"
    assert redact("tool call_sk-abcdef1234567890ab done", key) == "tool call_[redacted] done"
    # A model's name, words and versions, is no key: no run of letters and digits both as long as a key's.
    assert redact("model sk-roberta-base-finetuned-ner-v2", key) == "model sk-roberta-base-finetuned-ner-v2"


def test_redact_scrubs_the_key_in_any_letter_case() -> None:
    key = REQUEST_KEY.value
    assert redact(f"Bad key {key.upper()}!", key) == "Bad key [redacted]!"
    assert redact(f"Bad key {key.swapcase()}", key) == "Bad key [redacted]"


def test_redact_leaves_a_run_of_the_key_alone_so_that_no_guess_is_confirmed() -> None:
    """A tester's finding: any 8 characters of the key in a row were redacted, and an upstream whose error quotes
    the caller's text then told a caller, 20 calls a character, whether a guess was the key's next character."""
    key = REQUEST_KEY.value
    for start in range(len(key) - 8 + 1):
        quoted = f"Invalid content: '{key[start : start + 8]}'"
        assert redact(quoted, key) == redact_key_shapes(quoted)  # what the key is changes nothing in it


@pytest.mark.parametrize("short_key", ["upkey", "1234567"])
def test_redact_scrubs_a_short_key_whole(short_key: str) -> None:
    # Self-hosted OpenAI-compatible servers (vLLM's --api-key, say) take keys of any length.
    message = f"Incorrect API key provided: {short_key}; a key was given: {short_key.upper()}."
    assert redact(message, short_key) == "Incorrect API key provided: [redacted]; a key was given: [redacted]."


@pytest.mark.parametrize("tiny_key", ["e", "abc"])
def test_redact_leaves_text_alone_for_a_key_too_short_to_be_a_secret(tiny_key: str) -> None:
    message = "The model gpt-4o does not exist or you do not have access to it; a key was given: abc."
    assert redact(message, tiny_key) == message


@pytest.mark.parametrize("key", ["clientkey-Zz9/+=&QQ", "k3y WITH spaces", 'abcd"ef\\gh', "clé-secrète-42"])
def test_redact_scrubs_the_key_as_a_url_or_a_json_string_quotes_it(key: str) -> None:
    """A tester's finding: an upstream quoting a key percent-encoded, or escaped in JSON, quoted it whole."""
    quoted = [urllib.parse.quote(key, safe=""), urllib.parse.quote_plus(key), json.dumps(key)[1:-1]]
    quoted += [urllib.parse.quote(key, safe="").lower(), json.dumps(key, ensure_ascii=False)[1:-1]]
    for form in quoted:
        assert redact(f"bad key <{form}>", key) == "bad key <[redacted]>", form


def test_redaction_takes_time_in_proportion_to_the_text() -> None:
    # An upstream's error page may be megabytes of one long run of letters: a pattern that tries each start within
    # the run again took seconds for tens of thousands of characters, on the event loop every call shares.
    page = "<html>" + "x" * 30_000 + "</html>"
    started = time.monotonic()
    assert redact(page, OPENAI_KEY.value) == page
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("masked", ["abcd1234****wxyz", "ab***cd***ef", "****", "x-***"])
def test_a_word_holding_a_mask_goes_whole(masked: str) -> None:
    assert redact_key_shapes(f"key {masked}, not **bold**.") == "key [redacted], not **bold**."
