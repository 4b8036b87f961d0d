"""Properties: any JSON value in any place of a valid request to the HTTP door gets an answer in the dialect's shape,
a success or a 4xx error that says what is wrong, never a 5xx; and the door keeps serving."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY_MODEL
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.hostile import CALL_TIMEOUT, CONTEXT_SIZE, HYPOTHESIS
from tests.hostile.values import JSON_VALUES
from tests.http_door import base_url, load_hosted
from warpcore.server.core.domain import BackendKind, LoadSpec, LocalSettings
from warpcore.server.doors import Doors

LOCAL, EMBEDDER, OPENAI, ANTHROPIC = "tiny", "tiny-embedding", "hosted-openai", "hosted-anthropic"
_TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
# One valid body per route, using each feature the route takes; the properties put hostile values into them.
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": LOCAL,
        "max_tokens": 4,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "the weather"}]},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "w", "description": "weather", "parameters": _TOOL_SCHEMA}}
        ],
        "tool_choice": "auto",
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": _TOOL_SCHEMA}},
        "logprobs": True,
        "top_logprobs": 2,
        "stop": ["\n\n"],
        "seed": 7,
        "stream": True,  # which stream_options need
        "stream_options": {"include_usage": True},
    },
    "/v1/messages": {
        "model": LOCAL,
        "max_tokens": 4,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "the weather"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "x"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
        ],
        "tools": [{"name": "w", "description": "weather", "input_schema": _TOOL_SCHEMA}],
        "tool_choice": {"type": "auto"},
        "stop_sequences": ["END"],  # Anthropic refuses a stop sequence of only whitespace
        "temperature": 0,
        "top_k": 5,
        "metadata": {"user_id": "u"},
    },
    "/v1/messages/count_tokens": {
        "model": LOCAL,
        "system": "be brief",
        "messages": [{"role": "user", "content": "the weather"}],
        "tools": [{"name": "w", "input_schema": _TOOL_SCHEMA}],
    },
    "/v1/embeddings": {"model": EMBEDDER, "input": ["the weather", "sunny"], "encoding_format": "float"},
}
# The models each route's body is sent to (the OpenAI API counts no tokens: that route refuses whatever the body).
MODELS = {
    "/v1/chat/completions": [LOCAL, OPENAI, ANTHROPIC],
    "/v1/messages": [LOCAL, OPENAI, ANTHROPIC],
    "/v1/messages/count_tokens": [LOCAL, ANTHROPIC],
    "/v1/embeddings": [EMBEDDER],
}
# How each model's body differs from those, where the model refuses a feature with a 400 (the tiny model's template
# renders no tool calls, and its context has no room for a tool's schema; each API lacks some of the other's options):
# None leaves the field out. Every example starts from a request its model takes.
ADJUSTED: dict[tuple[str, str], dict[str, object]] = {
    ("/v1/chat/completions", LOCAL): {
        "messages": [{"role": "user", "content": "the weather"}],
        "tools": None,
        "tool_choice": None,
    },
    ("/v1/chat/completions", ANTHROPIC): {"seed": None, "logprobs": None, "top_logprobs": None},
    ("/v1/messages", LOCAL): {
        "messages": [{"role": "user", "content": "the weather"}],
        "tools": None,
        "tool_choice": None,
    },
    ("/v1/messages", OPENAI): {"top_k": None},
    ("/v1/messages/count_tokens", LOCAL): {"tools": None},
}


def body_for(route: str, model: str) -> dict[str, Any]:
    """The route's body, as `model` takes it."""
    body = {**BODIES[route], "model": model, **ADJUSTED.get((route, model), {})}
    return copy.deepcopy({key: value for key, value in body.items() if value is not None})


HOSTILE_VALUES = st.one_of(
    JSON_VALUES,
    st.sampled_from(["\ud800", "a\udfff b", "\x00", "x" * 100_000, 2**70, -(2**63), 1e308, -1, 0, float("nan")]),
    st.sampled_from([LOCAL, EMBEDDER, OPENAI, ANTHROPIC, "user", "assistant", "tool", "text", "image", "auto", "none"]),
)


def _places(value: object, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every place in a JSON value: the value itself, and each member and item within, as key paths."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _places(item, (*path, index))


def _put(body: dict[str, Any], path: tuple[str | int, ...], value: object) -> object:
    if not path:
        return value
    *parents, last = path
    holder: Any = body
    for key in parents:
        holder = holder[key]
    holder[last] = value
    return body


@st.composite
def door_requests(draw: st.DrawFn) -> tuple[str, object]:
    """A route and its valid body for one of the models, with one to three places given hostile values, streamed
    or not."""
    route = draw(st.sampled_from(sorted(BODIES)))
    body = body_for(route, draw(st.sampled_from(MODELS[route])))
    if route != "/v1/embeddings":
        body["stream"] = draw(st.booleans())
    mutated: object = body
    for _ in range(draw(st.integers(1, 3))):
        if not isinstance(mutated, dict):
            break
        place = draw(st.sampled_from(list(_places(mutated))))
        mutated = _put(mutated, place, draw(HOSTILE_VALUES))
    return route, mutated


@pytest.fixture
async def door(doors: Doors) -> AsyncIterator[httpx2.AsyncClient]:
    """An HTTP client of a door serving the tiny model (smallest context) and a model on each fake upstream."""
    async with FakeOpenAI() as openai_fake, FakeAnthropic(models=["claude-test-large"]) as anthropic_fake:
        await doors.engine.load(LoadSpec(LOCAL, BackendKind.LLAMA_CPP, TINY_MODEL, None, CONTEXT_SIZE))
        embedding = LocalSettings(embedding=True)
        await doors.engine.load(LoadSpec(EMBEDDER, BackendKind.LLAMA_CPP, TINY_MODEL, embedding, CONTEXT_SIZE))
        await load_hosted(doors, openai_fake, OPENAI)
        await load_hosted(doors, anthropic_fake, ANTHROPIC)
        async with httpx2.AsyncClient(base_url=base_url(doors), timeout=CALL_TIMEOUT) as client:
            yield client


async def test_each_models_body_is_taken_as_it_is(door: httpx2.AsyncClient) -> None:
    """The property's starting points: each route's body, for each model, gets a 200."""
    for route, models in MODELS.items():
        for model in models:
            response = await door.post(route, json=body_for(route, model))
            assert response.status_code == 200, (route, model, response.text)


@settings(HYPOTHESIS, max_examples=200)
@given(request=door_requests())
@example(request=("/v1/messages/count_tokens", {"model": LOCAL, "messages": [{"role": "user", "content": "\ud800"}]}))
@example(request=("/v1/embeddings", {"model": EMBEDDER, "input": {"\udc00": 1}}))
async def test_any_value_anywhere_is_answered_in_the_dialects_shape(
    door: httpx2.AsyncClient, request: tuple[str, object]
) -> None:
    route, body = request
    content = json.dumps(body).encode()
    response = await door.post(route, content=content, headers={"content-type": "application/json"})
    event(f"status {response.status_code}")
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        answer = response.json()
        error = answer["error"]
        assert error["message"].strip()
        if route.startswith("/v1/messages"):
            assert answer["type"] == "error"
            assert error["type"].endswith("_error")
        else:
            assert error["type"]
    elif "text/event-stream" in response.headers["content-type"]:
        # The stream ends as the dialect ends one, never with an error event: the request was taken.
        assert '"type":"error"' not in response.text, response.text
        assert response.text.rstrip().endswith(("data: [DONE]", 'data: {"type":"message_stop"}'))
    else:
        assert isinstance(response.json(), dict)
    models = await door.get("/v1/models")
    assert models.status_code == 200
