"""JSON output enforced by grammar on local models: sampled text from a random-weights model (which never saw JSON)
and from Gemma parses and validates, one slot or four, each stream with its own schema."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.local_engine import Outcome, json_params, load_local, local_engine, run
from warpcore.server.core.domain import ChatMessage, FinishReason, Role
from warpcore.server.core.engine import Engine
from warpcore.server.embedded import install_embedded_model

POINT = {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}, "required": ["x", "y"]}
SCHEMAS: dict[str, dict[str, Any]] = {
    "nested objects": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "address": {
                "type": "object",
                "properties": {
                    "street": {"type": "string", "minLength": 1, "maxLength": 16},
                    "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                },
                "required": ["street", "zip"],
                "additionalProperties": False,
            },
        },
        "required": ["name", "address"],
        "additionalProperties": False,
    },
    "arrays": {
        "type": "array",
        "items": {"type": "array", "items": {"type": "integer", "minimum": -5, "maximum": 5}, "maxItems": 3},
        "minItems": 1,
        "maxItems": 4,
    },
    "enums": {
        "type": "object",
        "properties": {"color": {"enum": ["red", "green", "blue"]}, "size": {"enum": [1, 2.5, None, True]}},
        "required": ["color", "size"],
        "additionalProperties": False,
    },
    "numbers with bounds": {
        "type": "object",
        "properties": {
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "temperature": {"type": "number", "exclusiveMinimum": -40.5, "exclusiveMaximum": 60},
            "count": {"type": "integer", "minimum": 10, "maximum": 1000},
            "debt": {"type": "integer", "maximum": -7},
        },
        "required": ["ratio", "temperature", "count", "debt"],
        "additionalProperties": False,
    },
    "required and optional": {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 0},
            "note": {"type": "string", "maxLength": 10},
            "flag": {"type": "boolean"},
            "maybe": {"type": ["string", "null"], "maxLength": 4},
        },
        "required": ["id"],
        "additionalProperties": False,
    },
    "patterns": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
            "answer": {"type": "string", "pattern": "(yes|no)(, (yes|no)){0,2}"},
            "day": {"type": "string", "format": "date"},
            "version": {"type": "string", "pattern": "^v[0-9]{1,2}\\.[0-9]\\-[a-z]\\/x\\$$"},
            # Class escapes, as pydantic's and zod's patterns write them, outside a class and in one.
            "ticket": {"type": "string", "pattern": "^[A-Z]{3}-\\d{2}\\s\\w{1,3}$"},
            "handle": {"type": "string", "pattern": "^[\\w.-]{1,8}@[\\d]{2}$"},
            "slug": {"type": "string", "pattern": "^[\\w\\-\\.]{2,10}$"},  # escaped punctuation in a class
        },
        "required": ["code", "answer", "day", "version", "ticket", "handle", "slug"],
        "additionalProperties": False,
    },
    "a reference percent-encoded, as a URI fragment is": {
        "$defs": {"a b": {"type": "string", "enum": ["x", "y"]}},
        "type": "object",
        "properties": {"pick": {"$ref": "#/$defs/a%20b"}},
        "required": ["pick"],
        "additionalProperties": False,
    },
    "decimals between bounds": {  # ranges that hold no whole number, and the units the bounds cut
        "type": "object",
        "properties": {
            "confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "share": {"type": "number", "minimum": 0.25, "maximum": 0.75},
            "debt": {"type": "number", "minimum": -2.5, "exclusiveMaximum": -2.25},
            "span": {"type": "number", "minimum": -0.5, "maximum": 1.125},
            # Too large for a double to tell 123456789012.500001 from the bound: its cut unit is left out.
            "large": {"type": "number", "exclusiveMinimum": 123456789012.5, "maximum": 123456789020},
        },
        "required": ["confidence", "share", "debt", "span", "large"],
        "additionalProperties": False,
    },
    "refs and unions": {
        "$defs": {"point": POINT},
        "type": "object",
        "properties": {
            "start": {"$ref": "#/$defs/point"},
            "end": {"anyOf": [{"$ref": "#/$defs/point"}, {"type": "null"}]},
            "label": {"type": "string", "maxLength": 6, "description": "ignored by the grammar, as by JSON Schema"},
        },
        "required": ["start", "end", "label"],
        "additionalProperties": False,
    },
    "formats and tuples": {
        "type": "object",
        "properties": {
            "day": {"type": "string", "format": "date"},
            "id": {"type": "string", "format": "uuid"},
            "host": {"type": ["string", "null"], "format": "ipv4"},
            "size": {"type": "integer", "format": "int32"},  # OpenAPI's: no JSON Schema format, ignored
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "items": False},
        },
        "required": ["day", "id", "host", "size", "pair"],
        "additionalProperties": False,
    },
    # Hundreds of characters at most, which a random model may well write.
    "email": {"type": "string", "format": "email"},
    # Strings whose JSON holds escapes (a backslash, a quote, control characters) or none (beyond ASCII), as values
    # the output must repeat exactly and as the names of the members it must write.
    "strings JSON escapes": {
        "type": "object",
        "properties": {
            "path": {"const": "C:\\temp\\new"},
            'say "hi"': {"enum": ['"quoted"', "line\nbreak", "tab\there", "bell\u0007", "caf\u00e9", "back\\"]},
            "line\nname\\": {"type": "boolean"},
        },
        "required": ["path", 'say "hi"', "line\nname\\"],
        "additionalProperties": False,
    },
    # Member names the grammar's rules would be named after, as its own rules are: its start (`root` for a member
    # named ""), its white space, the number's parts, a member's key-value rule, and two names spelled alike in a
    # rule name (which holds letters, digits and dashes only).
    "member names like the grammar's own rules": {
        "type": "object",
        "properties": {
            "": {"type": "integer", "minimum": 0, "maximum": 9},
            "root": {"enum": ["r", "s"]},
            "space": {"const": "x"},
            "decimal part": {"const": "d"},
            "integral_part": {"const": "i"},
            "n": {"type": "number"},
            "-kv": {"type": "boolean"},
            "a b": {"const": "ab"},
            "a-b": {"const": "a-b"},
        },
        "required": ["", "root", "space", "decimal part", "integral_part", "n", "-kv", "a b", "a-b"],
        "additionalProperties": False,
    },
}
TINY_SAMPLES = 50
GEMMA_SAMPLES = 5


@pytest.fixture
async def engine(models_path: Path) -> AsyncIterator[Engine]:
    async with local_engine(models_path) as started:
        yield started


def assert_valid(outcome: Outcome, schema: Mapping[str, Any] | None) -> Any:
    assert outcome.result is not None
    assert outcome.result.finish.reason is FinishReason.STOP, (outcome.result.finish, outcome.text)
    value = json.loads(outcome.text)
    if schema is None:
        assert isinstance(value, dict)
    else:
        # Formats asserted too, as a client validating the answer may: the grammar enforces those it keeps.
        jsonschema.validate(value, schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return value


@pytest.mark.parametrize("name", SCHEMAS)
async def test_sampled_output_of_a_random_model_parses_and_validates(engine: Engine, name: str) -> None:
    model = await load_local(engine, "tiny")
    schema = SCHEMAS[name]
    texts = set()
    for seed in range(TINY_SAMPLES):
        outcome = await run(engine, model, json_params(schema, temperature=1.0, seed=seed, max_tokens=1000))
        assert_valid(outcome, schema)
        texts.add(outcome.text)
    assert len(texts) > TINY_SAMPLES // 5  # sampling varied: the grammar did not collapse it to one answer


async def test_json_object_output_is_an_object_or_cut_by_max_tokens(engine: Engine) -> None:
    """Any object is allowed, so the random model may write one string forever: such output ends at max_tokens
    (LENGTH, as hosted providers do), and everything that ends on its own is a JSON object."""
    model = await load_local(engine, "tiny")
    finished = 0
    for seed in range(TINY_SAMPLES):
        outcome = await run(engine, model, json_params(None, temperature=1.0, seed=seed, max_tokens=200))
        assert outcome.result is not None
        if outcome.result.finish.reason is FinishReason.LENGTH:
            assert outcome.result.finish.completion_tokens == 200
            assert outcome.text.startswith("{")
        else:
            assert_valid(outcome, None)
            finished += 1
    assert finished > 0


async def test_a_schema_that_spells_the_templates_control_tokens_is_written_whole(engine: Engine) -> None:
    """The tiny model's chat template ends a turn with `</s>`, its end-of-sequence token, also when the model writes it
    as text, and `<s>` is a control token the grammar may take for its text: under the grammar, a member's name, a
    constant and an enum value that spell them are JSON text, neither the end of the answer nor a token left out."""
    model = await load_local(engine, "tiny")
    schema = {
        "type": "object",
        "properties": {"</s>": {"const": "</s>"}, "pick": {"enum": ["a</s>b", "<s>"]}, "start": {"const": "<s>"}},
        "required": ["</s>", "pick", "start"],
        "additionalProperties": False,
    }
    picks = set()
    for seed in range(TINY_SAMPLES):
        params = json_params(schema, temperature=1.0, seed=seed)
        chat = dataclasses.replace(params, prompt=None, messages=(ChatMessage(Role.USER, "the world"),))
        picks.add(assert_valid(await run(engine, model, chat), schema)["pick"])
    assert picks == {"a</s>b", "<s>"}


async def test_four_concurrent_streams_each_with_its_own_schema(engine: Engine) -> None:
    """Each slot keeps its own grammar state: four streams with four schemas decoded together all validate, and
    each gives what it gives alone on one slot."""
    alone_model = await load_local(engine, "alone")
    batched = await load_local(engine, "batched", parallel=4)
    names = list(SCHEMAS)[:4]
    for seed in range(TINY_SAMPLES):
        requests = [json_params(SCHEMAS[name], temperature=1.0, seed=seed) for name in names]
        together = await asyncio.gather(*(run(engine, batched, request) for request in requests))
        for name, outcome in zip(names, together, strict=True):
            assert_valid(outcome, SCHEMAS[name])
        if seed % 10 == 0:
            alone = [await run(engine, alone_model, request) for request in requests]
            assert [outcome.text for outcome in together] == [outcome.text for outcome in alone]


async def test_greedy_output_under_a_grammar_is_the_same_on_one_slot_and_four(engine: Engine) -> None:
    one = await load_local(engine, "one")
    four = await load_local(engine, "four", parallel=4)
    prompts = ["the world", "people say", "life is", "when they"]
    for name, schema in SCHEMAS.items():
        requests = [json_params(schema, prompt=prompt, temperature=0.0) for prompt in prompts]
        alone = [await run(engine, one, request) for request in requests]
        together = await asyncio.gather(*(run(engine, four, request) for request in requests))
        assert [outcome.text for outcome in together] == [outcome.text for outcome in alone], name
        for outcome in alone:
            assert_valid(outcome, schema)


async def test_gemma_output_parses_and_validates(tmp_path: Path) -> None:
    async with local_engine(tmp_path) as engine:
        model = await load_local(engine, "gemma", name=install_embedded_model(tmp_path), threads=2)
        for name, schema in SCHEMAS.items():
            prompt = f"Here is an example of {name} as JSON:\n"
            for seed in range(GEMMA_SAMPLES):
                outcome = await run(engine, model, json_params(schema, prompt=prompt, temperature=1.0, seed=seed))
                assert_valid(outcome, schema)
