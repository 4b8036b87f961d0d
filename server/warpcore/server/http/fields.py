"""Typed reads of a request's JSON, each refusal naming the field by its path in the dialect's request."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from warpcore.server.core.bounds import MAX_TOOL_ARGUMENTS_BYTES
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.json_schema import check_schema, parse_json
from warpcore.server.core.tooling import JsonSchema

Json = Mapping[str, Any]


def at(path: str, key: str | int) -> str:
    """The path of a member: `messages[0].content`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


UNKNOWN_FIELD = "UNKNOWN_FIELD"
DIALECT_NAMED = frozenset(("INVALID_FIELD", "UNSUPPORTED_FIELD", UNKNOWN_FIELD))
"""The reasons of the refusals a door makes as it reads a request: their fields are the request's own paths, never
renamed as a domain field is."""


def refuse(path: str, message: str) -> InvalidArgumentError:
    """`message` said of the member at `path`: a predicate ("is required") makes a sentence with it, as the domain's
    refusals read ("tools[0].type is required", not "tools[0].type: is required"); other words follow a colon. The
    Anthropic dialect writes either as its API does, the path, a colon and the words (errors.anthropic_error)."""
    joined = " " if message.startswith("is ") else ": "
    return InvalidArgumentError(f"{path}{joined}{message}", field=path, reason="INVALID_FIELD")


def unsupported(path: str, what: str, supported: str = "") -> InvalidArgumentError:
    """`what` is not supported, and what is (`supported`, a clause of its own): after the verb, so that the sentence
    reads whole ("... (function tools are) is not supported" did not)."""
    instead = f" ({supported})" if supported else ""
    return InvalidArgumentError(f"{path}: {what} is not supported{instead}", field=path, reason="UNSUPPORTED_FIELD")


def _read(body: Json, key: str, path: str, kinds: tuple[type, ...], name: str, required: bool) -> Any:
    value = body.get(key)
    # The member's path is spelt only for a refusal: a request reads hundreds of thousands of members.
    if value is None:
        if required:
            raise refuse(at(path, key), "is required")
        return None
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise refuse(at(path, key), f"must be {name}")
    return value


def text(body: Json, key: str, path: str = "", *, required: bool = False) -> str | None:
    value: str | None = _read(body, key, path, (str,), "a string", required)
    return value


def integer(body: Json, key: str, path: str = "", *, required: bool = False) -> int | None:
    value: int | None = _read(body, key, path, (int,), "an integer", required)
    return value


def number(body: Json, key: str, path: str = "") -> float | None:
    value: float | int | None = _read(body, key, path, (int, float), "a number", False)
    return None if value is None else float(value)


def boolean(body: Json, key: str, path: str = "") -> bool | None:
    value: bool | None = _read(body, key, path, (bool,), "true or false", False)
    return value


def array(body: Json, key: str, path: str = "", *, required: bool = False) -> list[Any] | None:
    value: list[Any] | None = _read(body, key, path, (list,), "an array", required)
    return value


def mapping(body: Json, key: str, path: str = "", *, required: bool = False) -> Json | None:
    value: Json | None = _read(body, key, path, (dict,), "an object", required)
    return value


def schema(body: Json, key: str, path: str = "", *, required: bool = False) -> JsonSchema | None:
    """A JSON Schema member, checked as a schema sent over gRPC is (core/json_schema.py)."""
    value = mapping(body, key, path, required=required)
    return None if value is None else check_schema(value, at(path, key))


def objects(body: Json, key: str, path: str = "", *, required: bool = False) -> list[tuple[str, Json]]:
    """The members of an array of objects, each with its path."""
    items = array(body, key, path, required=required) or []
    where = at(path, key)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise refuse(at(where, index), "must be an object")
    return [(at(where, index), item) for index, item in enumerate(items)]


def conversation(body: Json) -> list[tuple[str, Json]]:
    """The request's messages: an array of at least one object, as both dialects require."""
    turns = objects(body, "messages", required=True)
    if not turns:
        raise refuse("messages", "must hold at least one message")
    return turns


def json_object_text(value: object, path: str) -> str:
    """Tool-call arguments as compact JSON text of an object, from a dialect's object or its text (read as the gRPC
    door's are: bounded in size and depth, strict JSON, valid Unicode): the same arguments in either dialect are the
    same text, and so the same prompt."""
    if isinstance(value, str):
        value = parse_json(value, path, MAX_TOOL_ARGUMENTS_BYTES, "arguments")
    if not isinstance(value, dict):
        raise refuse(path, "must be an object")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_TOKEN_ID = re.compile("[0-9]{1,10}")
"""A logit_bias key: a token id of at most the 10 digits of the gRPC field's uint32, never too long to read."""


def sampling_controls(body: Json) -> dict[str, Any]:
    """The GenerationParams of OpenAI's sampling controls beyond temperature and top_p: `seed`, `presence_penalty`,
    `frequency_penalty`, `logit_bias` (token ids to biases). The Anthropic dialect reads them too, though its API
    has none: its clients send them (as `extra_body`) to the backends that take them, llama.cpp models above all."""
    biases = mapping(body, "logit_bias") or {}
    pairs = []
    for key, bias in biases.items():
        if not _TOKEN_ID.fullmatch(key) or isinstance(bias, bool) or not isinstance(bias, int | float):
            raise refuse("logit_bias", 'must map token ids to numbers, as {"1234": -100}')
        pairs.append((int(key), float(bias)))
    return {
        "seed": integer(body, "seed"),
        "presence_penalty": number(body, "presence_penalty"),
        "frequency_penalty": number(body, "frequency_penalty"),
        "logit_bias": tuple(sorted(pairs)),
    }
