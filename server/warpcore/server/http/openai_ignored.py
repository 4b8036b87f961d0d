"""The members of OpenAI's requests that change no answer (members.py ignores them), checked as OpenAI's API checks
them: a misspelt member or a value of the wrong shape is refused naming it, as the API refuses it, rather than taken
and dropped unsaid. None of them is passed on, however well formed."""

from __future__ import annotations

from collections.abc import Sequence

from warpcore.server.core.bounds import quoted
from warpcore.server.http.fields import Json, at, boolean, integer, mapping, objects, refuse, text
from warpcore.server.http.inner_members import CHAT_PARTS
from warpcore.server.http.members import Members

CHAT_SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority", "fast")
RESPONSES_SERVICE_TIERS = (*CHAT_SERVICE_TIERS, "ultrafast")
"""The tiers each API takes, as the openai SDK types them."""
# OpenAI's bounds of metadata, which it attaches to the objects it stores, and of the end user's identifier.
_METADATA_KEYS, _METADATA_KEY_LENGTH, _METADATA_VALUE_LENGTH = 16, 64, 512
_SAFETY_IDENTIFIER_LENGTH = 128
_PREDICTION = Members(read=("type", "content"))
_PROMPT_CACHE_OPTIONS = Members(read=("mode", "ttl"))
_RESPONSES_STREAM_OPTIONS = Members(read=("include_obfuscation",))


def check_chat(body: Json) -> None:
    """A Chat Completions request's: the shared ones, and a Predicted Output (`prediction`)."""
    _check_shared(body, CHAT_SERVICE_TIERS)
    prediction = mapping(body, "prediction")
    if prediction is None:
        return
    _PREDICTION.check(prediction, "prediction")
    _one_of(prediction, "type", ("content",), "prediction", required=True)
    content = prediction.get("content")
    if content is None:
        raise refuse("prediction.content", "is required")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise refuse("prediction.content", "must be a string or an array of text parts")
    for path, part in objects(prediction, "content", "prediction"):
        _one_of(part, "type", ("text",), path, required=True)
        CHAT_PARTS["text"].check(part, path)
        text(part, "text", path, required=True)


def check_responses(body: Json) -> None:
    """A Responses request's: the shared ones, `max_tool_calls` and `stream_options`."""
    _check_shared(body, RESPONSES_SERVICE_TIERS)
    integer(body, "max_tool_calls")
    stream_options = mapping(body, "stream_options")
    if stream_options is not None:
        _RESPONSES_STREAM_OPTIONS.check(stream_options, "stream_options")
        boolean(stream_options, "include_obfuscation", "stream_options")


def check_user(body: Json) -> None:
    """The end user's identifier, a string, which every OpenAI route that takes it checks alike: the legacy
    Completions and the embeddings ones take no other of these members."""
    text(body, "user")


def _check_shared(body: Json, service_tiers: Sequence[str]) -> None:
    check_user(body)
    text(body, "prompt_cache_key")
    boolean(body, "store")
    identifier = text(body, "safety_identifier")
    if identifier is not None and len(identifier) > _SAFETY_IDENTIFIER_LENGTH:
        raise refuse("safety_identifier", f"must be at most {_SAFETY_IDENTIFIER_LENGTH} characters")
    _one_of(body, "service_tier", service_tiers)
    _one_of(body, "prompt_cache_retention", ("in_memory", "24h"))
    options = mapping(body, "prompt_cache_options")
    if options is not None:
        _PROMPT_CACHE_OPTIONS.check(options, "prompt_cache_options")
        _one_of(options, "mode", ("implicit", "explicit"), "prompt_cache_options")
        _one_of(options, "ttl", ("30m",), "prompt_cache_options")
    _check_metadata(mapping(body, "metadata"))


def _check_metadata(metadata: Json | None) -> None:
    """At most 16 pairs of strings, each key at most 64 characters long and each value at most 512."""
    if metadata is None:
        return
    if len(metadata) > _METADATA_KEYS:
        raise refuse("metadata", f"holds {len(metadata)} pairs; at most {_METADATA_KEYS} are allowed")
    for key in metadata:
        if len(key) > _METADATA_KEY_LENGTH:
            raise refuse("metadata", f"has a key longer than {_METADATA_KEY_LENGTH} characters: {quoted(key)}")
        value = metadata[key]
        if not isinstance(value, str) or len(value) > _METADATA_VALUE_LENGTH:
            raise refuse(at("metadata", key), f"must be a string of at most {_METADATA_VALUE_LENGTH} characters")


def _one_of(body: Json, key: str, values: Sequence[str], path: str = "", *, required: bool = False) -> None:
    value = text(body, key, path, required=required)
    if value is not None and value not in values:
        raise refuse(at(path, key), f"unknown value {quoted(value)}; expected one of {', '.join(values)}")
